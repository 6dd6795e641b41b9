/**
 * What the decoders share about their inputs: the input types, checks on a media file path before
 * a decoder starts on it, and reading a stream under a size limit and an AbortSignal.
 */
import * as fs from 'node:fs';
import { DfdetError } from '../errors';

/** Encoded media as the decoders take it: a file path, bytes, or a readable stream of bytes. */
export type MediaData = string | Uint8Array | NodeJS.ReadableStream;

/** True for a readable stream (anything with `pipe` and `on`). */
export function isReadable(v: unknown): v is NodeJS.ReadableStream {
  return typeof v === 'object' && v !== null && typeof (v as { pipe?: unknown }).pipe === 'function' && typeof (v as { on?: unknown }).on === 'function';
}

/** The `ABORTED` error of `what` ("Decoding x.mp4"), with the signal's reason as its cause. */
export function abortError(what: string, signal: AbortSignal | undefined): DfdetError {
  return new DfdetError('ABORTED', `${what} aborted`, { cause: signal?.reason });
}

/** Name of an input in messages when the caller gave none: the path, else a description (never a temp path). */
export function defaultName(input: unknown): string {
  if (typeof input === 'string') return input;
  if (input instanceof Uint8Array) return `<buffer of ${input.length} bytes>`;
  return '<stream>';
}

/**
 * The error of a failed `stat`/`open` of a path: `NOT_FOUND` when it does not exist, `BAD_INPUT`
 * with a clear message for a symlink loop (`ELOOP`), a permission problem or another failure.
 */
export function pathError(p: string, e: unknown, what = 'File'): DfdetError {
  const code = (e as NodeJS.ErrnoException)?.code;
  const details = { path: p, errno: code };
  if (code === 'ENOENT' || code === 'ENOTDIR') return new DfdetError('NOT_FOUND', `${what} not found: ${p}`, { cause: e, details });
  if (code === 'ELOOP') return new DfdetError('BAD_INPUT', `${p} is a symbolic link loop (too many levels of symbolic links)`, { cause: e, details });
  if (code === 'EACCES' || code === 'EPERM') return new DfdetError('BAD_INPUT', `Permission denied reading ${p}`, { cause: e, details });
  return new DfdetError('BAD_INPUT', `Could not read ${p}: ${(e as Error)?.message ?? e}`, { cause: e, details });
}

/**
 * Asserts that `file` is a non-empty regular file. `what` names it in messages ('Image', 'Video'),
 * `name` is the caller's name for it (default the path).
 * @throws DfdetError NOT_FOUND when missing; BAD_INPUT for a symlink loop or no permission;
 *   DECODE_FAILED when it is not a regular file or is empty.
 */
export async function checkMediaFile(file: string, what: 'Image' | 'Video', name = file): Promise<void> {
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(file);
  } catch (e) {
    throw pathError(name, e, `${what} file`);
  }
  if (!st.isFile()) throw new DfdetError('DECODE_FAILED', `${what} ${name} is not a regular file`, { details: { path: name } });
  if (st.size === 0) throw new DfdetError('DECODE_FAILED', `${what} file is empty (0 bytes): ${name}`, { details: { path: name } });
}

/** Options of {@link readStream}. */
export interface ReadStreamOptions {
  /** Most bytes read; more fails with `DECODE_FAILED`. */
  maxBytes: number;
  /** Aborting settles the read at once with `ABORTED` and destroys the stream. */
  signal?: AbortSignal;
  /** The input's name in messages. */
  name: string;
  /** Stop after this many bytes (or the end) and return them (default: read to the end). */
  head?: number;
}

/**
 * Reads a stream into memory, at most `maxBytes`, settling with `ABORTED` as soon as `signal`
 * aborts even when the stream never sends another byte (the stream is destroyed then).
 */
export async function readStream(stream: NodeJS.ReadableStream, o: ReadStreamOptions): Promise<Buffer> {
  return (await collect(stream, o)).bytes;
}

/**
 * Reads the first `n` bytes of a stream (fewer when it ends first) and puts them back, so that the
 * stream can still be read from its start. `ended` tells that the bytes are the whole stream.
 */
export async function peekStream(stream: NodeJS.ReadableStream, n: number, o: Omit<ReadStreamOptions, 'head' | 'maxBytes'>): Promise<{ bytes: Buffer; ended: boolean }> {
  const r = await collect(stream, { ...o, maxBytes: Infinity, head: n });
  if (!r.ended && r.bytes.length > 0) stream.unshift(r.bytes);
  return r;
}

function collect(stream: NodeJS.ReadableStream, o: ReadStreamOptions): Promise<{ bytes: Buffer; ended: boolean }> {
  const what = `Reading ${o.name}`;
  if (o.signal?.aborted) return Promise.reject(abortError(what, o.signal));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let settled = false;
    const finish = (e: DfdetError | undefined, ended = false): void => {
      if (settled) return;
      settled = true;
      stream.removeListener('data', onData);
      stream.removeListener('end', onEnd);
      stream.removeListener('error', onError);
      o.signal?.removeEventListener('abort', onAbort);
      if (e) {
        (stream as { destroy?: () => void }).destroy?.();
        reject(e);
      } else {
        if (o.head !== undefined) stream.pause();
        resolve({ bytes: Buffer.concat(chunks, total), ended });
      }
    };
    const onData = (chunk: Buffer | string): void => {
      const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      total += b.length;
      chunks.push(b);
      if (total > o.maxBytes) finish(new DfdetError('DECODE_FAILED', `${o.name} is larger than the limit of ${o.maxBytes} bytes`));
      else if (o.head !== undefined && total >= o.head) finish(undefined);
    };
    const onEnd = (): void => finish(undefined, true);
    const onError = (e: unknown): void =>
      finish(new DfdetError('DECODE_FAILED', `Could not read ${o.name}: ${(e as Error)?.message ?? e}`, { cause: e }));
    const onAbort = (): void => finish(abortError(what, o.signal));
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onError);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    stream.resume();
  });
}
