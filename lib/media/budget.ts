/**
 * Process-wide bounds shared by all decoders: a {@link Budget} (counting semaphore whose waiters an
 * AbortSignal cancels), and the budget of decoded bytes, so that many concurrent inputs (each
 * within its own limit) cannot add up to more memory than the machine has. Decoders reserve their
 * worst case before decoding and give it back when done. (The ffmpeg process pool is a Budget too.)
 */
import { DfdetError } from '../errors';
import { abortError } from './file';

/** Default total: `DFDET_MAX_DECODED_BYTES` when set (a positive integer), else 4 GiB. */
function defaultTotal(): number {
  const env = Number(process.env.DFDET_MAX_DECODED_BYTES);
  return Number.isSafeInteger(env) && env > 0 ? env : 4 * 2 ** 30;
}

interface Waiter {
  bytes: number;
  resolve: (release: () => void) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * Units (bytes, processes) reserved and waiting, first come first served. A waiter whose signal
 * aborts leaves the queue at once with `ABORTED` and never gets anything.
 */
export class Budget {
  #used = 0;
  readonly #queue: Waiter[] = [];

  constructor(readonly total: number) {}

  /** Units reserved now. */
  get used(): number {
    return this.#used;
  }

  /** Waiters in the queue. */
  get waiting(): number {
    return this.#queue.length;
  }

  /**
   * Reserves `bytes` units for `what`, waiting while others hold too much; resolves with the
   * function that gives them back (idempotent).
   * @throws RangeError when `bytes` alone is over the total (callers check first); DfdetError ABORTED.
   */
  reserve(bytes: number, what: string, signal?: AbortSignal): Promise<() => void> {
    if (bytes > this.total) return Promise.reject(new RangeError(`${bytes} is over the total of ${this.total}`));
    if (signal?.aborted) return Promise.reject(abortError(what, signal));
    if (this.#queue.length === 0 && this.#used + bytes <= this.total) {
      this.#used += bytes;
      return Promise.resolve(this.#releaser(bytes));
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = { bytes, resolve, signal };
      if (signal) {
        w.onAbort = () => {
          const i = this.#queue.indexOf(w);
          if (i >= 0) this.#queue.splice(i, 1);
          reject(abortError(what, signal));
          this.#drain();
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.#queue.push(w);
    });
  }

  #releaser(bytes: number): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#used -= bytes;
      this.#drain();
    };
  }

  #drain(): void {
    while (this.#queue.length > 0 && this.#used + this.#queue[0]!.bytes <= this.total) {
      const w = this.#queue.shift()!;
      if (w.onAbort) w.signal?.removeEventListener('abort', w.onAbort);
      this.#used += w.bytes;
      w.resolve(this.#releaser(w.bytes));
    }
  }
}

let budget: Budget | undefined;

/** The process-wide budget of decoded bytes (size read once, from `DFDET_MAX_DECODED_BYTES`). */
export function decodedBytesBudget(): Budget {
  budget ??= new Budget(defaultTotal());
  return budget;
}

/**
 * Reserves `bytes` of decoded pixels of input `name` in the process-wide budget.
 * @throws DfdetError DECODE_FAILED when `bytes` alone is over the whole budget; ABORTED.
 */
export function reserveDecodedBytes(bytes: number, name: string, signal?: AbortSignal): Promise<() => void> {
  const b = decodedBytesBudget();
  if (bytes > b.total) {
    return Promise.reject(
      new DfdetError('DECODE_FAILED', `${name} would decode to ${bytes} bytes of pixels, over the process-wide limit of ${b.total} (env DFDET_MAX_DECODED_BYTES)`),
    );
  }
  return b.reserve(bytes, `Decoding ${name}`, signal);
}
