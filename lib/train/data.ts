/**
 * Training data: labelled media → face crops as CLIP tensor rows, cached on disk so that epochs
 * (and later runs on the same data) never decode again.
 *
 * Crops come from the Detector's own preparation stage ({@link prepareFaces}: decode, BlazeFace,
 * tracking, alignment crop, CLIP transform), with the Detector's options: the crops a model is
 * trained on are exactly the crops it scores. Per labelled item: the largest face of an image,
 * every frame of a video's main face track, or (faces: 'none') the whole images/frames.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { DetectorMetadata } from '../detector-model/metadata';
import { prepareFaces, type PipelineContext, type PreparedFaces } from '../detector/run';
import { DfdetError } from '../errors';
import type { DatasetItem } from '../eval/dataset';
import { loadFaceDetector } from '../faces/blazeface';
import type { Model } from '../model';
import type { ResolvedDetectorOptions } from '../options/detector';

/** How crops are made (all of it is part of the cache key). */
export interface CropOptions {
  /** The Detector's resolved options: faces, crop geometry, face thresholds, video limits. */
  detector: PipelineContext['options'] & Pick<ResolvedDetectorOptions, 'faces' | 'device'>;
  /** The model's preprocessing (from its metadata). */
  input: DetectorMetadata['input'];
  /** Frames sampled uniformly from each video. */
  frames: number;
}

/** The crop options of a run: the preparation's share of the Detector's resolved options. */
export function cropOptions(d: ResolvedDetectorOptions, input: DetectorMetadata['input'], frames: number): CropOptions {
  const { faces, device, crop, cropScale, cropSize, maxFrames, videoTimeoutMs, maxPixels, maxFrameSide, maxVideoBytes, faceThreshold, minFaceSize, batchSize } = d;
  return {
    detector: { faces, device, crop, cropScale, cropSize, maxFrames, videoTimeoutMs, maxPixels, maxFrameSide, maxVideoBytes, faceThreshold, minFaceSize, batchSize },
    input,
    frames,
  };
}

/** A set of cached crops: rows of `3·size·size` float32 values with their labels. */
export interface CropSet {
  /** The cache file of the rows. */
  file: string;
  /** Rows (faces). */
  count: number;
  /** Floats per row. */
  rowLength: number;
  /** Label of each row (0 real, 1 fake). */
  labels: Uint8Array;
  /** Index into the dataset items of each row. */
  itemOf: Int32Array;
  /** Items that gave no row, with why (no face, decode error). */
  skipped: { path: string; reason: string }[];
  /** True when the rows came from the cache. */
  cached: boolean;
}

interface CacheIndex {
  format: 'dfdet-train-crops';
  version: 1;
  count: number;
  rowLength: number;
  labels: number[];
  itemOf: number[];
  skipped: { path: string; reason: string }[];
}

/** Progress of {@link prepareCrops}: items done of total, rows so far. */
export interface CropProgress {
  done: number;
  total: number;
  rows: number;
}

/** Cache key: the crop options and every item's path, label, size and modification time. */
function cacheKey(items: readonly DatasetItem[], opts: CropOptions): string {
  const h = crypto.createHash('sha256');
  h.update(JSON.stringify({ v: 1, opts }));
  for (const it of items) {
    const st = fs.statSync(it.path, { throwIfNoEntry: false });
    h.update(JSON.stringify([it.path, it.label, st?.size ?? -1, st?.mtimeMs ?? -1]));
  }
  return h.digest('hex').slice(0, 32);
}

/**
 * Crops of every labelled item, from the cache under `cacheDir` when present, else made now
 * (and cached), yielding progress after each item. Throws BAD_INPUT for items without a label,
 * and when no item gives a crop.
 */
export async function* prepareCrops(
  items: readonly DatasetItem[],
  opts: CropOptions,
  cacheDir: string,
  signal?: AbortSignal,
): AsyncGenerator<CropProgress, CropSet> {
  const unlabelled = items.find((it) => it.label === null);
  if (unlabelled) throw new DfdetError('BAD_INPUT', `Expected a label (real or fake) for every training item but ${unlabelled.path} has none`);
  const dir = path.join(cacheDir, 'train-crops');
  const key = cacheKey(items, opts);
  const file = path.join(dir, `${key}.f32`);
  const indexFile = path.join(dir, `${key}.json`);
  const rowLength = 3 * opts.input.size * opts.input.size;
  const cached = readIndex(indexFile, file, rowLength);
  if (cached) return toSet(cached, file, true);

  await fs.promises.mkdir(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const out = await fs.promises.open(tmp, 'w');
  const labels: number[] = [];
  const itemOf: number[] = [];
  const skipped: { path: string; reason: string }[] = [];
  let faceModel: Model | undefined;
  let complete = false;
  try {
    faceModel = opts.detector.faces === 'detect' ? await loadFaceDetector({ device: opts.detector.device }) : undefined;
    const ctx: PipelineContext = { faceModel, options: opts.detector, input: opts.input };
    for (let i = 0; i < items.length; i++) {
      if (signal?.aborted) throw new DfdetError('ABORTED', 'aborted', { cause: signal.reason });
      const it = items[i]!;
      let rows: Float32Array[] = [];
      try {
        const prepared = await prepareFaces({ name: it.path, kind: it.kind, path: it.path }, ctx, { frames: { kind: 'uniform', count: opts.frames }, allFaces: false }, signal);
        rows = trainingRows(prepared, rowLength, faceModel !== undefined);
        if (rows.length === 0) skipped.push({ path: it.path, reason: 'no face found' });
      } catch (e) {
        if (signal?.aborted) throw e;
        skipped.push({ path: it.path, reason: e instanceof Error ? e.message : String(e) });
      }
      for (const row of rows) {
        await out.write(new Uint8Array(row.buffer, row.byteOffset, row.byteLength));
        labels.push(it.label!);
        itemOf.push(i);
      }
      yield { done: i + 1, total: items.length, rows: labels.length };
    }
    complete = labels.length > 0;
  } finally {
    await out.close();
    await faceModel?.dispose();
    // Stopped, failed or empty: no half-written cache file stays behind.
    if (!complete) await fs.promises.rm(tmp, { force: true });
  }
  if (labels.length === 0) {
    throw new DfdetError('BAD_INPUT', `No face crops could be made from ${items.length} items (first problem: ${skipped[0]?.path}: ${skipped[0]?.reason})`);
  }
  await fs.promises.rename(tmp, file);
  const index: CacheIndex = { format: 'dfdet-train-crops', version: 1, count: labels.length, rowLength, labels, itemOf, skipped };
  await fs.promises.writeFile(indexFile, JSON.stringify(index));
  return toSet(index, file, false);
}

function readIndex(indexFile: string, file: string, rowLength: number): CacheIndex | undefined {
  try {
    const idx = JSON.parse(fs.readFileSync(indexFile, 'utf8')) as CacheIndex;
    const size = fs.statSync(file).size;
    if (idx.format !== 'dfdet-train-crops' || idx.version !== 1 || idx.rowLength !== rowLength) return undefined;
    return size === idx.count * rowLength * 4 ? idx : undefined;
  } catch {
    return undefined;
  }
}

function toSet(idx: CacheIndex, file: string, cached: boolean): CropSet {
  return { file, count: idx.count, rowLength: idx.rowLength, labels: Uint8Array.from(idx.labels), itemOf: Int32Array.from(idx.itemOf), skipped: idx.skipped, cached };
}

/** The rows trained on: an image's largest face (its label is the image's), all rows otherwise. */
function trainingRows(p: PreparedFaces, rowLength: number, detecting: boolean): Float32Array[] {
  const row = (i: number): Float32Array => p.tensor.data.subarray(i * rowLength, (i + 1) * rowLength);
  if (p.faces.length === 0) return [];
  if (p.kind === 'video' || !detecting) return p.faces.map((_, i) => row(i));
  let best = 0;
  const area = (i: number): number => p.faces[i]!.face.box.width * p.faces[i]!.face.box.height;
  for (let i = 1; i < p.faces.length; i++) if (area(i) > area(best)) best = i;
  return [row(best)];
}

/** Reads rows of a crop set into one batch tensor's memory (`out` reused when large enough). */
export async function readRows(set: CropSet, fh: fs.promises.FileHandle, rows: readonly number[], out?: Float32Array): Promise<Float32Array> {
  const n = rows.length * set.rowLength;
  const data = out && out.length >= n ? out.subarray(0, n) : new Float32Array(n);
  const bytes = set.rowLength * 4;
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  for (let k = 0; k < rows.length; k++) {
    const r = rows[k]!;
    const { bytesRead } = await fh.read(view, k * bytes, bytes, r * bytes);
    if (bytesRead !== bytes) throw new DfdetError('RUNTIME_ERROR', `crop cache ${set.file} is truncated (row ${r})`);
  }
  return data;
}
