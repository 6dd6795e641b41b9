/**
 * The producer side: enqueue inputs as dfdet jobs with deterministic ids, and read each job's
 * DetectResult as it completes. Results arrive through BullMQ's QueueEvents, backed by direct
 * checks of the jobs (after a reconnect, and when nothing arrived for a while), so a result is
 * never missed and never given twice, and jobs a restarted Redis lost are added again.
 */
import type { Queue, QueueEvents, RedisClient } from 'bullmq';

import type { DetectResult } from '../detector';
import { invalidParameter } from '../errors';
import { DEFAULT_MAX_INLINE_BYTES, failedResult, JOB_NAME, MAX_INLINE_BYTES_LIMIT, prepareJob, type PreparedJob, type QueueInput, type QueueJobData } from './jobs';
import { type BullMQ, checkQueueName, connectWithin, dedupedErrorLog, loadBullmq, redisOptions, settleWithin, watchConnection } from './redis';

/** Options of {@link Producer.open}. */
export interface ProducerOptions {
  /** Redis URL (`redis://host:6379`). */
  redis: string;
  /** Queue name. */
  queue: string;
  /** Attempts per job for transient errors (input errors are never retried). Default 3. */
  attempts?: number;
  /** First retry delay, ms; doubles with each attempt (exponential backoff). Default 1000. */
  backoffMs?: number;
  /** Largest inline input, bytes. Default 4 MiB, at most 64 MiB. */
  maxInlineBytes?: number;
  /** Longest wait for an event before the jobs are checked directly, ms (doubles while idle, up to 5 min). Default 15000. */
  reconcileMs?: number;
  /** BullMQ key prefix. Default 'bull'. */
  prefix?: string;
  /** Longest wait for Redis in {@link Producer.open}, ms (later outages are waited out). Default: as long as it takes. */
  connectTimeoutMs?: number;
  /** Log sink for connection and recovery messages. Default: stderr. */
  log?: (line: string) => void;
}

/** One enqueued input. */
export interface Enqueued {
  jobId: string;
  /** The input's name (its path as given, or the inline name). */
  name: string;
  /** True when the job was already in the queue (queued, running or finished): no work was added. */
  existed: boolean;
}

/** How a job ended. */
export interface JobOutcome {
  jobId: string;
  /** 'completed': `result` is the worker's DetectResult (input errors included); 'failed': transient errors past the attempt limit. */
  state: 'completed' | 'failed';
  /** The DetectResult (index 0; a failed job's has `error` and empty model fields). */
  result: DetectResult;
}

/** Job counts of a queue, and the number of workers connected. */
export interface QueueCounts {
  waiting: number;
  active: number;
  delayed: number;
  prioritized: number;
  paused: number;
  completed: number;
  failed: number;
  workers: number;
}

type JobState = 'missing' | 'pending' | 'completed' | 'failed';
interface JobStatus {
  state: JobState;
  returnvalue: string | null;
  failedReason: string | null;
}

const CHUNK = 500;

/** Enqueues dfdet jobs and reads their results. Create with {@link Producer.open}. */
export class Producer {
  /** The BullMQ queue (for anything this class does not wrap). */
  readonly queue: Queue<QueueJobData, DetectResult>;
  readonly #events: QueueEvents;
  readonly #log: (line: string) => void;
  readonly #maxInline: number;
  readonly #reconcileMs: number;
  /** Jobs this producer added, kept to add them again if Redis loses them. */
  readonly #known = new Map<string, QueueJobData>();
  readonly #reconnected = new Set<() => void>();

  /** Set when open() gave up: the connections stop reconnecting. */
  #gaveUp = false;

  private constructor(o: ProducerOptions, mq: BullMQ) {
    const connection = redisOptions(o.redis, () => this.#gaveUp);
    checkQueueName(o.queue);
    const attempts = o.attempts ?? 3;
    if (!Number.isInteger(attempts) || attempts < 1 || attempts > 100) invalidParameter('attempts', 'an integer between 1 and 100', attempts);
    const backoffMs = o.backoffMs ?? 1000;
    if (!Number.isInteger(backoffMs) || backoffMs < 0 || backoffMs > 3_600_000) invalidParameter('backoffMs', 'an integer between 0 and 3600000', backoffMs);
    this.#maxInline = o.maxInlineBytes ?? DEFAULT_MAX_INLINE_BYTES;
    if (!Number.isInteger(this.#maxInline) || this.#maxInline < 1 || this.#maxInline > MAX_INLINE_BYTES_LIMIT)
      invalidParameter('maxInlineBytes', `an integer between 1 and ${MAX_INLINE_BYTES_LIMIT}`, this.#maxInline);
    this.#reconcileMs = o.reconcileMs ?? 15_000;
    if (!(this.#reconcileMs >= 10 && this.#reconcileMs <= 3_600_000)) invalidParameter('reconcileMs', 'a number of ms between 10 and 3600000', this.#reconcileMs);
    this.#log = o.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.queue = new mq.Queue<QueueJobData, DetectResult>(o.queue, {
      connection,
      prefix: o.prefix,
      defaultJobOptions: { attempts, backoff: { type: 'exponential', delay: backoffMs }, removeOnComplete: false, removeOnFail: false },
    });
    this.#events = new mq.QueueEvents(o.queue, { connection, prefix: o.prefix });
    const onError = dedupedErrorLog(`queue ${o.queue}`, this.#log);
    this.queue.on('error', onError);
    this.#events.on('error', onError);
  }

  /**
   * Connects (waiting for Redis up to `connectTimeoutMs`) and starts listening for results.
   * @throws DfdetError BAD_INPUT (options), TIMEOUT (no Redis in time).
   */
  static async open(options: ProducerOptions): Promise<Producer> {
    const p = new Producer(options, await loadBullmq());
    let client: RedisClient;
    let eventsClient: RedisClient;
    try {
      [client, eventsClient] = await connectWithin(Promise.all([p.queue.waitUntilReady(), p.#events.waitUntilReady()]), options.connectTimeoutMs, options.redis);
    } catch (e) {
      p.#gaveUp = true;
      await settleWithin(p.close(), 3000);
      throw e;
    }
    watchConnection(client, `queue ${options.queue}`, p.#log);
    // Every later 'ready' is a reconnection: events may have been missed, or Redis may have lost the jobs.
    for (const c of [client, eventsClient]) c.on('ready', () => p.#reconnected.forEach((f) => f()));
    return p;
  }

  /**
   * Turns inputs into jobs without adding them (ids, absolute paths, inline bytes checked).
   * @throws DfdetError BAD_INPUT (a folder, inline bytes over the limit).
   */
  prepare(input: QueueInput): Promise<PreparedJob> {
    return prepareJob(input, this.#maxInline);
  }

  /**
   * Adds inputs as jobs: a path on storage every worker sees at the same path, or small inline
   * bytes. The job id is deterministic (see {@link fileJobId}, {@link bytesJobId}): an input
   * already in the queue, queued, running or finished, adds no work. `retryFailed` puts jobs that
   * failed for good (transient errors past the attempt limit) back in the queue.
   * @throws DfdetError BAD_INPUT (a folder, inline bytes over the limit).
   */
  async enqueue(inputs: QueueInput | readonly QueueInput[], options: { retryFailed?: boolean } = {}): Promise<Enqueued[]> {
    const list = Array.isArray(inputs) ? (inputs as readonly QueueInput[]) : [inputs as QueueInput];
    const out: Enqueued[] = [];
    for (let i = 0; i < list.length; i += CHUNK) {
      const jobs = await Promise.all(list.slice(i, i + CHUNK).map((x) => this.prepare(x)));
      out.push(...(await this.add(jobs, options)));
    }
    return out;
  }

  /** Adds prepared jobs ({@link Producer.prepare}); see {@link Producer.enqueue}. */
  async add(jobs: readonly PreparedJob[], options: { retryFailed?: boolean } = {}): Promise<Enqueued[]> {
    const out: Enqueued[] = [];
    for (let i = 0; i < jobs.length; i += CHUNK) {
      const chunk = jobs.slice(i, i + CHUNK);
      const status = await this.#status(chunk.map((j) => j.jobId));
      const fresh = new Map<string, PreparedJob>();
      chunk.forEach((j, k) => {
        this.#known.set(j.jobId, j.data);
        if (status[k]!.state === 'missing') fresh.set(j.jobId, j);
      });
      if (fresh.size) await this.queue.addBulk([...fresh.values()].map((j) => ({ name: JOB_NAME, data: j.data, opts: { jobId: j.jobId } })));
      if (options.retryFailed) {
        const failed = new Set(chunk.filter((_, k) => status[k]!.state === 'failed').map((j) => j.jobId));
        for (const id of failed) await (await this.queue.getJob(id))?.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
      }
      chunk.forEach((j, k) => out.push({ jobId: j.jobId, name: j.data.name, existed: status[k]!.state !== 'missing' }));
    }
    return out;
  }

  /**
   * Yields one outcome per distinct job id as each job finishes (jobs finished already come
   * first), until every job has finished or `signal` aborts. Ids of jobs this producer added are
   * added again if Redis lost them (a restart without persistence); others are waited for.
   */
  async *results(jobIds: Iterable<string>, options: { signal?: AbortSignal } = {}): AsyncGenerator<JobOutcome> {
    const pending = new Set(jobIds);
    const ready: JobOutcome[] = [];
    let wake: (() => void) | undefined;
    const push = (o: JobOutcome): void => {
      ready.push(o);
      wake?.();
    };
    const settle = (jobId: string, s: Omit<JobStatus, 'state'> & { state: 'completed' | 'failed' }): void => {
      if (!pending.delete(jobId)) return;
      if (s.state === 'completed') push({ jobId, state: 'completed', result: parseResult(s.returnvalue) ?? failedResult(0, this.#nameOf(jobId), 'BAD_FORMAT: the job completed without a DetectResult') });
      else push({ jobId, state: 'failed', result: failedResult(0, this.#nameOf(jobId), s.failedReason ?? '') });
    };
    const onCompleted = (a: { jobId: string; returnvalue: unknown }): void => {
      if (pending.delete(a.jobId)) push({ jobId: a.jobId, state: 'completed', result: a.returnvalue as DetectResult });
    };
    const onFailed = (a: { jobId: string; failedReason: string }): void => settle(a.jobId, { state: 'failed', returnvalue: null, failedReason: a.failedReason });
    let check = true;
    const onReconnect = (): void => {
      check = true;
      wake?.();
    };
    const onAbort = (): void => wake?.();
    this.#events.on('completed', onCompleted);
    this.#events.on('failed', onFailed);
    this.#reconnected.add(onReconnect);
    options.signal?.addEventListener('abort', onAbort);
    let idleMs = this.#reconcileMs;
    try {
      while (pending.size > 0 || ready.length > 0) {
        if (ready.length > 0) {
          idleMs = this.#reconcileMs;
          yield ready.shift()!;
          continue;
        }
        if (options.signal?.aborted) return;
        if (check) {
          check = false;
          await this.#reconcile(pending, settle).catch((e: unknown) => this.#log(`checking jobs failed (will retry): ${e instanceof Error ? e.message : String(e)}`));
          continue;
        }
        const timedOut = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(true), idleMs);
          wake = () => {
            clearTimeout(timer);
            resolve(false);
          };
        });
        wake = undefined;
        if (timedOut) {
          check = true;
          idleMs = Math.min(idleMs * 2, 300_000);
        }
      }
    } finally {
      this.#events.off('completed', onCompleted);
      this.#events.off('failed', onFailed);
      this.#reconnected.delete(onReconnect);
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Job counts and connected workers. */
  counts(): Promise<QueueCounts> {
    return countsOf(this.queue);
  }

  /** Disconnects. Jobs stay in the queue. */
  async close(): Promise<void> {
    await Promise.allSettled([this.#events.close(), this.queue.close()]);
  }

  /** `await using producer = await Producer.open(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #nameOf(jobId: string): string {
    return this.#known.get(jobId)?.name ?? jobId;
  }

  /** State of each job, read straight from its hash (finishedOn, returnvalue, failedReason). */
  async #status(ids: readonly string[]): Promise<JobStatus[]> {
    const client = await this.queue.client;
    const rows = await Promise.all(ids.map((id) => client.hmget(this.queue.toKey(id), 'timestamp', 'finishedOn', 'returnvalue', 'failedReason')));
    return rows.map(([timestamp, finishedOn, returnvalue, failedReason]) => {
      const state: JobState = !timestamp ? 'missing' : !finishedOn ? 'pending' : returnvalue !== null && returnvalue !== undefined ? 'completed' : 'failed';
      return { state, returnvalue: returnvalue ?? null, failedReason: failedReason ?? null };
    });
  }

  /** Settles finished jobs whose events were missed, and adds again the known jobs Redis lost. */
  async #reconcile(pending: Set<string>, settle: (id: string, s: JobStatus & { state: 'completed' | 'failed' }) => void): Promise<void> {
    const ids = [...pending];
    const lost: PreparedJob[] = [];
    for (let i = 0; i < ids.length; i += CHUNK) {
      const chunk = ids.slice(i, i + CHUNK);
      const status = await this.#status(chunk);
      chunk.forEach((id, k) => {
        const s = status[k]!;
        if (s.state === 'completed' || s.state === 'failed') settle(id, s as JobStatus & { state: 'completed' | 'failed' });
        else if (s.state === 'missing' && this.#known.has(id)) lost.push({ jobId: id, data: this.#known.get(id)! });
      });
    }
    if (lost.length === 0) return;
    this.#log(`${lost.length} jobs were missing from Redis (restarted without persistence?): adding them again`);
    await this.add(lost);
  }
}

function parseResult(text: string | null): DetectResult | null {
  if (text === null) return null;
  try {
    const r = JSON.parse(text) as DetectResult | null;
    return r && typeof r === 'object' ? r : null;
  } catch {
    return null;
  }
}

async function countsOf(queue: Queue): Promise<QueueCounts> {
  const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'paused', 'completed', 'failed');
  const n = (k: string): number => c[k] ?? 0;
  return {
    waiting: n('waiting'),
    active: n('active'),
    delayed: n('delayed'),
    prioritized: n('prioritized'),
    paused: n('paused'),
    completed: n('completed'),
    failed: n('failed'),
    workers: await queue.getWorkersCount(),
  };
}

/**
 * Job counts of a queue (for `dfdet queue stats`).
 * @throws DfdetError TIMEOUT when Redis does not answer within `connectTimeoutMs` (default: wait).
 */
export async function queueCounts(redis: string, queue: string, options: { prefix?: string; connectTimeoutMs?: number } = {}): Promise<QueueCounts> {
  const { Queue } = await loadBullmq();
  let gaveUp = false;
  const q = new Queue(checkQueueName(queue), { connection: redisOptions(redis, () => gaveUp), prefix: options.prefix });
  q.on('error', () => undefined);
  try {
    await connectWithin(q.waitUntilReady(), options.connectTimeoutMs, redis);
  } catch (e) {
    gaveUp = true;
    await settleWithin(q.close(), 3000);
    throw e;
  }
  try {
    return await countsOf(q);
  } finally {
    await q.close();
  }
}
