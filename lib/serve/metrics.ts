/**
 * Prometheus metrics of the service (prom-client), in a registry of its own so several servers (or
 * a server and a worker) in one process never clash. Detector numbers (batch sizes, faces scored)
 * are read from `Detector.stats` at each scrape, so the pipeline carries no metrics code.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import type { DetectResult, Detector } from '../detector';
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
  /** Detector counters already turned into metrics. */
  #seen = { items: 0, batches: 0, sizes: {} as Record<number, number>, modelMs: 0 };
  /** (time s, faces scored) samples for the faces/s gauge over the last minute. */
  #rate: { t: number; items: number }[] = [];
  readonly #refreshDetector: () => void;

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
    const seen = this.#seen;
    const batches = new Histogram({ name: `${p}batch_size`, help: 'Faces per model batch', buckets: [1, 2, 4, 8, 16, 32, 64, 128], registers });
    const faces = new Counter({ name: `${p}faces_scored_total`, help: 'Faces scored by the detector model', registers });
    const modelSeconds = new Counter({ name: `${p}model_seconds_total`, help: 'Seconds spent inside the detector model', registers });
    const rate = this.#rate;
    const facesPerSecond = new Gauge({ name: `${p}faces_per_second`, help: 'Faces scored per second over the last minute', registers });
    const refused = this.#refused;
    const seenRefused = { queue: 0, bytes: 0 };
    // One refresh per scrape, before the registry renders.
    const refresh = (): void => {
      for (const reason of ['queue', 'bytes'] as const) {
        refused.inc({ reason }, admission.refused[reason] - seenRefused[reason]);
        seenRefused[reason] = admission.refused[reason];
      }
      const s = detector.stats;
      for (const [size, count] of Object.entries(s.sizes)) {
        const k = Number(size);
        for (let i = seen.sizes[k] ?? 0; i < count; i++) batches.observe(k);
        seen.sizes[k] = count;
      }
      faces.inc(s.items - seen.items);
      modelSeconds.inc(Math.max(0, (s.modelMs - seen.modelMs) / 1000));
      seen.items = s.items;
      seen.modelMs = s.modelMs;
      const t = performance.now() / 1000;
      rate.push({ t, items: s.items });
      while (rate.length > 2 && t - rate[1]!.t >= 60) rate.shift();
      const first = rate[0]!;
      facesPerSecond.set(t > first.t ? (s.items - first.items) / (t - first.t) : 0);
    };
    this.#refreshDetector = refresh;
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
    this.#refreshDetector();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
