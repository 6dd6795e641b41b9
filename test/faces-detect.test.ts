/**
 * detectFaces on real photos (Debian's astronaut.png and grace_hopper.jpg): one face each, sane
 * geometry, letterbox undo on wide/tall frames, two faces in a collage, none in blank frames,
 * batching, options.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { isDfdetError } from '../lib/errors';
import { buildModule, Model } from '../lib/model';
import { expectDfdetError } from './helpers/errors';
import type { RgbImage } from '../lib/media/image';
import { detectFaces, letterboxGeometry, letterboxInput, letterboxResize, type TensorRunner } from '../lib/faces/blazeface';
import type { Face } from '../lib/faces/types';
import { weightedNms, iou } from '../lib/faces/nms';
import { ASTRONAUT, GRACE_HOPPER, loadBlazeFace, loadRgb, presentOrSkip, requireOrSkip } from './faces-helpers';

const FILE = 'test/faces-detect.test.ts';
const RUNNER = 'a TorchScript runner (lib/model.ts or /usr/bin/python3 with torch)';
let loadedRunner: (TensorRunner & { dispose(): unknown }) | null = null;
let via = '';
let astro: RgbImage;
let grace: RgbImage;

beforeAll(async () => {
  const l = await loadBlazeFace();
  if (requireOrSkip(l !== null, RUNNER, FILE)) {
    loadedRunner = l!.runner;
    via = l!.via;
  }
  astro = await loadRgb(ASTRONAUT);
  grace = await loadRgb(GRACE_HOPPER);
});

afterAll(async () => {
  await loadedRunner?.dispose();
});

function center(f: Face): [number, number] {
  return [f.box.x + f.box.width / 2, f.box.y + f.box.height / 2];
}

/** Checks every plausible upright frontal face passes; numbers are loose anatomical bounds. */
function expectUprightFace(f: Face, minWidth: number, maxWidth: number): void {
  const { box, keypoints: k } = f;
  expect(f.score).toBeGreaterThan(0.5);
  expect(f.score).toBeLessThanOrEqual(1);
  expect(box.width).toBeGreaterThan(minWidth);
  expect(box.width).toBeLessThan(maxWidth);
  expect(box.height / box.width).toBeGreaterThan(0.8);
  expect(box.height / box.width).toBeLessThan(1.25);
  // subject's right eye is on the image's left
  expect(k.rightEye[0]).toBeLessThan(k.leftEye[0]);
  expect(k.rightEar[0]).toBeLessThan(k.rightEye[0]);
  expect(k.leftEar[0]).toBeGreaterThan(k.leftEye[0]);
  // eyes above nose above mouth (y grows downwards)
  const eyesY = (k.rightEye[1] + k.leftEye[1]) / 2;
  expect(eyesY).toBeLessThan(k.nose[1]);
  expect(k.nose[1]).toBeLessThan(k.mouth[1]);
  // nose between the eyes horizontally; inner keypoints inside the box
  expect(k.nose[0]).toBeGreaterThan(k.rightEye[0]);
  expect(k.nose[0]).toBeLessThan(k.leftEye[0]);
  for (const p of [k.rightEye, k.leftEye, k.nose, k.mouth]) {
    expect(p[0]).toBeGreaterThan(box.x);
    expect(p[0]).toBeLessThan(box.x + box.width);
    expect(p[1]).toBeGreaterThan(box.y);
    expect(p[1]).toBeLessThan(box.y + box.height);
  }
  const eyeDist = Math.hypot(k.leftEye[0] - k.rightEye[0], k.leftEye[1] - k.rightEye[1]);
  expect(eyeDist / box.width).toBeGreaterThan(0.25);
  expect(eyeDist / box.width).toBeLessThan(0.6);
}

async function rgbFrom(buf: Buffer): Promise<RgbImage> {
  return loadRgb(buf);
}

describe('weighted NMS', () => {
  it('merges overlapping detections by score-weighted mean and keeps the top score', () => {
    const a = { score: 0.9, x1: 0, y1: 0, x2: 10, y2: 10, keypoints: [1, 1] };
    const b = { score: 0.6, x1: 1, y1: 1, x2: 11, y2: 11, keypoints: [3, 3] };
    const c = { score: 0.8, x1: 50, y1: 50, x2: 60, y2: 60, keypoints: [55, 55] };
    const out = weightedNms([b, c, a], 0.3);
    expect(out.length).toBe(2);
    expect(out[0].score).toBe(0.9);
    expect(out[0].x1).toBeCloseTo((0 * 0.9 + 1 * 0.6) / 1.5, 12);
    expect(out[0].keypoints[0]).toBeCloseTo((1 * 0.9 + 3 * 0.6) / 1.5, 12);
    expect(out[1]).toEqual(c);
    expect(iou(a, b)).toBeCloseTo(81 / 119, 12);
    expect(weightedNms([a, b, c], 0.3, 1).length).toBe(1);
  });
});

describe('letterbox geometry', () => {
  it('keeps the aspect ratio and centres the image', () => {
    expect(letterboxGeometry(1280, 480)).toEqual({ width: 256, height: 96, left: 0, top: 80, scaleX: 5, scaleY: 5 });
    const g = letterboxGeometry(512, 600);
    expect(g.height).toBe(256);
    expect(g.width).toBe(218);
    expect(g.left).toBe(19);
  });

  it('writes CHW [-1,1] with black padding; the sharp and the JS resize agree', async () => {
    const g = letterboxGeometry(grace.width, grace.height);
    const viaSharp = new Float32Array(3 * 256 * 256);
    const viaJs = new Float32Array(3 * 256 * 256);
    const small = await letterboxResize(grace, g);
    expect([small.width, small.height]).toEqual([g.width, g.height]);
    letterboxInput(small, viaSharp, 0, g);
    letterboxInput(grace, viaJs, 0, g);
    // padding columns are -1 in all planes; the first image pixel is the resized one
    for (const c of [0, 1, 2]) {
      expect(viaSharp[c * 65536 + 100 * 256 + g.left - 1]).toBe(-1);
      expect(viaSharp[c * 65536 + 100 * 256 + g.left + g.width]).toBe(-1);
      expect(viaSharp[c * 65536 + 100 * 256 + g.left]).toBe(Math.fround(small.data[(100 * g.width) * 3 + c] / 127.5 - 1));
    }
    let sum = 0;
    for (let i = 0; i < viaJs.length; i++) sum += Math.abs(viaJs[i] - viaSharp[i]);
    expect(sum / viaJs.length).toBeLessThan(0.02); // < 1.3 grey levels on average
  });
});

describe('detectFaces on real photos', () => {
  it('finds exactly one upright face in astronaut.png and grace_hopper.jpg', async (ctx) => {
    const runner = presentOrSkip(loadedRunner, ctx, RUNNER, FILE);
    const [a, g] = await detectFaces(runner, [astro, grace]);
    expect(a.length).toBe(1);
    expect(g.length).toBe(1);
    // both photos are 512 px wide portraits: the face is a fair part of the frame
    expectUprightFace(a[0], 50, 400);
    expectUprightFace(g[0], 50, 400);
    console.log(`detectFaces via ${via}: astronaut ${JSON.stringify(a[0].box)} score ${a[0].score.toFixed(3)}; ` +
      `grace ${JSON.stringify(g[0].box)} score ${g[0].score.toFixed(3)}`);
  });

  it('maps boxes back through the letterbox: photo pasted into a 1280x480 and a 300x900 frame', async (ctx) => {
    const runner = presentOrSkip(loadedRunner, ctx, RUNNER, FILE);
    const [ref] = (await detectFaces(runner, [grace]))[0];
    // 1280x480: photo scaled to 360x422 at (820, 40) on grey
    const scale = 422 / 600;
    const wide = await rgbFrom(await sharp({ create: { width: 1280, height: 480, channels: 3, background: { r: 128, g: 128, b: 128 } } })
      .composite([{ input: await sharp(GRACE_HOPPER).resize(360, 422, { fit: 'fill' }).toBuffer(), left: 820, top: 40 }])
      .png().toBuffer());
    // 300x900: photo scaled to 300x352 at (0, 500)
    const tall = await rgbFrom(await sharp({ create: { width: 300, height: 900, channels: 3, background: { r: 20, g: 20, b: 20 } } })
      .composite([{ input: await sharp(GRACE_HOPPER).resize(300, 352, { fit: 'fill' }).toBuffer(), left: 0, top: 500 }])
      .png().toBuffer());
    const [fw, ft] = await detectFaces(runner, [wide, tall]);
    expect(fw.length).toBe(1);
    expect(ft.length).toBe(1);
    for (const [f, sx, sy, ox, oy] of [[fw[0], 360 / 512, scale, 820, 40], [ft[0], 300 / 512, 352 / 600, 0, 500]] as const) {
      const [cx, cy] = center(f);
      const [rx, ry] = center(ref);
      const tol = 0.08 * f.box.width; // the detector sees the face at another resolution
      expect(Math.abs(cx - (rx * sx + ox))).toBeLessThan(tol);
      expect(Math.abs(cy - (ry * sy + oy))).toBeLessThan(tol);
      expect(f.box.width / (ref.box.width * sx)).toBeGreaterThan(0.85);
      expect(f.box.width / (ref.box.width * sx)).toBeLessThan(1.15);
      const e = f.keypoints.rightEye;
      expect(Math.abs(e[0] - (ref.keypoints.rightEye[0] * sx + ox))).toBeLessThan(tol);
      expect(Math.abs(e[1] - (ref.keypoints.rightEye[1] * sy + oy))).toBeLessThan(tol);
    }
  });

  it('finds two faces in a collage, one per photo, and none in blank frames', async (ctx) => {
    const runner = presentOrSkip(loadedRunner, ctx, RUNNER, FILE);
    const collage = await rgbFrom(await sharp({ create: { width: 1100, height: 620, channels: 3, background: { r: 255, g: 255, b: 255 } } })
      .composite([
        { input: ASTRONAUT, left: 10, top: 50 },
        { input: GRACE_HOPPER, left: 560, top: 10 },
      ])
      .png().toBuffer());
    const black = { data: new Uint8Array(640 * 480 * 3), width: 640, height: 480 };
    const grey = { data: new Uint8Array(320 * 240 * 3).fill(128), width: 320, height: 240 };
    const [faces, none1, none2] = await detectFaces(runner, [collage, black, grey]);
    expect(faces.length).toBe(2);
    const xs = faces.map((f) => center(f)[0]).sort((p, q) => p - q);
    expect(xs[0]).toBeLessThan(522);
    expect(xs[1]).toBeGreaterThan(560);
    for (const f of faces) expectUprightFace(f, 50, 400);
    expect(none1).toEqual([]);
    expect(none2).toEqual([]);
    // maxFaces keeps the best one
    const [one] = await detectFaces(runner, [collage], { maxFaces: 1 });
    expect(one.length).toBe(1);
    expect(one[0].score).toBe(Math.max(...faces.map((f) => f.score)));
    // minFaceSize larger than both faces drops them
    expect((await detectFaces(runner, [collage], { minFaceSize: 2000 }))[0]).toEqual([]);
  });

  it('batched runs give the same faces as single-image runs, in input order', async (ctx) => {
    const runner = presentOrSkip(loadedRunner, ctx, RUNNER, FILE);
    const frames = [grace, astro, grace];
    const batched = await detectFaces(runner, frames, { batchSize: 2 });
    for (let i = 0; i < frames.length; i++) {
      const single = (await detectFaces(runner, [frames[i]]))[0];
      expect(batched[i].length).toBe(single.length);
      expect(batched[i][0].box.x).toBeCloseTo(single[0].box.x, 3);
      expect(batched[i][0].keypoints.mouth[1]).toBeCloseTo(single[0].keypoints.mouth[1], 3);
      expect(batched[i][0].score).toBeCloseTo(single[0].score, 5);
    }
    expect(await detectFaces(runner, [])).toEqual([]);
  });

  it('handles tiny images and reports bad input as BAD_INPUT', async (ctx) => {
    const runner = presentOrSkip(loadedRunner, ctx, RUNNER, FILE);
    const tiny = { data: new Uint8Array(3).fill(200), width: 1, height: 1 };
    expect(await detectFaces(runner, [tiny])).toEqual([[]]);
    const bad: unknown[] = [
      [{ data: new Uint8Array(5), width: 2, height: 2 }],
      [{ data: new Uint8Array(12), width: 0, height: 2 }],
    ];
    for (const images of bad) {
      await expect(detectFaces(runner, images as RgbImage[])).rejects.toSatisfy((e) => isDfdetError(e, 'BAD_INPUT'));
    }
    for (const opts of [{ scoreThreshold: 1.5 }, { iouThreshold: -1 }, { maxFaces: 0 }, { batchSize: 1.5 }, { minFaceSize: NaN }]) {
      await expect(detectFaces(runner, [astro], opts)).rejects.toSatisfy((e) => isDfdetError(e, 'BAD_INPUT'));
    }
  });

  it('speed: 640x480 frames end to end (informational)', async (ctx) => {
    const runner = presentOrSkip(loadedRunner, ctx, RUNNER, FILE);
    const frame = await rgbFrom(await sharp(GRACE_HOPPER).resize(640, 480, { fit: 'fill' }).png().toBuffer());
    const frames = Array.from({ length: 8 }, () => frame);
    await detectFaces(runner, frames.slice(0, 1));
    const t0 = performance.now();
    const res = await detectFaces(runner, frames, { batchSize: 8 });
    const ms = (performance.now() - t0) / frames.length;
    expect(res.every((r) => r.length === 1)).toBe(true);
    console.log(`detectFaces via ${via}: ${ms.toFixed(1)} ms per 640x480 frame (batch 8, incl. letterbox + NMS)`);
  });
});

describe('a face model that returns the wrong thing', () => {
  it('is a RUNTIME_ERROR of the run (the file loaded fine), not MODEL_LOAD_FAILED', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-faces-'));
    try {
      // A real TorchScript file through the real loader: right input, wrong outputs.
      const file = path.join(dir, 'wrong.pt');
      const wrong = '(self, x):\n    return (x.sum(), x.mean())\n';
      await buildModule({ className: 'WrongFaces', source: `def forward${wrong}def dense${wrong}` }, file);
      const model = await Model.load(file);
      try {
        // forward (the letterbox of a small image) and dense (the levels of a large one)
        for (const [method, image] of [['forward', { data: new Uint8Array(300 * 200 * 3), width: 300, height: 200 }], ['dense', astro]] as const) {
          const err = await expectDfdetError(detectFaces(model, [image]), 'RUNTIME_ERROR', new RegExp(`Face detector model returned an unexpected value from ${method}`));
          expect(err.code).not.toBe('MODEL_LOAD_FAILED');
        }
      } finally {
        await model.dispose();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('names', () => {
  it('face types live in faces/types.ts; blazeface.ts has no decodeImage and no isTensor of its own', () => {
    const src = (f: string): string => fs.readFileSync(path.join(__dirname, '..', f), 'utf8');
    const bf = src('lib/faces/blazeface.ts');
    expect(bf).not.toMatch(/export (interface|type) (Face|FaceBox|FaceKeypoints|Point)\b/);
    expect(src('lib/faces/types.ts')).toMatch(/export interface Face \{/);
    expect(bf).not.toMatch(/function (decodeImage|isTensor|num)\(/);
  });
});
