/**
 * Tiled, multi-scale face detection: which 256x256 model inputs one frame becomes, and how a
 * detection in one of them maps back to source pixels.
 *
 * BlazeFace-back sees the whole frame letterboxed to 256 px, so in a 1280x720 frame a 40 px face
 * shrinks to 8 px, below what the model finds reliably. Measured on 1280x720 frames made from
 * Debian's photos (test/faces-tiles.test.ts), with tiles at a scale where a 24 px face is 12, 14
 * and 16 model px: recall of 28 px faces 0.67, 0.83, 0.95; of 24 px faces 0.40, 0.57, 0.76. So
 * {@link MIN_MODEL_FACE} = 16, and a frame is also cut, at a larger scale, into overlapping tiles:
 *
 * - Level 0 scales the frame by `16 / minFaceSize` (never up), so that a face of `minFaceSize`
 *   source pixels is 16 px in the model; each further level is 2x coarser, until a level would be
 *   no larger than the whole-frame letterbox, which always runs last.
 * - Tiles overlap by {@link TILE_OVERLAP} = 32 model px: every face up to 32 px at a level lies
 *   wholly inside one of its tiles, and the next coarser level (at most 2x smaller) sees faces from
 *   32 px of this level at >= 16 px. (Overlap 64 with 4x levels found the same faces with ~1.5x
 *   the inputs at 1280x720: the overlap is paid in every tile, a coarse level's tiles are few.) Detections cut by a tile's inner edge are dropped (the tile
 *   next to it holds the whole face), and each level keeps only the face sizes it answers for
 *   ({@link TileLevel.minFace}, {@link TileLevel.maxFace}).
 * - No tiling at all when the whole frame already shows a `minFaceSize` face at >= 16 px, i.e.
 *   when `max(width, height) <= 256 * minFaceSize / 16` (384 px for the default 24): photos and
 *   small frames cost one model input, as before; a larger `minFaceSize` means fewer tiles.
 *
 * A 1280x720 frame with the default `minFaceSize` 24 becomes 4x2 tiles of 384 source px (an
 * 853x480 level), 2 tiles of a 427x240 level and the whole frame: 11 model inputs (at
 * `minFaceSize` 40: 3x2 + 1 = 7; at 80 or more: 1).
 */
import type { RgbImage } from '../media/image';

/** Side of the square model input (BlazeFace-back). */
const S = 256;
/** Smallest face side, in model-input pixels, that BlazeFace-back finds reliably in tiles (measured; see above). */
export const MIN_MODEL_FACE = 16;
/** Overlap of neighbouring tiles in model-input pixels. */
export const TILE_OVERLAP = 32;
/** Scale ratio between successive tile levels. */
const LEVEL_RATIO = 2;

/** One pyramid level: the frame resized to `width` x `height`. */
export interface TileLevel {
  width: number;
  height: number;
  /** Source pixels per level pixel along x and y. */
  scaleX: number;
  scaleY: number;
  /**
   * The face sizes this level answers for, in source pixels (longer box side): detections outside
   * are dropped. A tiled level answers up to 1.25 x {@link TILE_OVERLAP} model px (larger faces may
   * be cut by its tiles; the next level sees them at >= 20 px); the next level from the largest
   * face this one holds wholly in a tile. So a coarse level's loose boxes around small faces (or
   * around groups of them), which the tiles see sharply, do not survive as false positives.
   */
  minFace: number;
  maxFace: number;
}

/** One model input: a rectangle of a level's image placed into the 256x256 input. */
export interface Tile {
  /** Index into {@link TilePlan.levels}. */
  level: number;
  /** The rectangle in level pixels (at most 256x256). */
  x: number;
  y: number;
  width: number;
  height: number;
  /** Where the rectangle lands in the model input (padding left and top; black elsewhere). */
  left: number;
  top: number;
}

/** The model inputs of one frame: its levels (the last one is the whole-frame letterbox) and tiles. */
export interface TilePlan {
  levels: TileLevel[];
  tiles: Tile[];
}

/** Start positions of `n` windows of `size` evenly covering `0..total`, overlapping by at least `overlap`. */
function windows(total: number, size: number, overlap: number): number[] {
  if (total <= size) return [0];
  const n = Math.ceil((total - overlap) / (size - overlap));
  return Array.from({ length: n }, (_, i) => Math.round((i * (total - size)) / (n - 1)));
}

function level(width: number, height: number, w: number, h: number, finer: TileLevel | undefined, last: boolean): TileLevel {
  const scaleX = width / w;
  const scaleY = height / h;
  const minFace = finer ? TILE_OVERLAP * Math.max(finer.scaleX, finer.scaleY) : 0;
  const maxFace = last ? Infinity : 1.25 * TILE_OVERLAP * Math.max(scaleX, scaleY);
  return { width: w, height: h, scaleX, scaleY, minFace, maxFace };
}

/**
 * The tiles of a `width` x `height` frame for faces of at least `minFaceSize` source pixels.
 * The last level is always the whole frame letterboxed to 256 px (one tile, centred), exactly
 * the input of a plain whole-frame pass.
 */
export function planTiles(width: number, height: number, minFaceSize: number): TilePlan {
  const long = Math.max(width, height);
  const levels: TileLevel[] = [];
  const tiles: Tile[] = [];
  // minFaceSize below MIN_MODEL_FACE: level 0 at full size (faces that small are not findable anyway).
  for (let s = Math.min(1, MIN_MODEL_FACE / Math.max(minFaceSize, 1e-9)); long * s > S; s /= LEVEL_RATIO) {
    const lw = Math.max(1, Math.round(width * s));
    const lh = Math.max(1, Math.round(height * s));
    const index = levels.push(level(width, height, lw, lh, levels[levels.length - 1], false)) - 1;
    for (const y of windows(lh, S, TILE_OVERLAP)) {
      for (const x of windows(lw, S, TILE_OVERLAP)) {
        const w = Math.min(S, lw);
        const h = Math.min(S, lh);
        tiles.push({ level: index, x, y, width: w, height: h, left: Math.floor((S - w) / 2), top: Math.floor((S - h) / 2) });
      }
    }
  }
  // The whole frame, letterboxed as letterboxGeometry does.
  const s = S / long;
  const w = Math.min(S, Math.max(1, Math.round(width * s)));
  const h = Math.min(S, Math.max(1, Math.round(height * s)));
  const index = levels.push(level(width, height, w, h, levels[levels.length - 1], true)) - 1;
  tiles.push({ level: index, x: 0, y: 0, width: w, height: h, left: Math.floor((S - w) / 2), top: Math.floor((S - h) / 2) });
  return { levels, tiles };
}

/**
 * Write the rectangle (`x`, `y`, `width`, `height`) of `image` into `out` at `offset` as one
 * 256x256 CHW float32 input in [-1,1] (`v / 127.5 - 1`), placed at (`left`, `top`) with black
 * padding (-1) around it, as MediaPipe pads.
 */
export function writeTile(image: RgbImage, tile: Omit<Tile, 'level'>, out: Float32Array, offset: number): void {
  const plane = S * S;
  out.fill(-1, offset, offset + 3 * plane);
  const src = image.data;
  for (let y = 0; y < tile.height; y++) {
    let o = offset + (y + tile.top) * S + tile.left;
    let i = ((tile.y + y) * image.width + tile.x) * 3;
    for (let x = 0; x < tile.width; x++, o++, i += 3) {
      out[o] = src[i]! / 127.5 - 1;
      out[o + plane] = src[i + 1]! / 127.5 - 1;
      out[o + 2 * plane] = src[i + 2]! / 127.5 - 1;
    }
  }
}

/** A box and keypoints in model-input pixels of one tile. */
export interface TileDetection {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  /** `[x0, y0, x1, y1, ...]`. */
  keypoints: number[];
}

/**
 * Map a detection of `tile` back to source pixels, or null when its box crosses an inner edge of
 * the tile (an edge inside the level image): such a face is cut, and the overlapping tile next to
 * it (or a coarser level) holds it whole. The whole-frame tile has no inner edges. Null too when
 * its size is outside the level's {@link TileLevel.minFace}..{@link TileLevel.maxFace}.
 */
export function tileToSource<T extends TileDetection>(d: T, tile: Tile, lv: TileLevel): T | null {
  const x1 = d.x1 - tile.left;
  const y1 = d.y1 - tile.top;
  const x2 = d.x2 - tile.left;
  const y2 = d.y2 - tile.top;
  if ((tile.x > 0 && x1 < 0) || (tile.y > 0 && y1 < 0)) return null;
  if ((tile.x + tile.width < lv.width && x2 > tile.width) || (tile.y + tile.height < lv.height && y2 > tile.height)) return null;
  const size = Math.max((x2 - x1) * lv.scaleX, (y2 - y1) * lv.scaleY);
  if (size < lv.minFace || size > lv.maxFace) return null;
  const mx = (v: number) => (v - tile.left + tile.x) * lv.scaleX;
  const my = (v: number) => (v - tile.top + tile.y) * lv.scaleY;
  return { ...d, x1: mx(d.x1), y1: my(d.y1), x2: mx(d.x2), y2: my(d.y2), keypoints: d.keypoints.map((v, k) => (k % 2 === 0 ? mx(v) : my(v))) };
}
