/**
 * A queue worker: takes dfdet jobs from a BullMQ queue and runs each through the shared Detector
 * pipeline; the job's return value is the DetectResult. Errors of the input complete the job with
 * the error result (never retried); transient errors throw, so BullMQ retries them with backoff.
 */
import * as os from 'node:os';

import type { Job, Worker } from 'bullmq';

import { Detector, type DetectorOptions, type DetectResult } from '../detector';
import { invalidParameter, isDfdetError } from '../errors';
import { failedReasonOf, isTransient, jobInput, type QueueJobData } from './jobs';
import { type JobOutcome, listenMetrics, WorkerMetrics } from './metrics';
import { type BullMQ, checkQueueName, dedupedErrorLog, describeRedis, loadBullmq, redisOptions, watchConnection } from './redis';

/** Options of {@link QueueWorker.start}. */
export interface QueueWorkerOptions {
  /** Redis URL (`redis://host:6379`). */
  redis: string;
  /** Queue name (every worker and producer of one detector setup share it). */
  queue: string;
  /** Detector options (as for {@link Detector.create}), or a Detector the caller owns. */
  detector: DetectorOptions | Detector;
  /** Jobs processed at once. Default: the detector options' `concurrency`, else 4. */
  concurrency?: number;
  /** How long a job's lock lasts without renewal, ms: a killed worker's job is taken over after it. Default 30000. */
  lockDurationMs?: number;
  /** How often this worker looks for jobs whose worker died, ms. Default 30000. */
  stalledIntervalMs?: number;
  /** Times a job may lose its worker before it fails ("job stalled more than allowable limit"). Default 2. */
  maxStalledCount?: number;
  /** Throughput log period, ms (0: none). Default 10000. */
  logIntervalMs?: number;
  /** Log a line when each job starts and ends. Default false. */
  logJobs?: boolean;
  /** Log sink (one line per call). Default: stderr. */
  log?: (line: string) => void;
  /** BullMQ key prefix. Default 'bull'. */
  prefix?: string;
  /** Serve Prometheus metrics at `http://metricsHost:metricsPort/metrics` (0: any free port). Default: no listener. */
  metricsPort?: number;
  /** Address the metrics listener binds. Default '127.0.0.1'. */
  metricsHost?: string;
}

/** Counters of a worker. */
export interface QueueWorkerStats {
  /** Jobs completed with a score (or no face). */
  scored: number;
  /** Jobs completed with a permanent input error (not retried). */
  inputErrors: number;
  /** Attempts that hit a transient error (retried by BullMQ until the attempt limit). */
  transientErrors: number;
  /** Jobs handed back to the queue at shutdown. */
  handedBack: number;
}

let instances = 0;

/** A running worker. Create with {@link QueueWorker.start}; stop with {@link QueueWorker.close}. */
export class QueueWorker {
  readonly #worker: Worker<QueueJobData, DetectResult>;
  readonly #mq: BullMQ;
  readonly #detector: Detector;
  readonly #ownsDetector: boolean;
  readonly #log: (line: string) => void;
  readonly #logJobs: boolean;
  readonly #timer: NodeJS.Timeout | undefined;
  #handingBack = false;
  #active = 0;
  #closing: Promise<void> | undefined;
  #window = { jobs: 0, since: performance.now() };
  readonly #started = performance.now();
  readonly #stats: QueueWorkerStats = { scored: 0, inputErrors: 0, transientErrors: 0, handedBack: 0 };
  readonly #metrics: WorkerMetrics;
  #metricsListener: { url: string; close: () => Promise<void> } | undefined;
  /** This worker's name in logs and in each job's `processedBy`: host:pid (host:pid/n for the n-th of a process). */
  readonly name: string;

  private constructor(o: QueueWorkerOptions, mq: BullMQ, detector: Detector, owns: boolean) {
    this.#mq = mq;
    instances++;
    this.name = `${os.hostname()}:${process.pid}${instances > 1 ? `/${instances}` : ''}`;
    this.#detector = detector;
    this.#ownsDetector = owns;
    this.#log = o.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.#logJobs = Boolean(o.logJobs);
    this.#metrics = new WorkerMetrics(detector, () => this.#active);
    const concurrency = o.concurrency ?? (o.detector instanceof Detector ? undefined : o.detector.concurrency) ?? 4;
    this.#worker = new mq.Worker<QueueJobData, DetectResult>(checkQueueName(o.queue), (job, token, signal) => this.#process(job, token, signal), {
      connection: redisOptions(o.redis),
      concurrency,
      lockDuration: o.lockDurationMs ?? 30_000,
      stalledInterval: o.stalledIntervalMs ?? 30_000,
      maxStalledCount: o.maxStalledCount ?? 2,
      name: this.name,
      prefix: o.prefix,
      autorun: false,
    });
    this.#worker.on('error', dedupedErrorLog(`worker ${this.name}`, this.#log));
    this.#worker.on('failed', (job, err) => {
      if (job && !(err instanceof mq.WaitingError)) this.#log(`worker ${this.name}: job ${job.id} (${job.data.name}) attempt ${job.attemptsMade} failed: ${err.message}`);
    });
    void this.#worker.client.then((c) => watchConnection(c, `worker ${this.name}`, this.#log), () => undefined);
    const every = o.logIntervalMs ?? 10_000;
    if (every > 0) {
      this.#timer = setInterval(() => this.#logThroughput(), every);
      this.#timer.unref();
    }
    this.#log(`worker ${this.name}: queue ${o.queue} at ${describeRedis(o.redis)}, concurrency ${concurrency}, model ${detector.identity.name} (${detector.identity.arch})`);
  }

  /**
   * Loads the detector (unless one is given), connects and starts taking jobs. Waits for Redis
   * as long as it takes (a fleet may start before its Redis).
   * @throws DfdetError BAD_INPUT (options), and whatever Detector.create throws.
   */
  static async start(options: QueueWorkerOptions): Promise<QueueWorker> {
    checkQueueName(options.queue);
    redisOptions(options.redis);
    const int = (name: keyof QueueWorkerOptions, min: number, max: number): void => {
      const v = options[name];
      if (v !== undefined && !(Number.isInteger(v) && (v as number) >= min && (v as number) <= max)) invalidParameter(name, `an integer between ${min} and ${max}`, v);
    };
    int('concurrency', 1, 10_000);
    int('lockDurationMs', 100, 86_400_000);
    int('stalledIntervalMs', 100, 86_400_000);
    int('maxStalledCount', 0, 1_000_000);
    int('logIntervalMs', 0, 86_400_000);
    int('metricsPort', 0, 65_535);
    if (options.metricsHost !== undefined && (typeof options.metricsHost !== 'string' || options.metricsHost === '')) invalidParameter('metricsHost', 'a host name or address', options.metricsHost);
    const mq = await loadBullmq();
    const owns = !(options.detector instanceof Detector);
    const detector = options.detector instanceof Detector ? options.detector : await Detector.create(options.detector);
    let w: QueueWorker;
    try {
      w = new QueueWorker(options, mq, detector, owns);
    } catch (e) {
      if (owns) await detector.dispose();
      throw e;
    }
    if (options.metricsPort !== undefined) {
      try {
        w.#metricsListener = await listenMetrics(w.#metrics, options.metricsPort, options.metricsHost ?? '127.0.0.1');
      } catch (e) {
        await w.close();
        throw e;
      }
      w.#log(`worker ${w.name}: metrics at ${w.#metricsListener.url}`);
    }
    void w.#worker.run().catch((e: unknown) => w.#log(`worker ${w.name}: stopped: ${e instanceof Error ? e.message : String(e)}`));
    await w.#worker.waitUntilReady();
    return w;
  }

  /** The detector every job runs through. */
  get detector(): Detector {
    return this.#detector;
  }

  /** Counters since start. */
  get stats(): QueueWorkerStats {
    return { ...this.#stats };
  }

  /** URL of the Prometheus metrics listener, when `metricsPort` was given. */
  get metricsUrl(): string | undefined {
    return this.#metricsListener?.url;
  }

  /** Prometheus text of this worker's metrics (what the listener serves). */
  metrics(): Promise<{ contentType: string; body: string }> {
    return this.#metrics.render();
  }

  /** Jobs running now. */
  get active(): number {
    return this.#active;
  }

  async #process(job: Job<QueueJobData, DetectResult>, token: string | undefined, signal: AbortSignal | undefined): Promise<DetectResult> {
    let input: ReturnType<typeof jobInput>;
    try {
      input = jobInput(job.data);
    } catch (e) {
      // Not a dfdet job: no attempt can help.
      throw new this.#mq.UnrecoverableError(isDfdetError(e) ? failedReasonOf(e) : String(e));
    }
    this.#active++;
    const t0 = performance.now();
    if (this.#logJobs) this.#log(`worker ${this.name}: job ${job.id} started (${input.name}, attempt ${job.attemptsStarted})`);
    let error: DetectResult['error'];
    const ended = (outcome: JobOutcome): void => this.#metrics.observeJob(outcome, (performance.now() - t0) / 1000);
    try {
      const r = await this.#detector.detect(input, { signal });
      this.#window.jobs++;
      if (!r.error || !isTransient(r.error.code)) {
        if (r.error) this.#stats.inputErrors++;
        else this.#stats.scored++;
        ended(r.error ? 'input_error' : 'scored');
        if (this.#logJobs) this.#log(`worker ${this.name}: job ${job.id} done in ${Math.round(performance.now() - t0)} ms: ${r.error ? r.error.code : `pFake ${r.pFake}`}`);
        return r;
      }
      error = r.error;
    } catch (e) {
      // detect() rejects only when the detector is gone (shutdown): another worker may take the job.
      error = isDfdetError(e) ? { code: e.code, message: e.message } : { code: 'RUNTIME_ERROR', message: String(e) };
    } finally {
      this.#active--;
    }
    if (this.#handingBack || signal?.aborted) {
      // Shutting down: back to the queue without spending an attempt.
      this.#stats.handedBack++;
      ended('handed_back');
      await job.moveToWait(token);
      throw new this.#mq.WaitingError();
    }
    this.#stats.transientErrors++;
    ended('transient_error');
    throw new Error(failedReasonOf(error));
  }

  #logThroughput(): void {
    const now = performance.now();
    const s = (now - this.#window.since) / 1000;
    const n = this.#window.jobs;
    this.#window = { jobs: 0, since: now };
    if (n === 0 && this.active === 0) return;
    const t = this.#stats;
    const total = (now - this.#started) / 1000;
    const done = t.scored + t.inputErrors;
    this.#log(
      `worker ${this.name}: ${n} jobs in ${s.toFixed(1)} s (${(n / s).toFixed(2)} jobs/s), ${this.active} active; ` +
        `total ${done} done (${t.scored} scored, ${t.inputErrors} input errors), ${t.transientErrors} transient errors, ${(done / total).toFixed(2)} jobs/s`,
    );
  }

  /**
   * Stops taking jobs. `handBack: false` (default) lets the active jobs finish; `true` aborts them
   * and puts them back in the queue for another worker (no attempt spent). Then disconnects and
   * frees the detector if the worker created it. Calling it again with `handBack: true` while a
   * graceful close waits hands the remaining jobs back.
   */
  close(options: { handBack?: boolean } = {}): Promise<void> {
    if (options.handBack) {
      this.#handingBack = true;
      this.#worker.cancelAllJobs('worker shutting down');
    }
    this.#closing ??= (async () => {
      if (this.#timer) clearInterval(this.#timer);
      await this.#worker.close();
      this.#logThroughput();
      const t = this.#stats;
      this.#log(`worker ${this.name}: closed after ${t.scored + t.inputErrors} jobs (${t.handedBack} handed back)`);
      await this.#metricsListener?.close();
      if (this.#ownsDetector) await this.#detector.dispose();
    })();
    return this.#closing;
  }
}

