/**
 * Face detection with MediaPipe BlazeFace (back-camera / full-range 256x256 model, 896 anchors).
 *
 * The TorchScript model `models/blazeface/blazeface_back.pt` (made by
 * `scripts/blazeface/convert.sh`) takes `[B,3,256,256]` float32 RGB in [-1,1] and returns
 * `(scores [B,896], boxes [B,896,16])`, already decoded against the anchors: sigmoid scores and
 * `cx, cy, w, h, 6 x (x, y)` in [0,1] coordinates of the 256x256 input. This file does the rest:
 * letterboxing frames of any size into 256x256, batching, thresholding, MediaPipe's weighted NMS
 * and mapping results back to source-image pixels.
 *
 * Coordinates are continuous pixel coordinates: (0,0) is the top-left corner of the top-left
 * pixel, so pixel (i, j) covers [i, i+1) x [j, j+1) and its centre is (i+0.5, j+0.5).
 */
import * as path from 'node:path';
import type { NativeTensor, NativeValue } from '../../binding';
import { DfdetError, invalidParameter } from '../errors';
import { packageRoot } from '../native';
import { isTensor, Model, type ModelLoadOptions } from '../model';
import { resizeRgb } from '../media/resample';
import { checkRgbImage, scaleRgb, type RgbImage } from '../media/rgb';
import { DETECTOR_DEFAULTS } from '../options/detector';
import { weightedNms, type RawDetection } from './nms';
import { planTiles, tileToSource, writeTile } from './tiles';
import type { Face, FaceKeypoints } from './types';

/** Side of the square model input. */
export const BLAZEFACE_INPUT_SIZE = 256;
/** Number of anchors (16x16x2 + 8x8x6). */
export const BLAZEFACE_ANCHORS = 896;
/**
 * Path of the bundled TorchScript model, `<package>/models/blazeface/blazeface_back.pt`. Found
 * from sources and from the build alike (packageRoot is found by walking up to package.json).
 */
export const BLAZEFACE_MODEL_PATH = path.join(packageRoot, 'models', 'blazeface', 'blazeface_back.pt');

/**
 * Load the bundled BlazeFace model. Defaults to `optimize: true` (freeze + optimize_for_inference):
 * with libtorch 1.13 on CPU this roughly halves the time per frame (its oneDNN path fuses the
 * convolutions; the plain path sends the 1x1 convolutions of small batches to a slow im2col
 * kernel) at ~0.3 s extra load time; outputs stay within 1e-5 of the plain module.
 *
 * @param opts - Model.load options; `optimize` defaults to true here.
 */
export function loadFaceDetector(opts: ModelLoadOptions = {}): Promise<Model> {
  return Model.load(BLAZEFACE_MODEL_PATH, { ...opts, optimize: opts.optimize ?? true });
}

/** Anything that runs a TorchScript method, such as `Model` from lib/model.ts. */
export interface TensorRunner {
  /** Run `method` on `inputs`; BlazeFace's `forward` returns `[scores, boxes]`. */
  run(method: string, inputs: NativeTensor[]): Promise<NativeValue>;
}

/** Options of {@link detectFaces}. */
export interface DetectFacesOptions {
  /** Minimum detector confidence (default 0.5, MediaPipe's value for this model). */
  scoreThreshold?: number;
  /** IoU above which detections are merged by weighted NMS (default 0.3, as MediaPipe). */
  iouThreshold?: number;
  /**
   * Smallest face wanted, in source pixels (default 24): faces whose box's longer side is below it
   * are dropped, and it decides whether tiling runs (see lib/faces/tiles.ts): frames whose whole-frame
   * letterbox already shows such a face at >= 12 model px run as one input.
   */
  minFaceSize?: number;
  /** Keep at most this many faces per image, highest score first (default: all). */
  maxFaces?: number;
  /**
   * Search frames in tiles as well when `minFaceSize` asks for it (default true); false runs the
   * whole-frame pass alone (one input per image, as before tiling existed).
   */
  tiling?: boolean;
  /**
   * Model inputs (whole frames and tiles) per model run (default 4); an image's inputs stay in one
   * run unless they alone are more. Larger batches use more memory, not less time per input: with
   * libtorch 1.13 on one CPU thread, the fastest per input (best of 8) were runs of 1-4 (11-12 ms),
   * runs of 8-11 took 16-18 ms, runs of 16 ~2x longer (activations outgrow the caches).
   */
  batchSize?: number;
}

/**
 * Faces whose box is below this fraction of `minFaceSize` are dropped: at small sizes BlazeFace draws
 * the box of a face `w` px wide ~0.85-1.0 w wide (measured in test/faces-tiles.test.ts), so a face of
 * `minFaceSize` is kept.
 */
const MIN_BOX_RATIO = 0.75;

const KEYPOINT_NAMES: (keyof FaceKeypoints)[] = ['rightEye', 'leftEye', 'nose', 'mouth', 'rightEar', 'leftEar'];

/** Where an image lands inside the 256x256 letterbox. */
export interface Letterbox {
  /** Resized width and height inside the box. */
  width: number;
  height: number;
  /** Left and top padding. */
  left: number;
  top: number;
  /** Source pixels per letterbox pixel along x and y. */
  scaleX: number;
  scaleY: number;
}

/** Geometry of the aspect-preserving, centred letterbox of a `width` x `height` image. */
export function letterboxGeometry(width: number, height: number, size = BLAZEFACE_INPUT_SIZE): Letterbox {
  const s = size / Math.max(width, height);
  const w = Math.min(size, Math.max(1, Math.round(width * s)));
  const h = Math.min(size, Math.max(1, Math.round(height * s)));
  return { width: w, height: h, left: Math.floor((size - w) / 2), top: Math.floor((size - h) / 2), scaleX: width / w, scaleY: height / h };
}

/**
 * Resize `image` to its letterbox size `box.width` x `box.height` with {@link scaleRgb} (libvips,
 * off the event loop). Returns `image` itself when no resize is needed.
 */
export function letterboxResize(image: RgbImage, box: Pick<Letterbox, 'width' | 'height'> = letterboxGeometry(image.width, image.height)): Promise<RgbImage> {
  return scaleRgb(image, box.width, box.height);
}

/**
 * Write `image`, letterboxed to 256x256, into `out` at `offset` as CHW float32 in [-1,1]
 * (`v / 127.5 - 1`), black padding (RGB 0, i.e. -1) as in MediaPipe. An image already of the
 * letterbox size (from {@link letterboxResize}, as detectFaces does) is copied as is; any other
 * size is resized here synchronously with the Pillow-exact bilinear resize of lib/media/resample.
 */
export function letterboxInput(image: RgbImage, out: Float32Array, offset: number, box = letterboxGeometry(image.width, image.height)): void {
  const small = box.width === image.width && box.height === image.height ? image : resizeRgb(image, box.width, box.height, 'bilinear');
  writeTile(small, { x: 0, y: 0, width: box.width, height: box.height, left: box.left, top: box.top }, out, offset);
}

/** An option that must be a number in [lo, hi]; `dflt` when undefined. */
function numberOption(v: unknown, name: string, lo: number, hi: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !(v >= lo && v <= hi)) invalidParameter(name, `a number between ${lo} and ${hi}`, v);
  return v;
}

/** An option that must be an integer >= lo; `dflt` when undefined. */
function integerOption(v: unknown, name: string, lo: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo) invalidParameter(name, `an integer >= ${lo}`, v);
  return v;
}

/** Check and unpack the model's `(scores, boxes)` output for a batch of `b`. */
function unpack(value: NativeValue, b: number): { scores: Float32Array; boxes: Float32Array } {
  const pair = Array.isArray(value) ? value : undefined;
  const scores = pair?.[0];
  const boxes = pair?.[1];
  const shapeOk = (t: NativeTensor, want: number[]) => t.shape.length === want.length && t.shape.every((d, i) => d === want[i]);
  if (
    !isTensor(scores) || !isTensor(boxes) || !(scores.data instanceof Float32Array) || !(boxes.data instanceof Float32Array) ||
    !shapeOk(scores, [b, BLAZEFACE_ANCHORS]) || !shapeOk(boxes, [b, BLAZEFACE_ANCHORS, 16])
  ) {
    // The file loaded fine; what it returned is wrong: a run-time fault of this model, not a load failure.
    throw new DfdetError('RUNTIME_ERROR', `Face detector model returned an unexpected value; expected float32 (scores [${b},896], boxes [${b},896,16])`);
  }
  return { scores: scores.data, boxes: boxes.data };
}

/**
 * Detect faces in each image.
 *
 * Each image becomes the model inputs of {@link planTiles}: its whole frame letterboxed to
 * 256x256 (aspect kept, centred, black padding) and, when the whole frame would show a
 * `minFaceSize` face below 12 model px (images longer than 512 px at the default 24), overlapping
 * 256 px tiles of the frame scaled so that such a face is 12 px (see lib/faces/tiles.ts). The
 * inputs of several images run through the model together, at most `batchSize` per run, never
 * splitting an image's inputs unless they alone exceed `batchSize`. Then, per image: anchors
 * scoring at least `scoreThreshold` from every input, mapped back to source pixels (detections cut
 * by a tile's inner edge dropped), MediaPipe weighted NMS at `iouThreshold` over them all, the
 * `minFaceSize` filter and the `maxFaces` cap.
 *
 * @param model - The loaded BlazeFace TorchScript model (`Model.load(BLAZEFACE_MODEL_PATH)`), or
 *   anything with the same `run`.
 * @param images - 8-bit RGB images of any size.
 * @param opts - See {@link DetectFacesOptions}.
 * @returns For each image, its faces, highest score first (empty when none).
 * @throws DfdetError `BAD_INPUT` for malformed images or options; errors of `model.run` pass through.
 */
export async function detectFaces(model: TensorRunner, images: readonly RgbImage[], opts: DetectFacesOptions = {}): Promise<Face[][]> {
  if (!model || typeof model.run !== 'function') invalidParameter('model', 'an object with a run(method, inputs) method', model);
  if (!Array.isArray(images)) invalidParameter('images', 'an array of RgbImage', images);
  if (!opts || typeof opts !== 'object') invalidParameter('opts', 'an options object', opts);
  images.forEach((im, i) => checkRgbImage(im, `images[${i}]`));
  const scoreThreshold = numberOption(opts.scoreThreshold, 'scoreThreshold', 0, 1, 0.5);
  const iouThreshold = numberOption(opts.iouThreshold, 'iouThreshold', 0, 1, 0.3);
  const minFaceSize = numberOption(opts.minFaceSize, 'minFaceSize', 0, Number.MAX_VALUE, DETECTOR_DEFAULTS.minFaceSize);
  const maxFaces = opts.maxFaces === undefined ? Infinity : integerOption(opts.maxFaces, 'maxFaces', 1, 1);
  const batchSize = integerOption(opts.batchSize, 'batchSize', 1, 4);
  if (opts.tiling !== undefined && typeof opts.tiling !== 'boolean') invalidParameter('tiling', 'a boolean', opts.tiling);

  const S = BLAZEFACE_INPUT_SIZE;
  const per = 3 * S * S;
  const plans = images.map((im) => planTiles(im.width, im.height, opts.tiling === false ? Infinity : minFaceSize));
  const inputs = plans.flatMap((p, frame) => p.tiles.map((tile) => ({ frame, tile })));
  const cands: RawDetection[][] = images.map(() => []);
  // Each frame's pyramid levels, resized when its first input is written, dropped after its last.
  const levels = new Map<number, RgbImage[]>();
  for (let pos = 0; pos < inputs.length; ) {
    let end = Math.min(inputs.length, pos + batchSize);
    // End at a frame boundary unless this frame alone is larger than a batch.
    if (end < inputs.length && inputs[end]!.frame === inputs[end - 1]!.frame) {
      let b = end;
      while (b > pos && inputs[b - 1]!.frame === inputs[end]!.frame) b--;
      if (b > pos) end = b;
    }
    const chunk = inputs.slice(pos, end);
    const fresh = [...new Set(chunk.map((e) => e.frame))].filter((f) => !levels.has(f));
    const resized = await Promise.all(fresh.map((f) => Promise.all(plans[f]!.levels.map((lv) => letterboxResize(images[f]!, lv)))));
    fresh.forEach((f, i) => levels.set(f, resized[i]!));
    const input = new Float32Array(chunk.length * per);
    chunk.forEach((e, i) => writeTile(levels.get(e.frame)![e.tile.level]!, e.tile, input, i * per));
    const out = unpack(await model.run('forward', [{ data: input, shape: [chunk.length, 3, S, S], dtype: 'float32' }]), chunk.length);
    chunk.forEach((e, i) => {
      const lv = plans[e.frame]!.levels[e.tile.level]!;
      for (const d of anchorsOf(out.scores, out.boxes, i, scoreThreshold)) {
        const m = tileToSource(d, e.tile, lv);
        if (m) cands[e.frame]!.push(m);
      }
    });
    for (const f of levels.keys()) if (f < inputs[end - 1]!.frame) levels.delete(f);
    pos = end;
  }
  return cands.map((c) => facesOf(c, iouThreshold, minFaceSize, maxFaces));
}

/** The anchors of input `b` of a batch scoring at least `scoreThreshold`, in model-input pixels. */
function anchorsOf(scores: Float32Array, boxes: Float32Array, b: number, scoreThreshold: number): RawDetection[] {
  const S = BLAZEFACE_INPUT_SIZE;
  const cands: RawDetection[] = [];
  for (let a = 0; a < BLAZEFACE_ANCHORS; a++) {
    const score = scores[b * BLAZEFACE_ANCHORS + a]!;
    if (!(score >= scoreThreshold)) continue;
    const o = (b * BLAZEFACE_ANCHORS + a) * 16;
    const cx = boxes[o]! * S;
    const cy = boxes[o + 1]! * S;
    const w = boxes[o + 2]! * S;
    const h = boxes[o + 3]! * S;
    if (!(w > 0 && h > 0)) continue;
    const keypoints: number[] = [];
    for (let k = 0; k < 12; k++) keypoints.push(boxes[o + 4 + k]! * S);
    cands.push({ score, x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2, keypoints });
  }
  return cands;
}

/** One image's faces: its candidates (source pixels, from all its inputs) merged by weighted NMS, filtered and capped. */
function facesOf(cands: RawDetection[], iouThreshold: number, minFaceSize: number, maxFaces: number): Face[] {
  const faces: Face[] = [];
  for (const d of weightedNms(cands, iouThreshold)) {
    const box = { x: d.x1, y: d.y1, width: d.x2 - d.x1, height: d.y2 - d.y1 };
    if (Math.max(box.width, box.height) < MIN_BOX_RATIO * minFaceSize) continue;
    const kp = {} as FaceKeypoints;
    KEYPOINT_NAMES.forEach((name, k) => {
      kp[name] = [d.keypoints[2 * k]!, d.keypoints[2 * k + 1]!];
    });
    faces.push({ box, score: d.score, keypoints: kp });
    if (faces.length >= maxFaces) break;
  }
  return faces;
}
