/**
 * The Detector: one pipeline from media to deepfake probabilities, shared by the API, the CLI and
 * (later) the HTTP service.
 *
 *   input → decode (sharp / ffmpeg) → faces (BlazeFace in the addon, tracked across frames)
 *         → crop (DeepfakeBench alignment, x1.3, 256 px) → CLIP transform (224 px, bicubic)
 *         → dynamic batches → CLIP ViT detector → softmax → pFake
 *
 * Image score: the highest face pFake (one fake face makes the image fake). Video score: the mean
 * of frame probabilities of the subject's face track (the paper's rule), or with `allFaces` the
 * highest track mean.
 */
import { Batcher, type BatchStats } from './batcher';
import { readDetectorMetadata, type DetectorMetadata } from './detector-model/metadata';
import { DfdetError, invalidParameter, isDfdetError, type ErrorCode } from './errors';
import { cropFace } from './faces/align';
import { detectFaces, loadFaceDetector, type Face, type FaceBox } from './faces/blazeface';
import { mainTrack, trackFaces, type FaceTrack } from './faces/track';
import { resolveInput, type DetectInput, type MediaSource } from './inputs';
import { decodeImage, type RgbImage } from './media/image';
import { clipTransform } from './media/transform';
import { sampleFrames, type SamplingStrategy } from './media/video';
import { Model, type ModelDType } from './model';
import { resolveModel } from './resolve-model';

export type { DetectInput } from './inputs';
export type { SamplingStrategy } from './media/video';

/** Options of {@link Detector.create}. */
export interface DetectorOptions {
  /**
   * The detector model: a dfdet model file (from `dfdet convert`, `dfdet pull` or `dfdet model init`),
   * the authors' TorchScript file, its bytes, or the name of a pulled registry model.
   * Default: the registry's default model, if it was pulled.
   */
  model?: string | Uint8Array;
  /** 'cpu', 'cuda' or 'cuda:N'. Default 'cpu'. */
  device?: string;
  /** Model precision. Default 'float32'. */
  dtype?: ModelDType;
  /** libtorch intra-op threads (process-wide). Default: number of cores. */
  threads?: number;
  /** Largest model batch (faces). Default 8. */
  batchSize?: number;
  /** Longest a face waits for a fuller batch, ms. Default 5. */
  maxWaitMs?: number;
  /** 'detect' finds faces (default); 'none' scores whole images/frames as already-cropped faces. */
  faces?: 'detect' | 'none';
  /** Crop mode: 'align' (DeepfakeBench similarity alignment, default) or 'box' (square box). */
  crop?: 'align' | 'box';
  /** Crop margin factor. Default 1.3 (the paper's). */
  cropScale?: number;
  /** Crop side in pixels before the CLIP transform. Default 256 (the paper's). */
  cropSize?: number;
  /** Videos: score every face track, not only the subject's. Default false. */
  allFaces?: boolean;
  /** Videos: frames to sample; a number means uniform sampling. Default 32 (the paper's). */
  frames?: number | SamplingStrategy;
  /** Videos: most frames decoded whatever the strategy. Default 1000. */
  maxFrames?: number;
  /** Videos: time limit for decoding one video, ms. Default 300000. */
  videoTimeoutMs?: number;
  /** pFake at or above which the label is 'fake'. Default 0.5. */
  threshold?: number;
  /** Face detector score threshold. Default 0.5. */
  faceThreshold?: number;
  /** Smallest face side in source pixels. Default 20. */
  minFaceSize?: number;
  /** Largest decoded image in pixels (decompression bombs). Default 100e6. */
  maxPixels?: number;
  /** Videos: frames with a longer side are scaled down to it before detection. Default 1920; Infinity keeps full size. */
  maxFrameSide?: number;
  /** Videos: most bytes of decoded frames held for one video (then the video is scored partially). Default 1 GiB. */
  maxVideoBytes?: number;
  /** Inputs processed at once by detect([...]) and detectStream. Default 4. */
  concurrency?: number;
  /** Cache folder for registry models. Default $DFDET_CACHE, else $XDG_CACHE_HOME/dfdet, else ~/.cache/dfdet. */
  cacheDir?: string;
}

/** Per-call options. */
export interface DetectCallOptions {
  /**
   * Aborts the call: inputs not yet started end with an ABORTED error result (not decoded), those
   * running stop at their next step. `detectStream` takes no further input from an iterable once
   * aborted (every input already taken gets a result); an array's inputs all get a result.
   */
  signal?: AbortSignal;
}

/** A face box in source pixels (the face detector's box). */
export type Box = FaceBox;

/** One scored face. */
export interface FaceResult {
  box: Box;
  /** Face detector confidence (1 when faces: 'none'). */
  score: number;
  /** Eyes, nose, mouth, ears in source pixels (absent when faces: 'none'). */
  keypoints?: Face['keypoints'];
  /** Track id in videos. */
  track?: number;
  /** Probability that the face is fake. */
  pFake: number;
}

/** One sampled video frame. */
export interface FrameResult {
  index: number;
  timestampSec: number;
  /** The frame's probability under the aggregate rule (null: no scored face in it). */
  pFake: number | null;
  faces: FaceResult[];
}

/** A face track of a video. */
export interface TrackResult {
  id: number;
  /** Frames in which the face was found. */
  frames: number;
  /** Mean of its frame probabilities. */
  pFake: number;
  /** The subject: the largest and most persistent face. */
  main: boolean;
}

/** The result for one input. Errors are results too: one bad file never stops a batch. */
export interface DetectResult {
  /** Input position in the call (after folders were expanded). */
  index: number;
  /** Path or name of the input. */
  source: string;
  kind: 'image' | 'video' | 'unknown';
  /** Probability that the input is fake; null when no face was found or on error. */
  pFake: number | null;
  /** 'fake' when pFake >= threshold, 'real' below, null when there is no score. */
  label: 'real' | 'fake' | null;
  threshold: number;
  /** True when face detection found no face (not an error, not a silent 0.5). */
  noFace: boolean;
  /** Images: every face. Videos: the faces of the scored tracks in every frame. */
  faces: FaceResult[];
  /** Videos: the sampled frames. */
  frames?: FrameResult[];
  /** Videos: the face tracks. */
  tracks?: TrackResult[];
  /** Videos: decoding stopped early (truncated/corrupt file); the score uses the frames decoded. */
  partial?: boolean;
  /** How pFake was aggregated. */
  aggregate: 'max-face' | 'mean-frames-main-track' | 'max-track-mean' | 'mean-frames' | 'none';
  /** The model that scored it. */
  model: ModelIdentity;
  timings: { decodeMs: number; facesMs: number; scoreMs: number; totalMs: number };
  /** Why the input could not be scored. */
  error?: { code: ErrorCode; message: string };
}

/** Normalised features (the detector's L2-normalised CLS embedding) for one face. */
export interface FaceEmbedding {
  box: Box;
  frame?: number;
  track?: number;
  /** L2-normalised feature vector. */
  embedding: Float32Array;
}

/** The result of {@link Detector.embed}. */
export interface EmbedResult {
  index: number;
  source: string;
  kind: 'image' | 'video' | 'unknown';
  faces: FaceEmbedding[];
  error?: { code: ErrorCode; message: string };
}

/** Identity of the detector model. */
export interface ModelIdentity {
  /** Path or registry name given. */
  name: string;
  /** Architecture (e.g. 'vit-l-14') and head. */
  arch: string;
  /** Where the weights came from ('init' means random: scores carry no meaning). */
  sourceKind: string;
  sourceSha256: string;
}

/** Counters of a detector. */
export interface DetectorStats extends BatchStats {
  inputs: number;
  failed: number;
}

interface Scored {
  row: Float32Array;
  face: FaceResult;
  frame: number;
}

/** An input that could not be resolved into media: it still gets a result, carrying the error. */
type FailedSource = { name: string; error: NonNullable<DetectResult['error']> };

type ResolvedOptions = Required<Omit<DetectorOptions, 'model' | 'device' | 'dtype' | 'threads' | 'cacheDir'>>;

/** What the shared core produces for one input. */
interface RunOutput {
  scored: Scored[];
  meta: { index: number; timestampSec: number }[];
  tracks: FaceTrack[];
  mainId: number;
  partial: boolean;
  timings: { decodeMs: number; facesMs: number; scoreMs: number };
}

type Aggregated = Pick<DetectResult, 'pFake' | 'label' | 'faces' | 'noFace' | 'aggregate' | 'frames' | 'tracks' | 'partial'>;

const DEFAULTS = {
  batchSize: 8,
  maxWaitMs: 5,
  cropScale: 1.3,
  cropSize: 256,
  frames: 32,
  maxFrames: 1000,
  videoTimeoutMs: 300_000,
  threshold: 0.5,
  faceThreshold: 0.5,
  minFaceSize: 20,
  maxPixels: 100_000_000,
  maxFrameSide: 1920,
  maxVideoBytes: 2 ** 30,
  concurrency: 4,
};

/** Scores images and videos for deepfaked faces. Create with {@link Detector.create}. */
export class Detector {
  readonly #model: Model;
  readonly #faceModel: Model | undefined;
  readonly #opts: ResolvedOptions;
  readonly #strategy: SamplingStrategy;
  readonly #score: Batcher;
  #embed: Batcher | undefined;
  readonly #inFlight = new Set<Promise<unknown>>();
  #disposed: Promise<void> | undefined;
  #inputs = 0;
  #failed = 0;
  /** Model metadata (architecture, preprocessing, labels, provenance). */
  readonly metadata: DetectorMetadata;
  /** Identity reported in every result. */
  readonly identity: ModelIdentity;

  private constructor(model: Model, faceModel: Model | undefined, name: string, opts: ResolvedOptions) {
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
    };
    const size = this.metadata.input.size;
    this.#strategy = typeof opts.frames === 'number' ? { kind: 'uniform', count: opts.frames } : opts.frames;
    this.#score = new Batcher(model, 'forward', [3, size, size], { maxBatch: opts.batchSize, maxWaitMs: opts.maxWaitMs });
  }

  /**
   * Loads the detector (and the face detector unless `faces: 'none'`).
   * @throws DfdetError NOT_FOUND (no such model), MODEL_LOAD_FAILED, BAD_INPUT (options).
   */
  static async create(options: DetectorOptions = {}): Promise<Detector> {
    const opts = validateOptions(options);
    const { source, name } = await resolveModel(options.model, options.cacheDir);
    const loadOpts = { device: options.device, dtype: options.dtype, threads: options.threads };
    const model = await Model.load(source, loadOpts);
    let faceModel: Model | undefined;
    try {
      if (!model.info.methods.includes('forward'))
        throw new DfdetError('MODEL_LOAD_FAILED', `${name} has no forward method: not a detector model`);
      if (opts.faces === 'detect') faceModel = await loadFaceDetector({ device: options.device });
      return new Detector(model, faceModel, name, opts);
    } catch (e) {
      await Promise.all([model.dispose(), faceModel?.dispose()]);
      throw e;
    }
  }

  /** Batches and counters (observable batch sizes). */
  get stats(): DetectorStats {
    return { ...this.#score.stats, sizes: { ...this.#score.stats.sizes }, inputs: this.#inputs, failed: this.#failed };
  }

  /** True once dispose() was called. */
  get disposed(): boolean {
    return this.#disposed !== undefined;
  }

  /**
   * Scores one image or video (path, bytes, stream). Never rejects for a bad input: the result
   * carries `error`. Rejects only when the detector is disposed or the input value is unusable.
   */
  detect(input: DetectInput, options?: DetectCallOptions): Promise<DetectResult>;
  /** Scores several inputs (folders expand to their media files), `concurrency` at a time, in input order. */
  detect(inputs: readonly DetectInput[], options?: DetectCallOptions): Promise<DetectResult[]>;
  async detect(input: DetectInput | readonly DetectInput[], options: DetectCallOptions = {}): Promise<DetectResult | DetectResult[]> {
    this.#checkAlive();
    // Tracked from the first line, so dispose() waits for the whole call (folder expansion included).
    return this.#track(this.#detect(input, options));
  }

  async #detect(input: DetectInput | readonly DetectInput[], options: DetectCallOptions): Promise<DetectResult | DetectResult[]> {
    if (Array.isArray(input)) {
      const out: DetectResult[] = [];
      for await (const r of this.#stream(input as readonly DetectInput[], options.signal, false)) out.push(r);
      return out.sort((a, b) => a.index - b.index);
    }
    const sources = await this.#sourcesOf(input as DetectInput, 0);
    if (sources.length !== 1)
      throw new DfdetError('BAD_INPUT', `${String(input)} is a folder (${sources.length} files): pass it in an array or use detectStream()`);
    return this.#analyzeSource(sources[0]!, 0, options.signal);
  }

  /**
   * Streams results as they finish, for large collections: at most `concurrency` inputs are
   * decoded at once, so memory stays bounded whatever the input size. Folders expand lazily.
   *
   * dispose() waits for the stream's work in flight: the input being taken apart and the inputs
   * running. Inputs the stream would start after dispose() (when the consumer asks for more) end
   * with a DISPOSED result instead, and no further input is taken from an iterable.
   */
  async *detectStream(inputs: AsyncIterable<DetectInput> | Iterable<DetectInput>, options: DetectCallOptions = {}): AsyncGenerator<DetectResult> {
    this.#checkAlive();
    yield* this.#stream(inputs, options.signal, true);
  }

  /**
   * The core of detect([...]) and detectStream. `external`: the consumer is the caller's code, which
   * may pause at a yield for as long as it likes, so the stream counts as work in flight (for
   * dispose) from its first line, but never while paused at a yield or waiting for an async
   * iterable's next input.
   */
  async *#stream(inputs: AsyncIterable<DetectInput> | Iterable<DetectInput>, signal: AbortSignal | undefined, external: boolean): AsyncGenerator<DetectResult> {
    let release: (() => void) | undefined;
    // True once the stream resumed after dispose(): it starts no more work.
    let cut = false;
    const acquire = (): void => {
      release ??= this.#hold();
      if (external && !release) cut = true;
    };
    const letGo = (): void => {
      release?.();
      release = undefined;
    };
    acquire();
    const limit = this.#opts.concurrency;
    // An array's inputs cost nothing to take, so each gets a result even after an abort.
    const finishAll = Array.isArray(inputs);
    const isAsync = Symbol.asyncIterator in Object(inputs);
    const it = isAsync ? (inputs as AsyncIterable<DetectInput>)[Symbol.asyncIterator]() : (inputs as Iterable<DetectInput>)[Symbol.iterator]();
    const running = new Map<number, Promise<{ id: number; result: DetectResult }>>();
    let index = 0;
    let id = 0;
    let finished = false;
    try {
      for (;;) {
        // A slow async iterable is not work in flight; taking from a sync one is instant.
        if (isAsync) letGo();
        let next: IteratorResult<DetectInput>;
        try {
          next = await it.next();
        } catch (e) {
          finished = true;
          throw e;
        }
        if (next.done) {
          finished = true;
          break;
        }
        const input = next.value;
        acquire();
        // Stopped: the input gets its result without being expanded or decoded.
        const code = signal?.aborted ? 'ABORTED' : cut ? 'DISPOSED' : undefined;
        const sources = code ? [{ name: inputName(input, index), error: stopError(code) }] : await this.#sourcesOf(input, index);
        for (const s of sources) {
          const myId = id++;
          const myIndex = index++;
          const source = cut && !('error' in s) ? { name: s.name, error: stopError('DISPOSED') } : s;
          running.set(myId, this.#track(this.#analyzeSource(source, myIndex, signal)).then((result) => ({ id: myId, result })));
          if (running.size >= limit) {
            const done = await Promise.race(running.values());
            running.delete(done.id);
            letGo();
            yield done.result;
            acquire();
          }
        }
        // Take no further input once aborted or disposed (an array's inputs still get their results).
        if (!finishAll && (signal?.aborted || (external && this.#disposed))) break;
      }
    } finally {
      letGo();
      if (!finished) await it.return?.();
    }
    while (running.size > 0) {
      const done = await Promise.race(running.values());
      running.delete(done.id);
      yield done.result;
    }
  }

  /** Normalised CLS features of every face of an image or video (the detector's `features` method). */
  async embed(input: DetectInput, options: DetectCallOptions = {}): Promise<EmbedResult> {
    this.#checkAlive();
    // Tracked from the first line: dispose() waits for it (and closes the batcher it may create).
    return this.#track(this.#embedOne(input, options));
  }

  async #embedOne(input: DetectInput, options: DetectCallOptions): Promise<EmbedResult> {
    if (!this.#model.info.methods.includes('features'))
      throw new DfdetError('UNSUPPORTED', `${this.identity.name} has no features method (convert it with dfdet convert to get one)`);
    const size = this.metadata.input.size;
    this.#embed ??= new Batcher(this.#model, 'features', [3, size, size], { maxBatch: this.#opts.batchSize, maxWaitMs: this.#opts.maxWaitMs });
    const batcher = this.#embed;
    const [source] = await this.#sourcesOf(input, 0);
    const s = source!;
    if ('error' in s) return { index: 0, source: s.name, kind: 'unknown', faces: [], error: s.error };
    try {
      const { scored } = await this.#run(s, batcher, options.signal);
      return {
        index: 0,
        source: s.name,
        kind: s.kind,
        faces: scored.map((x) => ({ box: x.face.box, frame: s.kind === 'video' ? x.frame : undefined, track: x.face.track, embedding: x.row })),
      };
    } catch (e) {
      return { index: 0, source: s.name, kind: s.kind, faces: [], error: toResultError(e) };
    }
  }

  /** Waits for calls in flight, then frees both models. Later calls reject with DISPOSED. Idempotent. */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      // Work in flight may start more tracked work (a stream starting its next input): wait until none is left.
      while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
      await Promise.all([this.#score.close(), this.#embed?.close()]);
      await Promise.all([this.#model.dispose(), this.#faceModel?.dispose()]);
    })();
    return this.#disposed;
  }

  /** `await using detector = await Detector.create(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  #checkAlive(): void {
    if (this.#disposed) throw new DfdetError('DISPOSED', 'the detector was disposed');
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inFlight.add(p);
    void p.finally(() => this.#inFlight.delete(p)).catch(() => undefined);
    return p;
  }

  /** Marks work in flight until the returned function is called; undefined once dispose() was called. */
  #hold(): (() => void) | undefined {
    if (this.#disposed) return undefined;
    let release!: () => void;
    this.#track(new Promise<void>((r) => (release = r)));
    return release;
  }

  async #sourcesOf(input: DetectInput, index: number): Promise<(MediaSource | FailedSource)[]> {
    try {
      return await resolveInput(input);
    } catch (e) {
      return [{ name: inputName(input, index), error: toResultError(e) }];
    }
  }

  async #analyzeSource(source: MediaSource | FailedSource, index: number, signal?: AbortSignal): Promise<DetectResult> {
    const t0 = performance.now();
    const base = {
      index,
      source: source.name,
      threshold: this.#opts.threshold,
      model: this.identity,
      faces: [] as FaceResult[],
      noFace: false,
    };
    this.#inputs++;
    if ('error' in source) {
      this.#failed++;
      return { ...base, kind: 'unknown', pFake: null, label: null, aggregate: 'none', timings: zeroTimings(), error: source.error };
    }
    try {
      const r = await this.#run(source, this.#score, signal);
      const timings = { ...r.timings, totalMs: performance.now() - t0 };
      return { ...base, kind: source.kind, ...this.#aggregate(source.kind, r), timings };
    } catch (e) {
      this.#failed++;
      const timings = { ...zeroTimings(), totalMs: performance.now() - t0 };
      return { ...base, kind: source.kind, pFake: null, label: null, aggregate: 'none', timings, error: toResultError(e) };
    }
  }

  /** Decode, find faces, crop, score: the shared core of detect and embed. */
  async #run(source: MediaSource, batcher: Batcher, signal?: AbortSignal): Promise<RunOutput> {
    const o = this.#opts;
    // Not started yet: an aborted call decodes nothing (decodeImage takes no signal).
    throwIfAborted(signal);
    const input = source.path ?? source.bytes ?? source.stream!;
    const t0 = performance.now();
    let images: RgbImage[];
    let meta: { index: number; timestampSec: number }[];
    let partial = false;
    let toSource = 1;
    if (source.kind === 'video') {
      const v = await sampleFrames(input, {
        strategy: this.#strategy,
        maxFrames: o.maxFrames,
        timeoutMs: o.videoTimeoutMs,
        signal,
        maxPixels: o.maxPixels,
        maxFrameSide: o.maxFrameSide,
        maxTotalBytes: o.maxVideoBytes,
        name: source.name,
      });
      images = v.frames.map((f) => f.image);
      meta = v.frames.map((f) => ({ index: f.index, timestampSec: f.timestampSec }));
      partial = v.partial;
      // Frames may arrive scaled down (maxFrameSide): results report geometry in source pixels.
      toSource = v.frames[0]?.scale ?? 1;
    } else {
      images = [await decodeImage(input, { maxPixels: o.maxPixels, name: source.name, signal })];
      meta = [{ index: 0, timestampSec: 0 }];
    }
    throwIfAborted(signal);
    const t1 = performance.now();

    // Faces per frame, the tracks to score, and one crop per scored face.
    let tracks: FaceTrack[] = [];
    let mainId = -1;
    const crops: RgbImage[] = [];
    const faces: { face: FaceResult; frame: number }[] = [];
    if (this.#faceModel) {
      const found = await detectFaces(this.#faceModel, images, { scoreThreshold: o.faceThreshold, minFaceSize: o.minFaceSize, batchSize: o.batchSize });
      throwIfAborted(signal);
      if (source.kind === 'video') {
        tracks = trackFaces(found);
        mainId = mainTrack(found)?.id ?? -1;
        for (const t of tracks) {
          if (!o.allFaces && t.id !== mainId) continue;
          for (const p of t.points) {
            crops.push(cropFace(images[p.frame]!, p.face, { mode: o.crop, scale: o.cropScale, size: o.cropSize }));
            faces.push({ face: faceResult(p.face, toSource, t.id), frame: p.frame });
          }
        }
      } else {
        for (const f of found[0] ?? []) {
          crops.push(cropFace(images[0]!, f, { mode: o.crop, scale: o.cropScale, size: o.cropSize }));
          faces.push({ face: faceResult(f, toSource), frame: 0 });
        }
      }
    } else {
      images.forEach((img, i) => {
        crops.push(img);
        faces.push({ face: { box: { x: 0, y: 0, width: img.width * toSource, height: img.height * toSource }, score: 1, pFake: Number.NaN }, frame: i });
      });
    }
    const t2 = performance.now();

    // The CLIP transform of all crops at once, then one batcher item per face.
    const m = this.metadata.input;
    const size = m.size;
    const tensor = clipTransform(crops, { size, mean: m.mean as [number, number, number], std: m.std as [number, number, number], interpolation: m.interpolation });
    const item = 3 * size * size;
    const rows = await batcher.submitAll(
      faces.map((_, i) => tensor.data.subarray(i * item, (i + 1) * item)),
      signal,
    );
    const scored: Scored[] = faces.map((f, i) => ({ row: rows[i]!, face: f.face, frame: f.frame }));
    const t3 = performance.now();
    return { scored, meta, tracks, mainId, partial, timings: { decodeMs: t1 - t0, facesMs: t2 - t1, scoreMs: t3 - t2 } };
  }

  #aggregate(kind: MediaSource['kind'], r: RunOutput): Aggregated {
    const o = this.#opts;
    for (const s of r.scored) s.face.pFake = softmaxFake(s.row);
    const label = (p: number | null): DetectResult['label'] => (p === null ? null : p >= o.threshold ? 'fake' : 'real');
    const faces = r.scored.map((s) => s.face);
    const detecting = this.#faceModel !== undefined;
    if (kind !== 'video') {
      const pFake = faces.length ? Math.max(...faces.map((f) => f.pFake)) : null;
      return { pFake, label: label(pFake), faces, noFace: detecting && faces.length === 0, aggregate: detecting ? 'max-face' : 'mean-frames' };
    }
    // Videos: per-frame probabilities, per-track means, the paper's mean over frames.
    const frames: FrameResult[] = r.meta.map((m) => ({ index: m.index, timestampSec: m.timestampSec, pFake: null, faces: [] }));
    for (const s of r.scored) frames[s.frame]!.faces.push(s.face);
    const trackMeans = new Map<number, { sum: number; n: number }>();
    for (const s of r.scored) {
      const id = s.face.track ?? -1;
      const t = trackMeans.get(id) ?? { sum: 0, n: 0 };
      t.sum += s.face.pFake;
      t.n++;
      trackMeans.set(id, t);
    }
    for (const f of frames) {
      if (f.faces.length === 0) continue;
      const main = f.faces.find((x) => x.track === r.mainId);
      f.pFake = !detecting ? f.faces[0]!.pFake : o.allFaces ? Math.max(...f.faces.map((x) => x.pFake)) : (main?.pFake ?? null);
    }
    const tracks: TrackResult[] = r.tracks
      .filter((t) => trackMeans.has(t.id))
      .map((t) => ({ id: t.id, frames: t.points.length, pFake: trackMeans.get(t.id)!.sum / trackMeans.get(t.id)!.n, main: t.id === r.mainId }));
    let pFake: number | null = null;
    let aggregate: DetectResult['aggregate'];
    if (!detecting) {
      const all = frames.filter((f) => f.pFake !== null).map((f) => f.pFake!);
      pFake = all.length ? all.reduce((a, b) => a + b, 0) / all.length : null;
      aggregate = 'mean-frames';
    } else if (o.allFaces) {
      pFake = tracks.length ? Math.max(...tracks.map((t) => t.pFake)) : null;
      aggregate = 'max-track-mean';
    } else {
      pFake = tracks.find((t) => t.main)?.pFake ?? null;
      aggregate = 'mean-frames-main-track';
    }
    return { pFake, label: label(pFake), faces, frames, tracks, partial: r.partial, noFace: detecting && faces.length === 0, aggregate };
  }
}

/** A detection as reported: geometry scaled by `scale` from the decoded frame to the source. */
function faceResult(f: Face, scale: number, track?: number): FaceResult {
  const p = (q: [number, number]): [number, number] => [q[0] * scale, q[1] * scale];
  const k = f.keypoints;
  const box = scale === 1 ? f.box : { x: f.box.x * scale, y: f.box.y * scale, width: f.box.width * scale, height: f.box.height * scale };
  const keypoints =
    scale === 1
      ? k
      : { rightEye: p(k.rightEye), leftEye: p(k.leftEye), nose: p(k.nose), mouth: p(k.mouth), rightEar: p(k.rightEar), leftEar: p(k.leftEar) };
  const r: FaceResult = { box, score: f.score, keypoints, pFake: Number.NaN };
  if (track !== undefined) r.track = track;
  return r;
}

/** P(fake) from logits [real, fake]: softmax index 1, computed stably. */
export function softmaxFake(logits: ArrayLike<number>): number {
  const a = logits[0]!;
  const b = logits[1]!;
  return 1 / (1 + Math.exp(a - b));
}

function zeroTimings() {
  return { decodeMs: 0, facesMs: 0, scoreMs: 0, totalMs: 0 };
}

/** The name results use for an input (before it was resolved). */
function inputName(input: DetectInput, index: number): string {
  return typeof input === 'string' ? input : typeof input === 'object' && input && 'path' in input && typeof input.path === 'string' ? input.path : `<input ${index}>`;
}

/** The result error of an input that was never started. */
function stopError(code: 'ABORTED' | 'DISPOSED'): { code: ErrorCode; message: string } {
  return { code, message: code === 'ABORTED' ? 'aborted' : 'the detector was disposed' };
}

function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new DfdetError('ABORTED', 'aborted', { cause: signal.reason });
}

function toResultError(e: unknown): { code: ErrorCode; message: string } {
  if (isDfdetError(e)) return { code: e.code, message: e.message };
  return { code: 'RUNTIME_ERROR', message: e instanceof Error ? e.message : String(e) };
}

function validateOptions(o: DetectorOptions): ResolvedOptions {
  if (typeof o !== 'object' || o === null) invalidParameter('options', 'an options object', o);
  const int = (name: keyof DetectorOptions, min: number, max: number, def: number): number => {
    const v = o[name] ?? def;
    if (!Number.isInteger(v) || (v as number) < min || (v as number) > max) invalidParameter(name, `an integer between ${min} and ${max}`, v);
    return v as number;
  };
  const num = (name: keyof DetectorOptions, min: number, max: number, def: number): number => {
    const v = o[name] ?? def;
    if (typeof v !== 'number' || !(v >= min && v <= max)) invalidParameter(name, `a number between ${min} and ${max}`, v);
    return v;
  };
  const faces = o.faces ?? 'detect';
  if (faces !== 'detect' && faces !== 'none') invalidParameter('faces', "'detect' or 'none'", faces);
  const crop = o.crop ?? 'align';
  if (crop !== 'align' && crop !== 'box') invalidParameter('crop', "'align' or 'box'", crop);
  let frames: number | SamplingStrategy = o.frames ?? DEFAULTS.frames;
  if (typeof frames === 'number') frames = int('frames', 1, 100_000, DEFAULTS.frames);
  else if (typeof frames !== 'object' || frames === null || !['uniform', 'fps', 'every'].includes((frames as SamplingStrategy).kind))
    invalidParameter('frames', 'a frame count or {kind: uniform|fps|every, ...}', frames);
  return {
    batchSize: int('batchSize', 1, 1024, DEFAULTS.batchSize),
    maxWaitMs: num('maxWaitMs', 0, 60_000, DEFAULTS.maxWaitMs),
    faces,
    crop,
    cropScale: num('cropScale', 0.5, 4, DEFAULTS.cropScale),
    cropSize: int('cropSize', 16, 4096, DEFAULTS.cropSize),
    allFaces: Boolean(o.allFaces),
    frames,
    maxFrames: int('maxFrames', 1, 1_000_000, DEFAULTS.maxFrames),
    videoTimeoutMs: int('videoTimeoutMs', 1, 86_400_000, DEFAULTS.videoTimeoutMs),
    threshold: num('threshold', 0, 1, DEFAULTS.threshold),
    faceThreshold: num('faceThreshold', 0, 1, DEFAULTS.faceThreshold),
    minFaceSize: num('minFaceSize', 0, 1e6, DEFAULTS.minFaceSize),
    maxPixels: int('maxPixels', 1, Number.MAX_SAFE_INTEGER, DEFAULTS.maxPixels),
    maxFrameSide: num('maxFrameSide', 16, Infinity, DEFAULTS.maxFrameSide),
    maxVideoBytes: num('maxVideoBytes', 1, Infinity, DEFAULTS.maxVideoBytes),
    concurrency: int('concurrency', 1, 256, DEFAULTS.concurrency),
  };
}
