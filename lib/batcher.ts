/**
 * Dynamic batching: many small requests (faces from concurrent detect() calls) become full model
 * batches. Items wait at most `maxWaitMs` for company; a batch leaves as soon as it holds
 * `maxBatch` items. One batch runs at a time per batcher (the model queues anyway), and the next
 * batch fills while the current one runs, so a busy service always sends full batches.
 *
 * Fairness: each submitAll() call is a group, and batches take items round robin across groups,
 * so a 1-face request rides in the next batch instead of waiting behind all 24 faces of a big one.
 */
import { DfdetError, invalidParameter } from './errors';
import { expectTensor, type Model } from './model';

/** Options of {@link Batcher}. */
export interface BatcherOptions {
  /** Largest batch sent to the model: an integer >= 1. Default 8. */
  maxBatch?: number;
  /** Longest an item waits for a fuller batch, in ms: a number from 0 to 2147483647 (setTimeout's limit). Default 5. */
  maxWaitMs?: number;
  /**
   * Called when a batch starts (`phase: 'start'`, `ms` 0) and when it ends (`'end'`, `ms` spent in
   * the model): for metrics and for tests that act at a batch boundary. Must not throw.
   */
  onBatch?: (event: BatchEvent) => void;
}

/** A batch boundary reported to {@link BatcherOptions.onBatch}. */
export interface BatchEvent {
  phase: 'start' | 'end';
  /** Items in the batch. */
  size: number;
  /** Milliseconds inside the model (0 at 'start'). */
  ms: number;
}

/** What the batcher observed: sizes of the batches it ran (for tests, metrics and tuning). */
export interface BatchStats {
  batches: number;
  items: number;
  /** Count of batches by size. */
  sizes: Record<number, number>;
  /** Milliseconds spent inside the model. */
  modelMs: number;
}

/** setTimeout's largest delay; longer ones fire at once (with a TimeoutOverflowWarning). */
const MAX_TIMEOUT_MS = 2_147_483_647;

interface Pending {
  input: Float32Array;
  resolve: (row: Float32Array) => void;
  reject: (e: unknown) => void;
}

/** The items of one submitAll() call still waiting, in order. */
interface Group {
  items: Pending[];
}

/**
 * Batches `[C,H,W]` float32 items into `[B,C,H,W]` runs of one model method and hands each caller
 * its output row (a view into the batch output, which owns the tensor memory).
 */
export class Batcher {
  readonly #model: Model;
  readonly #method: string;
  readonly #itemShape: number[];
  readonly #itemSize: number;
  readonly #maxBatch: number;
  readonly #maxWaitMs: number;
  /** Groups with waiting items, in round-robin order (the next batch starts with the first). */
  #groups: Group[] = [];
  #queued = 0;
  readonly #onBatch: ((event: BatchEvent) => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #closed = false;
  /** Queued items that leave without waiting for company (see {@link drain}). */
  #drainCount = 0;
  /** Callers that know more items are coming (see {@link hold}). */
  #holds = 0;
  #idle: (() => void)[] = [];
  readonly stats: BatchStats = { batches: 0, items: 0, sizes: {}, modelMs: 0 };

  /**
   * @param itemShape shape of one item, e.g. `[3, 224, 224]`: a non-empty list of positive integers.
   * @throws DfdetError BAD_INPUT for a bad item shape or option (a `maxBatch` of 0 or NaN would
   *   otherwise schedule empty batches forever).
   */
  constructor(model: Model, method: string, itemShape: number[], options: BatcherOptions = {}) {
    if (!Array.isArray(itemShape) || itemShape.length === 0 || !itemShape.every((d) => Number.isSafeInteger(d) && d >= 1))
      invalidParameter('itemShape', 'a non-empty list of positive integers', itemShape);
    const maxBatch = options.maxBatch ?? 8;
    if (!Number.isSafeInteger(maxBatch) || maxBatch < 1) invalidParameter('maxBatch', 'an integer >= 1', maxBatch);
    const maxWaitMs = options.maxWaitMs ?? 5;
    if (typeof maxWaitMs !== 'number' || !(maxWaitMs >= 0 && maxWaitMs <= MAX_TIMEOUT_MS))
      invalidParameter('maxWaitMs', `a number between 0 and ${MAX_TIMEOUT_MS}`, maxWaitMs);
    this.#model = model;
    this.#method = method;
    this.#itemShape = [...itemShape];
    this.#itemSize = itemShape.reduce((a, b) => a * b, 1);
    this.#maxBatch = maxBatch;
    this.#maxWaitMs = maxWaitMs;
    if (options.onBatch !== undefined && typeof options.onBatch !== 'function') invalidParameter('onBatch', 'a function', options.onBatch);
    this.#onBatch = options.onBatch;
  }

  /** Queues one item; resolves with its output row. */
  submit(input: Float32Array, signal?: AbortSignal): Promise<Float32Array> {
    return this.submitAll([input], signal).then((rows) => rows[0]!);
  }

  /**
   * Queues several items of one caller (they may land in different batches); resolves with their
   * rows in order. One abort listener for the group, however many items it has.
   * Rejects with BAD_INPUT (and queues nothing) when an item has the wrong size or holds NaN or
   * infinite values, so one bad item never fails the other callers sharing its batch.
   */
  submitAll(inputs: readonly Float32Array[], signal?: AbortSignal): Promise<Float32Array[]> {
    if (this.#closed) return Promise.reject(new DfdetError('DISPOSED', 'the detector was disposed'));
    const wrong = inputs.find((x) => x.length !== this.#itemSize);
    if (wrong) return Promise.reject(new DfdetError('BAD_INPUT', `Expected ${this.#itemSize} values for a batch item but received ${wrong.length}`));
    for (const [i, x] of inputs.entries()) {
      const at = firstNonFinite(x);
      if (at >= 0) return Promise.reject(new DfdetError('BAD_INPUT', `Expected finite values for batch item ${i} but received ${x[at]} at index ${at}`));
    }
    if (signal?.aborted) return Promise.reject(new DfdetError('ABORTED', 'aborted', { cause: signal.reason }));
    if (inputs.length === 0) return Promise.resolve([]);
    const group: Group = { items: [] };
    const all = Promise.all(inputs.map((input) => new Promise<Float32Array>((resolve, reject) => group.items.push({ input, resolve, reject }))));
    this.#groups.push(group);
    this.#queued += group.items.length;
    if (signal) {
      const onAbort = (): void => {
        // Items already in a running batch finish; those still queued leave the queue now.
        const err = new DfdetError('ABORTED', 'aborted', { cause: signal.reason });
        const i = this.#groups.indexOf(group);
        if (i >= 0) this.#groups.splice(i, 1);
        this.#queued -= group.items.length;
        for (const p of group.items.splice(0)) p.reject(err);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      const off = (): void => signal.removeEventListener('abort', onAbort);
      void all.then(off, off);
    }
    this.#schedule();
    return all;
  }

  /** Items waiting (not yet in a running batch). */
  get queued(): number {
    return this.#queued;
  }

  /** Resolves once no batch runs and no item waits (at once when idle already). */
  whenIdle(): Promise<void> {
    if (!this.#running && this.#queued === 0) return Promise.resolve();
    return new Promise<void>((r) => this.#idle.push(r));
  }

  /** Up to `n` waiting items, one per group in turn; a group with items left goes to the back. */
  #take(n: number): Pending[] {
    const batch: Pending[] = [];
    while (batch.length < n && this.#groups.length > 0) {
      const g = this.#groups.shift()!;
      batch.push(g.items.shift()!);
      if (g.items.length > 0) this.#groups.push(g);
    }
    this.#queued -= batch.length;
    return batch;
  }

  /**
   * The items queued now leave without waiting `maxWaitMs` for company (right away, or as soon as
   * the running batch is done): their callers know nothing more is coming for a while.
   */
  drain(): void {
    this.#drainCount = this.#queued;
    this.#schedule();
  }

  /**
   * More items are coming soon (a stream's inputs are being decoded): until the returned function
   * is called, a batch leaves only full (or drained), not when `maxWaitMs` is up, so a stream
   * ramping up does not send batches of 1, 3, 4 before its full ones. The caller must release it
   * once nothing more is on its way (it never waits for the batcher meanwhile).
   */
  hold(): () => void {
    this.#holds++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#holds--;
      this.#schedule();
    };
  }

  #schedule(): void {
    if (this.#running) return; // the running batch's completion schedules the next one
    if (this.#queued >= this.#maxBatch || (this.#drainCount > 0 && this.#queued > 0)) {
      this.#flush();
    } else if (this.#queued > 0 && !this.#timer && this.#holds === 0) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        // Held meanwhile: the release schedules it again.
        if (this.#holds === 0) this.#flush();
      }, this.#maxWaitMs);
    }
  }

  #flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#running || this.#queued === 0) return;
    const batch = this.#take(this.#maxBatch);
    this.#drainCount = Math.max(0, this.#drainCount - batch.length);
    this.#running = true;
    this.#onBatch?.({ phase: 'start', size: batch.length, ms: 0 });
    void this.#run(batch).finally(() => {
      this.#running = false;
      if (this.#queued > 0) this.#schedule();
      else for (const f of this.#idle.splice(0)) f();
    });
  }

  async #run(batch: Pending[]): Promise<void> {
    const n = batch.length;
    const data = new Float32Array(n * this.#itemSize);
    batch.forEach((p, i) => data.set(p.input, i * this.#itemSize));
    const t0 = performance.now();
    try {
      // submitAll checked every item already (per caller, so one bad item fails only its caller).
      const out = expectTensor(await this.#model.run(this.#method, [{ data, shape: [n, ...this.#itemShape], dtype: 'float32' }], { checkFinite: false }));
      if (out.dtype !== 'float32' || out.shape[0] !== n)
        throw new DfdetError('RUNTIME_ERROR', `Expected a float32 [${n}, ...] output from ${this.#method} but received ${out.dtype} [${out.shape.join(', ')}]`);
      const row = out.data.length / n;
      const rows = out.data as Float32Array;
      batch.forEach((p, i) => p.resolve(rows.subarray(i * row, (i + 1) * row)));
    } catch (e) {
      for (const p of batch) p.reject(e);
    } finally {
      this.stats.batches++;
      this.stats.items += n;
      this.stats.sizes[n] = (this.stats.sizes[n] ?? 0) + 1;
      const ms = performance.now() - t0;
      this.stats.modelMs += ms;
      this.#onBatch?.({ phase: 'end', size: n, ms });
    }
  }

  /** Rejects queued items with DISPOSED and waits for the running batch. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const err = new DfdetError('DISPOSED', 'the detector was disposed');
    for (const g of this.#groups.splice(0)) for (const p of g.items.splice(0)) p.reject(err);
    this.#queued = 0;
    if (this.#running) await new Promise<void>((r) => this.#idle.push(r));
  }
}

/** Index of the first NaN or infinite value, or -1. (v - v is NaN exactly for NaN and ±Infinity.) */
function firstNonFinite(x: Float32Array): number {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v - v !== 0) return i;
  }
  return -1;
}
