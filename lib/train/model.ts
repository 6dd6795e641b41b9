/**
 * The native trainer on a dfdet detector file: which tensors are trained (the paper's LN-tuning),
 * and the output model's metadata with its provenance.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { NativeTrainer } from '../../binding';
import { createdBy, type DetectorMetadata, METADATA_FILE, readDetectorMetadata } from '../detector-model/metadata';
import { DfdetError, isDfdetError } from '../errors';
import { ZipReader } from '../formats/torchzip';
import { wrapNativeError, native } from '../native';
import type { ResolvedTrainOptions } from './options';

/**
 * The trained tensors: every LayerNorm's weight and bias (pre-, per block, post-) and the head.
 * Names are those of dfdet's detector files (lib/detector-model/builder.ts).
 */
export const TRAINABLE = /(^|\.)((ln\d*|pre_ln|post_ln|head)_(weight|bias))$/;

/** Tensors with weight decay: as in the authors' code none of the biases and norms, so the head's weight. */
export const WEIGHT_DECAY = /(^|\.)head_weight$/;

/** Creates the native trainer on the base model, with LN-tuning's trainable set. */
export async function createTrainer(o: ResolvedTrainOptions): Promise<NativeTrainer> {
  try {
    return await native().NativeTrainer.create(o.model, {
      device: o.device,
      dtype: o.dtype,
      trainable: TRAINABLE.source,
      decay: WEIGHT_DECAY.source,
      weightDecay: o.weightDecay,
      labelSmoothing: o.labelSmoothing,
      alignment: o.alignment,
      uniformity: o.uniformity,
      gradClip: o.gradClip,
    });
  } catch (e) {
    throw wrapNativeError(e, `cannot train ${o.model}`);
  }
}

/** Provenance stored with a trained model (`training` in its dfdet.json). */
export interface TrainingProvenance {
  base: { file: string; sha256: string; source: DetectorMetadata['source'] };
  data: { path: string; rows: number };
  val: { path: string; rows: number } | null;
  hyperparameters: Record<string, unknown>;
  epoch: number;
  valAuroc: number | null;
  valLoss: number | null;
}

/** dfdet.json of a trained model: the base's architecture and preprocessing, a 'train' source, the provenance. */
export function trainedMetadata(base: DetectorMetadata, provenance: TrainingProvenance): DetectorMetadata & { training: TrainingProvenance } {
  return {
    ...base,
    source: { kind: 'train', file: path.basename(provenance.base.file), sha256: provenance.base.sha256 },
    createdBy: createdBy(),
    training: provenance,
  };
}

/**
 * The base model's metadata, read from its archive's `extra/dfdet.json` without loading the
 * weights (a ViT-L/14 is 1.2 GB); the paper's defaults when it has none. Throws NOT_FOUND,
 * MODEL_LOAD_FAILED (not a TorchScript archive, or invalid metadata).
 */
export async function baseMetadata(file: string): Promise<DetectorMetadata> {
  if (!fs.existsSync(file)) throw new DfdetError('NOT_FOUND', `model file not found: ${file}`);
  let zip: ZipReader;
  try {
    zip = await ZipReader.open(file);
  } catch (e) {
    if (isDfdetError(e, 'BAD_FORMAT')) throw new DfdetError('MODEL_LOAD_FAILED', `cannot load model from ${file}: not a TorchScript archive (${e.message})`, { cause: e });
    throw e;
  }
  try {
    const name = [...zip.entries.keys()].find((n) => n.endsWith(`/extra/${METADATA_FILE}`));
    const text = name === undefined ? '' : Buffer.from(await zip.read(name)).toString('utf8');
    return readDetectorMetadata({ extraFiles: text ? { [METADATA_FILE]: text } : {} });
  } finally {
    await zip.close();
  }
}
