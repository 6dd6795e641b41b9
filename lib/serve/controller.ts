/**
 * The state of one service: options, admission, metrics, readiness, and the requests in flight
 * (each with the AbortController that cancels its detector work).
 */
import * as path from 'node:path';

import sharp from 'sharp';

import type { DetectInput, Detector } from '../detector';
import { DfdetError, invalidParameter } from '../errors';
import { Admission } from './admission';
import { bearerChecker } from './auth';
import { HttpError, scrubPaths } from './errors';
import { ServeMetrics } from './metrics';

/** Options of the service (see `dfdet serve --help` for the flags that set them). */
export interface ServeOptions {
  /** The one pipeline every request goes through. */
  detector: Detector;
  /** Accepted API keys (Bearer). None: no authentication. */
  apiKeys?: readonly string[];
  /** Whether /healthz, /readyz, /metrics and /openapi.json need a key too. Default false. */
  authProbes?: boolean;
  /**
   * Requests running in the detector at once. Default 4. Running requests share the model's
   * batches face by face (round robin), so a small one is not held up by a big one; waiting ones
   * wait for a slot in arrival order. Each running request may hold one decoded image or video.
   */
  maxRunning?: number;
  /** Requests admitted beyond those running (uploading or waiting); more get 429. Default 16. */
  maxQueue?: number;
  /** Body bytes held by all admitted requests; more get 429. Default max(256 MiB, 4 x maxBody). */
  maxQueueBytes?: number;
  /** Largest body (all files of a multipart body together), bytes; larger gets 413. Default 64 MiB. */
  maxBody?: number;
  /** Most files in one multipart body; more gets 413. Default 16. */
  maxFiles?: number;
  /** Time a detect request may take from admission to answer, ms; then 504 and its work is cancelled. Default 60000. */
  requestTimeoutMs?: number;
  /** Origins allowed by CORS. Default none: CORS off. */
  corsOrigins?: readonly string[];
  /** The input scored before the service reports ready. Default: a generated blank image. */
  warmup?: DetectInput;
  /** Shown by /v1/models: the device and dtype the detector was loaded with, when known. */
  modelInfo?: { device?: string; dtype?: string };
  /** Seconds the models took to load (the model_load_seconds metric). */
  modelLoadSeconds?: number;
}

type Resolved = Required<Omit<ServeOptions, 'detector' | 'apiKeys' | 'corsOrigins' | 'warmup' | 'modelInfo' | 'modelLoadSeconds'>>;

/** A request in flight: cancelling it aborts its detector work. */
export interface InFlight {
  controller: AbortController;
}

/** The shared state of the routes of one service. */
export class ServeController {
  readonly detector: Detector;
  readonly options: Resolved;
  readonly admission: Admission;
  readonly metrics: ServeMetrics;
  readonly corsOrigins: readonly string[];
  readonly modelInfo: { device?: string; dtype?: string };
  /** Checks an Authorization header; undefined when no key is configured. */
  readonly checkAuth: ((authorization: string | undefined) => boolean) | undefined;
  readonly inFlight = new Set<InFlight>();
  #ready = false;
  #draining = false;
  readonly #warmupInput: DetectInput | undefined;

  constructor(o: ServeOptions) {
    if (typeof o !== 'object' || o === null || typeof o.detector?.detect !== 'function') invalidParameter('detector', 'a Detector', o?.detector);
    const int = (name: keyof Resolved, v: unknown, min: number, def: number): number => {
      const x = v ?? def;
      if (!Number.isSafeInteger(x) || (x as number) < min) invalidParameter(name, `an integer >= ${min}`, x);
      return x as number;
    };
    const maxBody = int('maxBody', o.maxBody, 1, 64 * 2 ** 20);
    const maxQueueBytes = int('maxQueueBytes', o.maxQueueBytes, maxBody, Math.max(256 * 2 ** 20, 4 * maxBody));
    this.options = {
      authProbes: Boolean(o.authProbes),
      maxRunning: int('maxRunning', o.maxRunning, 1, 4),
      maxQueue: int('maxQueue', o.maxQueue, 0, 16),
      maxQueueBytes,
      maxBody,
      maxFiles: int('maxFiles', o.maxFiles, 1, 16),
      requestTimeoutMs: int('requestTimeoutMs', o.requestTimeoutMs, 1, 60_000),
    };
    if (o.apiKeys !== undefined && (!Array.isArray(o.apiKeys) || o.apiKeys.some((k) => typeof k !== 'string' || k.length === 0)))
      invalidParameter('apiKeys', 'a list of non-empty strings', o.apiKeys);
    this.checkAuth = o.apiKeys && o.apiKeys.length > 0 ? bearerChecker(o.apiKeys) : undefined;
    this.corsOrigins = [...(o.corsOrigins ?? [])];
    this.detector = o.detector;
    this.modelInfo = { ...o.modelInfo };
    this.#warmupInput = o.warmup;
    this.admission = new Admission({ maxRunning: this.options.maxRunning, maxQueue: this.options.maxQueue, maxBytes: maxQueueBytes });
    this.metrics = new ServeMetrics(o.detector, this.admission);
    if (o.modelLoadSeconds !== undefined) this.metrics.setModelLoadSeconds(o.modelLoadSeconds);
  }

  /** True once warmed up and until draining starts. */
  get ready(): boolean {
    return this.#ready && !this.#draining;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** The 503 for a request that comes while not ready (or draining), or undefined when ready. */
  unavailable(): HttpError | undefined {
    if (this.#draining) return new HttpError(503, 'UNAVAILABLE', 'the server is draining (shutting down)', 5);
    if (!this.#ready) return new HttpError(503, 'UNAVAILABLE', 'the model is warming up', 2);
    return undefined;
  }

  /**
   * Runs one input through the whole pipeline (Detector.create has already run both models once
   * unless created with `warmup: false`), then reports ready.
   * @throws DfdetError when the warm-up input fails (a broken model must not report ready).
   */
  async warmup(): Promise<void> {
    const input = this.#warmupInput ?? { data: await blankImage(), name: 'warmup' };
    const r = await this.detector.detect(input);
    if (r.error) throw new DfdetError(r.error.code, `warm-up failed: ${r.error.message}`);
    this.#ready = true;
    this.metrics.setReady(this.ready);
  }

  /** Stops admitting detect requests (503) and reports not ready. */
  startDraining(): void {
    this.#draining = true;
    this.metrics.setReady(false);
  }

  /** Cancels every request in flight with `reason` (their detector work stops). */
  abortAll(reason: HttpError): void {
    for (const r of this.inFlight) r.controller.abort(reason);
  }

  /** The model's name as clients see it: a file's base name, never a server path. */
  publicModelName(): string {
    const name = this.detector.identity.name;
    return path.isAbsolute(name) || name.startsWith('.') || name.includes(path.sep + path.sep) ? path.basename(name) : scrubPaths(name);
  }
}

/** A small grey PNG (64x64: under any sensible --max-pixels): enough to run the pipeline once. */
function blankImage(): Promise<Buffer> {
  return sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 128, g: 128, b: 128 } } }).png().toBuffer();
}
