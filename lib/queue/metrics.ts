/**
 * Prometheus metrics of a queue worker (prom-client), in a registry of its own, and the small
 * HTTP listener that serves them (`GET /metrics`) for `dfdet worker --metrics-port`.
 */
import * as http from 'node:http';

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import type { Detector } from '../detector';
import { DfdetError } from '../errors';
import { registerDetectorMetrics } from '../metrics/detector';

/** How a job attempt ended, as counted in `dfdet_jobs_total`. */
export type JobOutcome = 'scored' | 'input_error' | 'transient_error' | 'handed_back';

/** Metrics of one worker. */
export class WorkerMetrics {
  /** The registry `/metrics` renders. */
  readonly registry = new Registry();
  readonly #jobs: Counter<'outcome'>;
  readonly #duration: Histogram<'outcome'>;
  readonly #refresh: () => void;

  constructor(detector: Detector, active: () => number, options: { prefix?: string; processMetrics?: boolean } = {}) {
    const p = options.prefix ?? 'dfdet_';
    const registers = [this.registry];
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: p });
    this.#jobs = new Counter({ name: `${p}jobs_total`, help: 'Job attempts ended, by outcome (scored, input_error, transient_error, handed_back)', labelNames: ['outcome'], registers });
    this.#duration = new Histogram({
      name: `${p}job_duration_seconds`,
      help: 'Time from a job attempt starting to its end, by outcome',
      labelNames: ['outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    new Gauge({ name: `${p}jobs_active`, help: 'Jobs running in this worker', registers, collect() { this.set(active()); } });
    this.#refresh = registerDetectorMetrics(this.registry, detector, p);
  }

  /** Counts one ended job attempt. */
  observeJob(outcome: JobOutcome, seconds: number): void {
    this.#jobs.inc({ outcome });
    this.#duration.observe({ outcome }, seconds);
  }

  /** Prometheus text of every metric. */
  async render(): Promise<{ contentType: string; body: string }> {
    this.#refresh();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/**
 * Serves `metrics` at `GET /metrics` on `host:port` (port 0: any free one) until closed; every other
 * path is 404. Resolves once listening.
 * @throws DfdetError BAD_INPUT when the address cannot be listened on (in use, not local).
 */
export async function listenMetrics(metrics: WorkerMetrics, port: number, host: string): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
      return;
    }
    metrics.render().then(
      ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
      (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e instanceof Error ? e.message : String(e)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new DfdetError('BAD_INPUT', `Cannot serve worker metrics on ${host}:${port}: ${e.code ?? e.message}`, { cause: e })));
    server.listen(port, host, () => resolve());
  });
  const a = server.address();
  const bound = typeof a === 'object' && a ? a.port : port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}/metrics`;
  return {
    url,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
