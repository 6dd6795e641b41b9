/**
 * Evaluation inputs: find labelled images/videos on disk.
 *
 * Three inputs are understood ({@link scanDataset}):
 * 1. The paper's layout, `<root>/<dataset>/<source>/<video>/<frame>.<img>`. A source whose name
 *    contains `real` (case-insensitive) is real (label 0), every other source is fake (label 1).
 *    Files deeper than 4 levels keep the first two folders as dataset/source and the rest as video.
 *    Files at depth 3 (`<dataset>/<source>/<file>`) are one-item "videos": a video file, or an image.
 * 2. A CSV file `path,label[,dataset,video]` (header optional; a header may name the columns
 *    path,label,dataset,source,video,frame in any order). Labels: 0/1 or real/fake. Relative paths are
 *    relative to the CSV's folder. Quotes as RFC 4180.
 * 3. A generic folder: media directly in `<root>` (label unknown, `null`) or in `<root>/<folder>/`
 *    (label from the folder name: contains `real` → 0, contains `fake` → 1, else `null`).
 *    The dataset name is the root folder's name.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DfdetError, invalidParameter } from '../errors';
import { IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, mediaKindFromPath } from '../media/kind';

/** One image or video to score. */
export interface DatasetItem {
  /** Absolute path of the file. */
  path: string;
  /** Dataset name (first folder of the paper layout, the CSV's `dataset` column, or the root's name). */
  dataset: string;
  /** Source / manipulation name (e.g. `Celeb-real`, `DF`); for CSV rows without one: `real` or `fake`. */
  source: string;
  /** Video id; frames of one video share it (video score = mean of its frames). */
  video: string;
  /** Frame name (file name without extension), or null for a video file. */
  frame: string | null;
  /** 0 = real, 1 = fake, null = unknown. */
  label: 0 | 1 | null;
  /** Whether the file is an image or a video (by extension). */
  kind: 'image' | 'video';
}

/** Options of {@link scanDataset}. */
export interface ScanOptions {
  /** Force every item's label (e.g. a folder of only real videos). Default: derived from the layout. */
  label?: 0 | 1;
  /** Accept only these kinds. Default: both. */
  kinds?: ReadonlyArray<'image' | 'video'>;
}

/** Media kind from a file name (by extension, the same lists as the rest of dfdet), or null when it is neither. */
export function mediaKind(file: string): 'image' | 'video' | null {
  const kind = mediaKindFromPath(file);
  return kind === 'unknown' ? null : kind;
}

/** Label of a source/folder name in the paper layout: contains `real` → 0, else 1. */
export function labelFromSource(source: string): 0 | 1 {
  return /real/i.test(source) ? 0 : 1;
}

function stem(file: string): string {
  return path.basename(file, path.extname(file));
}

/** Relative paths (POSIX separators) of all media files under root, sorted; hidden entries skipped. */
async function walk(root: string): Promise<string[]> {
  const out: string[] = [];
  const stack: string[] = [''];
  while (stack.length) {
    const rel = stack.pop()!;
    const entries = await fs.promises.readdir(path.join(root, rel), { withFileTypes: true });
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const r = rel ? `${rel}/${e.name}` : e.name;
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        const st = await fs.promises.stat(path.join(root, r)).catch(() => null);
        isDir = !!st?.isDirectory();
        isFile = !!st?.isFile();
        // Symlinked folders are not followed: they can form cycles.
        if (isDir) continue;
      }
      if (isDir) stack.push(r);
      else if (isFile && mediaKind(e.name)) out.push(r);
    }
  }
  return out.sort();
}

function itemFromRelative(root: string, rel: string): DatasetItem {
  const parts = rel.split('/');
  const file = parts[parts.length - 1]!;
  const kind = mediaKind(file)!;
  const abs = path.join(root, ...parts);
  const frame = kind === 'video' ? null : stem(file);
  if (parts.length >= 3) {
    // Paper layout; at depth 3 the file is a one-item video of its own.
    const source = parts[1]!;
    const video = parts.length >= 4 ? parts.slice(2, -1).join('/') : stem(file);
    return { path: abs, dataset: parts[0]!, source, video, frame, label: labelFromSource(source), kind };
  }
  const dataset = path.basename(root);
  const folder = parts.length === 2 ? parts[0]! : '';
  const label = /real/i.test(folder) ? 0 : /fake/i.test(folder) ? 1 : null;
  return { path: abs, dataset, source: folder, video: stem(file), frame, label, kind };
}

/** Parse CSV text (RFC 4180 quotes, CRLF or LF) into rows of fields with their 1-based line numbers. */
export function parseCsv(text: string): { line: number; fields: string[] }[] {
  const rows: { line: number; fields: string[] }[] = [];
  let fields: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  let any = false;
  const s = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quoted) {
      if (c === '"') {
        if (s[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else {
        if (c === '\n') line++;
        field += c;
      }
      continue;
    }
    if (c === '"' && field === '') {
      quoted = true;
      any = true;
    } else if (c === ',') {
      fields.push(field);
      field = '';
      any = true;
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && s[i + 1] === '\n') i++;
      fields.push(field);
      if (any || field !== '') rows.push({ line: rowLine, fields });
      fields = [];
      field = '';
      any = false;
      line++;
      rowLine = line;
    } else {
      field += c;
      any = true;
    }
  }
  if (quoted) throw new DfdetError('BAD_INPUT', `Unterminated quoted field in CSV starting on line ${rowLine}`);
  fields.push(field);
  if (any || field !== '') rows.push({ line: rowLine, fields });
  return rows;
}

function parseLabel(v: string | undefined): 0 | 1 | undefined {
  const t = (v ?? '').trim().toLowerCase();
  if (t === '0' || t === 'real') return 0;
  if (t === '1' || t === 'fake') return 1;
  return undefined;
}

/** Column names a CSV header may use. */
type CsvColumn = 'path' | 'label' | 'dataset' | 'source' | 'video' | 'frame';

/** Read a `path,label[,dataset,video]` CSV into items. */
export async function readCsvDataset(csvPath: string, options: ScanOptions = {}): Promise<DatasetItem[]> {
  const text = await fs.promises.readFile(csvPath, 'utf8');
  const rows = parseCsv(text);
  if (!rows.length) throw new DfdetError('BAD_INPUT', `CSV file ${csvPath} has no rows`, { details: { path: csvPath } });
  const base = path.dirname(path.resolve(csvPath));
  // Positional columns unless the first row is a header naming them.
  let columns: string[] = ['path', 'label', 'dataset', 'video'];
  let start = 0;
  // Common synonyms of "path" in headers.
  const first = rows[0]!.fields.map((f) => f.trim().toLowerCase()).map((f) => (['file', 'filename', 'filepath'].includes(f) ? 'path' : f));
  if (first.includes('path') && first.every((f) => parseLabel(f) === undefined)) {
    if (!first.includes('label') && options.label === undefined) {
      throw new DfdetError('BAD_INPUT', `CSV header of ${csvPath} has no "label" column`, { details: { path: csvPath } });
    }
    columns = first;
    start = 1;
  }
  const col = (name: CsvColumn): number => columns.indexOf(name);
  const datasetDefault = stem(csvPath);
  const items: DatasetItem[] = [];
  for (const { line, fields } of rows.slice(start)) {
    const get = (name: CsvColumn): string | undefined => {
      const i = col(name);
      const v = i >= 0 ? fields[i]?.trim() : undefined;
      return v === '' ? undefined : v;
    };
    const p = get('path');
    if (!p) throw new DfdetError('BAD_INPUT', `CSV ${csvPath} line ${line}: empty path`, { details: { path: csvPath, line } });
    const raw = get('label');
    const label = options.label ?? parseLabel(raw);
    if (label === undefined) {
      throw new DfdetError('BAD_INPUT', `CSV ${csvPath} line ${line}: expected label 0, 1, real or fake but received ${JSON.stringify(raw ?? '')}`, {
        details: { path: csvPath, line },
      });
    }
    const abs = path.resolve(base, p);
    const kind = mediaKind(abs) ?? 'image';
    if (options.kinds && !options.kinds.includes(kind)) continue;
    const s = stem(abs);
    items.push({
      path: abs,
      dataset: get('dataset') ?? datasetDefault,
      source: get('source') ?? (label === 0 ? 'real' : 'fake'),
      // Without a video column each row is its own video, keyed by its path (unique).
      video: get('video') ?? path.relative(base, abs).replace(/\\/g, '/').replace(/\.[^./]*$/, ''),
      frame: get('frame') ?? (kind === 'video' ? null : s),
      label,
      kind,
    });
  }
  if (!items.length) throw new DfdetError('BAD_INPUT', `CSV file ${csvPath} lists no items`, { details: { path: csvPath } });
  return items;
}

/**
 * Find the items of an evaluation set: a folder (paper layout or generic) or a CSV file.
 * Items come sorted by path (folders) or in file order (CSV).
 * @throws DfdetError NOT_FOUND when `input` does not exist; BAD_INPUT when it has no media, when a
 *   CSV row is malformed, or when `input` is neither a folder nor a `.csv` file.
 */
export async function scanDataset(input: string, options: ScanOptions = {}): Promise<DatasetItem[]> {
  if (typeof input !== 'string' || input === '') invalidParameter('input', 'a folder or CSV path', input);
  if (options.label !== undefined && options.label !== 0 && options.label !== 1) invalidParameter('label', '0 or 1', options.label);
  if (options.kinds !== undefined && (!Array.isArray(options.kinds) || options.kinds.some((k) => k !== 'image' && k !== 'video'))) {
    invalidParameter('kinds', "an array of 'image' | 'video'", options.kinds);
  }
  const st = await fs.promises.stat(input).catch(() => null);
  if (!st) throw new DfdetError('NOT_FOUND', `Dataset path ${input} does not exist`, { details: { path: input } });
  if (st.isFile()) {
    if (path.extname(input).toLowerCase() !== '.csv') {
      throw new DfdetError('BAD_INPUT', `Expected a folder or a .csv file for dataset but received file ${input}`, { details: { path: input } });
    }
    return readCsvDataset(input, options);
  }
  if (!st.isDirectory()) throw new DfdetError('BAD_INPUT', `Dataset path ${input} is neither a folder nor a file`, { details: { path: input } });
  const root = path.resolve(input);
  const rels = await walk(root);
  let items = rels.map((r) => itemFromRelative(root, r));
  if (options.kinds) items = items.filter((i) => options.kinds!.includes(i.kind));
  if (options.label !== undefined) for (const i of items) i.label = options.label;
  if (!items.length) {
    throw new DfdetError('BAD_INPUT', `No images or videos found under ${input} (extensions: ${[...IMAGE_EXTENSIONS, ...VIDEO_EXTENSIONS].join(', ')})`, {
      details: { path: input },
    });
  }
  return items;
}
