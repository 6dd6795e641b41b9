/**
 * A video's main face without the finer pyramid levels (lib/faces/main-face.ts): skipped only when
 * they cannot change the main track, and then the main track is the full search's, point for
 * point. Frames are made from a real photo, run through the real BlazeFace.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';

import { initModel } from '../lib/detector-model/init';
import { Detector } from '../lib/detector';

import type { NativeTensor } from '../binding';
import { detectFaces, loadFaceDetector } from '../lib/faces/blazeface';
import { detectMainFaceFrames } from '../lib/faces/main-face';
import { planPyramid } from '../lib/faces/pyramid';
import { mainTrack, trackFaces } from '../lib/faces/track';
import type { Model } from '../lib/model';
import type { RgbImage } from '../lib/media/rgb';
import { GRACE_HOPPER, loadRgb, toPng } from './faces-helpers';
import { ffmpeg, haveFfmpeg } from './helpers/ffmpeg';

const W = 1280;
const H = 720;

/** Head and shoulders of the photo (its face box is about 172..368 x 139..335). */
const portrait = (left: number, top: number, width: number, height: number, scale: number): Promise<Buffer> =>
  sharp(GRACE_HOPPER)
    .extract({ left, top, width, height })
    .resize(Math.round(width * scale), Math.round(height * scale))
    .png()
    .toBuffer();

/**
 * A 1280x720 frame: the photo blurred beyond recognition as background, and faces pasted in: `big`
 * (a ~255 px face at x), `small` (a ~40 px face in the bottom-right corner), `second` (another
 * big face).
 */
async function frame(o: { big?: number; small?: boolean; second?: boolean }): Promise<RgbImage> {
  const parts: sharp.OverlayOptions[] = [];
  if (o.big !== undefined) parts.push({ input: await portrait(100, 60, 350, 420, 1.3), left: o.big, top: 80 });
  if (o.second) parts.push({ input: await portrait(100, 60, 350, 420, 1.1), left: 850, top: 150 });
  if (o.small) parts.push({ input: await portrait(150, 120, 240, 260, 0.2), left: 1150, top: 620 });
  const bg = sharp(GRACE_HOPPER).blur(40).resize(W, H, { fit: 'fill' });
  return loadRgb(await bg.composite(parts).png().toBuffer());
}

let model: Model;
/** The inputs the model ran, as "method WxH" per image. */
const ran: string[] = [];
const counting = {
  run: (method: string, inputs: NativeTensor[]) => {
    const [b, , h, w] = inputs[0]!.shape;
    for (let i = 0; i < b!; i++) ran.push(`${method} ${w}x${h}`);
    return model.run(method, inputs);
  },
};

beforeAll(async () => {
  model = await loadFaceDetector();
});
afterAll(async () => {
  await model.dispose();
});

describe('detectMainFaceFrames', () => {
  const [fine, whole] = planPyramid(W, H, 24).levels.map((l) => `dense ${l.inputWidth}x${l.inputHeight}`);

  it('skips the finer level when one large face fills every frame, and finds the full search’s main track', async () => {
    // A small face in two frames: the full search finds it, and it cannot change the main face.
    const frames = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => frame({ big: 250 + 30 * i, small: i === 2 || i === 3 })));
    ran.length = 0;
    const pruned = await detectMainFaceFrames(counting, frames);
    expect(pruned.levelsSkipped).toBe(1);
    expect(ran).toEqual(frames.map(() => whole));
    const full = await detectFaces(model, frames);
    expect(full.map((f) => f.length)).toEqual([1, 1, 2, 2, 1, 1]);
    expect(pruned.faces.map((f) => f.length)).toEqual([1, 1, 1, 1, 1, 1]);
    const a = mainTrack(pruned.faces)!;
    const b = mainTrack(full)!;
    expect(a.points).toEqual(b.points);
    expect(a.score).toBe(b.score);
    expect(a.points).toHaveLength(6);
  });

  it('searches every level when the large face is missing from a frame, or shares frames with another', async () => {
    const cases = [
      await Promise.all([frame({ big: 250 }), frame({ small: true }), frame({ big: 310 })]),
      await Promise.all([frame({ big: 250, second: true }), frame({ big: 280, second: true })]),
    ];
    for (const frames of cases) {
      ran.length = 0;
      const pruned = await detectMainFaceFrames(counting, frames);
      expect(pruned.levelsSkipped).toBe(0);
      expect(ran.filter((r) => r === fine)).toHaveLength(frames.length);
      expect(pruned.faces).toEqual(await detectFaces(model, frames));
    }
  });

  it('runs the full search for a faces cap, frames of several sizes, or one-level frames', async () => {
    const frames = await Promise.all([frame({ big: 250 }), frame({ big: 280 })]);
    const capped = await detectMainFaceFrames(model, frames, { maxFaces: 1 });
    expect(capped.levelsSkipped).toBe(0);
    expect(capped.faces).toEqual(await detectFaces(model, frames, { maxFaces: 1 }));
    const small: RgbImage = { data: frames[0]!.data.subarray(0, 300 * 200 * 3), width: 300, height: 200 };
    const mixed = await detectMainFaceFrames(model, [frames[0]!, small]);
    expect(mixed.levelsSkipped).toBe(0);
    expect(mixed.faces).toEqual(await detectFaces(model, [frames[0]!, small]));
    const one = await detectMainFaceFrames(model, frames, { tiling: false });
    expect([one.levelsRun, one.levelsSkipped]).toEqual([1, 0]);
    expect(trackFaces(one.faces)).toEqual(trackFaces(await detectFaces(model, frames, { tiling: false })));
  });
});

describe.skipIf(!haveFfmpeg)('Detector on a video scored by its main face', () => {
  it('gives the main face the same boxes and pFake as the full search of allFaces', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-main-face-'));
    const modelPath = path.join(dir, 'tiny.pt');
    await initModel({ arch: 'tiny', seed: 3, output: modelPath });
    const d = await Detector.create({ model: modelPath, frames: 6 });
    try {
      for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(dir, `f${i}.png`), await toPng(await frame({ big: 250 + 30 * i, small: true })));
      const video = path.join(dir, 'clip.mp4');
      // Lossless, so that decoded frames are the PNGs' pixels (up to the RGB -> YUV 4:4:4 round trip).
      ffmpeg('-framerate', '6', '-i', path.join(dir, 'f%d.png'), '-c:v', 'libx264', '-qp', '0', '-pix_fmt', 'yuv444p', video);
      // The finer level was skipped for the main face, and searched for all faces.
      expect((await d.prepare(video)).faceLevels).toEqual({ run: 1, skipped: 1 });
      expect((await d.prepare(video, { allFaces: true })).faceLevels).toEqual({ run: 2, skipped: 0 });
      const main = await d.detect(video);
      const all = await d.detect(video, { allFaces: true });
      // The full search found the small face's track too; the main-face call scored the main one alone.
      expect(all.tracks!.length).toBe(2);
      expect(main.tracks!.length).toBe(1);
      const mainId = all.tracks!.find((t) => t.main)!.id;
      const mainFaces = all.faces.filter((f) => f.track === mainId);
      // Geometry exactly; pFake to the last digits a different batch mix may change (see the README).
      const geometry = (f: (typeof main.faces)[number]) => ({ box: f.box, keypoints: f.keypoints, score: f.score });
      expect(main.faces.map(geometry)).toEqual(mainFaces.map(geometry));
      expect(main.faces).toHaveLength(6);
      main.faces.forEach((f, i) => expect(Math.abs(f.pFake - mainFaces[i]!.pFake)).toBeLessThan(1e-6));
      expect(Math.abs(main.pFake! - all.tracks!.find((t) => t.main)!.pFake)).toBeLessThan(1e-6);
    } finally {
      await d.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
