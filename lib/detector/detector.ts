/**
 * The Detector: one pipeline from media to deepfake probabilities, shared by the API, the CLI, the
 * HTTP service and the workers. This class holds the models and wires the stages: the input stage
 * (sources.ts), the pipeline (run.ts), the aggregation (aggregate.ts) and the lifecycle (stream.ts).
 */
import * as os from 'node:os';

import { Batcher, type BatchEvent } from '../batcher';
import { METADATA_FILE, readDetectorMetadata, type DetectorMetadata } from '../detector-model/metadata';
import { DfdetError } from '../errors';
import type { DetectInput, MediaSource } from '../inputs';
import { Model } from '../model';
import { type CallSettings, type DetectCallOptions, type DetectorOptions, resolveCallOptions, resolveDetectorOptions, type ResolvedDetectorOptions } from '../options/detector';
import { resolveModel } from '../resolve-model';
import { aggregate, softmaxFake } from './aggregate';
import { FaceModelPool } from './face-pool';
import { type PipelineContext, type PreparedFaces, prepareFaces, runPipeline, unitVector, warmUp } from './run';
import { type FailedSource, inputName, sourcesOf, toResultError } from './sources';
import { Lifecycle, streamResults } from './stream';
import type { DetectorStats, DetectResult, EmbedResult, ModelIdentity } from './types';

/** The settings of one call, with its signal. */
type Call = CallSettings & { signal?: AbortSignal };

function zeroTimings(): DetectResult['timings'] {
  return { decodeMs: 0, facesMs: 0, scoreMs: 0, totalMs: 0 };
}

/** The path a single input names, if any (to tell a file from a folder it expanded to). */
function pathOf(input: DetectInput): string | undefined {
  if (typeof input === 'string') return input;
  const p = typeof input === 'object' && input !== null ? (input as { path?: unknown }).path : undefined;
  return typeof p === 'string' ? p : undefined;
}

/** Scores images and videos for deepfaked faces. Create with {@link Detector.create}. */
export class Detector {
  readonly #model: Model;
  readonly #faceModel: FaceModelPool | undefined;
  readonly #opts: ResolvedDetectorOptions;
  readonly #ctx: PipelineContext;
  readonly #score: Batcher;
  #embed: Batcher | undefined;
  readonly #life = new Lifecycle();
  /** Streams waiting for room in the model's queue (woken whenever a batch takes faces from it). */
  readonly #queueWatchers = new Set<() => void>();
  #inputs = 0;
  #failed = 0;
  #warmupMs: number | null = null;
  /** Model metadata (architecture, preprocessing, labels, provenance). */
  readonly metadata: DetectorMetadata;
  /** Identity reported in every result (see {@link ModelIdentity} for the name). */
  readonly identity: ModelIdentity;

  private constructor(model: Model, faceModel: FaceModelPool | undefined, name: string, opts: ResolvedDetectorOptions) {
    this.#model = model;
    this.#faceModel = faceModel;
    this.#opts = opts;
    this.metadata = readDetectorMetadata(model.info);
    const a = this.metadata.arch;
    this.identity = {
      name,
      arch: `vit ${a.imageSize}px/${a.patchSize} w${a.width} L${a.layers} (${a.head})`,
      sourceKind: this.metadata.source.kind,
      sourceSha256: this.metadata.source.sha256,
      dtype: model.info.dtype,
    };
    this.#ctx = { faceModel, options: opts, input: this.metadata.input, preprocess: 'native', device: opts.device, disposing: this.#life.disposing };
    const size = this.metadata.input.size;
    const onBatch = (e: BatchEvent): void => {
      if (e.phase === 'start') for (const wake of this.#queueWatchers) wake();
    };
    this.#score = new Batcher(model, 'forward', [3, size, size], { maxBatch: opts.batchSize, maxWaitMs: opts.maxWaitMs, onBatch });
  }

  /**
   * Loads the detector (and the face detector unless `faces: 'none'`), then runs each once
   * (`warmup`, default true) so that the first call is not the slow one.
   * @throws DfdetError BAD_INPUT (an option, named), NOT_FOUND (no such model), MODEL_LOAD_FAILED.
   */
  static async create(options: DetectorOptions = {}): Promise<Detector> {
    const opts = resolveDetectorOptions(options);
    const { source, name } = await resolveModel(opts.model, opts.cacheDir);
    const model = await Model.load(source, { device: opts.device, dtype: opts.dtype, threads: opts.threads, extraFiles: [METADATA_FILE], cpuGate: 'exclusive' });
    let faceModel: FaceModelPool | undefined;
    try {
      if (!model.info.methods.includes('forward')) throw new DfdetError('MODEL_LOAD_FAILED', `${name} has no forward method: not a detector model`);
      // One face model per input prepared at once, up to the cores: see face-pool.ts.
      if (opts.faces === 'detect') faceModel = await FaceModelPool.load(Math.min(opts.concurrency, os.availableParallelism()), opts.device);
      const d = new Detector(model, faceModel, name, opts);
      if (opts.warmup) d.#warmupMs = await warmUp(model, faceModel?.models ?? [], d.metadata.input);
      return d;
    } catch (e) {
      await Promise.all([model.dispose(), faceModel?.dispose()]);
      throw e;
    }
  }

  /** Batches and counters (observable batch sizes; warm-up runs are not counted). */
  get stats(): DetectorStats {
    const s = this.#score.stats;
    return { ...s, sizes: { ...s.sizes }, inputs: this.#inputs, failed: this.#failed, warmupMs: this.#warmupMs };
  }

  /** True once dispose() was called. */
  get disposed(): boolean {
    return this.#life.disposed;
  }

  /**
   * Scores one image or video (a path, bytes, a stream or `{ data | path, name, kind }`).
   *
   * Single-input rule: anything wrong with the input itself resolves with a result carrying
   * `error` (a missing file: NOT_FOUND; undecodable: DECODE_FAILED; a value that is not an input, or
   * a folder: BAD_INPUT; pass folders in an array or to detectStream). The call rejects only when
   * the detector is disposed (DISPOSED) or a call option is invalid (BAD_INPUT).
   */
  detect(input: DetectInput, options?: DetectCallOptions): Promise<DetectResult>;
  /** Scores several inputs (folders expand to their media files), `concurrency` at a time; results in input order. */
  detect(inputs: readonly DetectInput[], options?: DetectCallOptions): Promise<DetectResult[]>;
  async detect(input: DetectInput | readonly DetectInput[], options?: DetectCallOptions): Promise<DetectResult | DetectResult[]> {
    this.#life.checkAlive();
    const call = resolveCallOptions(options, this.#opts);
    // Tracked from the first line, so dispose() waits for the whole call (folder expansion included).
    return this.#life.track<DetectResult | DetectResult[]>(Array.isArray(input) ? this.#detectAll(input as readonly DetectInput[], call) : this.#detectOne(input as DetectInput, call));
  }

  async #detectAll(inputs: readonly DetectInput[], call: Call): Promise<DetectResult[]> {
    const out: DetectResult[] = [];
    for await (const r of this.#stream(inputs, call, false)) out.push(r);
    return out.sort((a, b) => a.index - b.index);
  }

  async #detectOne(input: DetectInput, call: Call): Promise<DetectResult> {
    return this.#analyze(await this.#single(input, call), 0, call);
  }

  /** The one source of a single input, or a failed source (a folder is BAD_INPUT: see detect). */
  async #single(input: DetectInput, call: Call): Promise<MediaSource | FailedSource> {
    const sources = await sourcesOf(input, 0, call.signal, this.#life.disposing);
    const p = pathOf(input);
    const first = sources[0];
    // A folder gives its files (any number): one file whose path is not the input's.
    if (sources.length === 1 && ('error' in first! || first!.path === undefined || first!.path === p)) return first!;
    const name = inputName(input, 0);
    return { name, error: { code: 'BAD_INPUT', message: `${name} is a folder (${sources.length} media files): pass it in an array or use detectStream()` } };
  }

  /**
   * Streams results as they finish, for large collections: at most `concurrency` inputs are
   * decoded at once, so memory stays bounded whatever the input size. Folders expand lazily.
   *
   * dispose() waits for the stream's work in flight: the input being taken apart and the inputs
   * running. Inputs the stream would start after dispose() (when the consumer asks for more) end
   * with a DISPOSED result instead, and no further input is taken from an iterable.
   */
  async *detectStream(inputs: AsyncIterable<DetectInput> | Iterable<DetectInput>, options?: DetectCallOptions): AsyncGenerator<DetectResult> {
    this.#life.checkAlive();
    yield* this.#stream(inputs, resolveCallOptions(options, this.#opts), true);
  }

  #stream(inputs: AsyncIterable<DetectInput> | Iterable<DetectInput>, call: Call, external: boolean): AsyncGenerator<DetectResult> {
    return streamResults(inputs, {
      lifecycle: this.#life,
      limit: this.#opts.concurrency,
      facesAhead: 2 * this.#opts.batchSize,
      queuedFaces: () => this.#score.queued,
      watchQueue: (wake) => {
        this.#queueWatchers.add(wake);
        return () => this.#queueWatchers.delete(wake);
      },
      signal: call.signal,
      external,
      sourcesOf: (input, index) => sourcesOf(input, index, call.signal, this.#life.disposing),
      analyze: (source, index, prepared) => this.#analyze(source, index, call, prepared),
      drain: () => this.#score.drain(),
      holdQueue: () => this.#score.hold(),
    });
  }

  /**
   * Normalised CLS features of every face of an image or video (the detector's `features` method).
   * Same single-input rule as {@link detect}; `frames` and `allFaces` apply, `threshold` does not.
   */
  async embed(input: DetectInput, options?: DetectCallOptions): Promise<EmbedResult> {
    this.#life.checkAlive();
    const call = resolveCallOptions(options, this.#opts);
    // Tracked from the first line: dispose() waits for it (and closes the batcher it may create).
    return this.#life.track(this.#embedOne(input, call));
  }

  async #embedOne(input: DetectInput, call: Call): Promise<EmbedResult> {
    if (!this.#model.info.methods.includes('features'))
      throw new DfdetError('UNSUPPORTED', `${this.identity.name} has no features method (convert it with dfdet convert to get one)`);
    const size = this.metadata.input.size;
    this.#embed ??= new Batcher(this.#model, 'features', [3, size, size], { maxBatch: this.#opts.batchSize, maxWaitMs: this.#opts.maxWaitMs });
    const s = await this.#single(input, call);
    if ('error' in s) return { index: 0, source: s.name, kind: 'unknown', faces: [], error: s.error };
    try {
      const { prepared, rows } = await runPipeline(s, this.#ctx, this.#embed, 'features', call, call.signal);
      const video = s.kind === 'video';
      // Below float32 the model's own L2 norm rounds (bf16: |v| off by ~1e-3): renormalise in float32.
      const unit = this.identity.dtype === 'float32' ? (v: Float32Array) => v : unitVector;
      const faces = prepared.faces.map((f, i) => ({ box: f.face.box, frame: video ? f.frame : undefined, track: f.face.track, embedding: unit(rows[i]!) }));
      return { index: 0, source: s.name, kind: s.kind, faces };
    } catch (e) {
      return { index: 0, source: s.name, kind: s.kind, faces: [], error: toResultError(e) };
    }
  }

  /**
   * The pipeline up to the model for one input: its faces (source-pixel geometry, frame, track) and
   * their CLIP input tensor, cropped exactly as detect() crops them (for training data). Unlike
   * detect, it rejects on a bad input.
   * @throws DfdetError NOT_FOUND, DECODE_FAILED, BAD_INPUT (also for a folder), ABORTED, DISPOSED.
   */
  async prepare(input: DetectInput, options?: DetectCallOptions): Promise<PreparedFaces> {
    this.#life.checkAlive();
    const call = resolveCallOptions(options, this.#opts);
    return this.#life.track(
      (async () => {
        const s = await this.#single(input, call);
        if ('error' in s) throw new DfdetError(s.error.code, s.error.message);
        return prepareFaces(s, this.#ctx, call, call.signal);
      })(),
    );
  }

  async #analyze(source: MediaSource | FailedSource, index: number, call: Call, prepared?: () => void): Promise<DetectResult> {
    const t0 = performance.now();
    const base = { index, source: source.name, threshold: call.threshold, model: this.identity, faces: [], noFace: false };
    this.#inputs++;
    if ('error' in source) {
      this.#failed++;
      return { ...base, kind: 'unknown', pFake: null, label: null, aggregate: 'none', timings: zeroTimings(), error: source.error };
    }
    try {
      const { prepared: p, rows, timings } = await runPipeline(source, this.#ctx, this.#score, 'forward', call, call.signal, prepared);
      const faces = p.faces.map((f, i) => ({ face: f.face, frame: f.frame, pFake: softmaxFake(rows[i]!) }));
      const detecting = this.#faceModel !== undefined;
      const scored = aggregate({ kind: p.kind, detecting, faces, frames: p.frames, tracks: p.tracks, mainId: p.mainId, partial: p.partial }, call);
      return { ...base, kind: source.kind, ...scored, timings: { ...timings, totalMs: performance.now() - t0 } };
    } catch (e) {
      this.#failed++;
      const timings = { ...zeroTimings(), totalMs: performance.now() - t0 };
      return { ...base, kind: source.kind, pFake: null, label: null, aggregate: 'none', timings, error: toResultError(e) };
    }
  }

  /**
   * Waits for calls in flight, then frees both models; later calls reject with DISPOSED. Inputs
   * whose stream is still being read do not hold it up: they end at once with a DISPOSED result.
   * Idempotent.
   */
  dispose(): Promise<void> {
    return this.#life.dispose(async () => {
      await Promise.all([this.#score.close(), this.#embed?.close()]);
      await Promise.all([this.#model.dispose(), this.#faceModel?.dispose()]);
    });
  }

  /** `await using detector = await Detector.create(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}
