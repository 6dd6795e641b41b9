/**
 * Tiled multi-scale face detection (lib/faces/tiles.ts): the tile plan covers every face it
 * promises to, maps back exactly, and on 1280x720 frames made from real photos it finds small
 * faces that the whole-frame pass misses, with few false positives.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { detectFaces, type TensorRunner } from '../lib/faces/blazeface';
import { iou } from '../lib/faces/nms';
import { MIN_MODEL_FACE, planTiles, tileToSource, type TilePlan } from '../lib/faces/tiles';
import type { Face } from '../lib/faces/types';
import type { RgbImage } from '../lib/media/image';
import { isDfdetError } from '../lib/errors';
import { ASTRONAUT, GRACE_HOPPER, loadBlazeFace, loadRgb, presentOrSkip, requireOrSkip } from './faces-helpers';

const FILE = 'test/faces-tiles.test.ts';
const RUNNER = 'a TorchScript runner (lib/model.ts or /usr/bin/python3 with torch)';
/** Debian's cat photo (python3-imageio): a real background, with an animal face in it. */
const CHELSEA = '/usr/lib/python3/dist-packages/imageio/resources/images/chelsea.png';
let runner: (TensorRunner & { dispose(): unknown }) | null = null;

beforeAll(async () => {
  const l = await loadBlazeFace();
  if (requireOrSkip(l !== null, RUNNER, FILE)) runner = l!.runner;
});

afterAll(async () => {
  await runner?.dispose();
});

/** Every tiled level of `plan`, with its tiles, in level pixels. */
function tiledLevels(plan: TilePlan) {
  return plan.levels.slice(0, -1).map((lv, i) => ({ lv, tiles: plan.tiles.filter((t) => t.level === i) }));
}

describe('planTiles', () => {
  it('1280x720 at the default 24 px: 4x2 tiles of an 853x480 level, 2 of a 427x240 level, then the whole frame', () => {
    const plan = planTiles(1280, 720, 24);
    expect(plan.tiles.length).toBe(11);
    expect(plan.levels.map((l) => [l.width, l.height])).toEqual([[853, 480], [427, 240], [256, 144]]);
    expect(plan.tiles.slice(0, 8).map((t) => [t.x, t.y])).toEqual([[0, 0], [199, 0], [398, 0], [597, 0], [0, 224], [199, 224], [398, 224], [597, 224]]);
    expect(plan.tiles.slice(8, 10)).toEqual([
      { level: 1, x: 0, y: 0, width: 256, height: 240, left: 0, top: 8 },
      { level: 1, x: 171, y: 0, width: 256, height: 240, left: 0, top: 8 },
    ]);
    // the last input is exactly the whole-frame letterbox
    expect(plan.tiles[10]).toEqual({ level: 2, x: 0, y: 0, width: 256, height: 144, left: 0, top: 56 });
  });

  it(`no tiling where the whole frame already shows a minFaceSize face at ${MIN_MODEL_FACE} model px`, () => {
    expect(planTiles(384, 384, 24).tiles.length).toBe(1);
    expect(planTiles(385, 300, 24).tiles.length).toBeGreaterThan(1);
    expect(planTiles(1280, 720, 80).tiles.length).toBe(1);
    expect(planTiles(1280, 720, Infinity).tiles.length).toBe(1);
    expect(planTiles(1, 1, 24).tiles.length).toBe(1);
    expect(planTiles(384, 384, 24).levels[0]).toMatchObject({ minFace: 0, maxFace: Infinity });
  });

  it('every face from minFaceSize up is answered for by a level that holds it whole and sees it at >= 16 px', () => {
    for (const [w, h, mf] of [[1280, 720, 24], [1920, 1080, 24], [640, 480, 24], [3840, 2160, 24], [1080, 1920, 30], [700, 300, 10], [5000, 400, 24]]) {
      const plan = planTiles(w, h, mf);
      const levels = tiledLevels(plan);
      const whole = plan.levels[plan.levels.length - 1]!;
      // the whole frame answers for faces from whole.minFace, and sees them at >= 16 px
      expect(whole.minFace / whole.scaleX).toBeGreaterThanOrEqual(MIN_MODEL_FACE - 1e-9);
      for (let size = Math.max(mf, MIN_MODEL_FACE); size < whole.minFace; size *= 1.1) {
        const ok = levels.some(({ lv, tiles }) => {
          const f = size / lv.scaleX;
          // 1%: the level's size is rounded to whole pixels
          if (f < 0.99 * MIN_MODEL_FACE || size < lv.minFace || size > lv.maxFace) return false;
          for (let y = 0; y + f <= lv.height; y += Math.max(1, f / 3)) {
            for (let x = 0; x + f <= lv.width; x += Math.max(1, f / 3)) {
              if (!tiles.some((t) => x >= t.x && y >= t.y && x + f <= t.x + t.width && y + f <= t.y + t.height)) return false;
            }
          }
          return true;
        });
        expect(ok, `${w}x${h} minFaceSize ${mf}: face of ${size.toFixed(1)} px`).toBe(true);
      }
      for (const { tiles } of levels) for (const t of tiles) expect([t.width, t.height].every((d) => d <= 256)).toBe(true);
    }
  });

  it('maps tile detections back to source pixels and drops those cut by an inner edge or out of its size range', () => {
    const plan = planTiles(1280, 720, 24);
    const lv = plan.levels[0]!;
    const mid = plan.tiles[1]!; // (199, 0): inner edges left, right and below; the frame's edge above
    expect([mid.x, mid.y]).toEqual([199, 0]);
    const d = { score: 0.9, x1: 10, y1: 20, x2: 30, y2: 40, keypoints: [15, 25] };
    const m = tileToSource(d, mid, lv)!;
    const want = [(199 + 10) * lv.scaleX, 20 * lv.scaleY, (199 + 30) * lv.scaleX, 40 * lv.scaleY, (199 + 15) * lv.scaleX, 25 * lv.scaleY];
    [m.x1, m.y1, m.x2, m.y2, ...m.keypoints].forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 9));
    expect(m.score).toBe(0.9);
    expect(tileToSource({ ...d, x1: -1 }, mid, lv)).toBeNull();
    expect(tileToSource({ ...d, x2: 257 }, mid, lv)).toBeNull();
    expect(tileToSource({ ...d, y2: 257 }, mid, lv)).toBeNull();
    // cut by the frame's own edge: kept
    expect(tileToSource({ ...d, y1: -3, y2: 30 }, mid, lv)).not.toBeNull();
    // a face larger than this level answers for (1.25 x 32 model px)
    expect(tileToSource({ ...d, x2: 10 + 41 }, mid, lv)).toBeNull();
    // the whole frame: letterbox padding undone; it answers for faces from 32 px of the finer level (96 source px)
    const whole = plan.tiles[10]!;
    expect(tileToSource({ ...d, x1: 10, x2: 30, y1: 56, y2: 76 }, whole, plan.levels[2]!)).toMatchObject({ x1: 50, y1: 0, x2: 150, y2: 100 });
    expect(tileToSource({ ...d, x1: 10, x2: 28, y1: 56, y2: 74 }, whole, plan.levels[2]!)).toBeNull();
  });
});

/** Face boxes in the two photos (as BlazeFace draws them on the full-size photo: ears to chin), checked by eye. */
const PHOTOS = [
  { file: ASTRONAUT, box: { x: 172, y: 73, width: 105, height: 105 } },
  { file: GRACE_HOPPER, box: { x: 172, y: 139, width: 196, height: 196 } },
];
const WIDTHS = [64, 40, 28, 24];
const FRAMES_PER_WIDTH = 4;

/** A deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Box = Face['box'];

/**
 * A 1280x720 frame: a real background (the cat photo, or the astronaut's suit and flag) with
 * faces of width `w` pasted on a jittered grid, each a head-and-shoulders patch of a real photo,
 * flipped and brightened or darkened at random. Returns the frame and its face boxes.
 */
async function makeFrame(w: number, seed: number): Promise<{ frame: RgbImage; truth: Box[] }> {
  const rand = rng(seed);
  const bg = seed % 2 === 0
    ? sharp(CHELSEA).resize(1280, 720, { fit: 'cover' })
    : sharp(ASTRONAUT).extract({ left: 0, top: 240, width: 512, height: 272 }).resize(1280, 720, { fit: 'fill' });
  const cell = Math.max(3 * w, 120);
  const cols = Math.floor(1280 / cell);
  const rows = Math.floor(720 / cell);
  const truth: Box[] = [];
  const parts: sharp.OverlayOptions[] = [];
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const photo = PHOTOS[Math.floor(rand() * 2)]!;
      const s = w / photo.box.width;
      const meta = await sharp(photo.file).metadata();
      const W = Math.round(meta.width! * s);
      const H = Math.round(meta.height! * s);
      const fx = (photo.box.x + photo.box.width / 2) * s;
      const fy = (photo.box.y + photo.box.height / 2) * s;
      const half = Math.round(0.9 * w);
      const left = Math.max(0, Math.round(fx - half));
      const top = Math.max(0, Math.round(fy - half));
      const pw = Math.min(W - left, 2 * half);
      const ph = Math.min(H - top, Math.round(2.6 * half));
      const flip = rand() < 0.5;
      let patch = sharp(await sharp(photo.file).resize(W, H, { fit: 'fill' }).extract({ left, top, width: pw, height: ph }).toBuffer())
        .modulate({ brightness: 0.7 + 0.6 * rand() });
      if (flip) patch = patch.flop();
      const ox = Math.round(c * cell + rand() * (cell - pw));
      const oy = Math.round(r * cell + rand() * (cell - ph));
      parts.push({ input: await patch.removeAlpha().png().toBuffer(), left: ox, top: oy });
      const cx = flip ? pw - (fx - left) : fx - left;
      truth.push({ x: ox + cx - w / 2, y: oy + (fy - top) - w / 2, width: w, height: w });
    }
  }
  const frame = await loadRgb(await bg.composite(parts).png().toBuffer());
  return { frame, truth };
}

/** Greedy one-to-one matching at IoU >= 0.3: hits and false positives. */
function score(found: Face[], truth: Box[]): { hits: number; fp: number } {
  const corners = (b: Box) => ({ x1: b.x, y1: b.y, x2: b.x + b.width, y2: b.y + b.height });
  const free = truth.map(corners);
  let hits = 0;
  let fp = 0;
  for (const f of found) {
    const i = free.findIndex((t) => iou(t, corners(f.box)) >= 0.3);
    if (i >= 0) {
      hits++;
      free.splice(i, 1);
    } else fp++;
  }
  return { hits, fp };
}

describe('small faces in 1280x720 frames made from real photos', () => {
  it('tiling lifts recall at 40 and 28 px far above the whole-frame pass, with bounded false positives', async (ctx) => {
    const model = presentOrSkip(runner, ctx, RUNNER, FILE);
    const rows: string[] = [];
    const result: Record<number, { before: number; after: number }> = {};
    let fpBefore = 0;
    let fpAfter = 0;
    let frames = 0;
    for (const w of WIDTHS) {
      const made = await Promise.all(Array.from({ length: FRAMES_PER_WIDTH }, (_, i) => makeFrame(w, 1000 * w + i)));
      const images = made.map((m) => m.frame);
      const before = await detectFaces(model, images, { tiling: false });
      const after = await detectFaces(model, images);
      let n = 0;
      const tally = { before: { hits: 0, fp: 0 }, after: { hits: 0, fp: 0 } };
      made.forEach((m, i) => {
        n += m.truth.length;
        for (const [k, found] of [['before', before[i]!], ['after', after[i]!]] as const) {
          const s = score(found, m.truth);
          tally[k].hits += s.hits;
          tally[k].fp += s.fp;
        }
      });
      result[w] = { before: tally.before.hits / n, after: tally.after.hits / n };
      fpBefore += tally.before.fp;
      fpAfter += tally.after.fp;
      frames += images.length;
      rows.push(`| ${w} px | ${n} | ${result[w].before.toFixed(2)} | ${result[w].after.toFixed(2)} | ${(tally.before.fp / images.length).toFixed(2)} | ${(tally.after.fp / images.length).toFixed(2)} |`);
    }
    console.log(['| face width | faces | recall whole frame | recall tiled | FP/frame whole | FP/frame tiled |', '| --- | --- | --- | --- | --- | --- |', ...rows].join('\n'));
    for (const w of [40, 28]) {
      expect(result[w]!.after, `recall at ${w} px`).toBeGreaterThanOrEqual(0.85);
      expect(result[w]!.after - result[w]!.before, `recall gain at ${w} px`).toBeGreaterThanOrEqual(0.3);
    }
    expect(result[64]!.after).toBeGreaterThanOrEqual(result[64]!.before - 0.05);
    expect(fpAfter / frames, 'false positives per frame, tiled').toBeLessThanOrEqual(0.5);
    expect(fpAfter / frames).toBeLessThanOrEqual(fpBefore / frames + 0.5);
  }, 300_000);

  it('refuses a non-boolean tiling option', async (ctx) => {
    const model = presentOrSkip(runner, ctx, RUNNER, FILE);
    const img = { data: new Uint8Array(12), width: 2, height: 2 };
    await expect(detectFaces(model, [img], { tiling: 'yes' as unknown as boolean })).rejects.toSatisfy((e) => isDfdetError(e, 'BAD_INPUT'));
  });
});
