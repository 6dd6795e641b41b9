/** Options of {@link train}: defaults and checks, shared by the API and `dfdet train`. */
import * as path from 'node:path';

import { defaultCacheDir } from '../cache';
import { checkSeed } from '../detector-model/init';
import { DfdetError, invalidParameter } from '../errors';
import { checkDevice } from '../model-options';
import { boolean, integer, number, object, oneOf, text } from '../options/checks';
import { cpuFeatures } from '../runtime/cpu';

/** Options of {@link train}. */
export interface TrainOptions {
  /** Base detector: a dfdet model file (dfdet convert / pull / model init). */
  model: string;
  /** Training data: any layout `dfdet eval` reads (paper layout, CSV, real/ and fake/ folders). */
  data: string;
  /** Validation data (same layouts). Without it, the last epoch is the output. */
  val?: string;
  /** Output model file: the best epoch on validation, a dfdet model `detect`/`eval` load. */
  out: string;
  /** Epochs (default 1). */
  epochs?: number;
  /** Peak learning rate (default 3e-4, the authors' default). */
  lr?: number;
  /** Floor of the cosine schedule (default 1e-6, the authors' default; at most lr). */
  minLr?: number;
  /** Images per step (default 32). */
  batchSize?: number;
  /** AdamW weight decay, applied to the head's weight only as in the authors' code (default 0.01). */
  weightDecay?: number;
  /** Linear warm-up: a number of steps (≥ 1) or a fraction of all steps (< 1). Default 0. */
  warmup?: number;
  /** Seed of the batch order and of the slerp pairs (default 0). */
  seed?: number;
  /** 'detect' crops faces like detection (default); 'none' uses whole images as crops. */
  faces?: 'detect' | 'none';
  /** 'cpu', 'cuda' or 'cuda:N' (default 'cpu'). */
  device?: string;
  /** 'float32' (default) or 'bfloat16' (autocast: bf16 matmuls, float32 weights and losses). */
  dtype?: 'float32' | 'bfloat16';
  /** A checkpoint of this run to continue from (`<out>.ckpt` is written after every epoch). */
  resume?: string;
  /** Cross-entropy label smoothing (default 0). */
  labelSmoothing?: number;
  /** The paper's slerp augmentation of same-class normalised features (default true). */
  slerp?: boolean;
  /** Range of the slerp weight t (default [0, 1]). */
  slerpRange?: [number, number];
  /** GenD's alignment and uniformity loss weights (default 0: off). */
  alignment?: number;
  uniformity?: number;
  /** Clip the gradients' global norm to this; 0 turns clipping off (default 1). */
  gradClip?: number;
  /** Video frames sampled per training video (default 32). */
  frames?: number;
  /** Where crops are cached (default: the dfdet cache folder). */
  cacheDir?: string;
  /** Checkpoint file (default `<out>.ckpt`) and JSON log (default `<out>.log.json`). */
  checkpoint?: string;
  log?: string;
  /** Stops the run between steps (the last checkpoint stays). */
  signal?: AbortSignal;
}

/** Options with every default filled in. */
export type ResolvedTrainOptions = Required<Omit<TrainOptions, 'val' | 'resume' | 'signal'>> & Pick<TrainOptions, 'val' | 'resume' | 'signal'>;

/** Checks options and fills in defaults, with the options schema's rules. Throws BAD_INPUT. */
export function resolveTrainOptions(o: TrainOptions): ResolvedTrainOptions {
  object.check(o, 'options');
  const str = (name: 'model' | 'data' | 'out'): string => text.check(o[name], name);
  const num = (name: keyof TrainOptions, min: number, max: number, def: number): number => number(min, max).check(o[name] ?? def, name);
  const int = (name: keyof TrainOptions, min: number, max: number, def: number): number => integer(min, max).check(o[name] ?? def, name);
  const range = o.slerpRange ?? [0, 1];
  if (!Array.isArray(range) || range.length !== 2 || !range.every((x) => typeof x === 'number' && x >= 0 && x <= 1) || range[0] > range[1])
    invalidParameter('slerpRange', 'two numbers 0 ≤ t0 ≤ t1 ≤ 1', range);
  const out = path.resolve(str('out'));
  const lr = num('lr', 0, 10, 3e-4);
  return {
    model: str('model'),
    data: str('data'),
    val: o.val,
    out,
    epochs: int('epochs', 1, 100_000, 1),
    lr,
    minLr: Math.min(lr, num('minLr', 0, 10, 1e-6)),
    batchSize: int('batchSize', 2, 65_536, 32),
    weightDecay: num('weightDecay', 0, 10, 0.01),
    warmup: num('warmup', 0, 1e9, 0),
    seed: checkSeed(o.seed ?? 0),
    faces: oneOf(['detect', 'none'] as const).check(o.faces ?? 'detect', 'faces'),
    device: checkDevice(o.device ?? 'cpu'),
    dtype: oneOf(['float32', 'bfloat16'] as const).check(o.dtype ?? 'float32', 'dtype'),
    resume: o.resume,
    labelSmoothing: num('labelSmoothing', 0, 1, 0),
    slerp: boolean.check(o.slerp ?? true, 'slerp'),
    slerpRange: [range[0], range[1]],
    alignment: num('alignment', 0, 1e6, 0),
    uniformity: num('uniformity', 0, 1e6, 0),
    gradClip: num('gradClip', 0, 1e9, 1),
    frames: int('frames', 1, 100_000, 32),
    cacheDir: o.cacheDir ?? defaultCacheDir(),
    checkpoint: o.checkpoint ?? `${out}.ckpt`,
    log: o.log ?? `${out}.log.json`,
    signal: o.signal,
  };
}

/** Warm-up steps from the option: a count (≥ 1) or a fraction of all steps (< 1). */
export function warmupSteps(warmup: number, totalSteps: number): number {
  return warmup >= 1 ? Math.round(warmup) : Math.round(warmup * totalSteps);
}

/** Throws UNSUPPORTED for bfloat16 training on a CPU without native bf16 matmuls. */
export function checkDtypeSupported(o: Pick<ResolvedTrainOptions, 'dtype' | 'device'>): void {
  // Without AVX512-BF16/AMX libtorch emulates bf16: measured ~70x slower than float32 for a ViT-L/14 forward.
  if (o.dtype === 'bfloat16' && o.device === 'cpu' && !cpuFeatures().bf16)
    throw new DfdetError('UNSUPPORTED', 'bfloat16 training on this CPU is emulated (no AVX512-BF16 or AMX) and far slower than float32: use --dtype float32, or bfloat16 on a CUDA device');
}
