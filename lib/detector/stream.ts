/**
 * Concurrency and lifecycle: which calls are in flight (dispose waits for them), and the bounded
 * stream behind detect([...]) and detectStream.
 */
import { DfdetError } from '../errors';
import type { DetectInput, MediaSource } from '../inputs';
import { type FailedSource, inputName, stopError } from './sources';
import type { DetectResult } from './types';

/**
 * Tracks work in flight and runs dispose once. `disposing` aborts when dispose() starts, so that
 * work which may never end (reading a stream) stops instead of being waited for.
 */
export class Lifecycle {
  readonly #inFlight = new Set<Promise<unknown>>();
  readonly #disposing = new AbortController();
  #disposed: Promise<void> | undefined;

  /** True once dispose() was called. */
  get disposed(): boolean {
    return this.#disposed !== undefined;
  }

  /** Aborted when dispose() starts. */
  get disposing(): AbortSignal {
    return this.#disposing.signal;
  }

  /** @throws DfdetError DISPOSED once dispose() was called. */
  checkAlive(): void {
    if (this.#disposed) throw new DfdetError('DISPOSED', 'the detector was disposed');
  }

  /** Counts `p` as work in flight until it settles. */
  track<T>(p: Promise<T>): Promise<T> {
    this.#inFlight.add(p);
    void p.finally(() => this.#inFlight.delete(p)).catch(() => undefined);
    return p;
  }

  /** Marks work in flight until the returned function is called; undefined once dispose() was called. */
  hold(): (() => void) | undefined {
    if (this.#disposed) return undefined;
    let release!: () => void;
    this.track(new Promise<void>((r) => (release = r)));
    return release;
  }

  /** Stops streams being read, waits for the rest of the work in flight, then runs `close`. Idempotent. */
  dispose(close: () => Promise<void>): Promise<void> {
    this.#disposed ??= (async () => {
      this.#disposing.abort(new DfdetError('DISPOSED', 'the detector was disposed'));
      // Work in flight may start more tracked work (a stream starting its next input): wait until none is left.
      while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
      await close();
    })();
    return this.#disposed;
  }
}

/** What {@link streamResults} needs from the detector. */
export interface StreamContext {
  lifecycle: Lifecycle;
  /** Inputs running at once. */
  limit: number;
  signal: AbortSignal | undefined;
  /**
   * The consumer is the caller's code, which may pause at a yield for as long as it likes: the
   * stream counts as work in flight from its first line, but never while paused at a yield or
   * waiting for an async iterable's next input.
   */
  external: boolean;
  /** The input stage (folders expand to several sources). */
  sourcesOf(input: DetectInput, index: number): Promise<(MediaSource | FailedSource)[]>;
  /** Scores one source (never rejects: errors are results). */
  analyze(source: MediaSource | FailedSource, index: number): Promise<DetectResult>;
}

/**
 * The core of detect([...]) and detectStream: at most `limit` inputs at once, results as they
 * finish. Once aborted (or disposed, for an external stream) no further input is taken from an
 * iterable, and every input taken gets a result; an array's inputs all get one.
 */
export async function* streamResults(inputs: AsyncIterable<DetectInput> | Iterable<DetectInput>, ctx: StreamContext): AsyncGenerator<DetectResult> {
  const { lifecycle, signal, external } = ctx;
  let release: (() => void) | undefined;
  // True once the stream resumed after dispose(): it starts no more work.
  let cut = false;
  const acquire = (): void => {
    release ??= lifecycle.hold();
    if (external && !release) cut = true;
  };
  const letGo = (): void => {
    release?.();
    release = undefined;
  };
  acquire();
  // An array's inputs cost nothing to take, so each gets a result even after an abort.
  const finishAll = Array.isArray(inputs);
  const isAsync = Symbol.asyncIterator in Object(inputs);
  const it = isAsync ? (inputs as AsyncIterable<DetectInput>)[Symbol.asyncIterator]() : (inputs as Iterable<DetectInput>)[Symbol.iterator]();
  const running = new Map<number, Promise<{ id: number; result: DetectResult }>>();
  let index = 0;
  let id = 0;
  let finished = false;
  try {
    for (;;) {
      // A slow async iterable is not work in flight; taking from a sync one is instant.
      if (isAsync) letGo();
      let next: IteratorResult<DetectInput>;
      try {
        next = await it.next();
      } catch (e) {
        finished = true;
        throw e;
      }
      if (next.done) {
        finished = true;
        break;
      }
      const input = next.value;
      acquire();
      // Stopped: the input gets its result without being expanded or decoded.
      const code = signal?.aborted ? 'ABORTED' : cut ? 'DISPOSED' : undefined;
      const sources = code ? [{ name: inputName(input, index), error: stopError(code) }] : await ctx.sourcesOf(input, index);
      for (const s of sources) {
        const myId = id++;
        const myIndex = index++;
        const source = cut && !('error' in s) ? { name: s.name, error: stopError('DISPOSED') } : s;
        running.set(myId, lifecycle.track(ctx.analyze(source, myIndex)).then((result) => ({ id: myId, result })));
        if (running.size >= ctx.limit) {
          const done = await Promise.race(running.values());
          running.delete(done.id);
          letGo();
          yield done.result;
          acquire();
        }
      }
      // Take no further input once aborted or disposed (an array's inputs still get their results).
      if (!finishAll && (signal?.aborted || (external && lifecycle.disposed))) break;
    }
  } finally {
    letGo();
    if (!finished) await it.return?.();
  }
  while (running.size > 0) {
    const done = await Promise.race(running.values());
    running.delete(done.id);
    yield done.result;
  }
}
