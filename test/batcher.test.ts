/** Dynamic batching over a real (tiny) detector model. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Batcher } from '../lib/batcher';
import { initModel } from '../lib/detector-model/init';
import { Model, expectTensor } from '../lib/model';

const ITEM = [3, 224, 224];
const SIZE = 3 * 224 * 224;
let dir: string;
let model: Model;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-batcher-'));
  await initModel({ arch: 'tiny', seed: 3, output: path.join(dir, 'tiny.pt') });
  model = await Model.load(path.join(dir, 'tiny.pt'));
});
afterAll(async () => {
  await model.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

const item = (v: number) => new Float32Array(SIZE).fill(v);

describe('Batcher', () => {
  it('gives every caller the row the model computes for its item, whatever batch it lands in', async () => {
    const b = new Batcher(model, 'forward', ITEM, { maxBatch: 3, maxWaitMs: 50 });
    const values = [-1, -0.5, 0, 0.25, 0.5, 1, 1.5];
    const rows = await Promise.all(values.map((v) => b.submit(item(v))));
    expect(b.stats.items).toBe(7);
    expect(b.stats.sizes[3]).toBe(2);
    for (const [i, v] of values.entries()) {
      const alone = expectTensor(await model.forward({ data: item(v), shape: [1, ...ITEM], dtype: 'float32' })).data as Float32Array;
      expect(rows[i]![0]).toBeCloseTo(alone[0]!, 4);
      expect(rows[i]![1]).toBeCloseTo(alone[1]!, 4);
    }
    await b.close();
  });

  it('aborting a large group takes its queued items out with one listener and no warning', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    const b = new Batcher(model, 'forward', ITEM, { maxBatch: 2, maxWaitMs: 1 });
    const ac = new AbortController();
    const p = b.submitAll(Array.from({ length: 40 }, (_, i) => item(i / 40)), ac.signal);
    setTimeout(() => ac.abort(), 1);
    await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
    await new Promise((r) => setTimeout(r, 50));
    expect(b.queued).toBe(0);
    expect(b.stats.items).toBeLessThan(40);
    // The batcher still works afterwards.
    expect((await b.submit(item(0))).length).toBe(2);
    await b.close();
    process.off('warning', onWarning);
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
  });

  it('close() rejects queued items with DISPOSED; bad items are refused', async () => {
    const b = new Batcher(model, 'forward', ITEM, { maxBatch: 64, maxWaitMs: 10_000 });
    const queued = b.submit(item(0));
    await expect(b.submit(new Float32Array(5))).rejects.toMatchObject({ code: 'BAD_INPUT' });
    await b.close();
    await expect(queued).rejects.toMatchObject({ code: 'DISPOSED' });
    await expect(b.submit(item(0))).rejects.toMatchObject({ code: 'DISPOSED' });
  });
});
