/**
 * Detector metadata stored inside model files as the extra file `dfdet.json`, and how to read it
 * back (with the paper's defaults for files that have none, e.g. the authors' traced TorchScript).
 */

import * as fs from 'node:fs';
import * as path from 'node:path';

import type { NativeModelInfo } from '../../binding';
import { DfdetError } from '../errors';
import { packageRoot } from '../native';
import { CLIP_MEAN, CLIP_STD } from '../media/transform';
import { ARCHS, type HeadKind, type VitArch } from './arch';

/**
 * The extra file a detector model stores its metadata under inside the TorchScript archive. Load
 * detector models with `Model.load(file, { extraFiles: [METADATA_FILE] })` to read it.
 */
export const METADATA_FILE = 'dfdet.json';

/** Where a model file's weights came from. */
export interface DetectorSource {
  /** 'init' (random), 'hf-clip', 'gend', 'lightning', 'torchscript' (no metadata) or another converter's name. */
  kind: string;
  /** Base name of the input file ('' for init). */
  file: string;
  /** sha256 (hex) of the input file ('' when not computed). */
  sha256: string;
  /** Seed of random initialisation, when kind is 'init' or the head was freshly initialised. */
  seed?: number;
}

/** Contents of `dfdet.json`. */
export interface DetectorMetadata {
  format: 'dfdet-detector';
  formatVersion: 1;
  /** Architecture of the vision tower; `head` is the head variant. */
  arch: VitArch & { head: HeadKind };
  /** Preprocessing the model expects: square `size` input, resize interpolation, RGB mean/std. */
  input: { size: number; interpolation: 'bicubic'; mean: number[]; std: number[] };
  /** Class names by logit index. */
  labels: ['real', 'fake'];
  source: DetectorSource;
  /** Producer, e.g. 'dfdet 0.1.0'. */
  createdBy: string;
}

/** dfdet's own version string for `createdBy`. */
export function createdBy(): string {
  try {
    // From sources (lib/) and from the build (dist/lib/) alike.
    const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version?: string };
    return `dfdet ${pkg.version ?? '?'}`;
  } catch {
    return 'dfdet';
  }
}

/** Metadata for a model built by dfdet. */
export function makeMetadata(arch: VitArch, head: HeadKind, source: DetectorSource): DetectorMetadata {
  return {
    format: 'dfdet-detector',
    formatVersion: 1,
    arch: { ...arch, head },
    input: { size: arch.imageSize, interpolation: 'bicubic', mean: [...CLIP_MEAN], std: [...CLIP_STD] },
    labels: ['real', 'fake'],
    source,
    createdBy: createdBy(),
  };
}

/**
 * The paper's detector (Yermakov et al. 2025): CLIP ViT-L/14 at 224 px, L2-normalised features
 * into a linear head, CLIP preprocessing. Used for files without `dfdet.json`.
 */
export function defaultMetadata(): DetectorMetadata {
  return { ...makeMetadata(ARCHS['vit-l-14'], 'LinearNorm', { kind: 'torchscript', file: '', sha256: '' }), createdBy: '' };
}

/**
 * Metadata of a loaded model: parsed and validated `dfdet.json` when the model was loaded with
 * `extraFiles: ['dfdet.json']` and has one, else {@link defaultMetadata}. Throws MODEL_LOAD_FAILED
 * for a `dfdet.json` that is not valid.
 */
export function readDetectorMetadata(info: Pick<NativeModelInfo, 'extraFiles'>): DetectorMetadata {
  const text = info.extraFiles?.[METADATA_FILE];
  if (text === undefined || text === '') return defaultMetadata();
  return parseMetadata(text);
}

/** Parse and validate the text of a `dfdet.json`. Throws MODEL_LOAD_FAILED. */
export function parseMetadata(text: string): DetectorMetadata {
  const fail = (msg: string): never => {
    throw new DfdetError('MODEL_LOAD_FAILED', `Invalid ${METADATA_FILE}: ${msg}`);
  };
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (e) {
    fail(`not JSON (${(e as Error).message})`);
  }
  if (typeof m !== 'object' || m === null) fail('not an object');
  const o = m as Record<string, unknown>;
  if (o.format !== 'dfdet-detector') fail(`format is ${JSON.stringify(o.format)}, expected "dfdet-detector"`);
  if (o.formatVersion !== 1) fail(`formatVersion ${JSON.stringify(o.formatVersion)} is not supported (this dfdet reads 1)`);
  const arch = o.arch as Record<string, unknown> | undefined;
  const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;
  if (!arch || !['imageSize', 'patchSize', 'width', 'layers', 'heads'].every((k) => isInt(arch[k]))) fail('arch is incomplete');
  if (arch!.head !== 'linear' && arch!.head !== 'LinearNorm') fail(`arch.head ${JSON.stringify(arch!.head)} is unknown`);
  const input = o.input as Record<string, unknown> | undefined;
  const triple = (v: unknown): boolean => Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x));
  if (!input || !isInt(input.size) || !triple(input.mean) || !triple(input.std)) fail('input is incomplete');
  if ((input!.std as number[]).some((s) => s <= 0)) fail('input.std must be positive');
  if (input!.interpolation !== 'bicubic') fail(`input.interpolation ${JSON.stringify(input!.interpolation)} is unknown`);
  if (!Array.isArray(o.labels) || o.labels[0] !== 'real' || o.labels[1] !== 'fake' || o.labels.length !== 2) fail('labels must be ["real", "fake"]');
  const source = (o.source ?? {}) as Record<string, unknown>;
  return {
    format: 'dfdet-detector',
    formatVersion: 1,
    arch: {
      imageSize: arch!.imageSize as number,
      patchSize: arch!.patchSize as number,
      width: arch!.width as number,
      layers: arch!.layers as number,
      heads: arch!.heads as number,
      mlpRatio: typeof arch!.mlpRatio === 'number' ? arch!.mlpRatio : 4,
      head: arch!.head as HeadKind,
    },
    input: { size: input!.size as number, interpolation: 'bicubic', mean: [...(input!.mean as number[])], std: [...(input!.std as number[])] },
    labels: ['real', 'fake'],
    source: {
      kind: typeof source.kind === 'string' ? source.kind : 'unknown',
      file: typeof source.file === 'string' ? source.file : '',
      sha256: typeof source.sha256 === 'string' ? source.sha256 : '',
      ...(typeof source.seed === 'number' ? { seed: source.seed } : {}),
    },
    createdBy: typeof o.createdBy === 'string' ? o.createdBy : '',
  };
}
