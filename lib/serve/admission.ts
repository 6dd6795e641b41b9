/**
 * Admission control: bounds how much work the service holds, and says so at once when full.
 *
 * A request is admitted (before its body is read) when fewer than `maxRunning + maxQueue` requests
 * are admitted and the body bytes it may bring (its Content-Length, else `maxBody`) fit in
 * `maxBytes` with those already held. Otherwise it is refused with 429 and a Retry-After estimate,
 * so memory never grows with the number of clients waiting. Admitted requests then take one of
 * `maxRunning` run slots, first come first served, each call of the Detector bounded in its turn.
 */
import { DfdetError } from '../errors';
import { HttpError } from './errors';

/** Bounds of {@link Admission}. */
export interface AdmissionOptions {
  /** Requests running in the detector at once. */
  maxRunning: number;
  /** Requests admitted beyond those running (uploading or waiting for a run slot). */
  maxQueue: number;
  /** Body bytes held by admitted requests, all together. */
  maxBytes: number;
}

/** One admitted request: release it exactly once, when its answer is done (release is idempotent). */
export class Ticket {
  readonly #admission: Admission;
  #bytes: number;
  #released = false;
  #running = false;

  /** @internal */
  constructor(admission: Admission, bytes: number) {
    this.#admission = admission;
    this.#bytes = bytes;
  }

  /** Bytes reserved. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Lowers the reservation to the body's real size once it is read (never raises it). */
  shrink(bytes: number): void {
    if (this.#released || !(bytes < this.#bytes)) return;
    this.#admission.adjustBytes(bytes - this.#bytes);
    this.#bytes = bytes;
  }

  /**
   * Waits for a run slot, runs `fn`, frees the slot. Rejects with the signal's reason when it
   * aborts while waiting (the request then never runs).
   */
  async run<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    if (this.#released) throw new DfdetError('DISPOSED', 'the request was released');
    await this.#admission.acquireSlot(signal);
    this.#running = true;
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.#running = false;
      this.#admission.releaseSlot((performance.now() - t0) / 1000);
    }
  }

  /** Gives the reservation back (the slot is freed by run() itself). */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#admission.leave(this.#bytes);
  }

  /** True while fn of run() runs. */
  get running(): boolean {
    return this.#running;
  }
}

/** The admission queue and run slots of one service. */
export class Admission {
  readonly #o: AdmissionOptions;
  #admitted = 0;
  #running = 0;
  #bytes = 0;
  #waiters: { resolve: () => void; reject: (e: unknown) => void; signal: AbortSignal; onAbort: () => void }[] = [];
  /** Moving average of run seconds, for Retry-After. */
  #avgRunSec = 1;
  /** Requests refused since start, by reason. */
  readonly refused = { queue: 0, bytes: 0 };
  /** Most requests and bytes ever admitted at once (what the bounds held memory to). */
  readonly peak = { admitted: 0, bytes: 0 };

  constructor(options: AdmissionOptions) {
    for (const k of ['maxRunning', 'maxQueue', 'maxBytes'] as const) {
      const v = options[k];
      if (!Number.isSafeInteger(v) || v < (k === 'maxQueue' ? 0 : 1)) throw new DfdetError('BAD_INPUT', `Expected an integer >= ${k === 'maxQueue' ? 0 : 1} for ${k} but received ${String(v)}`);
    }
    this.#o = { ...options };
  }

  /**
   * Admits a request that may bring `bytes` of body.
   * @throws HttpError 429 OVERLOADED (with Retry-After) when either bound is reached.
   */
  enter(bytes: number): Ticket {
    const o = this.#o;
    if (this.#admitted >= o.maxRunning + o.maxQueue) {
      this.refused.queue++;
      throw new HttpError(429, 'OVERLOADED', `the queue is full (${this.#admitted} requests admitted, at most ${o.maxRunning + o.maxQueue}): retry later`, this.retryAfterSeconds());
    }
    if (this.#bytes + bytes > o.maxBytes) {
      this.refused.bytes++;
      throw new HttpError(429, 'OVERLOADED', `the queue holds too many bytes (${this.#bytes} held, ${bytes} more asked, at most ${o.maxBytes}): retry later`, this.retryAfterSeconds());
    }
    this.#admitted++;
    this.#bytes += bytes;
    this.peak.admitted = Math.max(this.peak.admitted, this.#admitted);
    this.peak.bytes = Math.max(this.peak.bytes, this.#bytes);
    return new Ticket(this, bytes);
  }

  /** Admitted requests not running yet (uploading or waiting for a slot). */
  get queued(): number {
    return this.#admitted - this.#running;
  }

  /** Requests running in the detector. */
  get running(): number {
    return this.#running;
  }

  /** Body bytes reserved by admitted requests. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Seconds until a slot is likely free for one more request: 1 to 60. */
  retryAfterSeconds(): number {
    const ahead = this.queued + 1;
    return Math.min(60, Math.max(1, Math.ceil((ahead * this.#avgRunSec) / this.#o.maxRunning)));
  }

  /** @internal */
  adjustBytes(delta: number): void {
    this.#bytes += delta;
  }

  /** @internal */
  leave(bytes: number): void {
    this.#admitted--;
    this.#bytes -= bytes;
  }

  /** @internal */
  acquireSlot(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.#running < this.#o.maxRunning && this.#waiters.length === 0) {
      this.#running++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const w = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.#waiters.indexOf(w);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(signal.reason);
        },
      };
      signal.addEventListener('abort', w.onAbort, { once: true });
      this.#waiters.push(w);
    });
  }

  /** @internal */
  releaseSlot(runSec: number): void {
    this.#avgRunSec = 0.8 * this.#avgRunSec + 0.2 * runSec;
    const next = this.#waiters.shift();
    if (next) {
      // The slot passes straight to the next waiter: #running stays the same.
      next.signal.removeEventListener('abort', next.onAbort);
      next.resolve();
    } else this.#running--;
  }
}
