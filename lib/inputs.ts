/**
 * What callers may hand to detect(): paths (files or folders), bytes, streams. Everything is
 * normalised into {@link MediaSource}s; folders expand to the media files under them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';

import { DfdetError, invalidParameter } from './errors';
import { isReadable, pathError, peekStream, readStream } from './media/file';
import { mediaKindFromPath, sniffMediaKind, type MediaKind } from './media/kind';

/** One input of detect(): a file or folder path, bytes, a readable stream, or a described item. */
export type DetectInput = string | Uint8Array | Readable | NodeJS.ReadableStream | DescribedInput;

/** An input with a name (used in results) and, optionally, its kind. */
export interface DescribedInput {
  /** A file path; or use `data`. */
  path?: string;
  /** Bytes or a stream of an image/video. */
  data?: Uint8Array | Readable | NodeJS.ReadableStream;
  /** Name shown in results and error messages (default: the path, or `<buffer>`/`<stream>`). */
  name?: string;
  /** Skip detection of the kind from the extension/bytes. */
  kind?: 'image' | 'video';
}

/**
 * A normalised input: a named file path, bytes, or (videos only) a stream not read yet, of a known
 * kind. Exactly one of `path`, `bytes`, `stream` is set.
 */
export interface MediaSource {
  /** The caller's name for it: use it in results and messages. */
  name: string;
  kind: MediaKind;
  path?: string;
  bytes?: Uint8Array;
  /** A video stream, read once by the decoder (spooled to a temp file for ffmpeg). */
  stream?: NodeJS.ReadableStream;
}

/** Largest stream read into memory or spooled (default 2 GiB). */
export const MAX_STREAM_BYTES = 2 ** 31;

/** Options of {@link resolveInput}. */
export interface ResolveOptions {
  /** Largest image stream read into memory (default {@link MAX_STREAM_BYTES}). */
  maxStreamBytes?: number;
  /** Abort: a stream being read is destroyed and the call rejects at once with `ABORTED`. */
  signal?: AbortSignal;
}

const byName = (a: fs.Dirent, b: fs.Dirent): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/**
 * Media files under `dir`, recursively, in a stable (sorted) order, by extension. Symlinked folders
 * are never followed, whatever their name (`photos.jpg -> /`); a symlink to a file is listed, and
 * so is one that does not resolve (dangling or a loop) so that its failure is reported.
 * @throws DfdetError NOT_FOUND / BAD_INPUT (symlink loop, permission) when a folder cannot be read.
 */
export async function listMediaFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    let entries: fs.Dirent[];
    try {
      entries = await fs.promises.readdir(d, { withFileTypes: true });
    } catch (e) {
      throw pathError(d, e, 'Folder');
    }
    entries.sort(byName);
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (mediaKindFromPath(p) === 'unknown') continue;
      else if (e.isFile()) out.push(p);
      else if (e.isSymbolicLink()) {
        const st = await fs.promises.stat(p).catch(() => undefined);
        if (!st || st.isFile()) out.push(p);
      }
    }
  };
  await walk(dir);
  return out;
}

/**
 * Resolves one input into sources. A folder gives every media file under it; a file of unknown
 * extension is sniffed from its first bytes; a stream's kind is sniffed from its first bytes, then
 * an image stream is read into memory and a video stream is left for the decoder to spool once.
 * @throws DfdetError NOT_FOUND (missing path), BAD_INPUT (unsupported value or kind, symlink loop),
 *   DECODE_FAILED (unknown media), ABORTED.
 */
export async function resolveInput(input: DetectInput, opts: ResolveOptions = {}): Promise<MediaSource[]> {
  const maxStreamBytes = opts.maxStreamBytes ?? MAX_STREAM_BYTES;
  if (typeof input === 'string') return resolvePath(input, undefined, undefined);
  if (input instanceof Uint8Array) return [{ name: '<buffer>', kind: kindOfBytes(input, '<buffer>'), bytes: input }];
  if (isReadable(input)) return [await resolveStream(input, '<stream>', undefined, maxStreamBytes, opts.signal)];
  if (typeof input === 'object' && input !== null) {
    const d = input as DescribedInput;
    if (d.kind !== undefined && d.kind !== 'image' && d.kind !== 'video') invalidParameter('kind', "'image' or 'video'", d.kind);
    if (d.name !== undefined && (typeof d.name !== 'string' || d.name === '')) invalidParameter('name', 'a non-empty string', d.name);
    if (typeof d.path === 'string') return resolvePath(d.path, d.name, d.kind);
    if (d.data instanceof Uint8Array) {
      const name = d.name ?? '<buffer>';
      return [{ name, kind: d.kind ?? kindOfBytes(d.data, name), bytes: d.data }];
    }
    if (isReadable(d.data)) return [await resolveStream(d.data, d.name ?? '<stream>', d.kind, maxStreamBytes, opts.signal)];
  }
  throw new DfdetError('BAD_INPUT', `Expected a path, a Uint8Array, a readable stream or {path|data, name?, kind?} for input but received ${typeof input}`);
}

async function resolveStream(
  s: NodeJS.ReadableStream,
  name: string,
  kind: 'image' | 'video' | undefined,
  maxBytes: number,
  signal: AbortSignal | undefined,
): Promise<MediaSource> {
  const head = await peekStream(s, 64, { name, signal });
  const k = kind ?? kindOfBytes(head.bytes, name);
  if (head.ended) return { name, kind: k, bytes: head.bytes };
  if (k === 'video') return { name, kind: k, stream: head.stream };
  return { name, kind: k, bytes: await readStream(head.stream, { maxBytes, signal, name }) };
}

function kindOfBytes(bytes: Uint8Array, name: string): MediaKind {
  const kind = sniffMediaKind(bytes);
  if (kind === 'unknown') throw new DfdetError('DECODE_FAILED', `${name}: not a recognised image or video (${bytes.length} bytes)`);
  return kind;
}

async function resolvePath(p: string, name: string | undefined, kind: 'image' | 'video' | undefined): Promise<MediaSource[]> {
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException)?.code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new DfdetError('NOT_FOUND', `no such file or folder: ${p}`, { cause: e, details: { path: p } });
    throw pathError(p, e);
  }
  if (st.isDirectory()) {
    const files = await listMediaFiles(p);
    return files.map((f) => ({ name: f, kind: mediaKindFromPath(f), path: f }));
  }
  let k: MediaKind = kind ?? mediaKindFromPath(p);
  if (k === 'unknown') {
    try {
      const fd = await fs.promises.open(p, 'r');
      try {
        const head = Buffer.alloc(64);
        const { bytesRead } = await fd.read(head, 0, 64, 0);
        k = sniffMediaKind(head.subarray(0, bytesRead));
      } finally {
        await fd.close();
      }
    } catch (e) {
      throw pathError(name ?? p, e);
    }
    if (k === 'unknown') throw new DfdetError('DECODE_FAILED', `${name ?? p}: not a recognised image or video`);
  }
  return [{ name: name ?? p, kind: k, path: p }];
}
