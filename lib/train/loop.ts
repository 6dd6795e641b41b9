/**
 * `train()`: the paper's LN-tuning as an async iterator of progress events.
 *
 * Data → cached face crops (data.ts); per epoch: a seeded shuffle, one native AdamW step per
 * batch with the schedule's learning rate and the batch's slerp pairs, then validation (loss,
 * AUROC), the JSON log, the best model so far and a checkpoint to resume from.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { NativeTrainer } from '../../binding';
import { DfdetError } from '../errors';
import { scanDataset } from '../eval/dataset';
import { auroc } from '../eval/metrics';
import { METADATA_FILE } from '../detector-model/metadata';
import { wrapNativeError } from '../native';
import { type CheckpointMeta, type EpochRecord, loadCheckpoint, saveCheckpoint, writeLog } from './checkpoint';
import { cropOptions, type CropSet, prepareCrops, readRows } from './data';
import { resolveDetectorOptions } from '../options/detector';
import { sha256File } from '../sha256';
import { baseMetadata, createTrainer, trainedMetadata, type TrainingProvenance } from './model';
import { checkDtypeSupported, type ResolvedTrainOptions, resolveTrainOptions, type TrainOptions, warmupSteps } from './options';
import type { DetectorMetadata } from '../detector-model/metadata';
import { epochBatches, epochRandom, learningRate, slerpPairs } from './schedule';

export type { TrainOptions } from './options';
export type { EpochRecord } from './checkpoint';

/** Progress of a run; `train()` yields these in order. */
export type TrainEvent =
  | { type: 'crops'; split: 'train' | 'val'; done: number; total: number; rows: number }
  | { type: 'data'; split: 'train' | 'val'; items: number; rows: number; skipped: number; cached: boolean }
  | { type: 'resumed'; epoch: number; checkpoint: string }
  | {
      type: 'step';
      epoch: number;
      /** Global step (1-based) of `totalSteps`; `batch` of `batches` within the epoch. */
      step: number;
      totalSteps: number;
      batch: number;
      batches: number;
      loss: number;
      ce: number;
      alignment: number;
      uniformity: number;
      lr: number;
      gradNorm: number;
    }
  | { type: 'epoch'; record: EpochRecord; best: boolean }
  | { type: 'saved'; what: 'model' | 'checkpoint' | 'log'; path: string };

/** What `train()` returns when done (the iterator's return value). */
export interface TrainSummary {
  out: string;
  bestEpoch: number;
  history: EpochRecord[];
  log: string;
  checkpoint: string;
}

/**
 * Fine-tunes a detector's LayerNorms and head on labelled data (see {@link TrainOptions}).
 * @example
 * ```ts
 * for await (const e of train({ model: 'base.pt', data: 'data/', val: 'val/', out: 'tuned.pt', epochs: 3 }))
 *   if (e.type === 'epoch') console.log(e.record.epoch, e.record.valAuroc);
 * ```
 * @throws DfdetError BAD_INPUT (options, unlabelled data, a checkpoint of another run), NOT_FOUND,
 *   MODEL_LOAD_FAILED, UNSUPPORTED (not a dfdet detector file), ABORTED (signal).
 */
export async function* train(options: TrainOptions): AsyncGenerator<TrainEvent, TrainSummary> {
  const o = resolveTrainOptions(options);
  checkDtypeSupported(o);
  // The base's preprocessing and architecture (the trainer checks its pooled/head methods).
  const metadata = await baseMetadata(o.model);
  // The trainer first: a file that cannot be trained fails before any data is cropped.
  const trainer = await createTrainer(o);
  try {
    return yield* run(o, metadata, trainer);
  } finally {
    await trainer.dispose();
  }
}

/** The run of {@link train} once the trainer exists: data, then epochs. */
async function* run(o: ResolvedTrainOptions, metadata: DetectorMetadata, trainer: NativeTrainer): AsyncGenerator<TrainEvent, TrainSummary> {
  const cropOpts = cropOptions(resolveDetectorOptions({ faces: o.faces, device: o.device }), metadata.input, o.frames);

  const sets: { train?: CropSet; val?: CropSet } = {};
  for (const split of ['train', 'val'] as const) {
    const dir = split === 'train' ? o.data : o.val;
    if (dir === undefined) continue;
    const items = await scanDataset(dir);
    if (items.length === 0) throw new DfdetError('BAD_INPUT', `Expected labelled images or videos in ${dir} but found none`);
    const crops = prepareCrops(items, cropOpts, o.cacheDir, o.signal);
    let next = await crops.next();
    try {
      for (; !next.done; next = await crops.next()) yield { type: 'crops', split, ...next.value };
    } finally {
      // The consumer stopped during cropping: let the crops generator close its file and face model.
      if (!next.done) await crops.return(undefined as never);
    }
    const set = next.value;
    sets[split] = set;
    yield { type: 'data', split, items: items.length, rows: set.count, skipped: set.skipped.length, cached: set.cached };
  }
  const trainSet = sets.train!;
  if (trainSet.count < 2) throw new DfdetError('BAD_INPUT', `Expected at least 2 training crops but ${o.data} gave ${trainSet.count}`);

  const batches = epochBatches(trainSet.count, o.batchSize, epochRandom(o.seed, 0)).length;
  const totalSteps = batches * o.epochs;
  const schedule = { lr: o.lr, minLr: o.minLr, warmupSteps: warmupSteps(o.warmup, totalSteps), totalSteps };
  const hyperparameters = {
    epochs: o.epochs, lr: o.lr, minLr: o.minLr, batchSize: o.batchSize, weightDecay: o.weightDecay, warmupSteps: schedule.warmupSteps,
    seed: o.seed, faces: o.faces, dtype: o.dtype, labelSmoothing: o.labelSmoothing, slerp: o.slerp, slerpRange: o.slerpRange,
    alignment: o.alignment, uniformity: o.uniformity, gradClip: o.gradClip, frames: o.frames,
  };
  const baseSha = await sha256File(o.model);
  const fingerprint = { baseSha256: baseSha, data: path.basename(trainSet.file, '.f32'), ...hyperparameters, epochs: undefined, device: undefined };

  const fh = await fs.promises.open(trainSet.file, 'r');
  try {
    let history: EpochRecord[] = [];
    let bestEpoch: number | null = null;
    let startEpoch = 0;
    if (o.resume) {
      const meta = await loadCheckpoint(trainer, o.resume, fingerprint);
      history = meta.history;
      bestEpoch = meta.bestEpoch;
      startEpoch = meta.epoch;
      yield { type: 'resumed', epoch: startEpoch, checkpoint: o.resume };
    }
    const logBase = { base: o.model, data: o.data, val: o.val ?? null, hyperparameters, trainRows: trainSet.count, valRows: sets.val?.count ?? null };
    const buffer = new Float32Array(o.batchSize * trainSet.rowLength);
    for (let epoch = startEpoch; epoch < o.epochs; epoch++) {
      const rng = epochRandom(o.seed, epoch);
      const order = epochBatches(trainSet.count, o.batchSize, rng);
      const t0 = performance.now();
      let stepMs = 0;
      let lossSum = 0;
      let ceSum = 0;
      let lr = 0;
      const scores: number[] = [];
      const seen: number[] = [];
      for (let b = 0; b < order.length; b++) {
        if (o.signal?.aborted) throw new DfdetError('ABORTED', 'training aborted', { cause: o.signal.reason });
        const rows = order[b]!;
        const images = await readRows(trainSet, fh, rows, buffer);
        const labels = Int32Array.from(rows, (r) => trainSet.labels[r]!);
        const step = epoch * order.length + b;
        lr = learningRate(step, schedule);
        const pairs = o.slerp ? slerpPairs(labels, rng, o.slerpRange) : undefined;
        const s0 = performance.now();
        const r = await trainer
          .step({ data: images, shape: [rows.length, 3, metadata.input.size, metadata.input.size], dtype: 'float32' }, { data: labels, shape: [rows.length], dtype: 'int32' }, {
            lr,
            ...(pairs && {
              slerpPartner: { data: pairs.partner, shape: [rows.length], dtype: 'int32' },
              slerpWeight: { data: pairs.weight, shape: [rows.length], dtype: 'float32' },
            }),
          })
          .catch((e: unknown) => {
            throw wrapNativeError(e, 'training step failed');
          });
        stepMs += performance.now() - s0;
        lossSum += r.loss;
        ceSum += r.ce;
        const logits = r.logits.data as Float32Array;
        for (let i = 0; i < rows.length; i++) {
          scores.push(logits[2 * i + 1]! - logits[2 * i]!);
          seen.push(labels[i]!);
        }
        yield { type: 'step', epoch: epoch + 1, step: step + 1, totalSteps, batch: b + 1, batches: order.length, loss: r.loss, ce: r.ce, alignment: r.alignment, uniformity: r.uniformity, lr, gradNorm: r.gradNorm };
      }
      const val = sets.val ? await validate(trainer, sets.val, o.batchSize, metadata.input.size) : null;
      const record: EpochRecord = {
        epoch: epoch + 1,
        steps: (epoch + 1) * order.length,
        trainLoss: lossSum / order.length,
        trainCe: ceSum / order.length,
        trainAuroc: finite(auroc(seen, scores)),
        valLoss: val?.loss ?? null,
        valAuroc: val?.auroc ?? null,
        lr,
        seconds: (performance.now() - t0) / 1000,
        imagesPerSec: seen.length / (stepMs / 1000),
      };
      history.push(record);
      const best = bestEpoch === null || !sets.val || isBetter(record, history[bestEpoch - 1]!);
      if (best) {
        bestEpoch = record.epoch;
        const provenance: TrainingProvenance = {
          base: { file: o.model, sha256: baseSha, source: metadata.source },
          data: { path: path.resolve(o.data), rows: trainSet.count },
          val: o.val && sets.val ? { path: path.resolve(o.val), rows: sets.val.count } : null,
          hyperparameters,
          epoch: record.epoch,
          valAuroc: record.valAuroc,
          valLoss: record.valLoss,
        };
        await saveModel(trainer, o.out, JSON.stringify(trainedMetadata(metadata, provenance), null, 2));
      }
      yield { type: 'epoch', record, best };
      if (best) yield { type: 'saved', what: 'model', path: o.out };
      const meta: CheckpointMeta = { format: 'dfdet-train-checkpoint', version: 1, epoch: epoch + 1, history, bestEpoch, fingerprint };
      await saveCheckpoint(trainer, o.checkpoint, meta);
      yield { type: 'saved', what: 'checkpoint', path: o.checkpoint };
      await writeLog(o.log, { ...logBase, epochs: history, bestEpoch, out: o.out, skipped: { train: trainSet.skipped, val: sets.val?.skipped ?? [] } });
      yield { type: 'saved', what: 'log', path: o.log };
    }
    return { out: o.out, bestEpoch: bestEpoch ?? o.epochs, history, log: o.log, checkpoint: o.checkpoint };
  } finally {
    await fh.close();
  }
}

/** Validation: cross-entropy and AUROC of the current weights (inference mode). */
async function validate(trainer: NativeTrainer, set: CropSet, batchSize: number, size: number): Promise<{ loss: number; auroc: number | null }> {
  const fh = await fs.promises.open(set.file, 'r');
  try {
    const buffer = new Float32Array(batchSize * set.rowLength);
    const scores: number[] = [];
    let loss = 0;
    for (let start = 0; start < set.count; start += batchSize) {
      const rows = Array.from({ length: Math.min(batchSize, set.count - start) }, (_, k) => start + k);
      const images = await readRows(set, fh, rows, buffer);
      const out = await trainer.evaluate({ data: images, shape: [rows.length, 3, size, size], dtype: 'float32' }).catch((e: unknown) => {
        throw wrapNativeError(e, 'validation failed');
      });
      const logits = out.data as Float32Array;
      rows.forEach((r, i) => {
        const a = logits[2 * i]!;
        const b = logits[2 * i + 1]!;
        const m = Math.max(a, b);
        const lse = m + Math.log(Math.exp(a - m) + Math.exp(b - m));
        loss += lse - (set.labels[r] === 1 ? b : a);
        scores.push(b - a);
      });
    }
    return { loss: loss / set.count, auroc: finite(auroc(set.labels, scores)) };
  } finally {
    await fh.close();
  }
}

/** A better epoch: higher validation AUROC; on a tie (or without AUROC), lower validation loss. */
function isBetter(a: EpochRecord, b: EpochRecord): boolean {
  if (a.valAuroc !== null && b.valAuroc !== null && a.valAuroc !== b.valAuroc) return a.valAuroc > b.valAuroc;
  return (a.valLoss ?? Infinity) < (b.valLoss ?? Infinity);
}

function finite(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}

/** Writes the model atomically (temporary file, then rename): `detect` never sees half a file. */
async function saveModel(trainer: NativeTrainer, out: string, metadataJson: string): Promise<void> {
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    await fs.promises.mkdir(path.dirname(out), { recursive: true });
    await trainer.saveModel(tmp, { [METADATA_FILE]: metadataJson });
    await fs.promises.rename(tmp, out);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw wrapNativeError(e, `cannot write ${out}`);
  }
}
