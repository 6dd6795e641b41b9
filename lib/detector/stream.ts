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
  /** Inputs being decoded and cropped at once (`concurrency`). */
  limit: number;
  /**
   * Faces kept in flight: prepared inputs wait for the model while the next ones decode, until this
   * many of their faces wait (2 x batchSize fills a batch while the previous one runs). Memory
   * stays bounded: at most `limit` inputs decoding plus the inputs holding these faces.
   */
  facesAhead: number;
  signal: AbortSignal | undefined;
  /**
   * The consumer is the caller's code, which may pause at a yield for as long as it likes: the
   * stream counts as work in flight from its first line, but never while paused at a yield or
   * waiting for an async iterable's next input.
   */
  external: boolean;
  /** The input stage (folders expand to several sources). */
  sourcesOf(input: DetectInput, index: number): Promise<(MediaSource | FailedSource)[]>;
  /**
   * Scores one source (never rejects: errors are results). Calls `prepared(faces)` once its faces
   * are cropped and handed to the model, so the stream can start decoding the next input.
   */
  analyze(source: MediaSource | FailedSource, index: number, prepared: (faces: number) => void): Promise<DetectResult>;
  /** Nothing more comes from this stream until a result is out: run the faces queued now. */
  drain(): void;
}

/** Counts of the inputs in flight: those decoding, and the faces of those waiting for the model. */
class Flow {
  preparing = 0;
  waitingFaces = 0;
  readonly #faces = new Map<number, number>();
  #wake: () => void = () => undefined;
  /** Settles at the next change (an input prepared). */
  changed: Promise<void> = this.#next();

  #next(): Promise<void> {
    return (this.changed = new Promise<void>((r) => (this.#wake = r)));
  }

  started(): void {
    this.preparing++;
  }

  prepared(id: number, faces: number): void {
    if (this.#faces.has(id)) return;
    this.#faces.set(id, faces);
    this.preparing--;
    this.waitingFaces += faces;
    const wake = this.#wake;
    this.#next();
    wake();
  }

  finished(id: number): void {
    const faces = this.#faces.get(id);
    if (faces === undefined) this.preparing--;
    else this.waitingFaces -= faces;
    this.#faces.delete(id);
  }
}

/**
 * The core of detect([...]) and detectStream: at most `limit` inputs decode at once, and more start
 * while fewer than `facesAhead` faces wait for the model, so batches fill whatever the mix of
 * inputs; results as they finish. Once aborted (or disposed, for an external stream) no further
 * input is taken from an iterable, and every input taken gets a result; an array's inputs all get one.
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
  const flow = new Flow();
  const room = (): boolean => flow.preparing < ctx.limit && flow.waitingFaces < ctx.facesAhead;
  /** Waits for an input to be prepared or to finish; returns the finished one's result. */
  const step = async (): Promise<DetectResult | undefined> => {
    // No input decoding: nothing joins the queued faces until a result is out.
    if (flow.preparing === 0) ctx.drain();
    const done = await Promise.race([flow.changed, ...running.values()]);
    if (!done) return undefined;
    running.delete(done.id);
    flow.finished(done.id);
    return done.result;
  };
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
        while (!room()) {
          const result = await step();
          if (!result) continue;
          letGo();
          yield result;
          acquire();
        }
        // After dispose() a stream runs at most `limit` inputs and decodes nothing ahead: the
        // inputs it would start beyond them end DISPOSED.
        if (external && lifecycle.disposed && running.size >= ctx.limit) cut = true;
        const myId = id++;
        const myIndex = index++;
        const source = cut && !('error' in s) ? { name: s.name, error: stopError('DISPOSED') } : s;
        flow.started();
        const work = ctx.analyze(source, myIndex, (faces) => flow.prepared(myId, faces));
        running.set(myId, lifecycle.track(work).then((result) => ({ id: myId, result })));
      }
      // Take no further input once aborted or disposed (an array's inputs still get their results).
      if (!finishAll && (signal?.aborted || (external && lifecycle.disposed))) break;
    }
  } finally {
    letGo();
    if (!finished) await it.return?.();
  }
  while (running.size > 0) {
    const result = await step();
    if (result) yield result;
  }
}
