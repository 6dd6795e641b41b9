/**
 * Training data: labelled media → face crops as CLIP tensor rows, cached on disk so that epochs
 * (and later runs on the same data) never decode again.
 *
 * Faces are found and cropped with the detection pipeline's own pieces (decodeImage/sampleFrames,
 * BlazeFace, cropFace, clipTransform with the model's preprocessing) and its defaults. TEMPORARY:
 * once lib/detector/run.ts exposes the Detector's preparation stage (`prepareFaces`), this module
 * calls it instead of composing the pieces.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { DfdetError } from '../errors';
import type { DatasetItem } from '../eval/dataset';
import { cropFace } from '../faces/align';
import { detectFaces, loadFaceDetector } from '../faces/blazeface';
import type { Face } from '../faces/types';
import { mainTrack } from '../faces/track';
import { decodeImage, type RgbImage } from '../media/image';
import { clipTransform } from '../media/transform';
import { sampleFrames } from '../media/video';
import type { Model } from '../model';
import type { DetectorMetadata } from '../detector-model/metadata';

/** How crops are made (part of the cache key). */
export interface CropOptions {
  /** 'detect': the largest face of an image, the main face track of a video; 'none': whole images/frames. */
  faces: 'detect' | 'none';
  /** The model's preprocessing (from its metadata). */
  input: DetectorMetadata['input'];
  /** Frames sampled uniformly from each video (the Detector's default: 32). */
  frames: number;
  /** Face crop mode and geometry (the Detector's defaults: align, 1.3, 256). */
  crop: 'align' | 'box';
  cropScale: number;
  cropSize: number;
  faceThreshold: number;
  minFaceSize: number;
}

/** The Detector's defaults. */
export const DEFAULT_CROP: Omit<CropOptions, 'faces' | 'input'> = { frames: 32, crop: 'align', cropScale: 1.3, cropSize: 256, faceThreshold: 0.5, minFaceSize: 24 };

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
  const faceModel = opts.faces === 'detect' ? await loadFaceDetector() : undefined;
  const labels: number[] = [];
  const itemOf: number[] = [];
  const skipped: { path: string; reason: string }[] = [];
  try {
    for (let i = 0; i < items.length; i++) {
      if (signal?.aborted) throw new DfdetError('ABORTED', 'aborted', { cause: signal.reason });
      const it = items[i]!;
      let crops: RgbImage[];
      try {
        crops = await cropsOf(it, opts, faceModel, signal);
      } catch (e) {
        if (signal?.aborted) throw e;
        skipped.push({ path: it.path, reason: e instanceof Error ? e.message : String(e) });
        crops = [];
      }
      if (crops.length === 0 && !skipped.some((s) => s.path === it.path)) skipped.push({ path: it.path, reason: 'no face found' });
      if (crops.length > 0) {
        const m = opts.input;
        const t = clipTransform(crops, { size: m.size, mean: m.mean, std: m.std, interpolation: m.interpolation });
        await out.write(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
        for (let k = 0; k < crops.length; k++) {
          labels.push(it.label!);
          itemOf.push(i);
        }
      }
      yield { done: i + 1, total: items.length, rows: labels.length };
    }
  } finally {
    await out.close();
    await faceModel?.dispose();
  }
  if (labels.length === 0) {
    await fs.promises.rm(tmp, { force: true });
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

/** The crops of one item: the largest face of an image, the main track of a video, or whole images. */
async function cropsOf(it: DatasetItem, o: CropOptions, faceModel: Model | undefined, signal?: AbortSignal): Promise<RgbImage[]> {
  const images =
    it.kind === 'video'
      ? (await sampleFrames(it.path, { strategy: { kind: 'uniform', count: o.frames }, signal })).frames.map((f) => f.image)
      : [await decodeImage(it.path)];
  if (!faceModel) return images;
  const found = await detectFaces(faceModel, images, { scoreThreshold: o.faceThreshold, minFaceSize: o.minFaceSize });
  const crop = (img: RgbImage, f: Face): RgbImage => cropFace(img, f, { mode: o.crop, scale: o.cropScale, size: o.cropSize });
  if (it.kind === 'video') return mainTrack(found)?.points.map((p) => crop(images[p.frame]!, p.face)) ?? [];
  const faces = found[0] ?? [];
  if (faces.length === 0) return [];
  const largest = faces.reduce((a, b) => (b.box.width * b.box.height > a.box.width * a.box.height ? b : a));
  return [crop(images[0]!, largest)];
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
