/**
 * What the decoders share about their inputs: the input types, checks on a media file path before
 * a decoder starts on it, and reading a stream under a size limit and an AbortSignal.
 */
import * as fs from 'node:fs';
import { Readable } from 'node:stream';
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

/**
 * Runs `wait`, a wait in a queue (an ffmpeg pool slot, a decoded-bytes reservation), under the
 * call's `signal` and under `cancelQueued`, which stops waits only: dispose() cancels work that has
 * not started while work already running finishes. A wait stopped by `cancelQueued` rejects with its
 * reason when that is a DfdetError (DISPOSED), else ABORTED.
 */
export async function waitInQueue<T>(what: string, o: { signal?: AbortSignal; cancelQueued?: AbortSignal }, wait: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
  const cancel = o.cancelQueued;
  if (!cancel) return wait(o.signal);
  try {
    return await wait(o.signal ? AbortSignal.any([o.signal, cancel]) : cancel);
  } catch (e) {
    if (cancel.aborted && !o.signal?.aborted) throw cancel.reason instanceof DfdetError ? cancel.reason : new DfdetError('ABORTED', `${what} was cancelled before it started`, { cause: cancel.reason });
    throw e;
  }
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
  if (!st.isFile()) throw new DfdetError('DECODE_FAILED', `Not a regular file: ${name}`, { details: { path: name } });
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
}

/**
 * Reads the first `n` bytes of a stream (fewer when it ends first), without losing them: the
 * result's `stream` gives every byte from the start (the original stream must not be used any
 * more). `ended` tells that `bytes` are the whole stream. `signal` aborts the wait at once.
 */
export async function peekStream(
  source: NodeJS.ReadableStream,
  n: number,
  o: { name: string; signal?: AbortSignal },
): Promise<{ bytes: Buffer; ended: boolean; stream: NodeJS.ReadableStream }> {
  const what = `Reading ${o.name}`;
  const it = (source as AsyncIterable<Buffer | string>)[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let total = 0;
  let ended = false;
  const destroy = (): void => (source as { destroy?: () => void }).destroy?.();
  while (total < n) {
    if (o.signal?.aborted) {
      destroy();
      throw abortError(what, o.signal);
    }
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(abortError(what, o.signal));
      o.signal?.addEventListener('abort', onAbort, { once: true });
    });
    let r: IteratorResult<Buffer | string>;
    try {
      r = await Promise.race([it.next(), aborted]);
    } catch (e) {
      destroy();
      if (e instanceof DfdetError) throw e;
      throw new DfdetError('DECODE_FAILED', `Could not read ${o.name}: ${(e as Error)?.message ?? e}`, { cause: e });
    } finally {
      o.signal?.removeEventListener('abort', onAbort!);
    }
    if (r.done) {
      ended = true;
      break;
    }
    const b = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
    chunks.push(b);
    total += b.length;
  }
  const bytes = Buffer.concat(chunks, total);
  async function* rest(): AsyncGenerator<Buffer> {
    try {
      yield bytes;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
      }
    } finally {
      if (!ended) await it.return?.();
    }
  }
  const stream = Readable.from(rest(), { objectMode: false });
  // Destroying the new stream (an abort) destroys the source, even while a read of it is pending.
  stream.once('close', destroy);
  return { bytes, ended, stream };
}

/**
 * Reads a stream into memory, at most `maxBytes`, settling with `ABORTED` as soon as `signal`
 * aborts even when the stream never sends another byte (the stream is destroyed then).
 */
export function readStream(stream: NodeJS.ReadableStream, o: ReadStreamOptions): Promise<Buffer> {
  const what = `Reading ${o.name}`;
  if (o.signal?.aborted) return Promise.reject(abortError(what, o.signal));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let settled = false;
    const finish = (e: DfdetError | undefined): void => {
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
        resolve(Buffer.concat(chunks, total));
      }
    };
    const onData = (chunk: Buffer | string): void => {
      const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      total += b.length;
      chunks.push(b);
      if (total > o.maxBytes) finish(new DfdetError('DECODE_FAILED', `${o.name} is larger than the limit of ${o.maxBytes} bytes`));
    };
    const onEnd = (): void => finish(undefined);
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
