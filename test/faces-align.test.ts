/**
 * Face crop geometry: similarity fit vs numpy Umeyama, warp vs cv2.warpAffine, dots drawn with
 * sharp landing on DeepfakeBench's template, box mode equal to a direct crop, black padding, and
 * an end-to-end detect -> align -> re-detect on a real photo.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { isDfdetError } from '../lib/errors';
import type { RgbImage } from '../lib/media/image';
import { detectFaces } from '../lib/faces/blazeface';
import type { Face, Point } from '../lib/faces/types';
import { cropFace, cropMatrix, deepfakeBenchTemplate, similarityTransform, warpAffine, type Affine } from '../lib/faces/align';
import { ASTRONAUT, BLAZEFACE_REF, GRACE_HOPPER, loadBlazeFace, loadRgb, presentOrSkip } from './faces-helpers';
import { runPython, runPythonRaw, skipWithoutPython } from './helpers/python';

const FILE = 'test/faces-align.test.ts';
const haveNumpy = !skipWithoutPython('numpy');
const haveCv = !skipWithoutPython('cv2', 'numpy'); // python3-opencv

let dir: string;
let astro: RgbImage;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-align-'));
  astro = await loadRgb(ASTRONAUT);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function apply(m: Affine, [x, y]: Point): Point {
  return [m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]];
}

/** A Face whose box and keypoints are given; the ears are irrelevant to cropping. */
function faceOf(box: Face['box'], eyesNoseMouth: Point[]): Face {
  const [rightEye, leftEye, nose, mouth] = eyesNoseMouth;
  return { box, score: 1, keypoints: { rightEye, leftEye, nose, mouth, rightEar: rightEye, leftEar: leftEye } };
}

/** Intensity-weighted centroids (continuous coordinates) of the bright blobs nearest each guess. */
function centroids(im: RgbImage, guesses: Point[], radius: number): Point[] {
  return guesses.map(([gx, gy]) => {
    let sw = 0;
    let sx = 0;
    let sy = 0;
    for (let y = Math.max(0, Math.floor(gy - radius)); y < Math.min(im.height, Math.ceil(gy + radius)); y++) {
      for (let x = Math.max(0, Math.floor(gx - radius)); x < Math.min(im.width, Math.ceil(gx + radius)); x++) {
        const v = im.data[(y * im.width + x) * 3];
        sw += v;
        sx += v * (x + 0.5);
        sy += v * (y + 0.5);
      }
    }
    return [sx / sw, sy / sw] as Point;
  });
}

describe('similarity fit', () => {
  it('recovers an exact similarity and has no reflection', () => {
    const th = 0.4;
    const s = 1.7;
    const truth: Affine = [s * Math.cos(th), -s * Math.sin(th), 12, s * Math.sin(th), s * Math.cos(th), -5];
    const src: Point[] = [[10, 20], [50, 22], [30, 40], [31, 60]];
    const m = similarityTransform(src, src.map((p) => apply(truth, p)))!;
    m.forEach((v, i) => expect(v).toBeCloseTo(truth[i], 10));
    // mirrored targets: the best rotation is not a reflection (a == e, b == -d)
    const mirrored = similarityTransform(src, src.map(([x, y]) => [-x, y] as Point))!;
    expect(mirrored[0]).toBeCloseTo(mirrored[4], 12);
    expect(mirrored[1]).toBeCloseTo(-mirrored[3], 12);
    expect(similarityTransform([[1, 1], [1, 1]], [[0, 0], [5, 5]])).toBeNull();
  });

  it.skipIf(!haveNumpy)('matches numpy Umeyama (SVD form, as skimage) on noisy points', () => {
    const src: Point[] = [[201.3, 180.2], [262.9, 176.4], [236.1, 215.7], [233.0, 248.8]];
    const dst = deepfakeBenchTemplate(256, 1.3);
    const dst4: Point[] = [dst[0], dst[1], dst[2], [(dst[3][0] + dst[4][0]) / 2, (dst[3][1] + dst[4][1]) / 2]];
    const ref = runPython<number[]>(BLAZEFACE_REF, ['umeyama', JSON.stringify({ src, dst: dst4 })]);
    const m = similarityTransform(src, dst4)!;
    m.forEach((v, i) => expect(Math.abs(v - ref[i])).toBeLessThan(1e-9 * Math.max(1, Math.abs(ref[i]))));
  });

  it("DeepfakeBench's template for 256 px at 1.3", () => {
    const t = deepfakeBenchTemplate(256, 1.3);
    // img_align_crop arithmetic done by hand for the left eye: ((30.2946+8)*256/112 + 38.4) * 256/332.8
    expect(t[0][0]).toBeCloseTo((((30.2946 + 8) * 256) / 112 + 38.4) * (256 / 332.8), 10);
    expect(t[0][1]).toBeCloseTo(((51.6963 * 256) / 112 + 38.4) * (256 / 332.8), 10);
    // symmetric-ish face in the middle of the crop
    expect((t[0][0] + t[1][0]) / 2).toBeGreaterThan(120);
    expect((t[0][0] + t[1][0]) / 2).toBeLessThan(136);
  });
});

describe('warp', () => {
  it.skipIf(!haveCv)('matches cv2.warpAffine (INTER_LINEAR, BORDER_CONSTANT) on a real photo', () => {
    const th = -0.3;
    const s = 0.55;
    // rotate + shrink, partly outside the photo so the black border is compared too
    const m: Affine = [s * Math.cos(th), -s * Math.sin(th), 40.25, s * Math.sin(th), s * Math.cos(th), 90.6];
    const inFile = path.join(dir, 'astro.rgb');
    const outFile = path.join(dir, 'warp.rgb');
    fs.writeFileSync(inFile, astro.data);
    runPythonRaw(BLAZEFACE_REF, ['warp', inFile, '512', '512', m.join(','), '256', outFile]);
    const ref = fs.readFileSync(outFile);
    const ours = warpAffine(astro, m, 256, 256);
    let max = 0;
    let sum = 0;
    let black = 0;
    let over1 = 0;
    for (let i = 0; i < ref.length; i++) {
      const d = Math.abs(ref[i] - ours.data[i]);
      if (d > 1) over1++;
      max = Math.max(max, d);
      sum += d;
      if (ref[i] === 0 && ours.data[i] === 0) black++;
    }
    console.log(`warpAffine vs cv2: max |diff| ${max}, mean ${(sum / ref.length).toFixed(4)}, ${over1} of ${ref.length} values off by > 1`);
    // OpenCV quantises positions to 1/32 px and weights to 15 bits: on sharp edges (up to ~250
    // grey levels per pixel) that moves a value by a few levels; elsewhere by at most 1
    expect(max).toBeLessThanOrEqual(6);
    expect(sum / ref.length).toBeLessThan(0.15);
    expect(over1 / ref.length).toBeLessThan(0.005);
    expect(black).toBeGreaterThan(1000);
  });
});

describe('cropFace geometry', () => {
  it('align mode puts dots drawn at the keypoints onto the template (within 1 px)', async () => {
    const t = deepfakeBenchTemplate(256, 1.3);
    const tpl: Point[] = [t[0], t[1], t[2], [(t[3][0] + t[4][0]) / 2, (t[3][1] + t[4][1]) / 2]];
    // a face rotated by 25 degrees and 1.6x the crop's scale, in a 640x480 frame
    const th = (25 * Math.PI) / 180;
    const s = 1.6;
    const toImage: Affine = [s * Math.cos(th), -s * Math.sin(th), 150, s * Math.sin(th), s * Math.cos(th), 20];
    // template index coords -> image index coords -> continuous (+0.5)
    const kps = tpl.map((p) => apply(toImage, p)).map(([x, y]) => [x + 0.5, y + 0.5] as Point);
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="640" height="480"><rect width="640" height="480" fill="black"/>${
      kps.map(([x, y]) => `<circle cx="${x}" cy="${y}" r="4" fill="white"/>`).join('')}</svg>`;
    const frame = await loadRgb(await sharp(Buffer.from(svg)).png().toBuffer());
    const face = faceOf({ x: 200, y: 100, width: 200, height: 200 }, kps);
    const crop = cropFace(frame, face, { mode: 'align', scale: 1.3, size: 256, deepfakeBenchBias: false });
    expect([crop.width, crop.height]).toEqual([256, 256]);
    const expected = tpl.map(([x, y]) => [x + 0.5, y + 0.5] as Point);
    const found = centroids(crop, expected, 6);
    for (let i = 0; i < 4; i++) {
      expect(Math.abs(found[i][0] - expected[i][0])).toBeLessThan(1);
      expect(Math.abs(found[i][1] - expected[i][1])).toBeLessThan(1);
    }
  });

  it('DeepfakeBench bias: a small fixed rotation of the plain fit, consistent across sizes and scales', () => {
    const face = faceOf({ x: 180, y: 150, width: 120, height: 120 }, [[210.3, 190.1], [262.8, 188.0], [238.2, 222.5], [236.9, 250.4]]);
    for (const bias of [false, true]) {
      const m256 = cropMatrix(face, { deepfakeBenchBias: bias });
      const m512 = cropMatrix(face, { size: 512, deepfakeBenchBias: bias });
      m512.forEach((v, i) => expect(v).toBeCloseTo(2 * m256[i], 9));
      // twice the margin: the same face half as big around the same crop centre (index 128)
      const wide = cropMatrix(face, { scale: 2.6, deepfakeBenchBias: bias });
      m256.forEach((v, i) => expect(wide[i]).toBeCloseTo(i === 2 || i === 5 ? 0.5 * v + 64 : 0.5 * v, 9));
    }
    const plain = cropMatrix(face, { deepfakeBenchBias: false });
    const biased = cropMatrix(face);
    const angle = (m: Affine) => (Math.atan2(m[3], m[0]) * 180) / Math.PI;
    const d = angle(biased) - angle(plain);
    expect(Math.abs(d)).toBeGreaterThan(2);
    expect(Math.abs(d)).toBeLessThan(8);
    expect(Math.hypot(biased[0], biased[3]) / Math.hypot(plain[0], plain[3])).toBeCloseTo(1, 1);
    // box mode ignores the option
    expect(cropMatrix(face, { mode: 'box', deepfakeBenchBias: true })).toEqual(cropMatrix(face, { mode: 'box', deepfakeBenchBias: false }));
  });

  it('box mode with a 1:1 scale is exactly a direct crop, with black where it leaves the image', () => {
    // side = 1.28 * 200 = 256 = size: pure translation by an integer
    const face = faceOf({ x: 100, y: 150, width: 200, height: 180 }, []);
    const crop = cropFace(astro, face, { mode: 'box', scale: 1.28, size: 256 });
    const x0 = 200 - 128;
    const y0 = 240 - 128;
    for (let y = 0; y < 256; y++) {
      for (let x = 0; x < 256; x++) {
        for (let c = 0; c < 3; c++) {
          const v = crop.data[(y * 256 + x) * 3 + c];
          const want = astro.data[((y + y0) * 512 + (x + x0)) * 3 + c];
          if (v !== want) throw new Error(`pixel ${x},${y}: ${v} != ${want}`);
        }
      }
    }
    // near the bottom-right corner: the outside is black, the inside copied
    const edge = cropFace(astro, faceOf({ x: 400, y: 420, width: 200, height: 200 }, []), { mode: 'box', scale: 1.28, size: 256 });
    // square origin (372, 392): image columns 372..511 -> crop columns 0..139
    expect(edge.data[(10 * 256 + 139) * 3]).toBe(astro.data[((402) * 512 + 511) * 3]);
    for (const [x, y] of [[140, 10], [200, 5], [10, 120], [255, 255]]) {
      expect([...edge.data.subarray((y * 256 + x) * 3, (y * 256 + x) * 3 + 3)]).toEqual([0, 0, 0]);
    }
  });

  it('box mode shrinking by exactly 2 averages 2x2 blocks', () => {
    const face = faceOf({ x: 0, y: 0, width: 512, height: 512 }, []);
    const crop = cropFace(astro, face, { mode: 'box', scale: 1, size: 256 });
    for (const [x, y] of [[0, 0], [100, 37], [255, 255], [128, 200]]) {
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (const [dx, dy] of [[0, 0], [1, 0], [0, 1], [1, 1]]) s += astro.data[((2 * y + dy) * 512 + 2 * x + dx) * 3 + c];
        expect(Math.abs(crop.data[(y * 256 + x) * 3 + c] - s / 4)).toBeLessThanOrEqual(0.5);
      }
    }
    const m = cropMatrix(face, { mode: 'box', scale: 1, size: 256 });
    expect(m).toEqual([0.5, 0, -0.25, 0, 0.5, -0.25]);
  });

  it('falls back to box mode for degenerate keypoints and rejects bad options', () => {
    const p: Point = [250, 250];
    const face = faceOf({ x: 200, y: 200, width: 100, height: 100 }, [p, p, p, p]);
    expect(cropMatrix(face, { mode: 'align' })).toEqual(cropMatrix(face, { mode: 'box' }));
    const good = faceOf({ x: 200, y: 200, width: 100, height: 100 }, [[220, 230], [280, 230], [250, 260], [250, 285]]);
    for (const opts of [{ mode: 'x' }, { scale: 0 }, { size: 0 }, { size: 2.5 }, { deepfakeBenchBias: 1 }]) {
      expect(() => cropFace(astro, good, opts as never)).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
    }
    const bad = { ...good, keypoints: { ...good.keypoints, nose: [NaN, 1] as Point } };
    let err: unknown;
    try {
      cropFace(astro, bad);
    } catch (e) {
      err = e;
    }
    expect(isDfdetError(err, 'BAD_INPUT')).toBe(true);
    expect(() => cropFace({ data: new Uint8Array(3), width: 2, height: 2 }, good)).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
  });
});

describe('detect -> align on real photos', () => {
  it('aligned crops of detected faces put the re-detected eyes near the template', async (ctx) => {
    const { runner } = presentOrSkip(await loadBlazeFace(), ctx, 'a TorchScript runner (lib/model.ts or /usr/bin/python3 with torch)', FILE);
    try {
      const grace = await loadRgb(GRACE_HOPPER);
      const faces = await detectFaces(runner, [astro, grace]);
      const crops = [cropFace(astro, faces[0][0]), cropFace(grace, faces[1][0])];
      const again = await detectFaces(runner, crops);
      const t = deepfakeBenchTemplate(256, 1.3);
      for (const f of again) {
        expect(f.length).toBe(1);
        // continuous coords of the template (index + 0.5); BlazeFace's eye centres vs ArcFace's
        // eye points differ by a few pixels, hence 4% of the crop
        expect(Math.abs(f[0].keypoints.rightEye[0] - (t[0][0] + 0.5))).toBeLessThan(0.04 * 256);
        expect(Math.abs(f[0].keypoints.rightEye[1] - (t[0][1] + 0.5))).toBeLessThan(0.04 * 256);
        expect(Math.abs(f[0].keypoints.leftEye[0] - (t[1][0] + 0.5))).toBeLessThan(0.04 * 256);
        expect(Math.abs(f[0].keypoints.leftEye[1] - (t[1][1] + 0.5))).toBeLessThan(0.04 * 256);
      }
      if (process.env.DFDET_SAVE_CROPS) {
        for (const [i, c] of crops.entries()) {
          await sharp(Buffer.from(c.data), { raw: { width: 256, height: 256, channels: 3 } }).png().toFile(path.join(process.env.DFDET_SAVE_CROPS, `crop${i}.png`));
        }
      }
    } finally {
      await runner.dispose();
    }
  });
});
