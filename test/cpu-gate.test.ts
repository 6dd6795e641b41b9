/** The CPU gate (lib/runtime/cpu-gate.ts): its order, and real models taking it. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadFaceDetector } from '../lib/faces/blazeface';
import type { Model } from '../lib/model';
import { CpuGate, cpuGate } from '../lib/runtime/cpu-gate';
import { expectDfdetError } from './helpers/errors';

/** A promise and its resolve, to hold a run open. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Lets every pending promise callback run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

describe('CpuGate', () => {
  it('lets shared runs overlap and an exclusive run go alone, first come first served', async () => {
    const gate = new CpuGate();
    const log: string[] = [];
    const hold = { s1: deferred(), s2: deferred(), x: deferred(), s3: deferred() };
    const run = (name: keyof typeof hold, mode: 'shared' | 'exclusive') =>
      gate.run(mode, async () => {
        log.push(`start ${name}`);
        await hold[name].promise;
        log.push(`end ${name}`);
        return name;
      });
    const s1 = run('s1', 'shared');
    const s2 = run('s2', 'shared');
    const x = run('x', 'exclusive');
    // Shared, but it came after a waiting exclusive run: it waits too.
    const s3 = run('s3', 'shared');
    await settle();
    expect(log).toEqual(['start s1', 'start s2']);
    expect(gate.state).toEqual({ exclusive: false, shared: 2, waiting: 2 });
    hold.s1.resolve();
    await settle();
    expect(log).toEqual(['start s1', 'start s2', 'end s1']);
    hold.s2.resolve();
    await settle();
    expect(log.slice(-2)).toEqual(['end s2', 'start x']);
    expect(gate.state).toEqual({ exclusive: true, shared: 0, waiting: 1 });
    hold.x.resolve();
    await settle();
    expect(log.slice(-2)).toEqual(['end x', 'start s3']);
    hold.s3.resolve();
    expect(await Promise.all([s1, s2, x, s3])).toEqual(['s1', 's2', 'x', 's3']);
    expect(gate.state).toEqual({ exclusive: false, shared: 0, waiting: 0 });
  });

  it('reopens when a run fails', async () => {
    const gate = new CpuGate();
    const failed = gate.run('exclusive', () => Promise.reject(new Error('boom')));
    const next = gate.run('exclusive', () => Promise.resolve(7));
    await expect(failed).rejects.toThrow('boom');
    expect(await next).toBe(7);
    expect(gate.state).toEqual({ exclusive: false, shared: 0, waiting: 0 });
  });
});

describe('models taking the process gate', () => {
  const input = (n: number) => [{ data: new Float32Array(n * 3 * 256 * 256).fill(0.25), shape: [n, 3, 256, 256], dtype: 'float32' as const }];
  let big: Model;
  let small: Model[];
  beforeAll(async () => {
    big = await loadFaceDetector({ cpuGate: 'exclusive' });
    small = await Promise.all([loadFaceDetector({ cpuGate: 'shared' }), loadFaceDetector({ cpuGate: 'shared' })]);
  });
  afterAll(async () => {
    await Promise.all([big, ...small].map((m) => m.dispose()));
  });

  it('never runs an exclusive model beside another gated run, and lets shared ones overlap', async () => {
    const seen = { overlapped: false, sharedPair: false, waited: false };
    let done = false;
    const watch = (async () => {
      while (!done) {
        const s = cpuGate.state;
        if (s.exclusive && s.shared > 0) seen.overlapped = true;
        if (s.shared === 2) seen.sharedPair = true;
        if (s.waiting > 0) seen.waited = true;
        await settle();
      }
    })();
    const order: string[] = [];
    const x = big.run('forward', input(4)).then(() => order.push('exclusive'));
    // A small run asked for while the exclusive one goes: it waits for it, then both small ones overlap.
    const a = small[0]!.run('forward', input(1)).then(() => order.push('shared'));
    const b = small[1]!.run('forward', input(1)).then(() => order.push('shared'));
    await Promise.all([x, a, b]);
    done = true;
    await watch;
    expect(order).toEqual(['exclusive', 'shared', 'shared']);
    expect(seen).toEqual({ overlapped: false, sharedPair: true, waited: true });
    // Ungated models and models on other devices never take it; results are the model's own.
    const plain = await loadFaceDetector();
    try {
      const [g, p] = (await Promise.all([big.run('forward', input(1)), plain.run('forward', input(1))])) as { data: Float32Array }[][];
      expect(Array.from(g![0]!.data)).toEqual(Array.from(p![0]!.data));
    } finally {
      await plain.dispose();
    }
  });

  it('refuses an unknown gate mode', async () => {
    await expectDfdetError(loadFaceDetector({ cpuGate: 'always' as never }), 'BAD_INPUT', /Expected 'exclusive', 'shared' or 'none' for cpuGate/);
  });
});
