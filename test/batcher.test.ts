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
    const ac = new AbortController();
    // Abort as the first batch starts: it finishes, the 38 items still queued leave at once.
    const b = new Batcher(model, 'forward', ITEM, { maxBatch: 2, maxWaitMs: 1, onBatch: (e) => e.phase === 'start' && ac.abort() });
    const p = b.submitAll(Array.from({ length: 40 }, (_, i) => item(i / 40)), ac.signal);
    await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
    expect(b.queued).toBe(0);
    await b.whenIdle();
    expect(b.stats).toMatchObject({ batches: 1, items: 2 });
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

  it('rejects options that would spin or stall the scheduler, and bad item shapes, with BAD_INPUT', () => {
    for (const options of [{ maxBatch: 0 }, { maxBatch: Number.NaN }, { maxBatch: 2.5 }, { maxBatch: -1 }, { maxWaitMs: Number.NaN }, { maxWaitMs: -1 }, { maxWaitMs: Infinity }, { maxWaitMs: 2 ** 31 }]) {
      expect(() => new Batcher(model, 'forward', ITEM, options), JSON.stringify(options)).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
    }
    for (const shape of [[], [3, 0, 224], [3, Number.NaN, 224], [3, -224, 224], [1.5]]) {
      expect(() => new Batcher(model, 'forward', shape), String(shape)).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
    }
    expect(() => new Batcher(model, 'forward', ITEM, { maxBatch: 1, maxWaitMs: 0 })).not.toThrow();
  });

  it('a NaN or infinite item fails only its own caller, not the others sharing its batch', async () => {
    const b = new Batcher(model, 'forward', ITEM, { maxBatch: 3, maxWaitMs: 200 });
    const nan = item(0.5);
    nan[1234] = Number.NaN;
    const inf = item(0.5);
    inf[SIZE - 1] = -Infinity;
    const [good1, bad1, bad2, good2] = await Promise.allSettled([b.submit(item(0.25)), b.submit(nan), b.submitAll([item(0), inf]), b.submit(item(1))]);
    expect(bad1).toMatchObject({ status: 'rejected', reason: { code: 'BAD_INPUT', message: /finite values for batch item 0 .* index 1234/ } });
    expect(bad2).toMatchObject({ status: 'rejected', reason: { code: 'BAD_INPUT', message: /batch item 1 .* index 150527/ } });
    expect(good1.status).toBe('fulfilled');
    expect(good2.status).toBe('fulfilled');
    // The good items went to the model together, and the rejected groups queued nothing.
    expect(b.stats).toMatchObject({ batches: 1, items: 2 });
    const alone = expectTensor(await model.forward({ data: item(1), shape: [1, ...ITEM], dtype: 'float32' })).data as Float32Array;
    expect((good2 as PromiseFulfilledResult<Float32Array>).value[0]).toBeCloseTo(alone[0]!, 4);
    await b.close();
  });

  it('schedules round robin across callers: a 1-item caller rides in the next batch, not after 24 queued items', async () => {
    const events: string[] = [];
    const b = new Batcher(model, 'forward', ITEM, { maxBatch: 8, maxWaitMs: 1000, onBatch: (e) => events.push(`${e.phase}:${e.size}`) });
    let bigDone = false;
    const big = b.submitAll(Array.from({ length: 24 }, (_, i) => item(i / 24))).then((rows) => ((bigDone = true), rows));
    const small = b.submit(item(0.5));
    const row = await small;
    // The first batch (8 big items) left before the small caller came; the small item rides in the
    // second. FIFO would run three full batches of the big caller first.
    expect(b.stats.batches).toBe(2);
    expect(bigDone).toBe(false);
    const alone = expectTensor(await model.forward({ data: item(0.5), shape: [1, ...ITEM], dtype: 'float32' })).data as Float32Array;
    expect(row[0]).toBeCloseTo(alone[0]!, 4);
    const rows = await big;
    expect(rows).toHaveLength(24);
    // The big caller's rows are still its own, in order, across batches of mixed callers.
    const first = expectTensor(await model.forward({ data: item(23 / 24), shape: [1, ...ITEM], dtype: 'float32' })).data as Float32Array;
    expect(rows[23]![0]).toBeCloseTo(first[0]!, 4);
    await b.whenIdle();
    expect(events).toEqual(['start:8', 'end:8', 'start:8', 'end:8', 'start:8', 'end:8', 'start:1', 'end:1']);
    await b.close();
  });

  it('interleaves three callers one item each per turn', async () => {
    const order: number[] = [];
    const b = new Batcher(model, 'forward', ITEM, { maxBatch: 1, maxWaitMs: 0 });
    const callers = [5, 2, 3].map((n, c) => b.submitAll(Array.from({ length: n }, () => item(c))).then(() => order.push(c)));
    await Promise.all(callers);
    // Turns go 0,1,2,0,1,2,...: caller 1 (2 items) ends first, then caller 2 (3), caller 0 (5) last;
    // FIFO would finish caller 0 first.
    expect(order).toEqual([1, 2, 0]);
    expect(b.stats.batches).toBe(10);
    await b.close();
  });
  it('hold(): items wait for a full batch past maxWaitMs until released, then the rest leaves', async () => {
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    // Without a hold, items that wait longer than maxWaitMs leave in a partial batch.
    const free = new Batcher(model, 'forward', ITEM, { maxBatch: 4, maxWaitMs: 0 });
    const a = free.submitAll([item(0), item(0.1), item(0.2)]);
    await sleep(20);
    await Promise.all([a, free.submitAll([item(0.3), item(0.4), item(0.5), item(0.6), item(0.7)])]);
    expect(free.stats.sizes).toEqual({ 3: 1, 4: 1, 1: 1 });
    await free.close();
    // Held (a stream still decoding inputs): the same arrivals make full batches.
    const b = new Batcher(model, 'forward', ITEM, { maxBatch: 4, maxWaitMs: 0 });
    const release = b.hold();
    const first = b.submitAll([item(0), item(0.1), item(0.2)]);
    await sleep(20);
    expect(b.stats.batches).toBe(0);
    const second = b.submitAll([0.3, 0.4, 0.5, 0.6, 0.7, 0.8].map(item));
    // Round robin: the first caller's last item rides in the second batch.
    await first;
    await sleep(20);
    expect(b.stats.sizes).toEqual({ 4: 2 });
    expect(b.queued).toBe(1);
    // The remainder leaves once released (after maxWaitMs, as usual); a second release is a no-op.
    release();
    release();
    await second;
    expect(b.stats.sizes).toEqual({ 4: 2, 1: 1 });
    await b.close();
  });
});
