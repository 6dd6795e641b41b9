/**
 * Multi-scale face detection: which model inputs one frame becomes, and how a detection in one of
 * them maps back to source pixels.
 *
 * BlazeFace-back sees the whole frame letterboxed to 256 px, so in a 1280x720 frame a 40 px face
 * shrinks to 8 px, below what the model finds reliably. The network is fully convolutional, so its
 * `dense` method (scripts/blazeface/convert.py) runs over an image of any size (sides multiples of
 * {@link DENSE_STRIDE}) and returns the anchors of that whole grid: a frame scaled so that a
 * `minFaceSize` face is {@link MIN_MODEL_FACE} model px runs as ONE input, with no tiles, no
 * overlap paid twice and no tile edges cutting faces.
 *
 * - Level 0 scales the frame by `MIN_MODEL_FACE / minFaceSize` (never up), grown to fill its
 *   padding to multiples of 32 (black, right and bottom). Further levels are {@link LEVEL_RATIO}x
 *   coarser each; the last is the whole frame at the letterbox's scale (256 px long side), also
 *   dense, unless a level is already at most {@link LAST_LEVEL_SIZE} px long (then it is the last).
 * - Each level answers for a range of face sizes ({@link PyramidLevel.minFace} ..
 *   {@link PyramidLevel.maxFace}, source px); detections outside are dropped. A dense level hands
 *   faces to the next from where that one sees them at {@link HANDOFF_MODEL_FACE} px, and keeps
 *   none above {@link MAX_MODEL_FACE} px. So a coarse level's loose boxes around small faces (or
 *   around groups of them) do not survive as false positives.
 * - One input only, the 256x256 letterbox through `forward` (exactly MediaPipe's input), when it
 *   already shows a `minFaceSize` face at >= MIN_MODEL_FACE px, i.e. when
 *   `max(width, height) <= 256 * minFaceSize / MIN_MODEL_FACE` (361 px at the default 24).
 *
 * Measured with one dense level over 1280x720 frames made from real photos (the frames of
 * test/faces-pyramid.test.ts; recall of faces of 24 / 28 px): at 16 model px 0.65 / 0.93, at 17
 * 0.74 / 0.97, at 18 0.84 / 0.98; at 12 px 0.35 / 0.62, at 14 0.52 / 0.75 (the 256 px tiles this
 * replaces, at 16 px: 0.72 / 0.96). Faces from 20 up to ~110 model px: recall 1.00 with no false
 * positives; at 130-190 px duplicate boxes appear (~1 false positive per frame). So
 * MIN_MODEL_FACE = 17 and MAX_MODEL_FACE = 96. A 1280x720 frame at the default `minFaceSize` 24:
 * a 928x512 input (910x512 frame) and the whole frame at 256x144 (256x160 input): 7.9x the pixels
 * of the 256x256 whole-frame pass (the tiles: 11 inputs, 11x); at 40: 3.3x; at 48: 2.5x; at 80:
 * one 288x160 input.
 */
import type { RgbImage } from '../media/image';

/** Side of the square model input of `forward` (BlazeFace-back). */
export const LETTERBOX_SIZE = 256;
/** Sides of `dense` inputs are multiples of this (the coarsest anchor grid's stride). */
export const DENSE_STRIDE = 32;
/** Smallest face side, in model-input pixels, that BlazeFace-back finds reliably in a dense level (measured; see README). */
export const MIN_MODEL_FACE = 17;
/** Largest face side, in model px, that a dense level is trusted with (measured; see README). */
export const MAX_MODEL_FACE = 96;
/** A coarser level takes over a face from where it sees it at this many model px. */
export const HANDOFF_MODEL_FACE = 24;
/** A dense level whose longer side is at most this is the last (it needs no whole-frame level after it). */
export const LAST_LEVEL_SIZE = 384;
/** Scale ratio between successive dense levels (at most MAX_MODEL_FACE / HANDOFF_MODEL_FACE). */
export const LEVEL_RATIO = 4;

/** One pyramid level: the frame resized to `width` x `height`, placed into a model input. */
export interface PyramidLevel {
  /** The resized frame. */
  width: number;
  height: number;
  /** The model input: `dense` (sides multiples of 32, image at the top-left) or the 256x256 letterbox (`forward`, image centred). */
  dense: boolean;
  inputWidth: number;
  inputHeight: number;
  /** Where the resized frame lands in the input (black padding elsewhere). */
  left: number;
  top: number;
  /** Source pixels per level pixel along x and y. */
  scaleX: number;
  scaleY: number;
  /** The face sizes this level answers for, in source pixels (longer box side): detections outside are dropped. */
  minFace: number;
  maxFace: number;
}

/** The model inputs of one frame, finest first; the last is always the whole-frame letterbox. */
export interface PyramidPlan {
  levels: PyramidLevel[];
}

/** Tuning of {@link planPyramid} (defaults: the measured constants above). */
export interface PyramidTuning {
  minModelFace?: number;
  maxModelFace?: number;
  handoffModelFace?: number;
  levelRatio?: number;
}

const up = (v: number, m: number): number => Math.ceil(v / m) * m;

/** A dense level at scale `s`, grown to fill its padding to multiples of 32 (a free, slightly larger scale). */
function denseLevel(width: number, height: number, s: number, grow: boolean): Omit<PyramidLevel, 'minFace' | 'maxFace'> {
  let w = Math.max(1, Math.round(width * s));
  let h = Math.max(1, Math.round(height * s));
  if (grow) {
    const f = Math.min(up(w, DENSE_STRIDE) / width, up(h, DENSE_STRIDE) / height);
    w = Math.max(1, Math.min(up(w, DENSE_STRIDE), Math.round(width * f)));
    h = Math.max(1, Math.min(up(h, DENSE_STRIDE), Math.round(height * f)));
  }
  return { width: w, height: h, dense: true, inputWidth: up(w, DENSE_STRIDE), inputHeight: up(h, DENSE_STRIDE), left: 0, top: 0, scaleX: width / w, scaleY: height / h };
}

/**
 * The levels of a `width` x `height` frame for faces of at least `minFaceSize` source pixels
 * (Infinity: the whole-frame letterbox alone).
 */
export function planPyramid(width: number, height: number, minFaceSize: number, tuning: PyramidTuning = {}): PyramidPlan {
  const minModel = tuning.minModelFace ?? MIN_MODEL_FACE;
  const maxModel = tuning.maxModelFace ?? MAX_MODEL_FACE;
  const handoff = tuning.handoffModelFace ?? HANDOFF_MODEL_FACE;
  const ratio = tuning.levelRatio ?? LEVEL_RATIO;
  const long = Math.max(width, height);
  const whole = LETTERBOX_SIZE / long;
  // minFaceSize below minModel: level 0 at full size (faces that small are not findable anyway).
  const s0 = Math.min(1, minModel / Math.max(minFaceSize, 1e-9));
  if (long * s0 <= LETTERBOX_SIZE) {
    // The whole-frame letterbox already shows a minFaceSize face at minModel px: one input, as MediaPipe runs it.
    const w = Math.min(LETTERBOX_SIZE, Math.max(1, Math.round(width * whole)));
    const h = Math.min(LETTERBOX_SIZE, Math.max(1, Math.round(height * whole)));
    const level = {
      width: w, height: h, dense: false, inputWidth: LETTERBOX_SIZE, inputHeight: LETTERBOX_SIZE,
      left: Math.floor((LETTERBOX_SIZE - w) / 2), top: Math.floor((LETTERBOX_SIZE - h) / 2),
      scaleX: width / w, scaleY: height / h, minFace: 0, maxFace: Infinity,
    };
    return { levels: [level] };
  }
  const levels: PyramidLevel[] = [];
  let from = 0;
  for (let s = s0; long * s > LETTERBOX_SIZE; s /= ratio) {
    const lv = denseLevel(width, height, s, levels.length === 0);
    // A level this small sees faces as large as the frame, as the letterbox would: the last.
    if (Math.max(lv.width, lv.height) <= LAST_LEVEL_SIZE) {
      levels.push({ ...lv, minFace: from, maxFace: Infinity });
      return { levels };
    }
    const scale = Math.max(lv.scaleX, lv.scaleY);
    // Up to where the next level sees faces at `handoff` px, and no further than maxModel here.
    const next = (long * s) / ratio > LETTERBOX_SIZE ? scale * ratio : long / LETTERBOX_SIZE;
    const maxFace = Math.min(maxModel * scale, handoff * next);
    levels.push({ ...lv, minFace: from, maxFace });
    from = maxFace;
  }
  // The whole frame at the letterbox's scale, as one dense input (padded right and bottom).
  levels.push({ ...denseLevel(width, height, whole, false), minFace: from, maxFace: Infinity });
  return { levels };
}

/**
 * Write `image` into `out` at `offset` as one CHW float32 input of `inputWidth` x `inputHeight`
 * in [-1,1] (`v / 127.5 - 1`), placed at (`left`, `top`) with black padding (-1) around it, as
 * MediaPipe pads.
 */
export function writeInput(image: RgbImage, at: Pick<PyramidLevel, 'inputWidth' | 'inputHeight' | 'left' | 'top'>, out: Float32Array, offset: number): void {
  const W = at.inputWidth;
  const plane = W * at.inputHeight;
  out.fill(-1, offset, offset + 3 * plane);
  const src = image.data;
  for (let y = 0; y < image.height; y++) {
    let o = offset + (y + at.top) * W + at.left;
    let i = y * image.width * 3;
    for (let x = 0; x < image.width; x++, o++, i += 3) {
      out[o] = src[i]! / 127.5 - 1;
      out[o + plane] = src[i + 1]! / 127.5 - 1;
      out[o + 2 * plane] = src[i + 2]! / 127.5 - 1;
    }
  }
}

/** A box and keypoints in model-input pixels of one level's input. */
export interface LevelDetection {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  /** `[x0, y0, x1, y1, ...]`. */
  keypoints: number[];
}

/**
 * Map a detection in `lv`'s input back to source pixels, or null when its size is outside the
 * level's {@link PyramidLevel.minFace}..{@link PyramidLevel.maxFace}.
 */
export function levelToSource<T extends LevelDetection>(d: T, lv: PyramidLevel): T | null {
  const size = Math.max((d.x2 - d.x1) * lv.scaleX, (d.y2 - d.y1) * lv.scaleY);
  if (size < lv.minFace || size > lv.maxFace) return null;
  const mx = (v: number) => (v - lv.left) * lv.scaleX;
  const my = (v: number) => (v - lv.top) * lv.scaleY;
  return { ...d, x1: mx(d.x1), y1: my(d.y1), x2: mx(d.x2), y2: my(d.y2), keypoints: d.keypoints.map((v, k) => (k % 2 === 0 ? mx(v) : my(v))) };
}
