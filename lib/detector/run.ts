/**
 * THE pipeline, shared by detect, embed and (for training crops) {@link prepareFaces}:
 *
 *   input → decode (sharp / ffmpeg) → faces (BlazeFace in the addon, tracked across frames)
 *         → crop (DeepfakeBench alignment, x1.3, 256 px) → CLIP transform (224 px, bicubic)
 *         → dynamic batches → CLIP ViT detector (forward: logits; features: embeddings)
 */
import type { Batcher } from '../batcher';
import type { DetectorMetadata } from '../detector-model/metadata';
import { DfdetError } from '../errors';
import { cropMatrix, warpAffine } from '../faces/align';
import { detectFaces, pyramidPlans, type TensorRunner } from '../faces/blazeface';
import { detectMainFaceFrames } from '../faces/main-face';
import type { Face } from '../faces/types';
import { trackFaces, type FaceTrack } from '../faces/track';
import type { MediaSource } from '../inputs';
import { decodeImage, type RgbImage } from '../media/image';
import { clipTransform, type ClipTensor } from '../media/transform';
import { sampleFrames, type SamplingStrategy } from '../media/video';
import type { Model } from '../model';
import { type CropSpec, preprocessBatch } from '../preprocess/native';
import type { ResolvedDetectorOptions } from '../options/detector';
import type { FrameMeta } from './aggregate';
import { FaceModelPool } from './face-pool';
import type { FaceGeometry } from './types';

/**
 * What the pipeline runs with: the face detector (none with `faces: 'none'`; a Model, or the
 * detector's pool of them), options, model input.
 */
export interface PipelineContext {
  faceModel: TensorRunner | FaceModelPool | undefined;
  options: Pick<
    ResolvedDetectorOptions,
    'crop' | 'cropScale' | 'cropSize' | 'maxFrames' | 'videoTimeoutMs' | 'maxPixels' | 'maxFrameSide' | 'maxVideoBytes' | 'faceThreshold' | 'minFaceSize' | 'batchSize'
  >;
  /** The detector model's input (size, mean, std, interpolation), from its metadata. */
  input: DetectorMetadata['input'];
  /**
   * Where crops are cut, resized and normalised: 'native' (batched libtorch ops on `device`, off
   * the event loop; the default) or 'js' (cropFace + clipTransform, the reference it matches).
   */
  preprocess?: 'native' | 'js';
  /** The model's device, for native preprocessing. Default 'cpu'. */
  device?: string;
  /** Aborts when dispose() starts: videos still waiting for an ffmpeg slot are cancelled (DISPOSED). */
  disposing?: AbortSignal;
}

/** Per-call settings the preprocessing depends on. */
export interface PrepareSettings {
  frames: SamplingStrategy;
  /** Videos: crop every face track, not only the main one. */
  allFaces: boolean;
}

/** One face to score: where it is (in source pixels) and in which decoded frame (0 for images). */
export interface PreparedFace {
  face: FaceGeometry;
  frame: number;
}

/** The faces of one input, ready for the model. */
export interface PreparedFaces {
  kind: 'image' | 'video';
  faces: PreparedFace[];
  /**
   * The CLIP input of every face, `[faces.length, 3, size, size]` float32 NCHW: row i (the
   * `3 * size * size` values from `i * 3 * size * size`) belongs to `faces[i]`.
   */
  tensor: ClipTensor;
  /** One per decoded frame (images: one). */
  frames: FrameMeta[];
  /** Videos with face detection: the face tracks and the main one's id (-1: none). */
  tracks: FaceTrack[];
  mainId: number;
  /** Videos: decoding stopped early; the faces come from the frames decoded. */
  partial: boolean;
  /**
   * Face detection's pyramid levels (lib/faces/pyramid.ts) per frame: run, and skipped because they
   * could not change a video's main face (lib/faces/main-face.ts). Zero with `faces: 'none'`.
   */
  faceLevels: { run: number; skipped: number };
  timings: { decodeMs: number; facesMs: number; transformMs: number };
}

/** {@link prepareFaces} followed by the model: one output row per face. */
export interface PipelineOutput {
  prepared: PreparedFaces;
  rows: Float32Array[];
  timings: { decodeMs: number; facesMs: number; scoreMs: number };
}

function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new DfdetError('ABORTED', 'aborted', { cause: signal.reason });
}

/** A detection as reported: geometry scaled by `scale` from the decoded frame to the source. */
function faceGeometry(f: Face, scale: number, track?: number): FaceGeometry {
  const p = (q: [number, number]): [number, number] => [q[0] * scale, q[1] * scale];
  const k = f.keypoints;
  const box = scale === 1 ? f.box : { x: f.box.x * scale, y: f.box.y * scale, width: f.box.width * scale, height: f.box.height * scale };
  const keypoints =
    scale === 1 ? k : { rightEye: p(k.rightEye), leftEye: p(k.leftEye), nose: p(k.nose), mouth: p(k.mouth), rightEar: p(k.rightEar), leftEar: p(k.leftEar) };
  const g: FaceGeometry = { box, score: f.score, keypoints };
  if (track !== undefined) g.track = track;
  return g;
}

/**
 * Decodes one input, finds its faces (tracks them in videos, keeping the main track unless
 * `allFaces`), crops them and builds the model's input tensor: everything before the model. The
 * training data preparation reuses it, so training crops are exactly the crops that are scored.
 * @throws DfdetError DECODE_FAILED, TIMEOUT, ABORTED, ...
 */
export async function prepareFaces(source: MediaSource, ctx: PipelineContext, settings: PrepareSettings, signal?: AbortSignal): Promise<PreparedFaces> {
  const o = ctx.options;
  // Not started yet: an aborted call decodes nothing.
  throwIfAborted(signal);
  // A video stream is spooled by the decoder (sniffed, not read, by the input stage).
  const input = source.path ?? source.bytes ?? source.stream!;
  // The pool serves inputs in the order they started (see face-pool.ts).
  const faceModel = ctx.faceModel instanceof FaceModelPool ? ctx.faceModel.lane() : ctx.faceModel;
  const t0 = performance.now();
  let images: RgbImage[];
  let frames: FrameMeta[];
  let partial = false;
  let toSource = 1;
  if (source.kind === 'video') {
    const v = await sampleFrames(input, {
      strategy: settings.frames,
      maxFrames: o.maxFrames,
      timeoutMs: o.videoTimeoutMs,
      signal,
      maxPixels: o.maxPixels,
      maxFrameSide: o.maxFrameSide,
      maxTotalBytes: o.maxVideoBytes,
      name: source.name,
      cancelQueued: ctx.disposing,
    });
    images = v.frames.map((f) => f.image);
    frames = v.frames.map((f) => ({ index: f.index, timestampSec: f.timestampSec }));
    partial = v.partial;
    // Frames may arrive scaled down (maxFrameSide): results report geometry in source pixels.
    toSource = v.frames[0]?.scale ?? 1;
  } else {
    images = [await decodeImage(input, { maxPixels: o.maxPixels, name: source.name, signal })];
    frames = [{ index: 0, timestampSec: 0 }];
  }
  throwIfAborted(signal);
  const t1 = performance.now();

  let tracks: FaceTrack[] = [];
  let faceLevels = { run: 0, skipped: 0 };
  let mainId = -1;
  const specs: CropSpec[] = [];
  const faces: PreparedFace[] = [];
  const cropOpts = { mode: o.crop, scale: o.cropScale, size: o.cropSize };
  const crop = (frame: number, f: Face, track?: number): void => {
    specs.push({ image: frame, matrix: cropMatrix(f, cropOpts) });
    faces.push({ face: faceGeometry(f, toSource, track), frame });
  };
  if (faceModel) {
    // minFaceSize is in source pixels; frames may arrive scaled down by toSource. It also decides
    // whether frames are also searched at a finer pyramid level (lib/faces/pyramid.ts). BlazeFace batches its own
    // inputs (the detector's batchSize is the CLIP model's).
    const faceOpts = { scoreThreshold: o.faceThreshold, minFaceSize: o.minFaceSize / toSource };
    // A video scored by its main face alone skips the finer levels when they cannot change it (main-face.ts).
    let found: Face[][];
    if (source.kind === 'video' && !settings.allFaces) {
      const r = await detectMainFaceFrames(faceModel, images, faceOpts);
      found = r.faces;
      faceLevels = { run: r.levelsRun, skipped: r.levelsSkipped };
    } else {
      found = await detectFaces(faceModel, images, faceOpts);
      faceLevels = { run: pyramidPlans(images.slice(0, 1), { tiling: true, minFaceSize: faceOpts.minFaceSize })[0]?.levels.length ?? 0, skipped: 0 };
    }
    throwIfAborted(signal);
    if (source.kind === 'video') {
      tracks = trackFaces(found);
      // Tracks come sorted by score: the first is mainTrack's (tracking again would give the same).
      mainId = tracks[0]?.id ?? -1;
      for (const t of tracks) if (settings.allFaces || t.id === mainId) for (const p of t.points) crop(p.frame, p.face, t.id);
    } else {
      for (const f of found[0] ?? []) crop(0, f);
    }
  } else {
    images.forEach((img, i) => {
      specs.push({ image: i, matrix: null });
      faces.push({ face: { box: { x: 0, y: 0, width: img.width * toSource, height: img.height * toSource }, score: 1 }, frame: i });
    });
  }
  const t2 = performance.now();
  const tensor = await cropAndTransform(images, specs, ctx);
  throwIfAborted(signal);
  const t3 = performance.now();
  return { kind: source.kind === 'video' ? 'video' : 'image', faces, tensor, frames, tracks, mainId, partial, faceLevels, timings: { decodeMs: t1 - t0, facesMs: t2 - t1, transformMs: t3 - t2 } };
}

/**
 * The model input of every crop: in the addon (batched, on the model's device) or, as the
 * reference, with cropFace + clipTransform in JS. Both compute the same bytes (see
 * test/preprocess-native.test.ts).
 */
export async function cropAndTransform(images: readonly RgbImage[], specs: readonly CropSpec[], ctx: Pick<PipelineContext, 'options' | 'input' | 'preprocess' | 'device'>): Promise<ClipTensor> {
  const m = ctx.input;
  if ((ctx.preprocess ?? 'native') === 'native') return preprocessBatch(images, specs, { cropSize: ctx.options.cropSize, input: m, device: ctx.device });
  const crops = specs.map((c) => (c.matrix ? warpAffine(images[c.image]!, c.matrix, ctx.options.cropSize, ctx.options.cropSize) : images[c.image]!));
  return clipTransform(crops, { size: m.size, mean: m.mean, std: m.std, interpolation: m.interpolation });
}

/**
 * Model outputs must be finite: NaN or infinite logits (a broken model, overflowing weights) would
 * otherwise become a silent `pFake: null` or a wrong label.
 * @throws DfdetError MODEL_OUTPUT_INVALID
 */
export function checkModelOutput(rows: readonly Float32Array[], method: string): void {
  for (const [i, row] of rows.entries()) {
    for (let j = 0; j < row.length; j++) {
      const v = row[j]!;
      if (v - v !== 0) throw new DfdetError('MODEL_OUTPUT_INVALID', `the model's ${method} output is not finite (${v} for face ${i}): the model is broken (NaN or overflowing weights)`);
    }
  }
}

/**
 * Runs the whole pipeline on one input: {@link prepareFaces}, then one batcher item per face.
 * `onPrepared` hears how many faces went to the batcher, once they are queued (the stream then
 * decides whether to start the next input).
 */
export async function runPipeline(
  source: MediaSource,
  ctx: PipelineContext,
  batcher: Batcher,
  method: string,
  settings: PrepareSettings,
  signal?: AbortSignal,
  onPrepared?: (faces: number) => void,
): Promise<PipelineOutput> {
  const prepared = await prepareFaces(source, ctx, settings, signal);
  const t0 = performance.now();
  const item = prepared.tensor.data.length / Math.max(1, prepared.faces.length);
  const scored = batcher.submitAll(
    prepared.faces.map((_, i) => prepared.tensor.data.subarray(i * item, (i + 1) * item)),
    signal,
  );
  // The faces are queued now: the stream sees them when it decides whether to decode more.
  onPrepared?.(prepared.faces.length);
  const rows = await scored;
  checkModelOutput(rows, method);
  const { decodeMs, facesMs, transformMs } = prepared.timings;
  return { prepared, rows, timings: { decodeMs, facesMs, scoreMs: transformMs + performance.now() - t0 } };
}

/** `v / |v|` in float32 arithmetic (a zero vector stays zero), as a new array. */
export function unitVector(v: Float32Array): Float32Array {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += v[i]! * v[i]!;
  const norm = Math.max(Math.sqrt(sum), 1e-12);
  return v.map((x) => x / norm);
}

/**
 * One run of each model, so that the first real input is not the slow one (libtorch allocates and
 * optimises on its first run): the detector on one blank crop, each face model on one blank
 * 1280x720 frame, which runs both its whole-frame input and a dense pyramid level (the first dense
 * run costs 40-100 ms more than later ones). Returns the milliseconds spent.
 */
export async function warmUp(model: Model, faceModels: readonly TensorRunner[], input: DetectorMetadata['input']): Promise<number> {
  const t0 = performance.now();
  const s = input.size;
  await model.run('forward', [{ data: new Float32Array(3 * s * s), shape: [1, 3, s, s], dtype: 'float32' }]);
  const blank = { data: new Uint8Array(1280 * 720 * 3), width: 1280, height: 720 };
  await Promise.all(faceModels.map((m) => detectFaces(m, [blank])));
  return performance.now() - t0;
}
