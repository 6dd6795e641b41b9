/**
 * Native batched preprocessing (lib/preprocess/native.ts, native/preprocess*.cc) against the JS
 * reference (cropFace's warp + clipTransform) on real photos: face crops from BlazeFace's real
 * detections and from faces placed at rotations, scales and image borders, box crops, and whole
 * images of several shapes (the faces: 'none' path), and real face crops (FaceForensics++ and
 * Celeb-DF frames, when ../shared/data/face-crops or $DFDET_FACE_CROPS is there). The bound
 * is 1/255 per pixel value for every kernel. Measured: the CPU loops (AVX-512 and AVX2 clones,
 * baseline) give the JS bytes exactly (0), so the tests hold them to 0; the libtorch ops (what
 * CUDA runs) to the bound (they measured 0 too).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';


import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type Affine, cropMatrix, type CropFaceOptions } from '../lib/faces/align';
import { detectFaces, loadFaceDetector } from '../lib/faces/blazeface';
import type { Face } from '../lib/faces/types';
import { decodeImage, type RgbImage } from '../lib/media/image';
import { CLIP_MEAN, CLIP_STD } from '../lib/media/transform';
import type { Model } from '../lib/model';
import { cropAndTransform } from '../lib/detector/run';
import { native } from '../lib/native';
import { type CropSpec, preprocessBatch } from '../lib/preprocess/native';
import { debianPhotos } from './helpers/cli';
import { expectDfdetError } from './helpers/errors';

const photos = debianPhotos();
const havePhotos = photos !== null;
const PHOTOS: string[] = photos ?? [];

/** Real face crops (PNG), a few per source video: from $DFDET_FACE_CROPS or the shared data folder. */
function findFaceCrops(): string[] {
  const dir = process.env.DFDET_FACE_CROPS ?? path.resolve(__dirname, '..', '..', 'shared', 'data', 'face-crops');
  if (!fs.existsSync(dir)) {
    console.warn(`SKIPPED (face crops): no folder ${dir}; set DFDET_FACE_CROPS to a folder of face crop PNGs`);
    return [];
  }
  const files = (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.png')).sort();
  return files.map((f) => path.join(dir, f));
}
const faceCrops = havePhotos ? findFaceCrops() : [];

const INPUT = { size: 224, interpolation: 'bicubic' as const, mean: [...CLIP_MEAN], std: [...CLIP_STD] };
const CTX = { options: { cropSize: 256 }, input: INPUT } as Parameters<typeof cropAndTransform>[2];

/** A face of half-size `s` at (cx, cy), rolled by `rot` radians (keypoints where a face has them). */
function placedFace(cx: number, cy: number, s: number, rot: number): Face {
  const r = (x: number, y: number): [number, number] => [cx + (x * Math.cos(rot) - y * Math.sin(rot)) * s, cy + (x * Math.sin(rot) + y * Math.cos(rot)) * s];
  return {
    box: { x: cx - s, y: cy - s, width: 2 * s, height: 2 * s },
    score: 1,
    keypoints: { rightEye: r(-0.35, -0.2), leftEye: r(0.35, -0.2), nose: r(0, 0.1), mouth: r(0, 0.4), rightEar: r(-0.8, 0), leftEar: r(0.8, 0) },
  };
}

/**
 * The bound, 1/255 in pixel units: one grey level. A one-level difference measures up to
 * ~1.00002 levels once normalised in float32, hence the slack (a two-level one measures 2).
 */
const BOUND = 1.001;

/** Largest difference between two model inputs, in pixel units (x255: grey levels). */
function maxLevels(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  const plane = INPUT.size * INPUT.size;
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!) * CLIP_STD[Math.floor(i / plane) % 3]!);
  return max * 255;
}

let images: RgbImage[] = [];
let faceModel: Model;
beforeAll(async () => {
  if (!havePhotos) return;
  const [a, b] = await Promise.all(PHOTOS.map((p) => decodeImage(p)));
  // Odd shapes for the whole-image path: tall, wide, and one smaller than the model input.
  const reshaped = await Promise.all(
    [
      [301, 517],
      [640, 211],
      [150, 180],
      // One side already 224: Pillow skips that pass (the kernels' identity coefficients).
      [224, 300],
      [300, 224],
    ].map(async ([w, h]) => decodeImage(await sharp(PHOTOS[1]).resize(w, h, { fit: 'fill' }).png().toBuffer())),
  );
  images = [a!, b!, ...reshaped];
  faceModel = await loadFaceDetector();
});
afterAll(async () => {
  await faceModel?.dispose();
});

describe.skipIf(!havePhotos)('native preprocessing matches the JS reference', () => {
  it('on face crops (real detections, rotations, borders, box mode) and whole images, with both kernels', async () => {
    const found = await detectFaces(faceModel, images.slice(0, 2));
    const real = found.flatMap((faces, image) => faces.map((f) => ({ image, f })));
    expect(real.length).toBeGreaterThanOrEqual(2);
    const align: CropFaceOptions = { mode: 'align', scale: 1.3, size: 256 };
    const specs: CropSpec[] = [
      ...real.map(({ image, f }) => ({ image, matrix: cropMatrix(f, align) })),
      ...real.map(({ image, f }) => ({ image, matrix: cropMatrix(f, { ...align, mode: 'box' }) })),
      { image: 0, matrix: cropMatrix(placedFace(260, 250, 90, 0.3), align) },
      // Across the top-left corner: black border and edge blending.
      { image: 0, matrix: cropMatrix(placedFace(15, 25, 60, -0.6), align) },
      // A tiny face, upscaled, and a huge one, downscaled without antialiasing.
      { image: 1, matrix: cropMatrix(placedFace(300, 200, 12, 1.2), align) },
      { image: 1, matrix: cropMatrix(placedFace(256, 256, 400, 0), align) },
      ...images.map((_, image) => ({ image, matrix: null })),
    ];
    const js = await cropAndTransform(images, specs, { ...CTX, preprocess: 'js' });
    const loops = await preprocessBatch(images, specs, { cropSize: 256, input: INPUT, kernel: 'loops' });
    const avx2 = await preprocessBatch(images, specs, { cropSize: 256, input: INPUT, kernel: 'avx2' });
    const baseline = await preprocessBatch(images, specs, { cropSize: 256, input: INPUT, kernel: 'baseline' });
    const ops = await preprocessBatch(images, specs, { cropSize: 256, input: INPUT, kernel: 'ops' });
    expect(loops.shape).toEqual([specs.length, 3, 224, 224]);
    expect(maxLevels(loops.data, js.data)).toBe(0);
    expect(maxLevels(avx2.data, js.data)).toBe(0);
    expect(maxLevels(baseline.data, js.data)).toBe(0);
    expect(maxLevels(ops.data, js.data)).toBeLessThanOrEqual(BOUND);
    // The run.ts path (native by default) is this function.
    const viaRun = await cropAndTransform(images, specs, CTX);
    expect(maxLevels(viaRun.data, loops.data)).toBe(0);
  });

  it('warps from images too small for the vector loads (1 to 3 pixels wide or high), with every kernel', async () => {
    const tiny: RgbImage[] = [
      [1, 1],
      [2, 2],
      [3, 1],
      [1, 3],
      [4, 2],
    ].map(([width, height]) => ({ width: width!, height: height!, data: Uint8Array.from({ length: width! * height! * 3 }, (_, i) => (i * 97 + 31) % 256) }));
    // Each tiny image blown up to the whole crop (every output pixel between or beside its pixels).
    const specs: CropSpec[] = tiny.flatMap((im, image) => [
      { image, matrix: [256 / im.width, 0, 128 / im.width - 0.5, 0, 256 / im.height, 128 / im.height - 0.5] as Affine },
      { image, matrix: [200 / im.width, 30 / im.width, 20, -30 / im.height, 200 / im.height, 40] as Affine },
      { image, matrix: null },
    ]);
    const js = await cropAndTransform(tiny, specs, { ...CTX, preprocess: 'js' });
    for (const kernel of ['loops', 'avx2', 'baseline', 'ops'] as const) {
      const nat = await preprocessBatch(tiny, specs, { cropSize: 256, input: INPUT, kernel });
      expect(maxLevels(nat.data, js.data), kernel).toBeLessThanOrEqual(kernel === 'ops' ? BOUND : 0);
    }
  });

  it('handles the bilinear filter and an empty batch', async () => {
    const input = { ...INPUT, interpolation: 'bilinear' as never };
    const specs: CropSpec[] = [{ image: 0, matrix: cropMatrix(placedFace(260, 250, 90, 0.2), {}) }, { image: 2, matrix: null }];
    const js = await cropAndTransform(images, specs, { ...CTX, input, preprocess: 'js' });
    const nat = await preprocessBatch(images, specs, { cropSize: 256, input });
    expect(maxLevels(nat.data, js.data)).toBeLessThanOrEqual(BOUND);
    const none = await preprocessBatch(images, [], { cropSize: 256, input: INPUT });
    expect(none.shape).toEqual([0, 3, 224, 224]);
  });

  it.skipIf(!faceCrops.length)('on real face crops (whole crops and warped crops of them), within 1/255 for every kernel', async () => {
    const crops = await Promise.all(faceCrops.map((f) => decodeImage(f)));
    const specs: CropSpec[] = crops.flatMap((c, image) => [
      { image, matrix: null },
      // Re-aligned at a roll, and a tighter box: warps that sample between pixels, with borders.
      { image, matrix: cropMatrix(placedFace(c.width / 2, c.height / 2 + 10, c.width / 3, 0.15 * ((image % 5) - 2)), {}) },
      { image, matrix: cropMatrix(placedFace(c.width / 2, c.height / 2, c.width / 4, 0), { mode: 'box' }) },
    ]);
    const js = await cropAndTransform(crops, specs, { ...CTX, preprocess: 'js' });
    for (const kernel of ['loops', 'avx2', 'baseline', 'ops'] as const) {
      const nat = await preprocessBatch(crops, specs, { cropSize: 256, input: INPUT, kernel });
      // The bound for every kernel; the CPU loops are measured exact and held to it.
      expect(maxLevels(nat.data, js.data), kernel).toBeLessThanOrEqual(BOUND);
      if (kernel !== 'ops') expect(maxLevels(nat.data, js.data), kernel).toBe(0);
    }
  });

  it('refuses bad requests with typed errors', async () => {
    const ok: CropSpec = { image: 0, matrix: [1, 0, 0, 0, 1, 0] };
    await expectDfdetError(preprocessBatch(images, [{ image: 9, matrix: null }], { cropSize: 256, input: INPUT }), 'BAD_INPUT', /image/);
    await expectDfdetError(preprocessBatch(images, [{ image: 0, matrix: [0, 0, 0, 0, 0, 0] }], { cropSize: 256, input: INPUT }), 'BAD_INPUT', /invertible/);
    await expectDfdetError(preprocessBatch([{ data: new Uint8Array(5), width: 2, height: 2 }], [ok], { cropSize: 256, input: INPUT }), 'BAD_INPUT', /images\[0\]/);
    await expectDfdetError(preprocessBatch(images, [ok], { cropSize: 256, input: INPUT, device: 'gpu' }), 'BAD_INPUT', /device/);
    await expectDfdetError(preprocessBatch(images, [ok], { cropSize: 256, input: INPUT, kernel: 'simd' as never }), 'BAD_INPUT', /kernel/);
  });

  it('fails with a clear UNSUPPORTED error for CUDA where this libtorch has none', async (ctx) => {
    if (native().runtimeInfo().cudaAvailable) ctx.skip();
    await expectDfdetError(
      preprocessBatch(images, [{ image: 0, matrix: null }], { cropSize: 256, input: INPUT, device: 'cuda' }),
      'UNSUPPORTED',
      /no usable CUDA/,
    );
  });
});
