/** The public types of the Detector: results, faces, frames, tracks, identity, counters. */
import type { BatchStats } from '../batcher';
import type { ErrorCode } from '../errors';
import type { Face, FaceBox } from '../faces/types';

export type { DetectInput, DescribedInput, MediaSource } from '../inputs';
export type { SamplingStrategy } from '../media/video';
export type { DetectCallOptions, DetectorOptions } from '../options/detector';

/** A face box in source pixels (the face detector's box). */
export type Box = FaceBox;

/** Where a face is: what the pipeline found before scoring it. */
export interface FaceGeometry {
  box: Box;
  /** Face detector confidence (1 when faces: 'none'). */
  score: number;
  /** Eyes, nose, mouth, ears in source pixels (absent when faces: 'none'). */
  keypoints?: Face['keypoints'];
  /** Track id in videos (absent when faces: 'none'). */
  track?: number;
}

/** One scored face. */
export interface FaceResult extends FaceGeometry {
  /** Probability that the face is fake. */
  pFake: number;
}

/** One sampled video frame. */
export interface FrameResult {
  index: number;
  timestampSec: number;
  /** The frame's probability under the aggregate rule (null: no scored face in it). */
  pFake: number | null;
  faces: FaceResult[];
}

/** A face track of a video. */
export interface TrackResult {
  id: number;
  /** Frames in which the face was found. */
  frames: number;
  /** Mean of its frame probabilities. */
  pFake: number;
  /** The subject: the largest and most persistent face. */
  main: boolean;
}

/**
 * How a result's pFake was computed from its faces:
 * - `'max-face'`: an image with face detection: the highest face pFake (one fake face makes the image fake);
 * - `'whole-image'`: an image with `faces: 'none'`: the pFake of the whole image scored as one crop;
 * - `'mean-frames-main-track'`: a video with face detection: the mean of the frame probabilities of
 *   the main face track, the largest and most persistent face (the paper's rule);
 * - `'max-track-mean'`: a video with `allFaces`: the highest mean over the face tracks;
 * - `'mean-frames'`: a video with `faces: 'none'`: the mean over the sampled frames, each scored whole;
 * - `'none'`: no score, because the input failed (`error` is set).
 * A result with `noFace: true` keeps its rule and has pFake null.
 */
export type AggregateRule = 'max-face' | 'whole-image' | 'mean-frames-main-track' | 'max-track-mean' | 'mean-frames' | 'none';

/** Why an input could not be scored. */
export interface ResultError {
  code: ErrorCode;
  message: string;
}

/** The result for one input. Errors are results too: one bad file never stops a batch. */
export interface DetectResult {
  /** Input position in the call (after folders were expanded). */
  index: number;
  /**
   * The input's name: its path, the `name` of a `{ data, name }` / `{ path, name }` input, else
   * `<buffer>` or `<stream>` (`<input N>` only for a value that is none of these).
   */
  source: string;
  kind: 'image' | 'video' | 'unknown';
  /**
   * Probability that the input is fake; null when no face was found or on error. It may differ in
   * the last digits with the batch the input shared with other inputs (measured: 4.7e-10 between a
   * batch of 1 and of 2-8 on a ViT-B/32): the model's matrix kernels sum in another order for a
   * single row. Compare scores with a tolerance.
   */
  pFake: number | null;
  /** 'fake' when pFake >= threshold, 'real' below, null when there is no score. */
  label: 'real' | 'fake' | null;
  threshold: number;
  /** True when face detection found no face (not an error, not a silent 0.5). */
  noFace: boolean;
  /** Images: every face. Videos: the faces of the scored tracks in every frame. */
  faces: FaceResult[];
  /** Videos: the sampled frames. */
  frames?: FrameResult[];
  /** Videos: the face tracks. */
  tracks?: TrackResult[];
  /** Videos: decoding stopped early (truncated/corrupt file); the score uses the frames decoded. */
  partial?: boolean;
  /** How pFake was aggregated: see {@link AggregateRule}. */
  aggregate: AggregateRule;
  /** The model that scored it. */
  model: ModelIdentity;
  timings: { decodeMs: number; facesMs: number; scoreMs: number; totalMs: number };
  /**
   * Why the input could not be scored, e.g. `NOT_FOUND`, `DECODE_FAILED`, `BAD_INPUT` (a value that
   * is not an input, a folder given to single-input detect), `MODEL_OUTPUT_INVALID` (the model gave
   * NaN or infinite logits), `ABORTED`, `DISPOSED`.
   */
  error?: ResultError;
}

/** Normalised features (the detector's L2-normalised CLS embedding) for one face. */
export interface FaceEmbedding {
  box: Box;
  frame?: number;
  track?: number;
  /** L2-normalised feature vector. */
  embedding: Float32Array;
}

/** The result of `Detector.embed`. */
export interface EmbedResult {
  index: number;
  source: string;
  kind: 'image' | 'video' | 'unknown';
  faces: FaceEmbedding[];
  error?: ResultError;
}

/** Identity of the detector model, as carried by every result. */
export interface ModelIdentity {
  /**
   * The registry name of a pulled model, else the model file's base name (never its folder, so
   * results do not reveal paths of the machine that scored them), or `<bytes>`.
   */
  name: string;
  /** Architecture (e.g. 'vit 224px/14 w1024 L24 (LinearNorm)'). */
  arch: string;
  /** Where the weights came from ('init' means random: scores carry no meaning). */
  sourceKind: string;
  sourceSha256: string;
  /** The precision the model ran in ('float32', 'bfloat16', 'float16'): what `dtype: 'auto'` chose. */
  dtype: string;
}

/** Counters of a detector. */
export interface DetectorStats extends BatchStats {
  inputs: number;
  failed: number;
  /** Milliseconds `create` spent warming the models up; null with `warmup: false`. */
  warmupMs: number | null;
}
