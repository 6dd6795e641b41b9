/**
 * Throughput features on real models and media: `dtype: 'auto'` (bf16 where the CPU computes it
 * natively) and its fidelity against float32, batches that fill whatever the mix of inputs, and
 * clear errors for CUDA where this libtorch has none.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Detector } from '../lib/detector';
import { initModel } from '../lib/detector-model/init';
import { Model, chooseDType } from '../lib/model';
import { resolveDType } from '../lib/model-options';
import { native } from '../lib/native';
import { cpuFeatures, parseCpuInfo } from '../lib/runtime/cpu';
import { debianPhotos } from './helpers/cli';
import { ffmpeg, haveFfmpeg } from './helpers/ffmpeg';
import { expectDfdetError } from './helpers/errors';

const photos = debianPhotos();
const havePhotos = photos !== null;
const PHOTOS: string[] = photos ?? [];
const cuda = native().runtimeInfo().cudaAvailable;

let dir: string;
let tiny: string;
let small: string;
let crops: string[] = [];
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-throughput-'));
  tiny = path.join(dir, 'tiny.pt');
  small = path.join(dir, 'small.pt');
  await initModel({ arch: 'tiny', seed: 3, output: tiny });
  // A ViT-S-like model: deep and wide enough for bf16 rounding to accumulate as in real models.
  await initModel({ arch: { imageSize: 224, patchSize: 16, width: 192, layers: 6, heads: 3, mlpRatio: 4 }, seed: 11, output: small });
  if (!havePhotos) return;
  // Face-sized crops of real photos at several places and scales.
  const boxes = [
    [120, 40, 300, 300],
    [0, 0, 512, 512],
    [200, 100, 160, 200],
    [30, 250, 250, 250],
  ];
  crops = [];
  for (const [pi, p] of PHOTOS.entries())
    for (const [i, [left, top, width, height]] of boxes.entries()) {
      const file = path.join(dir, `crop${pi}-${i}.png`);
      await sharp(p).extract({ left: left!, top: top!, width: Math.min(width!, 512 - left!), height: Math.min(height!, 512 - top!) }).png().toFile(file);
      crops.push(file);
    }
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("dtype: 'auto'", () => {
  it('reads the CPU flags and picks the precision by device', () => {
    const zen4 = parseCpuInfo('processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n');
    expect(zen4).toEqual({ model: 'AMD EPYC 9R14', flags: ['avx2', 'avx512_bf16', 'avx512_vnni', 'avx512f'], bf16: true });
    expect(parseCpuInfo('flags\t: fpu avx2 amx_bf16 amx_tile\n').bf16).toBe(true);
    expect(parseCpuInfo('flags\t: fpu sse2 avx2 fma\n').bf16).toBe(false);
    const probe = (bf16: boolean, cc: [number, number]) => ({ cpuBf16: () => bf16, cudaCapability: () => cc });
    expect(resolveDType('auto', 'cpu', probe(true, [0, 0]))).toBe('bfloat16');
    expect(resolveDType('auto', 'cpu', probe(false, [0, 0]))).toBe('float32');
    expect(resolveDType('auto', 'cuda:1', probe(false, [8, 0]))).toBe('bfloat16');
    expect(resolveDType('auto', 'cuda', probe(true, [7, 5]))).toBe('float16');
    expect(resolveDType('float32', 'cpu', probe(true, [0, 0]))).toBe('float32');
  });

  it('DFDET_DTYPE overrides auto, not an explicit dtype', () => {
    const probe = { cpuBf16: () => true, cudaCapability: (): [number, number] => [9, 0] };
    const saved = process.env.DFDET_DTYPE;
    try {
      process.env.DFDET_DTYPE = 'float32';
      expect(resolveDType('auto', 'cpu', probe)).toBe('float32');
      expect(resolveDType('bfloat16', 'cpu', probe)).toBe('bfloat16');
      process.env.DFDET_DTYPE = 'fp8';
      expect(() => resolveDType('auto', 'cpu', probe)).toThrow(/DFDET_DTYPE/);
    } finally {
      if (saved === undefined) delete process.env.DFDET_DTYPE;
      else process.env.DFDET_DTYPE = saved;
    }
  });

  it('is the Detector default, and results name the precision used', async () => {
    const expected = cpuFeatures().bf16 ? 'bfloat16' : 'float32';
    expect(chooseDType('auto', 'cpu')).toBe(expected);
    const d = await Detector.create({ model: tiny, faces: 'none', warmup: false });
    try {
      expect(d.identity.dtype).toBe(expected);
      if (havePhotos) expect((await d.detect(PHOTOS[0]!)).model.dtype).toBe(expected);
    } finally {
      await d.dispose();
    }
    const f = await Detector.create({ model: tiny, faces: 'none', warmup: false, dtype: 'float32' });
    expect(f.identity.dtype).toBe('float32');
    await f.dispose();
  });

  it.skipIf(!havePhotos)('bf16 stays within cosine 0.999 of float32 features and 0.01 in pFake (real crops)', async () => {
    const opts = { model: small, faces: 'none' as const, warmup: false, batchSize: 8 };
    const f32 = await Detector.create({ ...opts, dtype: 'float32' });
    const b16 = await Detector.create({ ...opts, dtype: 'bfloat16' });
    try {
      let worstCos = 1;
      let worstDp = 0;
      for (const c of crops) {
        const [a, b] = await Promise.all([f32.embed(c), b16.embed(c)]);
        const x = a.faces[0]!.embedding;
        const y = b.faces[0]!.embedding;
        let dot = 0;
        let nx = 0;
        let ny = 0;
        for (let i = 0; i < x.length; i++) {
          dot += x[i]! * y[i]!;
          nx += x[i]! ** 2;
          ny += y[i]! ** 2;
        }
        worstCos = Math.min(worstCos, dot / Math.sqrt(nx * ny));
      }
      const [p32, p16] = await Promise.all([f32.detect(crops), b16.detect(crops)]);
      for (const [i, r] of p32.entries()) worstDp = Math.max(worstDp, Math.abs(r.pFake! - p16[i]!.pFake!));
      console.log(`bf16 vs fp32 over ${crops.length} real crops: worst feature cosine ${worstCos.toFixed(6)}, worst |dpFake| ${worstDp.toExponential(2)}`);
      expect(worstCos).toBeGreaterThanOrEqual(0.999);
      expect(worstDp).toBeLessThanOrEqual(0.01);
    } finally {
      await Promise.all([f32.dispose(), b16.dispose()]);
    }
  });

  it.skipIf(cuda)('CUDA fails with clear errors where this libtorch has none', async () => {
    expect(() => native().cudaCapability(0)).toThrow(/no usable CUDA/);
    await expectDfdetError(Model.load(tiny, { device: 'cuda', dtype: 'auto' }), 'UNSUPPORTED', /no usable CUDA/);
    await expectDfdetError(Model.load(tiny, { device: 'cuda:0', dtype: 'float16' }), 'UNSUPPORTED', /CUDA/);
    await expectDfdetError(Detector.create({ model: tiny, device: 'cuda' }), 'UNSUPPORTED', /CUDA/);
  });
});

describe.skipIf(!havePhotos)('batches that fill', () => {
  it('fills batchSize with one face per input at the default concurrency', async () => {
    // maxWaitMs at its maximum: a batch leaves only full, or when the stream has nothing more to
    // add. With one face per input, 4 inputs at once could never fill a batch of 8 before.
    const d = await Detector.create({ model: tiny, faces: 'none', warmup: false, batchSize: 8, concurrency: 4, maxWaitMs: 60_000 });
    try {
      const inputs = Array.from({ length: 16 }, (_, i) => crops[i % crops.length]!);
      const results = await d.detect(inputs);
      expect(results.every((r) => r.error === undefined)).toBe(true);
      expect(d.stats.sizes).toEqual({ 8: 2 });
      // A remainder leaves at the end of the stream without waiting maxWaitMs.
      const more: string[] = [];
      for await (const r of d.detectStream(inputs.slice(0, 11))) more.push(r.source);
      expect(more).toHaveLength(11);
      expect(d.stats.sizes).toEqual({ 8: 3, 3: 1 });
    } finally {
      await d.dispose();
    }
  });

  it('fills batches from photos with several faces each, with face detection', async () => {
    const d = await Detector.create({ model: tiny, warmup: false, batchSize: 4, concurrency: 2, maxWaitMs: 60_000 });
    try {
      const results = await d.detect([PHOTOS[0]!, PHOTOS[1]!, PHOTOS[0]!, PHOTOS[1]!, PHOTOS[0]!, PHOTOS[1]!, PHOTOS[0]!, PHOTOS[1]!]);
      const faces = results.reduce((n, r) => n + r.faces.length, 0);
      expect(faces).toBeGreaterThanOrEqual(8);
      const { sizes } = d.stats;
      const full = sizes[4] ?? 0;
      // Every batch is full except at most the last one.
      expect(full).toBe(Math.floor(faces / 4));
      expect(Object.values(sizes).reduce((a, b) => a + b, 0)).toBe(Math.ceil(faces / 4));
    } finally {
      await d.dispose();
    }
  });
});

describe.skipIf(!havePhotos || !haveFfmpeg)('batches that fill with videos', () => {
  it('sends only full batches at maxWaitMs 0 while the stream still has videos to decode', async () => {
    // 6 frames per video in batches of 4: each video leaves a remainder of 2 faces that must wait
    // for the next video's faces instead of leaving alone once maxWaitMs is up. With concurrency 1
    // the next video starts decoding as soon as a batch takes faces from the queue.
    const video = path.join(dir, 'clip.mp4');
    ffmpeg('-loop', '1', '-i', PHOTOS[0]!, '-t', '1', '-r', '12', '-vf', 'scale=320:-2', '-pix_fmt', 'yuv420p', video);
    const d = await Detector.create({ model: tiny, faces: 'none', warmup: false, batchSize: 4, concurrency: 1, maxWaitMs: 0, frames: 6 });
    try {
      const results = await d.detect([video, video, video]);
      expect(results.map((r) => [r.error, r.faces.length])).toEqual([
        [undefined, 6],
        [undefined, 6],
        [undefined, 6],
      ]);
      // 18 faces: four full batches and the remainder at the end of the stream.
      expect(d.stats.sizes).toEqual({ 4: 4, 2: 1 });
    } finally {
      await d.dispose();
    }
  });
});

describe('mixed precision of a dfdet detector', () => {
  it('keeps the head and the L2 norm in float32 when the ViT runs in bfloat16', async () => {
    await using f32 = await Model.load(small, { dtype: 'float32' });
    await using b16 = await Model.load(small, { dtype: 'bfloat16' });
    expect(b16.info.dtype).toBe('bfloat16');
    const width = 192;
    const f = new Float32Array(width * 2).map((_, i) => Math.sin(i * 0.37));
    const feats = { data: f, shape: [2, width], dtype: 'float32' as const };
    // Same float32 weights, same float32 arithmetic: the same logits to the bit.
    const [a, b] = await Promise.all([f32.run('head', [feats]), b16.run('head', [feats])]);
    expect(Array.from((b as { data: Float32Array }).data)).toEqual(Array.from((a as { data: Float32Array }).data));
    const x = { data: new Float32Array(3 * 224 * 224).map((_, i) => Math.cos(i * 0.01)), shape: [1, 3, 224, 224], dtype: 'float32' as const };
    const e = (await b16.run('features', [x])) as { data: Float32Array };
    expect(Math.hypot(...e.data)).toBeCloseTo(1, 6);
  });
});
