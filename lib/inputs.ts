/**
 * What callers may hand to detect(): paths (files or folders), bytes, streams. Everything is
 * normalised into {@link MediaSource}s; folders expand to the media files under them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';

import { DfdetError } from './errors';
import { mediaKindFromPath, sniffMediaKind, type MediaKind } from './media/kind';

/** One input of detect(): a file or folder path, bytes, a readable stream, or a described item. */
export type DetectInput = string | Uint8Array | Readable | NodeJS.ReadableStream | DescribedInput;

/** An input with a name (used in results) and, optionally, its kind. */
export interface DescribedInput {
  /** A file path; or use `data`. */
  path?: string;
  /** Bytes or a stream of an image/video. */
  data?: Uint8Array | Readable | NodeJS.ReadableStream;
  /** Name shown in results (default: the path, or `<buffer>`/`<stream>`). */
  name?: string;
  /** Skip detection of the kind from the extension/bytes. */
  kind?: 'image' | 'video';
}

/** A normalised input: a named file path or bytes of a known kind. */
export interface MediaSource {
  name: string;
  kind: MediaKind;
  path?: string;
  bytes?: Uint8Array;
}

/** Largest stream read into memory (default 2 GiB). */
export const MAX_STREAM_BYTES = 2 ** 31;

function isStream(v: unknown): v is NodeJS.ReadableStream {
  return typeof v === 'object' && v !== null && typeof (v as { pipe?: unknown }).pipe === 'function' && typeof (v as { on?: unknown }).on === 'function';
}

async function readStream(s: NodeJS.ReadableStream, maxBytes: number): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of s as AsyncIterable<Buffer | string>) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    total += b.length;
    if (total > maxBytes) throw new DfdetError('BAD_INPUT', `stream is larger than ${maxBytes} bytes`);
    chunks.push(b);
  }
  return Buffer.concat(chunks, total);
}

/** Media files under `dir`, recursively, in a stable (sorted) order. Symlinked folders are not followed. */
export async function listMediaFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    const entries = await fs.promises.readdir(d, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if ((e.isFile() || e.isSymbolicLink()) && mediaKindFromPath(p) !== 'unknown') out.push(p);
    }
  };
  await walk(dir);
  return out;
}

/**
 * Resolves one input into sources. A folder gives every media file under it; a file of unknown
 * extension is sniffed from its first bytes.
 * @throws DfdetError NOT_FOUND (missing path), BAD_INPUT (unsupported value or unknown media).
 */
export async function resolveInput(input: DetectInput, maxStreamBytes = MAX_STREAM_BYTES): Promise<MediaSource[]> {
  if (typeof input === 'string') return resolvePath(input, undefined, undefined);
  if (input instanceof Uint8Array) return [{ name: '<buffer>', kind: kindOfBytes(input, '<buffer>'), bytes: input }];
  if (isStream(input)) {
    const bytes = await readStream(input, maxStreamBytes);
    return [{ name: '<stream>', kind: kindOfBytes(bytes, '<stream>'), bytes }];
  }
  if (typeof input === 'object' && input !== null) {
    const d = input as DescribedInput;
    if (typeof d.path === 'string') return resolvePath(d.path, d.name, d.kind);
    if (d.data instanceof Uint8Array || isStream(d.data)) {
      const name = d.name ?? (d.data instanceof Uint8Array ? '<buffer>' : '<stream>');
      const bytes = d.data instanceof Uint8Array ? d.data : await readStream(d.data, maxStreamBytes);
      return [{ name, kind: d.kind ?? kindOfBytes(bytes, name), bytes }];
    }
  }
  throw new DfdetError('BAD_INPUT', `Expected a path, a Uint8Array, a readable stream or {path|data, name?, kind?} for input but received ${typeof input}`);
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
  } catch {
    throw new DfdetError('NOT_FOUND', `no such file or folder: ${p}`);
  }
  if (st.isDirectory()) {
    const files = await listMediaFiles(p);
    return files.map((f) => ({ name: f, kind: mediaKindFromPath(f), path: f }));
  }
  let k: MediaKind = kind ?? mediaKindFromPath(p);
  if (k === 'unknown') {
    const fd = await fs.promises.open(p, 'r');
    try {
      const head = Buffer.alloc(64);
      const { bytesRead } = await fd.read(head, 0, 64, 0);
      k = sniffMediaKind(head.subarray(0, bytesRead));
    } finally {
      await fd.close();
    }
    if (k === 'unknown') throw new DfdetError('DECODE_FAILED', `${p}: not a recognised image or video`);
  }
  return [{ name: name ?? p, kind: k, path: p }];
}
