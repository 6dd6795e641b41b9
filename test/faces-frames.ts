/**
 * 1280x720 frames made from real photos, with small faces at known places, for the recall
 * measurements of test/faces-pyramid.test.ts.
 */
import sharp from 'sharp';
import { iou } from '../lib/faces/nms';
import type { Face } from '../lib/faces/types';
import type { RgbImage } from '../lib/media/image';
import { ASTRONAUT, GRACE_HOPPER, loadRgb } from './faces-helpers';

/** Debian's cat photo (python3-imageio): a real background, with an animal face in it. */
export const CHELSEA = '/usr/lib/python3/dist-packages/imageio/resources/images/chelsea.png';

/** Face boxes in the two photos (as BlazeFace draws them on the full-size photo: ears to chin), checked by eye. */
const PHOTOS = [
  { file: ASTRONAUT, box: { x: 172, y: 73, width: 105, height: 105 } },
  { file: GRACE_HOPPER, box: { x: 172, y: 139, width: 196, height: 196 } },
];

/** A deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Box = Face['box'];

/**
 * A 1280x720 frame: a real background (the cat photo, or the astronaut's suit and flag) with
 * faces of width `w` pasted on a jittered grid, each a head-and-shoulders patch of a real photo,
 * flipped and brightened or darkened at random. Returns the frame and its face boxes.
 */
export async function makeFrame(w: number, seed: number): Promise<{ frame: RgbImage; truth: Box[] }> {
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
export function score(found: Face[], truth: Box[]): { hits: number; fp: number } {
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

