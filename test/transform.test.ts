import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { clipTransform, shortSideResizeSize, CLIP_MEAN, CLIP_STD } from '../lib/media/transform';
import { resizeRgb } from '../lib/media/resample';
import { decodeImage, type RgbImage } from '../lib/media/image';
import { isDfdetError } from '../lib/errors';
import { rng } from './helpers/random';
import { runPythonRaw, skipWithoutPython } from './helpers/python';

/** Pillow + numpy reference: without it skip visibly, except on CI where it must be there. */
const pilOk = !skipWithoutPython('PIL', 'numpy');

function synth(w: number, h: number, kind: 'gradient' | 'noise' | 'mixed', seed = 1): Buffer {
  const r = rng(seed);
  const b = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const g = [(x * 255) / Math.max(1, w - 1), (y * 255) / Math.max(1, h - 1), ((x + y) * 255) / Math.max(1, w + h - 2)];
      for (let c = 0; c < 3; c++) {
        const n = r() * 255;
        const v = kind === 'gradient' ? g[c] : kind === 'noise' ? n : 0.7 * g[c] + 0.3 * n + ((x >> 4) + (y >> 4)) % 2 * 40 - 20;
        b[i + c] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  }
  return b;
}

let dir: string;
const cases: { name: string; file: string }[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-transform-'));
  const raw = async (name: string, w: number, h: number, kind: 'gradient' | 'noise' | 'mixed', seed = 1) => {
    const file = path.join(dir, `${name}.png`);
    await sharp(synth(w, h, kind, seed), { raw: { width: w, height: h, channels: 3 } }).png().toFile(file);
    cases.push({ name, file });
  };
  await raw('gradient-256', 256, 256, 'gradient');
  await raw('noise-256', 256, 256, 'noise', 7);
  await raw('upscale-100x150', 100, 150, 'noise', 3);
  await raw('downscale-1920x1080', 1920, 1080, 'mixed', 5);
  await raw('odd-301x227', 301, 227, 'mixed', 11);
  await raw('identity-224', 224, 224, 'noise', 13);
  await raw('tall-224x500', 224, 500, 'mixed', 17);
  await raw('wide-640x225', 640, 225, 'noise', 19);
  // Hard text/shape edges (saturating overshoot of the cubic kernel exercises clip8).
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="333" height="250">
    <rect width="333" height="250" fill="#fff"/>
    <rect x="20" y="20" width="120" height="90" fill="#000"/>
    <circle cx="240" cy="80" r="55" fill="#f00"/>
    <text x="10" y="200" font-size="48" font-family="sans-serif" fill="#0a3">Deepfake 123</text>
    <path d="M0 249 L333 120" stroke="#00f" stroke-width="3"/></svg>`;
  const file = path.join(dir, 'text-333x250.png');
  await sharp(Buffer.from(svg)).png().toFile(file);
  cases.push({ name: 'text-333x250', file });
});

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function reference(files: string[], size: number, filter: string): { u8: Uint8Array; f32: Float32Array } {
  const prefix = path.join(dir, `ref-${filter}-${size}`);
  runPythonRaw('clip_transform_ref.py', [prefix, String(size), filter, ...files]);
  const u8 = new Uint8Array(fs.readFileSync(`${prefix}.u8`));
  const fb = fs.readFileSync(`${prefix}.f32`);
  const f32 = new Float32Array(fb.buffer.slice(fb.byteOffset, fb.byteOffset + fb.byteLength));
  return { u8, f32 };
}

describe('shortSideResizeSize', () => {
  it('follows transformers get_resize_output_image_size (int truncation)', () => {
    expect(shortSideResizeSize(256, 256, 224)).toEqual([224, 224]);
    expect(shortSideResizeSize(1920, 1080, 224)).toEqual([398, 224]); // int(224*1920/1080) = int(398.22)
    expect(shortSideResizeSize(100, 150, 224)).toEqual([224, 336]);
    expect(shortSideResizeSize(301, 227, 224)).toEqual([297, 224]); // int(297.02)
  });
});

describe.skipIf(!pilOk)('clipTransform vs Pillow + numpy (HF CLIPImageProcessor steps)', () => {
  for (const filter of ['bicubic', 'bilinear'] as const) {
    it(`matches the reference on gradients, noise, text, up/down-scaling (${filter})`, async () => {
      const imgs: RgbImage[] = [];
      for (const c of cases) imgs.push(await decodeImage(c.file));
      const size = 224;
      const ref = reference(cases.map((c) => c.file), size, filter);
      const plane = size * size;
      const lines: string[] = [];
      for (let b = 0; b < imgs.length; b++) {
        // uint8 stage: the resized + cropped pixels.
        const [rw, rh] = shortSideResizeSize(imgs[b].width, imgs[b].height, size);
        const crop = resizeRgb(imgs[b], rw, rh, filter, {
          left: Math.floor((rw - size) / 2), top: Math.floor((rh - size) / 2), width: size, height: size,
        });
        let sum = 0;
        let max = 0;
        const off = b * plane * 3;
        for (let i = 0; i < plane * 3; i++) {
          const d = Math.abs(crop.data[i] - ref.u8[off + i]);
          sum += d;
          if (d > max) max = d;
        }
        lines.push(`${cases[b].name}: mean |d| ${(sum / (plane * 3)).toFixed(4)} max ${max} (pixel units)`);
        expect(sum / (plane * 3), cases[b].name).toBeLessThanOrEqual(0.5);
        expect(max, cases[b].name).toBeLessThanOrEqual(3);
      }
      // float stage: the whole batch tensor.
      const t = clipTransform(imgs, { size, mean: CLIP_MEAN, std: CLIP_STD, interpolation: filter });
      expect(t.shape).toEqual([imgs.length, 3, size, size]);
      let maxF = 0;
      for (let i = 0; i < t.data.length; i++) maxF = Math.max(maxF, Math.abs(t.data[i] - ref.f32[i]));
      lines.push(`float32 tensor max |d| ${maxF}`);
      console.log(`[${filter}] vs Pillow ${'\n  '}${lines.join('\n  ')}`);
      // 3/255 pixel units / smallest std
      expect(maxF).toBeLessThanOrEqual(3 / 255 / 0.2613);
    });
  }
});

describe('clipTransform', () => {
  const mean = CLIP_MEAN;
  const std = CLIP_STD;

  it('reuses the out buffer when large enough and allocates otherwise', () => {
    const img: RgbImage = { data: new Uint8Array(synth(256, 256, 'noise', 2)), width: 256, height: 256 };
    const out = new Float32Array(2 * 3 * 224 * 224 + 10);
    const t = clipTransform([img, img], { size: 224, mean, std }, out);
    expect(t.data.buffer).toBe(out.buffer);
    expect(t.data.length).toBe(2 * 3 * 224 * 224);
    const exact = new Float32Array(3 * 224 * 224);
    expect(clipTransform([img], { size: 224, mean, std }, exact).data).toBe(exact);
    const small = new Float32Array(5);
    const t2 = clipTransform([img], { size: 224, mean, std }, small);
    expect(t2.data).not.toBe(small);
    expect(Array.from(t2.data.subarray(0, 100))).toEqual(Array.from(t.data.subarray(0, 100)));
  });

  it('normalises a constant image to (v/255 - mean)/std', () => {
    const img: RgbImage = { data: new Uint8Array(100 * 80 * 3).fill(200), width: 100, height: 80 };
    const t = clipTransform([img], { size: 32, mean, std });
    for (let c = 0; c < 3; c++) {
      const v = t.data[c * 32 * 32 + 500];
      expect(v).toBeCloseTo((200 / 255 - mean[c]) / std[c], 5);
    }
  });

  it('returns an empty batch for no images', () => {
    const t = clipTransform([], { size: 224, mean, std });
    expect(t.shape).toEqual([0, 3, 224, 224]);
    expect(t.data.length).toBe(0);
  });

  it('rejects bad options and malformed images with BAD_INPUT', () => {
    const img: RgbImage = { data: new Uint8Array(12), width: 2, height: 2 };
    const bad = (f: () => unknown, re: RegExp) => {
      try {
        f();
      } catch (e) {
        expect(isDfdetError(e, 'BAD_INPUT')).toBe(true);
        expect((e as Error).message).toMatch(re);
        return;
      }
      throw new Error('expected a throw');
    };
    bad(() => clipTransform([img], { size: 0, mean, std }), /Expected an integer between 1 and 8192 for size/);
    bad(() => clipTransform([img], { size: 4, mean: [1, 2], std }), /for mean/);
    bad(() => clipTransform([img], { size: 4, mean, std: [1, 0, 1] }), /for std/);
    bad(() => clipTransform([img], { size: 4, mean, std, interpolation: 'lanczos' as 'bicubic' }), /interpolation/);
    bad(() => clipTransform([{ data: new Uint8Array(11), width: 2, height: 2 }], { size: 4, mean, std }), /image.data.length/);
  });
});
