/**
 * Prometheus metrics of the service (prom-client), in a registry of its own so several servers (or
 * a server and a worker) in one process never clash. The detector's own metrics are
 * lib/metrics/detector's, shared with the queue workers.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import type { DetectResult, Detector } from '../detector';
import { registerDetectorMetrics } from '../metrics/detector';
import type { Admission } from './admission';

/** Metrics of one server. */
export class ServeMetrics {
  /** The registry `/metrics` renders. */
  readonly registry = new Registry();
  readonly #requests: Counter<'route' | 'method' | 'status'>;
  readonly #latency: Histogram<'route' | 'method'>;
  readonly #refused: Counter<'reason'>;
  readonly #inputs: Counter<'outcome'>;
  readonly #modelLoad: Gauge;
  readonly #ready: Gauge;
  readonly #refresh: () => void;

  constructor(detector: Detector, admission: Admission, options: { prefix?: string; processMetrics?: boolean } = {}) {
    const p = options.prefix ?? 'dfdet_';
    const registers = [this.registry];
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: p });
    this.#requests = new Counter({ name: `${p}http_requests_total`, help: 'HTTP requests answered, by route, method and status', labelNames: ['route', 'method', 'status'], registers });
    this.#latency = new Histogram({
      name: `${p}http_request_duration_seconds`,
      help: 'Time to answer HTTP requests, by route and method',
      labelNames: ['route', 'method'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.#refused = new Counter({ name: `${p}requests_refused_total`, help: 'Requests refused at admission (429 queue or bytes, 503 not ready or draining)', labelNames: ['reason'], registers });
    this.#inputs = new Counter({ name: `${p}inputs_total`, help: 'Inputs scored, by outcome (scored, no_face, or the error code)', labelNames: ['outcome'], registers });
    this.#modelLoad = new Gauge({ name: `${p}model_load_seconds`, help: 'Seconds taken to load the detector models', registers });
    this.#ready = new Gauge({ name: `${p}ready`, help: '1 when the service is warmed up and not draining', registers });
    new Gauge({ name: `${p}queue_depth`, help: 'Admitted requests not running yet (uploading or waiting for a run slot)', registers, collect() { this.set(admission.queued); } });
    new Gauge({ name: `${p}queue_bytes`, help: 'Body bytes reserved by admitted requests', registers, collect() { this.set(admission.bytes); } });
    new Gauge({ name: `${p}requests_in_flight`, help: 'Requests running in the detector', registers, collect() { this.set(admission.running); } });
    const refreshDetector = registerDetectorMetrics(this.registry, detector, p);
    const refused = this.#refused;
    const seenRefused = { queue: 0, bytes: 0 };
    // One refresh per scrape, before the registry renders.
    this.#refresh = (): void => {
      for (const reason of ['queue', 'bytes'] as const) {
        refused.inc({ reason }, admission.refused[reason] - seenRefused[reason]);
        seenRefused[reason] = admission.refused[reason];
      }
      refreshDetector();
    };
  }

  /** Counts one answered request. */
  observeRequest(route: string, method: string, status: number, seconds: number): void {
    this.#requests.inc({ route, method, status: String(status) });
    this.#latency.observe({ route, method }, seconds);
  }

  /** Counts a 503 refusal (429 refusals are counted by the Admission and read at each scrape). */
  refused(reason: 'not_ready' | 'draining'): void {
    this.#refused.inc({ reason });
  }

  /** Counts the outcome of each scored input. */
  observeResults(results: readonly DetectResult[]): void {
    for (const r of results) this.#inputs.inc({ outcome: r.error ? r.error.code : r.noFace ? 'no_face' : 'scored' });
  }

  /** Sets the model load time gauge. */
  setModelLoadSeconds(seconds: number): void {
    this.#modelLoad.set(seconds);
  }

  /** Sets the readiness gauge. */
  setReady(ready: boolean): void {
    this.#ready.set(ready ? 1 : 0);
  }

  /** Prometheus text of every metric. */
  async render(): Promise<{ contentType: string; body: string }> {
    this.#refresh();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
