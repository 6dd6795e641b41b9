/**
 * The native core against real TorchScript files: ones built through buildModule (the path the
 * detector builder uses) and ones written by PyTorch's own torch.jit.trace / torch.jit.script.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { Worker } from 'node:worker_threads';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Model, buildModule, expectTensor, tensor } from '../lib/model';
import { native } from '../lib/native';
import { runPython, skipWithoutPython } from './helpers/python';
import { expectDfdetError } from './helpers/errors';
import { replaceEntry } from './helpers/zip';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-native-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// y = x @ w + b, plus helper methods that exercise every conversion path.
const LINEAR_SOURCE = `
def forward(self, x):
    return torch.matmul(x, self.w) + self.b

def pair(self, x):
    return (x * 2.0, {"sum": x.sum(), "n": x.numel()})

def addone(self, x):
    x.add_(1.0)
    return x

def same(self, x):
    return x

def weight(self, x):
    return self.w

def huge(self, x):
    return x.new_empty([1 << 44])

def slow(self, x):
    y = x
    for i in range(self.iterations):
        y = torch.tanh(torch.matmul(y, x))
    return y.sum()
`;

async function buildLinear(file: string, iterations = 40): Promise<{ w: Float32Array; b: Float32Array }> {
  const w = Float32Array.from({ length: 12 }, (_, i) => (i - 5) / 7);
  const b = new Float32Array([0.25, -0.5, 1, 2]);
  await buildModule(
    {
      className: 'Linear',
      source: LINEAR_SOURCE,
      parameters: { w: tensor(w, [3, 4]), b: tensor(b, [4]) },
      attributes: { iterations, label: 'linear', scale: 0.5, sizes: [3, 4] },
    },
    file,
    { extraFiles: { 'notes.json': JSON.stringify({ format: 'test' }) } },
  );
  return { w, b };
}

function matmulRef(x: Float32Array, rows: number, w: Float32Array, b: Float32Array): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < 4; j++) {
      let s = b[j]!;
      for (let k = 0; k < 3; k++) s += x[r * 3 + k]! * w[k * 4 + j]!;
      out.push(s);
    }
  return out;
}

describe('built modules', () => {
  it('builds, loads, reports info and metadata, and computes what an independent reference computes', async () => {
    const file = path.join(dir, 'linear.pt');
    const { w, b } = await buildLinear(file);
    // Model reads the extra files its caller names, and only those (it knows no dfdet file of its own).
    const plain = await Model.load(file);
    expect(plain.info.extraFiles).toEqual({});
    await plain.dispose();
    const model = await Model.load(file, { extraFiles: ['notes.json', 'absent.txt'] });
    expect(model.info.methods.sort()).toEqual(['addone', 'forward', 'huge', 'pair', 'same', 'slow', 'weight']);
    expect(model.info.parameterCount).toBe(16);
    expect(model.info.parameterBytes).toBe(64);
    expect(model.info.device).toBe('cpu');
    expect(model.info.dtype).toBe('float32');
    expect(model.info.torchVersion).toBe(native().runtimeInfo().torchVersion);
    expect(Object.keys(model.info.extraFiles)).toEqual(['notes.json']);
    expect(JSON.parse(model.info.extraFiles['notes.json']!)).toEqual({ format: 'test' });
    expect(model.info.attributes).toMatchObject({ iterations: 40, label: 'linear', scale: 0.5 });

    const x = Float32Array.from({ length: 6 }, (_, i) => Math.sin(i + 1));
    const y = expectTensor(await model.forward(tensor(x, [2, 3])));
    expect(y.shape).toEqual([2, 4]);
    expect(y.dtype).toBe('float32');
    const ref = matmulRef(x, 2, w, b);
    for (let i = 0; i < ref.length; i++) expect(y.data[i]).toBeCloseTo(ref[i]!, 5);

    const pair = (await model.run('pair', [tensor(new Float32Array([1, 2, 3]), [3])])) as unknown[];
    expect(Array.from(expectTensor(pair[0] as never).data as Float32Array)).toEqual([2, 4, 6]);
    const dict = pair[1] as { sum: never; n: number };
    expect(expectTensor(dict.sum).shape).toEqual([]);
    expect(expectTensor(dict.sum).data[0]).toBe(6);
    expect(dict.n).toBe(3);
    await model.dispose();
  });

  it('loads from a Buffer and with optimize (freeze + optimize_for_inference) gives the same numbers', async () => {
    const file = path.join(dir, 'linear-buf.pt');
    await buildLinear(file);
    const x = tensor(new Float32Array([0.1, 0.2, 0.3]), [1, 3]);
    const plain = await Model.load(file);
    const fromBytes = await Model.load(fs.readFileSync(file));
    const optimized = await Model.load(file, { optimize: true });
    const a = expectTensor(await plain.forward(x)).data;
    expect(Array.from(expectTensor(await fromBytes.forward(x)).data as Float32Array)).toEqual(Array.from(a as Float32Array));
    const c = expectTensor(await optimized.forward(x)).data as Float32Array;
    c.forEach((v, i) => expect(v).toBeCloseTo((a as Float32Array)[i]!, 5));
    await Promise.all([plain.dispose(), fromBytes.dispose(), optimized.dispose()]);
  });

  it('loads in bfloat16 (outputs widened to float32); float16 on a CPU libtorch 1.x is UNSUPPORTED', async () => {
    const file = path.join(dir, 'linear-bf16.pt');
    const { w, b } = await buildLinear(file);
    const model = await Model.load(file, { dtype: 'bfloat16' });
    expect(model.info.dtype).toBe('bfloat16');
    expect(model.info.parameterBytes).toBe(32);
    const x = new Float32Array([0.3, -1.2, 2.5]);
    const y = expectTensor(await model.forward(tensor(x, [1, 3])));
    expect(y.dtype).toBe('float32');
    // bfloat16 keeps 8 significant bits: relative error below 2^-7 per rounding, a few roundings.
    matmulRef(x, 1, w, b).forEach((r, i) => expect(Math.abs((y.data[i] as number) - r)).toBeLessThan(0.05 * Math.max(1, Math.abs(r))));
    await model.dispose();
    if (native().runtimeInfo().torchVersion.startsWith('1.')) await expectDfdetError(Model.load(file, { dtype: 'float16' }), 'UNSUPPORTED');
  });

  it('rejects malformed build specs and TorchScript compile errors with BAD_INPUT', async () => {
    const out = path.join(dir, 'bad.pt');
    await expectDfdetError(buildModule({ className: 'Bad', source: 'def forward(self, x):\n    return torch.nope(x)\n' }, out), 'BAD_INPUT');
    await expectDfdetError(buildModule({ className: 'bad name', source: '' }, out), 'BAD_INPUT');
    await expectDfdetError(
      buildModule({ className: 'Bad2', source: '', parameters: { w: tensor(new Float32Array(3), [2, 2]) } }, out),
      'BAD_INPUT',
    );
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe('zero copy', () => {
  it('runs on the caller’s memory: an in-place method changes the JS array', async () => {
    const file = path.join(dir, 'zc.pt');
    await buildLinear(file);
    const model = await Model.load(file);
    const x = new Float32Array([1, 2, 3]);
    const out = expectTensor(await model.run('addone', [tensor(x, [3])]));
    expect(Array.from(x)).toEqual([2, 3, 4]);
    // A method returning its input must not hand JS a second owner of the same memory.
    expect(out.data.buffer).not.toBe(x.buffer);
    x[0] = 100;
    expect(out.data[0]).toBe(2);
    await model.dispose();
  });

  it('hands outputs over as external buffers owned by the tensor, freed by the GC', async () => {
    const file = path.join(dir, 'ext.pt');
    await buildLinear(file);
    const model = await Model.load(file);
    // Let earlier tests' outputs be collected first, so only this test's tensor moves the counters.
    // (Node runs external-buffer finalizers from the event loop after the collection: let it turn.)
    const settle = async (target?: number) => {
      for (let i = 0; i < 200; i++) {
        gc();
        await new Promise((r) => setImmediate(r));
        const live = native().debugCounters().liveExternalTensors;
        if (live === (target ?? 0)) return;
      }
    };
    await settle();
    const before = native().debugCounters();
    let y: ReturnType<typeof expectTensor> | undefined = expectTensor(await model.forward(tensor(new Float32Array(3 * 1000), [1000, 3])));
    const during = native().debugCounters();
    expect(during.liveExternalTensors - before.liveExternalTensors).toBe(1);
    expect(during.liveExternalBytes - before.liveExternalBytes).toBe(y.data.byteLength);
    y = undefined;
    await settle(before.liveExternalTensors);
    expect(native().debugCounters().liveExternalTensors).toBe(before.liveExternalTensors);
    expect(native().debugCounters().liveExternalBytes).toBe(before.liveExternalBytes);
    await model.dispose();
  });

  it('copies an output that aliases the model’s weights, so JS cannot write into the model', async () => {
    const file = path.join(dir, 'alias.pt');
    const { w } = await buildLinear(file);
    const model = await Model.load(file);
    const out = expectTensor(await model.run('weight', [tensor(new Float32Array(1), [1])]));
    expect(Array.from(out.data as Float32Array)).toEqual(Array.from(w));
    (out.data as Float32Array).fill(0);
    const again = expectTensor(await model.run('weight', [tensor(new Float32Array(1), [1])]));
    expect(Array.from(again.data as Float32Array)).toEqual(Array.from(w));
    await model.dispose();
  });

  it('an input buffer transferred away mid-run is copied, not freed under libtorch', async () => {
    const file = path.join(dir, 'transfer.pt');
    await buildLinear(file, 30);
    const model = await Model.load(file);
    const n = 512;
    const x = new Float32Array(n * n).fill(1 / n);
    const running = model.run('slow', [tensor(x, [n, n])]);
    // What a caller handing frames to a worker_thread does; before the mark this detached the
    // memory libtorch was reading (a segfault once collected).
    const moved = structuredClone(x.buffer, { transfer: [x.buffer] });
    expect(x.length).toBe(n * n);
    expect(moved.byteLength).toBe(n * n * 4);
    gc();
    expect(expectTensor(await running).shape).toEqual([]);
    await model.dispose();
  });

  it('accepts strided (non-contiguous) inputs and computes the same as the contiguous copy', async () => {
    const file = path.join(dir, 'strided.pt');
    const { w, b } = await buildLinear(file);
    const model = await Model.load(file);
    // The transpose of a 3x2 row-major array, viewed as [2,3] with strides [1,2].
    const storage = new Float32Array([1, 4, 2, 5, 3, 6]);
    const y = expectTensor(await model.forward({ data: storage, shape: [2, 3], dtype: 'float32', strides: [1, 2] }));
    const ref = matmulRef(new Float32Array([1, 2, 3, 4, 5, 6]), 2, w, b);
    ref.forEach((v, i) => expect(y.data[i]).toBeCloseTo(v, 5));
    await model.dispose();
  });
});

describe('bad input', () => {
  let model: Model;
  beforeAll(async () => {
    const file = path.join(dir, 'bad-input.pt');
    await buildLinear(file);
    model = await Model.load(file);
  });
  afterAll(() => model.dispose());

  it('missing, text, truncated and empty model files', async () => {
    await expectDfdetError(Model.load(path.join(dir, 'missing.pt')), 'NOT_FOUND');
    const text = path.join(dir, 'text.pt');
    fs.writeFileSync(text, 'this is not a model\n'.repeat(100));
    await expectDfdetError(Model.load(text), 'MODEL_LOAD_FAILED');
    const good = fs.readFileSync(path.join(dir, 'bad-input.pt'));
    const truncated = path.join(dir, 'truncated.pt');
    fs.writeFileSync(truncated, good.subarray(0, Math.floor(good.length * 0.6)));
    await expectDfdetError(Model.load(truncated), 'MODEL_LOAD_FAILED');
    await expectDfdetError(Model.load(good.subarray(0, 100)), 'MODEL_LOAD_FAILED');
    await expectDfdetError(Model.load(new Uint8Array(0)), 'MODEL_LOAD_FAILED');
  });

  it('bad options', async () => {
    await expectDfdetError(Model.load(path.join(dir, 'bad-input.pt'), { device: 'tpu' }), 'BAD_INPUT');
    await expectDfdetError(Model.load(path.join(dir, 'bad-input.pt'), { dtype: 'int8' as never }), 'BAD_INPUT');
    if (!native().runtimeInfo().cudaAvailable) await expectDfdetError(Model.load(path.join(dir, 'bad-input.pt'), { device: 'cuda' }), 'UNSUPPORTED');
  });

  it('wrong element count, dtype mismatch, wrong shape for the model, NaN, unknown method', async () => {
    await expectDfdetError(model.forward(tensor(new Float32Array(5), [2, 3])), 'BAD_INPUT');
    await expectDfdetError(model.forward({ data: new Int32Array(3), shape: [1, 3], dtype: 'float32' }), 'BAD_INPUT');
    await expectDfdetError(model.forward({ data: new Float32Array(3), shape: [1, -3], dtype: 'float32' }), 'BAD_INPUT');
    await expectDfdetError(model.forward({ data: [1, 2, 3] as never, shape: [1, 3], dtype: 'float32' }), 'BAD_INPUT');
    const wrongShape = await expectDfdetError(model.forward(tensor(new Float32Array(4), [1, 4])), 'RUNTIME_ERROR');
    expect(wrongShape.message).toMatch(/size|shape|mat/i);
    const nan = await expectDfdetError(model.forward(tensor(new Float32Array([1, Number.NaN, 3]), [1, 3])), 'BAD_INPUT');
    expect(nan.message).toMatch(/NaN/);
    await expectDfdetError(model.forward(tensor(new Float32Array([1, Infinity, 3]), [1, 3])), 'BAD_INPUT');
    await expectDfdetError(model.run('nope', []), 'BAD_INPUT');
    // The model still works after all of that.
    expect(expectTensor(await model.forward(tensor(new Float32Array(3), [1, 3]))).shape).toEqual([1, 4]);
  });

  it('shapes and strides whose sizes overflow int64 are BAD_INPUT, not a crash', async () => {
    await expectDfdetError(model.forward({ data: new Float32Array(0), shape: [2 ** 32, 2 ** 32], dtype: 'float32' }), 'BAD_INPUT');
    await expectDfdetError(model.forward({ data: new Float32Array(1), shape: [2 ** 32 + 1], strides: [2 ** 32], dtype: 'float32' }), 'BAD_INPUT');
    await expectDfdetError(
      buildModule({ className: 'Huge', source: '', parameters: { w: { data: new Float32Array(0), shape: [2 ** 40, 2 ** 40], dtype: 'float32' } } }, path.join(dir, 'huge.pt')),
      'BAD_INPUT',
    );
  });

  it('an allocation libtorch cannot satisfy rejects with OUT_OF_MEMORY', async () => {
    await expectDfdetError(model.run('huge', [tensor(new Float32Array(1), [1])]), 'OUT_OF_MEMORY');
  });
});

describe('concurrency and lifecycle', () => {
  it('keeps the event loop turning during a long run', async () => {
    const file = path.join(dir, 'slow.pt');
    await buildLinear(file, 30);
    const model = await Model.load(file);
    const n = 384;
    const x = tensor(Float32Array.from({ length: n * n }, (_, i) => ((i % 17) - 8) / (8 * n)), [n, n]);
    // A run on the JS thread would settle before any setImmediate callback; on the thread pool,
    // the loop keeps turning (immediates fire) while it runs.
    let settled = false;
    const run = model.run('slow', [x]).finally(() => (settled = true));
    let turns = 0;
    while (!settled && turns < 3) {
      await new Promise((r) => setImmediate(r));
      if (!settled) turns++;
    }
    await run;
    expect(turns).toBe(3);
    await model.dispose();
  });

  it('an abort rejects a queued run at once, and info() answers while a run is in flight', async () => {
    const file = path.join(dir, 'abort.pt');
    await buildLinear(file, 30);
    const model = await Model.load(file);
    const n = 384;
    const x = tensor(new Float32Array(n * n).fill(1 / n), [n, n]);
    const order: string[] = [];
    const first = model.run('slow', [x]).then(() => order.push('first ran'));
    const ac = new AbortController();
    const queued = model.run('slow', [x], { signal: ac.signal });
    ac.abort();
    await expectDfdetError(queued, 'ABORTED');
    order.push('queued aborted');
    await first;
    expect(order).toEqual(['queued aborted', 'first ran']);
    await model.dispose();

    // The raw binding's info() while a run holds the model: it answers from state read at load
    // (never the run's lock), so the run is still in flight after it returns.
    const raw = await native().NativeModel.load(file, { device: 'cpu', dtype: 'float32' });
    let settled = false;
    const running = raw.run('slow', [x]).finally(() => (settled = true));
    await new Promise((r) => setImmediate(r));
    expect(raw.info().methods).toContain('slow');
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    await running;
    await raw.dispose();
  });

  it('queues concurrent runs of one model and returns each its own result', async () => {
    const file = path.join(dir, 'concurrent.pt');
    const { w, b } = await buildLinear(file);
    const model = await Model.load(file);
    const xs = Array.from({ length: 8 }, (_, k) => Float32Array.from({ length: 3 }, (_, i) => k + i / 10));
    const ys = await Promise.all(xs.map((x) => model.forward(tensor(x, [1, 3]))));
    ys.forEach((y, k) => {
      const ref = matmulRef(xs[k]!, 1, w, b);
      ref.forEach((v, i) => expect(expectTensor(y).data[i]).toBeCloseTo(v, 5));
    });
    await model.dispose();
  });

  it('dispose during a run waits for it, then later calls reject with DISPOSED', async () => {
    const file = path.join(dir, 'dispose.pt');
    await buildLinear(file, 30);
    const model = await Model.load(file);
    const n = 256;
    const x = tensor(Float32Array.from({ length: n * n }, (_, i) => (i % 5) / (5 * n)), [n, n]);
    const running = model.run('slow', [x]);
    const queued = model.run('slow', [x]);
    const disposed = model.dispose();
    expect(model.disposed).toBe(true);
    await expectDfdetError(model.run('slow', [x]), 'DISPOSED');
    expect(expectTensor(await running).shape).toEqual([]);
    expect(expectTensor(await queued).shape).toEqual([]);
    await disposed;
    await model.dispose();
    expect(() => model.info).not.toThrow();
  });

  it('native dispose during an in-flight native run (no JS queue) is safe', async () => {
    const file = path.join(dir, 'dispose-native.pt');
    await buildLinear(file, 30);
    const m = await native().NativeModel.load(file, { device: 'cpu', dtype: 'float32' });
    const n = 256;
    const x = tensor(Float32Array.from({ length: n * n }, (_, i) => (i % 5) / (5 * n)), [n, n]);
    const a = m.run('slow', [x]);
    const b = m.run('slow', [x]);
    const d = m.dispose();
    expect(m.disposed).toBe(true);
    // The raw binding throws synchronously once disposed (lib/model.ts turns that into a rejection).
    expect(() => m.run('slow', [x])).toThrow(expect.objectContaining({ code: 'DISPOSED' }));
    await Promise.all([a, b, d]);
    expect(() => m.info()).toThrow(/disposed/);
  });

  it('works in several worker_threads at once (per-environment instance data)', async () => {
    const file = path.join(dir, 'workers.pt');
    const { w, b } = await buildLinear(file);
    const addon = require.resolve(path.join(__dirname, '..', 'build', 'Release', 'dfdet.node'));
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const b = require(workerData.addon);
      (async () => {
        const m = await b.NativeModel.load(workerData.file, { device: 'cpu', dtype: 'float32' });
        const x = new Float32Array([workerData.k, 1, 2]);
        let y;
        for (let i = 0; i < 20; i++) y = await m.run('forward', [{ data: x, shape: [1, 3], dtype: 'float32' }]);
        parentPort.postMessage(Array.from(y.data));
        await m.dispose();
      })().catch((e) => parentPort.postMessage({ error: String(e) }));`;
    const run = (k: number) =>
      new Promise<number[]>((resolve, reject) => {
        const wk = new Worker(code, { eval: true, workerData: { addon, file, k } });
        wk.once('message', (m: unknown) => (Array.isArray(m) ? resolve(m as number[]) : reject(new Error(JSON.stringify(m)))));
        wk.once('error', reject);
      });
    const results = await Promise.all([run(1), run(2), run(3)]);
    results.forEach((y, i) => {
      const ref = matmulRef(new Float32Array([i + 1, 1, 2]), 1, w, b);
      ref.forEach((v, j) => expect(y[j]).toBeCloseTo(v, 5));
    });
    // A worker terminated while its run is in flight must not take the process down.
    const wk = new Worker(
      `const b = require(${JSON.stringify(addon)}); b.NativeModel.load(${JSON.stringify(file)}, {device:'cpu',dtype:'float32'})
        .then((m) => { const x = new Float32Array(300*300).fill(0.001); m.run('slow', [{data:x, shape:[300,300], dtype:'float32'}]); require('node:worker_threads').parentPort.postMessage('started'); });`,
      { eval: true },
    );
    await new Promise((r) => wk.once('message', r));
    await wk.terminate();
    const m = await Model.load(file);
    expect(expectTensor(await m.forward(tensor(new Float32Array(3), [1, 3]))).shape).toEqual([1, 4]);
    await m.dispose();
  });
});

describe('files written by PyTorch', () => {
  it('loads torch.jit.trace and torch.jit.script files and reproduces PyTorch’s outputs', async (ctx) => {
    if (skipWithoutPython('torch')) return ctx.skip();
    const ref = runPython<Record<string, number[] | number>>('native_ref.py', [dir]);
    const traced = await Model.load(path.join(dir, 'traced.pt'));
    const y = expectTensor(await traced.forward(tensor(Float32Array.from(ref.x as number[]), ref.xShape as number[])));
    expect(y.shape).toEqual(ref.yShape);
    (ref.y as number[]).forEach((v, i) => expect(Math.abs((y.data[i] as number) - v)).toBeLessThan(1e-5));

    const scripted = await Model.load(path.join(dir, 'scripted.pt'));
    expect(scripted.info.methods.sort()).toEqual(['forward', 'pair']);
    const a = tensor(Float32Array.from(ref.a as number[]), [3]);
    const b = tensor(Float32Array.from(ref.b as number[]), [3]);
    const d = (await scripted.forward(a, b)) as { sum: never; prod: never };
    expect(Array.from(expectTensor(d.sum).data as Float32Array)).toEqual(ref.sum);
    expect(Array.from(expectTensor(d.prod).data as Float32Array)).toEqual(ref.prod);
    const [mx, [am, ab]] = (await scripted.run('pair', [a])) as [never, [never, never]];
    expect(expectTensor(mx).data[0]).toBe(ref.max);
    expect(expectTensor(am).dtype).toBe('int64');
    expect(expectTensor(am).data[0]).toBe(BigInt(ref.argmax as number));
    expect(Array.from(expectTensor(ab).data as Float32Array)).toEqual(ref.abs);
    await Promise.all([traced.dispose(), scripted.dispose()]);
  });
});

describe('torch 2.x files on libtorch 1.13', () => {
  it('runs aten::scaled_dot_product_attention as torch 2.x writes it', async () => {
    const info = native().runtimeInfo();
    if (info.torchVersion.startsWith('1.')) expect(info.sdpaShim).toBe(true);
    const file = path.join(dir, 'sdpa.pt');
    await buildModule(
      {
        className: 'Attn',
        source: `
def forward(self, q, k, v):
    return torch.scaled_dot_product_attention(q, k, v, None, 0., False, scale=0.5)

def causal(self, q, k, v):
    return torch.scaled_dot_product_attention(q, k, v, is_causal=True)
`,
      },
      file,
    );
    const model = await Model.load(file);
    const [L, D] = [3, 2];
    const q = Float32Array.from({ length: L * D }, (_, i) => Math.cos(i));
    const k = Float32Array.from({ length: L * D }, (_, i) => Math.sin(i * 2));
    const v = Float32Array.from({ length: L * D }, (_, i) => i / 3);
    const ref = (scale: number, causal: boolean) => {
      const out: number[] = [];
      for (let i = 0; i < L; i++) {
        const s = Array.from({ length: L }, (_, j) =>
          causal && j > i ? -Infinity : scale * (q[i * D]! * k[j * D]! + q[i * D + 1]! * k[j * D + 1]!),
        );
        const mx = Math.max(...s);
        const e = s.map((x) => Math.exp(x - mx));
        const z = e.reduce((p, c) => p + c, 0);
        for (let d = 0; d < D; d++) out.push(e.reduce((p, c, j) => p + (c / z) * v[j * D + d]!, 0));
      }
      return out;
    };
    const t = (a: Float32Array) => tensor(a, [1, 1, L, D]);
    const y = expectTensor(await model.forward(t(q), t(k), t(v)));
    ref(0.5, false).forEach((r, i) => expect(y.data[i]).toBeCloseTo(r, 5));
    const c = expectTensor(await model.run('causal', [t(q), t(k), t(v)]));
    ref(1 / Math.sqrt(D), true).forEach((r, i) => expect(c.data[i]).toBeCloseTo(r, 5));
    await model.dispose();
  });
});

describe('binding.d.ts', () => {
  it('declares exactly what the addon exports', () => {
    const dts = fs.readFileSync(path.join(__dirname, '..', 'binding.d.ts'), 'utf8');
    const declared = [...dts.matchAll(/^export declare (?:function|class|const) (\w+)/gm)].map((m) => m[1]).sort();
    expect(Object.keys(native()).sort()).toEqual(declared);
    const cls = /export declare class NativeModel \{([\s\S]*?)\n\}/.exec(dts)![1]!;
    const members = [...cls.matchAll(/^\s+(?:static |readonly )?(\w+)[(:]/gm)].map((m) => m[1]).filter((n) => n !== 'constructor');
    const proto = Object.getOwnPropertyNames(native().NativeModel.prototype).filter((n) => n !== 'constructor');
    const statics = Object.getOwnPropertyNames(native().NativeModel).filter((n) => !['length', 'name', 'prototype', 'arguments', 'caller'].includes(n));
    expect([...proto, ...statics].sort()).toEqual(members.sort());
  });
});

describe('files from a newer torch', () => {
  it('an op this libtorch lacks fails to load with advice to convert the checkpoint', async () => {
    // A TorchScript archive whose code calls an operator no libtorch has, as a newer torch's would.
    const good = path.join(dir, 'newer-src.pt');
    await buildModule({ className: 'Newer', source: 'def forward(self, x):\n    return torch.relu(x)\n' }, good);
    // The code entry rewritten with a valid CRC (dfdet checks every entry's CRC before libtorch reads it).
    const zip = await replaceEntry(fs.readFileSync(good), '.py', (code) => {
      const text = Buffer.from(code).toString('utf8');
      expect(text).toContain('torch.relu(x)');
      return Buffer.from(text.replace('torch.relu(x)', 'torch.relX(x)'));
    });
    const err = await expectDfdetError(Model.load(zip), 'MODEL_LOAD_FAILED');
    expect(err.message).toMatch(/Unknown builtin op: aten::relX/);
    expect(err.message).toMatch(/dfdet convert model\.ckpt/);
  });
});
