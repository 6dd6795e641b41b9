/**
 * The input stage: from what the caller passed to named media sources, or to a failed source that
 * still gets a result. Reading a stream may never end (a socket that stalls): the stage settles at
 * once on the call's abort (ABORTED) and, for streams, on dispose (DISPOSED).
 */
import { DfdetError, isDfdetError } from '../errors';
import { resolveInput, type DetectInput, type MediaSource } from '../inputs';
import { isReadable } from '../media/file';
import type { ResultError } from './types';

/** An input that could not be resolved into media: it still gets a result, carrying the error. */
export interface FailedSource {
  name: string;
  error: ResultError;
}

/** The result error of any thrown value. */
export function toResultError(e: unknown): ResultError {
  if (isDfdetError(e)) return { code: e.code, message: e.message };
  return { code: 'RUNTIME_ERROR', message: e instanceof Error ? e.message : String(e) };
}

/** The result error of an input stopped by an abort or by dispose(). */
export function stopError(code: 'ABORTED' | 'DISPOSED'): ResultError {
  return { code, message: code === 'ABORTED' ? 'aborted' : 'the detector was disposed' };
}

/** True when resolving the input reads a stream (which may never end). */
function readsStream(input: DetectInput): boolean {
  return isReadable(input) || (typeof input === 'object' && input !== null && !(input instanceof Uint8Array) && isReadable((input as { data?: unknown }).data));
}

/**
 * The name results use for an input that failed before it was resolved: the caller's `name`, else
 * its path, else `<buffer>` / `<stream>`; `<input N>` only for a value that is none of these.
 */
export function inputName(input: unknown, index: number): string {
  if (typeof input === 'string') return input;
  if (input instanceof Uint8Array) return '<buffer>';
  if (isReadable(input)) return '<stream>';
  if (typeof input === 'object' && input !== null) {
    const d = input as { name?: unknown; path?: unknown; data?: unknown };
    if (typeof d.name === 'string') return d.name;
    if (typeof d.path === 'string') return d.path;
    if (d.data instanceof Uint8Array) return '<buffer>';
    if (isReadable(d.data)) return '<stream>';
  }
  return `<input ${index}>`;
}

/** `work`, or the error of the first of `stops` to abort (listeners removed either way). */
async function raceStops<T>(work: Promise<T>, stops: readonly { signal: AbortSignal; code: 'ABORTED' | 'DISPOSED' }[]): Promise<T> {
  if (stops.length === 0) return work;
  // A stop may win: the input's own outcome then settles unobserved.
  work.catch(() => undefined);
  const offs: (() => void)[] = [];
  const stopped = new Promise<never>((_, reject) => {
    for (const { signal, code } of stops) {
      const fire = (): void => reject(new DfdetError(code, stopError(code).message, { cause: signal.reason }));
      if (signal.aborted) fire();
      signal.addEventListener('abort', fire, { once: true });
      offs.push(() => signal.removeEventListener('abort', fire));
    }
  });
  try {
    return await Promise.race([work, stopped]);
  } finally {
    for (const off of offs) off();
  }
}

/**
 * Resolves one input into sources (a folder gives several), or one failed source. Settles at once
 * when `signal` aborts (ABORTED) and, while reading a stream, when `disposing` aborts (DISPOSED).
 */
export async function sourcesOf(input: DetectInput, index: number, signal: AbortSignal | undefined, disposing: AbortSignal): Promise<(MediaSource | FailedSource)[]> {
  if (signal?.aborted) return [{ name: inputName(input, index), error: stopError('ABORTED') }];
  const stops: { signal: AbortSignal; code: 'ABORTED' | 'DISPOSED' }[] = [];
  if (signal) stops.push({ signal, code: 'ABORTED' });
  // Only a stream may block for ever; paths and bytes resolve, and dispose() waits for them.
  if (readsStream(input)) stops.push({ signal: disposing, code: 'DISPOSED' });
  try {
    // The reader itself stops too (and destroys the stream), not only this call's wait for it.
    return await raceStops(resolveInput(input, { signal: stops.length ? AbortSignal.any(stops.map((x) => x.signal)) : undefined }), stops);
  } catch (e) {
    return [{ name: inputName(input, index), error: toResultError(e) }];
  }
}
