/**
 * Training checkpoints (resume a run) and the run's JSON log. The native trainer stores the
 * trained tensors and the optimiser state; the loop's own state travels as JSON beside them.
 */
import * as fs from 'node:fs';

import type { NativeTrainer } from '../../binding';
import { DfdetError } from '../errors';
import { wrapNativeError } from '../native';

/** What one epoch gave. */
export interface EpochRecord {
  /** 1-based. */
  epoch: number;
  /** Optimiser steps so far (all epochs). */
  steps: number;
  /** Mean training loss (total) and cross-entropy over the epoch's steps. */
  trainLoss: number;
  trainCe: number;
  /** AUROC of the training forwards' scores (augmented features, weights changing): a trend only. */
  trainAuroc: number | null;
  /** Validation cross-entropy and AUROC (null without validation data, or AUROC with one class only). */
  valLoss: number | null;
  valAuroc: number | null;
  /** Learning rate of the epoch's last step. */
  lr: number;
  seconds: number;
  /** Training images per second over the epoch (steps only). */
  imagesPerSec: number;
}

/** The loop's state saved with every checkpoint. */
export interface CheckpointMeta {
  format: 'dfdet-train-checkpoint';
  version: 1;
  /** Epochs completed. */
  epoch: number;
  history: EpochRecord[];
  /** The best epoch so far (the one saved as the output model). */
  bestEpoch: number | null;
  /** Settings that must not change on resume (base model, data, batch size, seed, ...). */
  fingerprint: Record<string, unknown>;
}

/** Writes a checkpoint atomically (temporary file, then rename). */
export async function saveCheckpoint(trainer: NativeTrainer, file: string, meta: CheckpointMeta): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await trainer.saveCheckpoint(tmp, JSON.stringify(meta));
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw wrapNativeError(e, `cannot write checkpoint ${file}`);
  }
}

/**
 * Restores a checkpoint into the trainer and returns the loop's state. Throws NOT_FOUND, BAD_INPUT
 * when it was made by another run (another base model, data, batch size or seed).
 */
export async function loadCheckpoint(trainer: NativeTrainer, file: string, fingerprint: Record<string, unknown>): Promise<CheckpointMeta> {
  if (!fs.existsSync(file)) throw new DfdetError('NOT_FOUND', `checkpoint not found: ${file}`);
  let text: string;
  try {
    text = await trainer.loadCheckpoint(file);
  } catch (e) {
    throw wrapNativeError(e, `cannot read checkpoint ${file}`);
  }
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(text) as CheckpointMeta;
  } catch {
    throw new DfdetError('BAD_INPUT', `checkpoint ${file} has no valid metadata`);
  }
  if (meta.format !== 'dfdet-train-checkpoint' || meta.version !== 1) throw new DfdetError('BAD_INPUT', `${file} is not a dfdet training checkpoint`);
  for (const [k, v] of Object.entries(fingerprint)) {
    if (JSON.stringify(meta.fingerprint[k]) !== JSON.stringify(v))
      throw new DfdetError('BAD_INPUT', `Expected checkpoint ${file} to come from a run with the same ${k} but it has ${JSON.stringify(meta.fingerprint[k])} (this run: ${JSON.stringify(v)})`);
  }
  return meta;
}

/** Writes the run's JSON log (replaced after every epoch). */
export async function writeLog(file: string, log: unknown): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.promises.writeFile(tmp, `${JSON.stringify(log, null, 2)}\n`);
  await fs.promises.rename(tmp, file);
}
