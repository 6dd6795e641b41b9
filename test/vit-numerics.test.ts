/**
 * Numerics of the generated TorchScript ViT against the independent float64 reference
 * (test/python/vit_ref.py): random-init models (tiny) and a ViT-B/16-size converted model.
 * Also initModel determinism and the metadata defaults for files without dfdet.json.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initModel, SeededRandom } from '../lib/detector-model/init';
import { convertModel } from '../lib/convert';
import { defaultMetadata, METADATA_FILE, readDetectorMetadata } from '../lib/detector-model/metadata';
import { ARCHS } from '../lib/detector-model/arch';
import { Model, expectTensor } from '../lib/model';
import { runPython, runPythonCode, skipWithoutPython } from './helpers/python';
import { maxAbsDiff } from './helpers/numeric';

/** Max abs difference tolerated vs the float64 reference for float32 models. */
const TOL = 1e-4;

interface RefOut {
  logits: number[][];
  features: number[][];
  matrix_std?: number;
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-vit-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Random CLIP-normalised-looking input, written for Python too. */
function makeInput(batch: number, size: number, seed: number): { data: Float32Array; file: string } {
  const rng = new SeededRandom(seed);
  const data = new Float32Array(batch * 3 * size * size);
  for (let i = 0; i < data.length; i++) data[i] = rng.normal();
  const file = path.join(dir, `input-${batch}-${size}-${seed}.f32`);
  fs.writeFileSync(file, Buffer.from(data.buffer));
  return { data, file };
}

async function runModel(file: string, data: Float32Array, batch: number, size: number) {
  const m = await Model.load(file, { extraFiles: [METADATA_FILE] });
  try {
    const x = { data, shape: [batch, 3, size, size], dtype: 'float32' as const };
    const logits = expectTensor(await m.run('forward', [x])).data as Float32Array;
    const features = expectTensor(await m.run('features', [x])).data as Float32Array;
    return { logits: Array.from(logits), features: Array.from(features), info: m.info };
  } finally {
    await m.dispose();
  }
}

const skip = skipWithoutPython('torch', 'numpy');

describe.skipIf(skip)('ViT numerics vs the float64 reference', () => {
  it('initModel tiny: forward and features match; CLIP-like init; deterministic in the seed', async () => {
    const a = path.join(dir, 'tiny1.pt');
    const r = await initModel({ arch: 'tiny', seed: 1, output: a });
    expect(r.arch).toEqual(ARCHS.tiny);
    const { data, file } = makeInput(2, 224, 3);
    const ours = await runModel(a, data, 2, 224);
    const ref = runPython<RefOut>('vit_ref.py', [a, file, '2', String(ARCHS.tiny.heads)]);
    const dl = maxAbsDiff(ours.logits, ref.logits);
    const df = maxAbsDiff(ours.features, ref.features);
    console.log(`tiny init: max |Δlogits| ${dl.toExponential(2)}, max |Δfeatures| ${df.toExponential(2)}, weight std ${ref.matrix_std}`);
    expect(dl).toBeLessThan(TOL);
    expect(df).toBeLessThan(TOL);
    expect(ref.matrix_std).toBeGreaterThan(0.019);
    expect(ref.matrix_std).toBeLessThan(0.021);
    expect(ours.info.parameterCount).toBe(r.parameterCount);
    expect(readDetectorMetadata(ours.info).source).toEqual({ kind: 'init', file: '', sha256: '', seed: 1 });

    const again = await runModel((await initModel({ arch: 'tiny', seed: 1, output: path.join(dir, 'tiny1b.pt') })).output, data, 2, 224);
    const other = await runModel((await initModel({ arch: 'tiny', seed: 2, output: path.join(dir, 'tiny2.pt') })).output, data, 2, 224);
    expect(again.features).toEqual(ours.features);
    expect(other.features).not.toEqual(ours.features);
  });

  it('a custom architecture (336 px, patch 14, width 96, 3 layers, 6 heads) matches too', async () => {
    const f = path.join(dir, 'custom.pt');
    await initModel({ arch: { imageSize: 336, patchSize: 14, width: 96, layers: 3, heads: 6 }, seed: 9, output: f, head: 'LinearNorm' });
    const { data, file } = makeInput(1, 336, 4);
    const ours = await runModel(f, data, 1, 336);
    const ref = runPython<RefOut>('vit_ref.py', [f, file, '1', '6']);
    expect(maxAbsDiff(ours.logits, ref.logits)).toBeLessThan(TOL);
    expect(maxAbsDiff(ours.features, ref.features)).toBeLessThan(TOL);
  });

  it('ViT-B/16-size HF weights converted: logits and features within 1e-4 at batch 2', async () => {
    const sub = path.join(dir, 'b16');
    const cfg = { width: 768, layers: 12, heads: 12, patch: 16, image: 224, seed: 11, variants: ['hf'] };
    const ref = runPython<Record<string, RefOut>>('ckpt_writers.py', [sub, JSON.stringify(cfg)]).hf!;
    const out = path.join(sub, 'b16.pt');
    const r = await convertModel(path.join(sub, 'hf.safetensors'), out, { head: path.join(sub, 'head.safetensors'), arch: 'vit-b-16' });
    expect(r.arch).toEqual(ARCHS['vit-b-16']);
    const buf = fs.readFileSync(path.join(sub, 'input.f32'));
    const data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4).slice();
    const t0 = Date.now();
    const ours = await runModel(out, data, 2, 224);
    const dl = maxAbsDiff(ours.logits, ref.logits);
    const df = maxAbsDiff(ours.features, ref.features);
    console.log(`ViT-B/16: max |Δlogits| ${dl.toExponential(2)}, max |Δfeatures| ${df.toExponential(2)} (load+2 runs ${Date.now() - t0} ms)`);
    expect(dl).toBeLessThan(TOL);
    expect(df).toBeLessThan(TOL);
    fs.rmSync(sub, { recursive: true, force: true });
  });

  it('a traced TorchScript file without dfdet.json gets the paper defaults', async () => {
    const f = path.join(dir, 'traced.pt');
    const code = `import torch
m = torch.jit.trace(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)), torch.zeros(1, 3, 2, 2))
m.save(${JSON.stringify(f)})`;
    runPythonCode(code);
    const m = await Model.load(f, { extraFiles: [METADATA_FILE] });
    const meta = readDetectorMetadata(m.info);
    await m.dispose();
    expect(meta).toEqual(defaultMetadata());
    expect(meta.arch).toMatchObject({ imageSize: 224, patchSize: 14, width: 1024, layers: 24, heads: 16, head: 'LinearNorm' });
    expect(meta.input.interpolation).toBe('bicubic');
  });
});

describe('metadata parsing', () => {
  it('rejects invalid dfdet.json with MODEL_LOAD_FAILED', () => {
    const good = JSON.stringify({ ...defaultMetadata(), source: { kind: 'x', file: 'f', sha256: 'ab' } });
    expect(readDetectorMetadata({ extraFiles: { 'dfdet.json': good } }).source.kind).toBe('x');
    for (const bad of ['{', '[]', JSON.stringify({ ...defaultMetadata(), formatVersion: 2 }), JSON.stringify({ ...defaultMetadata(), labels: ['fake', 'real'] })]) {
      expect(() => readDetectorMetadata({ extraFiles: { 'dfdet.json': bad } })).toThrow(expect.objectContaining({ code: 'MODEL_LOAD_FAILED' }));
    }
  });

  it('initModel validates its options', async () => {
    await expect(initModel({ arch: 'vit-x' as never, output: path.join(dir, 'x.pt') })).rejects.toMatchObject({ code: 'BAD_INPUT' });
    await expect(initModel({ arch: { width: 65, heads: 4 }, output: path.join(dir, 'x.pt') })).rejects.toMatchObject({ code: 'BAD_INPUT' });
    await expect(initModel({ arch: 'tiny', seed: 1.5, output: path.join(dir, 'x.pt') })).rejects.toMatchObject({ code: 'BAD_INPUT' });
    await expect(initModel({ arch: 'tiny', output: '' })).rejects.toMatchObject({ code: 'BAD_INPUT' });
  });
});
