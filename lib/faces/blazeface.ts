/**
 * Face detection with MediaPipe BlazeFace (back-camera / full-range 256x256 model, 896 anchors).
 *
 * The TorchScript model `models/blazeface/blazeface_back.pt` (made by
 * `scripts/blazeface/convert.sh`) has `forward`: `[B,3,256,256]` float32 RGB in [-1,1] to
 * `(scores [B,896], boxes [B,896,16])`, already decoded against the anchors: sigmoid scores and
 * `cx, cy, w, h, 6 x (x, y)` in [0,1] coordinates of the 256x256 input; and `dense`: the same
 * network over `[B,3,H,W]` (multiples of 32), boxes in input pixels. This file does the rest:
 * the inputs of lib/faces/pyramid.ts (letterbox or dense levels), batching, thresholding,
 * MediaPipe's weighted NMS and mapping results back to source-image pixels.
 *
 * Coordinates are continuous pixel coordinates: (0,0) is the top-left corner of the top-left
 * pixel, so pixel (i, j) covers [i, i+1) x [j, j+1) and its centre is (i+0.5, j+0.5).
 */
import * as path from 'node:path';
import type { NativeTensor, NativeValue } from '../../binding';
import { DfdetError, invalidParameter } from '../errors';
import { packageRoot } from '../native';
import { chooseDType, isTensor, Model, type ModelDType, type ModelLoadOptions } from '../model';
import { resizeRgb } from '../media/resample';
import { checkRgbImage, scaleRgb, type RgbImage } from '../media/rgb';
import { DETECTOR_DEFAULTS } from '../options/detector';
import { weightedNms, type RawDetection } from './nms';
import { levelToSource, planPyramid, writeInput, type PyramidPlan } from './pyramid';
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
 * The precision BlazeFace runs in when none is asked for: bfloat16 where `dtype: 'auto'` picks it
 * (CPUs with AVX512-BF16 or AMX, CUDA devices of compute capability >= 8.0; `DFDET_DTYPE`
 * overrides 'auto'), float32 elsewhere. Measured on the frames of test/faces-pyramid.test.ts
 * (2-core AVX512-BF16 CPU): recall and false positives per face size identical to float32, boxes
 * and keypoints within 0.3% of the face width on average (2.9% at most, at 24 px faces), scores
 * within 0.013, and ~25-40% less time per frame. float16 (older CUDA devices) is not measured, so
 * it stays float32 there.
 */
export function faceDetectorDType(device = 'cpu'): ModelDType {
  return chooseDType('auto', device) === 'bfloat16' ? 'bfloat16' : 'float32';
}

/**
 * Load the bundled BlazeFace model. Defaults to `optimize: true` (freeze + optimize_for_inference):
 * with libtorch 1.13 on CPU this roughly halves the time per frame (its oneDNN path fuses the
 * convolutions; the plain path sends the 1x1 convolutions of small batches to a slow im2col
 * kernel) at ~0.3 s extra load time; outputs stay within 1e-5 of the plain module. `dtype`
 * defaults to {@link faceDetectorDType} (bfloat16 where the machine runs it natively).
 *
 * @param opts - Model.load options; `optimize` defaults to true here.
 */
export function loadFaceDetector(opts: ModelLoadOptions = {}): Promise<Model> {
  return Model.load(BLAZEFACE_MODEL_PATH, { ...opts, optimize: opts.optimize ?? true, dtype: opts.dtype ?? faceDetectorDType(opts.device) });
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
   * are dropped, and it decides the scales searched (see lib/faces/pyramid.ts): frames whose
   * whole-frame letterbox already shows such a face at >= 17 model px run as one 256x256 input;
   * larger frames run whole through the model's `dense` method at the scale where it is 17 px,
   * plus coarser levels. The cost grows with the square of `1 / minFaceSize`.
   */
  minFaceSize?: number;
  /** Keep at most this many faces per image, highest score first (default: all). */
  maxFaces?: number;
  /**
   * Search frames at the finer scales `minFaceSize` asks for (default true; the name is from when
   * this meant tiles); false runs the whole-frame letterbox alone (one 256x256 input per image).
   */
  tiling?: boolean;
  /**
   * Images per model run (default 4): images are taken this many at a time, and their inputs of the
   * same size run together, at most {@link BATCH_PIXELS} input pixels per run (a larger input runs
   * alone). With libtorch 1.13 on one CPU thread in float32 a run of four 256x256 inputs costs the
   * same per input as one, while four 928x512 inputs in one run took ~2.3x longer per input than
   * one at a time (activations outgrow the caches).
   */
  batchSize?: number;
}

/**
 * Faces whose box is below this fraction of `minFaceSize` are dropped: at small sizes BlazeFace draws
 * the box of a face `w` px wide ~0.85-1.0 w wide (measured on tiles of the frames of test/faces-pyramid.test.ts), so a face of
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
  writeInput(small, { inputWidth: BLAZEFACE_INPUT_SIZE, inputHeight: BLAZEFACE_INPUT_SIZE, left: box.left, top: box.top }, out, offset);
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

/** Check and unpack a `(scores [b,n], boxes [b,n,16])` output. */
function unpack(value: NativeValue, b: number, n: number, method: string): { scores: Float32Array; boxes: Float32Array } {
  const pair = Array.isArray(value) ? value : undefined;
  const scores = pair?.[0];
  const boxes = pair?.[1];
  const shapeOk = (t: NativeTensor, want: number[]) => t.shape.length === want.length && t.shape.every((d, i) => d === want[i]);
  if (
    !isTensor(scores) || !isTensor(boxes) || !(scores.data instanceof Float32Array) || !(boxes.data instanceof Float32Array) ||
    !shapeOk(scores, [b, n]) || !shapeOk(boxes, [b, n, 16])
  ) {
    // The file loaded fine; what it returned is wrong: a run-time fault of this model, not a load failure.
    throw new DfdetError('RUNTIME_ERROR', `Face detector model returned an unexpected value from ${method}; expected float32 (scores [${b},${n}], boxes [${b},${n},16])`);
  }
  return { scores: scores.data, boxes: boxes.data };
}

/** Input pixels per model run at most (four 256x256 inputs), unless one input alone is larger. */
export const BATCH_PIXELS = 4 * 256 * 256;

/** Anchors of a `dense` input of `w` x `h` (sides multiples of 32): 2 per 16 px cell, 6 per 32 px cell. */
export function denseAnchors(w: number, h: number): number {
  return (w / 16) * (h / 16) * 2 + (w / 32) * (h / 32) * 6;
}

/**
 * Detect faces in each image.
 *
 * Each image becomes the levels of {@link planPyramid}: its whole frame letterboxed to 256x256
 * (aspect kept, centred, black padding; the model's `forward`) and, when that would show a
 * `minFaceSize` face below `MIN_MODEL_FACE` (17) model px (images longer than 361 px at the
 * default 24), the frame scaled so that such a face is 17 px, run whole through the model's
 * `dense` method (coarser levels, 4x apart, for frames large enough to need them; see
 * lib/faces/pyramid.ts). Images are
 * taken `batchSize` at a time; their inputs of the same size (the same level of same-size frames,
 * e.g. a video's) run through the model together. Then, per image: anchors scoring at least
 * `scoreThreshold` from every level, each level keeping the face sizes it answers for, mapped back
 * to source pixels, MediaPipe weighted NMS at `iouThreshold` over them all, the `minFaceSize`
 * filter and the `maxFaces` cap. Pass all frames of a video in one call: same-size frames share
 * model runs.
 *
 * @param model - The loaded BlazeFace TorchScript model (`loadFaceDetector()`), or anything with
 *   the same `run` (methods `forward` and `dense`).
 * @param images - 8-bit RGB images of any size.
 * @param opts - See {@link DetectFacesOptions}.
 * @returns For each image, its faces, highest score first (empty when none).
 * @throws DfdetError `BAD_INPUT` for malformed images or options; errors of `model.run` pass through.
 */
export async function detectFaces(model: TensorRunner, images: readonly RgbImage[], opts: DetectFacesOptions = {}): Promise<Face[][]> {
  const o = checkDetectArgs(model, images, opts);
  return facesByPlan(model, images, pyramidPlans(images, o), o);
}

/**
 * Each image's pyramid (lib/faces/pyramid.ts) for the checked options.
 * @internal Exported for lib/faces/main-face.ts.
 */
export function pyramidPlans(images: readonly RgbImage[], o: Pick<ResolvedDetectFacesOptions, 'tiling' | 'minFaceSize'>): PyramidPlan[] {
  return images.map((im) => planPyramid(im.width, im.height, o.tiling ? o.minFaceSize : Infinity));
}

/**
 * Each image's faces from the levels of its plan.
 * @internal Exported for lib/faces/main-face.ts.
 */
export async function facesByPlan(model: TensorRunner, images: readonly RgbImage[], plans: readonly PyramidPlan[], o: ResolvedDetectFacesOptions): Promise<Face[][]> {
  const cands = await levelCandidates(model, images, plans, o.batchSize, o.scoreThreshold);
  return cands.map((c) => facesOf(c, o));
}

/** {@link DetectFacesOptions} with their defaults, checked. */
export interface ResolvedDetectFacesOptions {
  scoreThreshold: number;
  iouThreshold: number;
  minFaceSize: number;
  maxFaces: number;
  batchSize: number;
  tiling: boolean;
}

/**
 * Checks the arguments of {@link detectFaces} and fills in the defaults.
 * @throws DfdetError `BAD_INPUT` for a model without `run`, malformed images or options.
 */
export function checkDetectArgs(model: TensorRunner, images: readonly RgbImage[], opts: DetectFacesOptions): ResolvedDetectFacesOptions {
  if (!model || typeof model.run !== 'function') invalidParameter('model', 'an object with a run(method, inputs) method', model);
  if (!Array.isArray(images)) invalidParameter('images', 'an array of RgbImage', images);
  if (!opts || typeof opts !== 'object') invalidParameter('opts', 'an options object', opts);
  images.forEach((im, i) => checkRgbImage(im, `images[${i}]`));
  if (opts.tiling !== undefined && typeof opts.tiling !== 'boolean') invalidParameter('tiling', 'a boolean', opts.tiling);
  return {
    scoreThreshold: numberOption(opts.scoreThreshold, 'scoreThreshold', 0, 1, 0.5),
    iouThreshold: numberOption(opts.iouThreshold, 'iouThreshold', 0, 1, 0.3),
    minFaceSize: numberOption(opts.minFaceSize, 'minFaceSize', 0, Number.MAX_VALUE, DETECTOR_DEFAULTS.minFaceSize),
    maxFaces: opts.maxFaces === undefined ? Infinity : integerOption(opts.maxFaces, 'maxFaces', 1, 1),
    batchSize: integerOption(opts.batchSize, 'batchSize', 1, 4),
    tiling: opts.tiling ?? true,
  };
}

/**
 * Run every level of `plans` (one per image) through `model`, `batchSize` images at a time, inputs
 * of the same method and size in one run; returns each image's candidates in source pixels.
 * @internal Exported for the measurements of test/faces-pyramid.test.ts and the bench.
 */
export async function levelCandidates(model: TensorRunner, images: readonly RgbImage[], plans: readonly PyramidPlan[], batchSize: number, scoreThreshold: number): Promise<RawDetection[][]> {
  const cands: RawDetection[][] = images.map(() => []);
  for (let first = 0; first < images.length; first += batchSize) {
    const frames = Array.from({ length: Math.min(batchSize, images.length - first) }, (_, i) => first + i);
    const resized = await Promise.all(frames.map((f) => Promise.all(plans[f]!.levels.map((lv) => letterboxResize(images[f]!, lv)))));
    // Same input shape and method: one run.
    const groups = new Map<string, { frame: number; level: number; image: RgbImage }[]>();
    frames.forEach((f, i) =>
      plans[f]!.levels.forEach((lv, l) => {
        const key = `${lv.dense ? 'dense' : 'forward'} ${lv.inputWidth}x${lv.inputHeight}`;
        const g = groups.get(key) ?? [];
        g.push({ frame: f, level: l, image: resized[i]![l]! });
        groups.set(key, g);
      }),
    );
    const runs = [...groups.values()].flatMap((g) => {
      const lv = plans[g[0]!.frame]!.levels[g[0]!.level]!;
      const per = Math.max(1, Math.floor(BATCH_PIXELS / (lv.inputWidth * lv.inputHeight)));
      return Array.from({ length: Math.ceil(g.length / per) }, (_, i) => g.slice(i * per, (i + 1) * per));
    });
    for (const group of runs) {
      const lv0 = plans[group[0]!.frame]!.levels[group[0]!.level]!;
      const W = lv0.inputWidth;
      const H = lv0.inputHeight;
      const per = 3 * W * H;
      const input = new Float32Array(group.length * per);
      group.forEach((e, i) => writeInput(e.image, plans[e.frame]!.levels[e.level]!, input, i * per));
      const method = lv0.dense ? 'dense' : 'forward';
      const n = lv0.dense ? denseAnchors(W, H) : BLAZEFACE_ANCHORS;
      const x = [{ data: input, shape: [group.length, 3, H, W], dtype: 'float32' as const }];
      const out = unpack(await model.run(method, x), group.length, n, method);
      // forward's boxes are normalised to the 256 input, dense's are in input pixels.
      const unit = lv0.dense ? 1 : BLAZEFACE_INPUT_SIZE;
      group.forEach((e, i) => {
        const lv = plans[e.frame]!.levels[e.level]!;
        for (const d of anchorsOf(out.scores, out.boxes, i, n, unit, scoreThreshold)) {
          const m = levelToSource(d, lv);
          if (m) cands[e.frame]!.push(m);
        }
      });
    }
  }
  return cands;
}

/** The anchors of input `b` of a batch (`n` anchors each) scoring at least `scoreThreshold`, in model-input pixels (boxes x `unit`). */
function anchorsOf(scores: Float32Array, boxes: Float32Array, b: number, n: number, unit: number, scoreThreshold: number): RawDetection[] {
  const cands: RawDetection[] = [];
  for (let a = 0; a < n; a++) {
    const score = scores[b * n + a]!;
    if (!(score >= scoreThreshold)) continue;
    const o = (b * n + a) * 16;
    const cx = boxes[o]! * unit;
    const cy = boxes[o + 1]! * unit;
    const w = boxes[o + 2]! * unit;
    const h = boxes[o + 3]! * unit;
    if (!(w > 0 && h > 0)) continue;
    const keypoints: number[] = [];
    for (let k = 0; k < 12; k++) keypoints.push(boxes[o + 4 + k]! * unit);
    cands.push({ score, x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2, keypoints });
  }
  return cands;
}

/**
 * One image's faces: its candidates (source pixels, from all its inputs) merged by weighted NMS, filtered and capped.
 * @internal Exported for lib/faces/main-face.ts.
 */
export function facesOf(cands: readonly RawDetection[], o: Pick<ResolvedDetectFacesOptions, 'iouThreshold' | 'minFaceSize' | 'maxFaces'>): Face[] {
  const { iouThreshold, minFaceSize, maxFaces } = o;
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
