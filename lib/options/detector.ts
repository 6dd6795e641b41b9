/**
 * The Detector's options schema: every option with its default and its rule, in one place. The
 * API (`Detector.create`, per-call options), the CLI flags and the service/worker/train commands
 * all read their defaults and checks from here, so a value is accepted or refused the same way
 * everywhere, and refused at `create` (BAD_INPUT naming the option), never later per input.
 */
import { frameCountRule, samplingRule, type SamplingStrategy } from '../media/video';
import type { DTypeOption } from '../model';
import { abortSignal, boolean, integer, number, object, oneOf, optional, positive, type Rule, text } from './checks';

/** Options of `Detector.create`. Every one is optional; {@link DETECTOR_DEFAULTS} has the defaults. */
export interface DetectorOptions {
  /**
   * The detector model: a dfdet model file (from `dfdet convert`, `dfdet pull` or `dfdet model init`),
   * the authors' TorchScript file, its bytes, or the name of a pulled registry model.
   * Default: the registry's default model, if it was pulled.
   */
  model?: string | Uint8Array;
  /** 'cpu', 'cuda' or 'cuda:N'. Default 'cpu'. */
  device?: string;
  /**
   * Model precision: 'auto' (default), 'float32', 'float16' or 'bfloat16'. 'auto' is bfloat16 on
   * CPUs with native bf16 (AVX512-BF16 or AMX) and on CUDA devices of compute capability >= 8.0,
   * float16 on older CUDA devices, float32 elsewhere; `DFDET_DTYPE=float32` overrides it. Results
   * name the precision used in `model.dtype`.
   */
  dtype?: DTypeOption;
  /** libtorch intra-op threads (process-wide), an integer from 1 to 1024. Default: number of cores. */
  threads?: number;
  /** Largest model batch (faces), an integer from 1 to 1024. Default 8. */
  batchSize?: number;
  /**
   * Longest a face waits for a fuller batch, ms (0 to 60000). Default 5. In detect([...]) and
   * detectStream a partial batch also waits while the call is still taking or decoding inputs
   * (their faces fill it); the wait applies once none is left, or while the stream waits for its
   * consumer or for an async iterable's next input.
   */
  maxWaitMs?: number;
  /** 'detect' finds faces (default); 'none' scores whole images/frames as already-cropped faces. */
  faces?: 'detect' | 'none';
  /** Crop mode: 'align' (DeepfakeBench similarity alignment, default) or 'box' (square box). */
  crop?: 'align' | 'box';
  /** Crop margin factor, 0.5 to 4. Default 1.3 (the paper's). */
  cropScale?: number;
  /** Crop side in pixels before the CLIP transform, 16 to 4096. Default 256 (the paper's). */
  cropSize?: number;
  /** Videos: score every face track, not only the subject's. Default false. Per call too. */
  allFaces?: boolean;
  /**
   * Videos: frames to sample. A number (1 to 100000) means `{ kind: 'uniform', count }`; or a
   * {@link SamplingStrategy} (`count` and `k` positive integers, `fps` a positive number).
   * Default 32 (the paper's). Per call too.
   */
  frames?: number | SamplingStrategy;
  /** Videos: most frames decoded whatever the strategy, 1 to 1000000. Default 1000. */
  maxFrames?: number;
  /** Videos: time limit for decoding one video, ms (1 to 86400000). Default 300000. */
  videoTimeoutMs?: number;
  /** pFake at or above which the label is 'fake', 0 to 1. Default 0.5. Per call too. */
  threshold?: number;
  /** Face detector score threshold, 0 to 1. Default 0.5. */
  faceThreshold?: number;
  /**
   * Smallest face side in source pixels, 0 to 1000000. Default 24. Smaller faces are dropped, and it
   * decides the scales face detection searches: frames longer than `256 * minFaceSize / 17` px
   * (361 px at 24) are also run whole at the scale where such a face is 17 model px (see
   * lib/faces/pyramid.ts); the cost grows with `1 / minFaceSize²` (a 1280x720 frame: ~6x the
   * whole-frame pass at 24, under 3x from 40), so a larger value keeps large-face inputs fast.
   */
  minFaceSize?: number;
  /** Largest decoded image in pixels (decompression bombs), a positive integer. Default 100e6. */
  maxPixels?: number;
  /** Videos: frames with a longer side are scaled down to it before detection: an integer from 16, or Infinity (full size). Default 1920. */
  maxFrameSide?: number;
  /** Videos: most bytes of decoded frames held for one video (then it is scored partially): a positive integer or Infinity. Default 1 GiB. */
  maxVideoBytes?: number;
  /**
   * Inputs decoded and cropped at once by detect([...]) and detectStream, 1 to 256. Default 4. They
   * start while fewer than 2 x batchSize faces wait in the model's queue, so the next inputs decode
   * while the model runs and batches fill even with one face per input.
   */
  concurrency?: number;
  /**
   * Run the detector model once (a batch of `batchSize` blank crops) and the face detector once in
   * `create`, so that the first call is not the slow one (libtorch's first run of a shape
   * allocates and optimises). Default true.
   */
  warmup?: boolean;
  /** Cache folder for registry models. Default $DFDET_CACHE, else $XDG_CACHE_HOME/dfdet, else ~/.cache/dfdet. */
  cacheDir?: string;
}

/**
 * Per-call options of `detect`, `detectStream` and `embed`. `threshold`, `allFaces` and `frames`
 * override the detector's for this call only (same rules as in {@link DetectorOptions}); an invalid
 * value rejects the call with BAD_INPUT naming the option.
 */
export interface DetectCallOptions {
  /**
   * Aborts the call: inputs not yet started end with an ABORTED error result (not decoded), those
   * running stop at their next step; an input whose stream is still being read settles at once.
   * `detectStream` takes no further input from an iterable once aborted (every input already taken
   * gets a result); an array's inputs all get a result.
   */
  signal?: AbortSignal;
  /** pFake at or above which the label is 'fake' (0 to 1). Default: the detector's. */
  threshold?: number;
  /** Videos: score every face track, not only the subject's. Default: the detector's. */
  allFaces?: boolean;
  /** Videos: frames to sample (a count or a {@link SamplingStrategy}). Default: the detector's. */
  frames?: number | SamplingStrategy;
}

/** The defaults of {@link DetectorOptions} (options without a default are left to libtorch or the registry). */
export const DETECTOR_DEFAULTS = Object.freeze({
  device: 'cpu',
  dtype: 'auto' as DTypeOption,
  batchSize: 8,
  maxWaitMs: 5,
  faces: 'detect' as 'detect' | 'none',
  crop: 'align' as 'align' | 'box',
  cropScale: 1.3,
  cropSize: 256,
  allFaces: false,
  frames: 32,
  maxFrames: 1000,
  videoTimeoutMs: 300_000,
  threshold: 0.5,
  faceThreshold: 0.5,
  minFaceSize: 24,
  maxPixels: 100_000_000,
  maxFrameSide: 1920,
  maxVideoBytes: 2 ** 30,
  concurrency: 4,
  warmup: true,
});

/** Options after {@link resolveDetectorOptions}: every default filled in, `frames` as a strategy. */
export type ResolvedDetectorOptions = Omit<Required<DetectorOptions>, 'model' | 'threads' | 'cacheDir' | 'frames'> & {
  model?: string | Uint8Array;
  threads?: number;
  cacheDir?: string;
  frames: SamplingStrategy;
};


/** The rule of every option that has one (the CLI builds its flag parsers from these). */
export const DETECTOR_RULES = Object.freeze({
  device: text,
  dtype: oneOf<DTypeOption>(['auto', 'float32', 'float16', 'bfloat16']),
  threads: integer(1, 1024),
  batchSize: integer(1, 1024),
  maxWaitMs: number(0, 60_000),
  faces: oneOf(['detect', 'none'] as const),
  crop: oneOf(['align', 'box'] as const),
  cropScale: number(0.5, 4),
  cropSize: integer(16, 4096),
  allFaces: boolean,
  frames: samplingRule,
  frameCount: frameCountRule,
  fps: positive,
  maxFrames: integer(1, 1_000_000),
  videoTimeoutMs: integer(1, 86_400_000),
  threshold: number(0, 1),
  faceThreshold: number(0, 1),
  minFaceSize: number(0, 1e6),
  maxPixels: integer(1, Number.MAX_SAFE_INTEGER),
  maxFrameSide: integer(16, 1_000_000, true),
  maxVideoBytes: integer(1, Number.MAX_SAFE_INTEGER, true),
  concurrency: integer(1, 256),
  warmup: boolean,
  cacheDir: text,
});

/** Keys with a default, in the order they are checked. */
const WITH_DEFAULT = Object.keys(DETECTOR_DEFAULTS) as (keyof typeof DETECTOR_DEFAULTS)[];

/**
 * Checks `options` against the schema and fills in the defaults. Unknown keys are ignored (an
 * options object may carry more, e.g. a server's own settings).
 * @throws DfdetError BAD_INPUT naming the first invalid option (`frames.fps` for a nested one).
 */
export function resolveDetectorOptions(options: DetectorOptions = {}): ResolvedDetectorOptions {
  const o = object.check(options, 'options') as DetectorOptions;
  if (o.model !== undefined && !(o.model instanceof Uint8Array)) text.check(o.model, 'model');
  const out: Record<string, unknown> = { model: o.model };
  for (const key of WITH_DEFAULT) {
    const rule = DETECTOR_RULES[key] as Rule<unknown>;
    out[key] = rule.check(o[key] ?? DETECTOR_DEFAULTS[key], key);
  }
  out.threads = optional(DETECTOR_RULES.threads, o.threads, 'threads');
  out.cacheDir = optional(DETECTOR_RULES.cacheDir, o.cacheDir, 'cacheDir');
  return out as ResolvedDetectorOptions;
}

/** What one call runs with: the detector's options with the call's overrides. */
export type CallSettings = Pick<ResolvedDetectorOptions, 'threshold' | 'allFaces' | 'frames'>;

/**
 * The settings of one call: `base` (the detector's resolved options) overridden by the call's
 * `threshold`, `allFaces` and `frames`, each checked like the create options.
 * @throws DfdetError BAD_INPUT naming the invalid option.
 */
export function resolveCallOptions(call: DetectCallOptions | undefined, base: CallSettings): CallSettings & { signal?: AbortSignal } {
  if (call === undefined) return { threshold: base.threshold, allFaces: base.allFaces, frames: base.frames };
  const c = object.check(call, 'options') as DetectCallOptions;
  return {
    threshold: c.threshold === undefined ? base.threshold : DETECTOR_RULES.threshold.check(c.threshold, 'threshold'),
    allFaces: c.allFaces === undefined ? base.allFaces : boolean.check(c.allFaces, 'allFaces'),
    frames: c.frames === undefined ? base.frames : samplingRule.check(c.frames, 'frames'),
    signal: optional(abortSignal, c.signal, 'signal'),
  };
}
