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
   * Faces kept queued for the model: more inputs start decoding while fewer than this many faces
   * wait for a batch (2 x batchSize fills the next batch while one runs). Faces already in a running
   * batch do not count, so a video whose faces outnumber this does not stop the next inputs from
   * decoding while its own batches run. Memory stays bounded: at most `limit` inputs decoding, the
   * inputs holding the queued faces and those of the running batch.
   */
  facesAhead: number;
  /** Faces handed to the model and not yet taken into a batch (by any caller). */
  queuedFaces(): number;
  /** Calls `wake` whenever a batch takes faces from the queue; returns the unsubscribe function. */
  watchQueue(wake: () => void): () => void;
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
   * Scores one source (never rejects: errors are results). Calls `prepared()` once its faces are
   * cropped and handed to the model, so the stream can start decoding the next input.
   */
  analyze(source: MediaSource | FailedSource, index: number, prepared: () => void): Promise<DetectResult>;
  /** Nothing more comes from this stream until a result is out: run the faces queued now. */
  drain(): void;
  /** More faces are on their way (inputs decoding): partial batches wait until the release. */
  holdQueue(): () => void;
}

/**
 * The inputs in flight: how many are decoding; `changed` settles when one is prepared or the model
 * queue moved. While any is decoding it holds the model's queue (more faces are on their way: no
 * partial batch leaves on the `maxWaitMs` timer).
 */
class Flow {
  preparing = 0;
  readonly #prepared = new Set<number>();
  readonly #hold: () => () => void;
  #release: (() => void) | undefined;
  #wake: () => void = () => undefined;
  /** Settles at the next change (an input prepared, a batch taken from the queue). */
  changed: Promise<void> = this.#next();

  constructor(hold: () => () => void) {
    this.#hold = hold;
  }

  #next(): Promise<void> {
    return (this.changed = new Promise<void>((r) => (this.#wake = r)));
  }

  /** Something changed: wakes the stream waiting on `changed`. */
  poke(): void {
    const wake = this.#wake;
    this.#next();
    wake();
  }

  started(): void {
    if (this.preparing++ === 0) this.#release = this.#hold();
  }

  #stopped(): void {
    if (--this.preparing > 0) return;
    this.#release?.();
    this.#release = undefined;
  }

  /** The input's faces are queued for the model. */
  prepared(id: number): void {
    if (this.#prepared.has(id)) return;
    this.#prepared.add(id);
    this.#stopped();
    this.poke();
  }

  /** The input's result is out (called as soon as it settles, whether or not anyone reads it). */
  finished(id: number): void {
    if (!this.#prepared.delete(id)) this.#stopped();
  }
}

/**
 * The core of detect([...]) and detectStream: at most `limit` inputs decode at once, and more start
 * while fewer than `facesAhead` faces wait in the model's queue, so batches fill whatever the mix
 * of inputs and the next inputs decode while the model runs; results as they finish. Once aborted (or disposed, for an external stream) no further
 * input is taken from an iterable, and every input taken gets a result; an array's inputs all get one.
 */
export async function* streamResults(inputs: AsyncIterable<DetectInput> | Iterable<DetectInput>, ctx: StreamContext): AsyncGenerator<DetectResult> {
  const { lifecycle, signal, external } = ctx;
  let release: (() => void) | undefined;
  // True once the stream resumed after dispose(): it starts no more work.
  let cut = false;
  // While the stream is taking inputs it holds the model's queue too: more faces are coming, so no
  // partial batch leaves on the maxWaitMs timer. Not while it waits for an async iterable's next
  // input or its consumer (the points where it lets go of the lifecycle).
  let unhold: (() => void) | undefined;
  const acquire = (): void => {
    release ??= lifecycle.hold();
    if (external && !release) cut = true;
    unhold ??= ctx.holdQueue();
  };
  const letGo = (): void => {
    release?.();
    release = undefined;
    unhold?.();
    unhold = undefined;
  };
  acquire();
  // An array's inputs cost nothing to take, so each gets a result even after an abort.
  const finishAll = Array.isArray(inputs);
  const isAsync = Symbol.asyncIterator in Object(inputs);
  const it = isAsync ? (inputs as AsyncIterable<DetectInput>)[Symbol.asyncIterator]() : (inputs as Iterable<DetectInput>)[Symbol.iterator]();
  const running = new Map<number, Promise<{ id: number; result: DetectResult }>>();
  const flow = new Flow(() => ctx.holdQueue());
  const room = (): boolean => flow.preparing < ctx.limit && ctx.queuedFaces() < ctx.facesAhead;
  const unwatch = ctx.watchQueue(() => flow.poke());
  // True until every input is started (see step()).
  let taking = true;
  /** Waits for an input to be prepared or to finish; returns the finished one's result. */
  const step = async (): Promise<DetectResult | undefined> => {
    // Every input taken and none decoding: nothing more joins the queued faces. (While inputs are
    // still to be taken, the stream waits for a batch to leave and then tops the queue up.)
    if (!taking && flow.preparing === 0) ctx.drain();
    const done = await Promise.race([flow.changed, ...running.values()]);
    if (!done) return undefined;
    running.delete(done.id);
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
        const work = ctx.analyze(source, myIndex, () => flow.prepared(myId));
        const settled = work.then((result) => {
          flow.finished(myId);
          return { id: myId, result };
        });
        running.set(myId, lifecycle.track(settled));
      }
      // Take no further input once aborted or disposed (an array's inputs still get their results).
      if (!finishAll && (signal?.aborted || (external && lifecycle.disposed))) break;
    }
  } finally {
    // Every input is started: only their own progress wakes the stream from here on.
    taking = false;
    unwatch();
    letGo();
    if (!finished) await it.return?.();
  }
  while (running.size > 0) {
    const result = await step();
    if (result) yield result;
  }
}
