/**
 * The typed contract of the native addon (`build/Release/dfdet.node` or a prebuild).
 *
 * This file is kept in step with `native/*.cc` by hand: every export the C++ registers in
 * `native/addon.cc` is declared here, with the same names and argument order. The TypeScript
 * layer (`lib/native.ts`) is the only importer; user code goes through `lib/model.ts`.
 */

/**
 * The `code` of every error the addon throws or rejects with (an `Error` with a string `code`).
 * The same list as `DFDET_NATIVE_ERROR_CODES` in `native/errors.h` (test/native-errors.test.ts
 * compares the two files); each is also an `ErrorCode` of lib/errors.ts, and lib/native.ts maps
 * them one to one from the runtime list {@link errorCodes}.
 */
export type NativeErrorCode =
  /** A malformed argument, tensor, build spec or option; NaN/infinite inputs; no such method. */
  | 'BAD_INPUT'
  /** A loaded model holds NaN or infinite weights (names the tensor). */
  | 'BAD_WEIGHTS'
  /** The model was disposed, or the JavaScript environment is shutting down. */
  | 'DISPOSED'
  /** `NativeModel.load` failed: not a TorchScript archive, truncated, unknown ops. */
  | 'MODEL_LOAD_FAILED'
  /** An allocation failed (CPU or CUDA). */
  | 'OUT_OF_MEMORY'
  /** libtorch raised while running a method (e.g. a shape the model rejects). */
  | 'RUNTIME_ERROR'
  /** A device, output dtype or output value kind this build cannot handle (e.g. CUDA without a CUDA libtorch). */
  | 'UNSUPPORTED';

/** Every {@link NativeErrorCode}, in the order of `native/errors.h` (a frozen array). */
export declare const errorCodes: readonly NativeErrorCode[];

/** Element types the addon converts between JS typed arrays and torch tensors. */
export type NativeDType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'bfloat16'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'bool';

/**
 * Typed arrays accepted and produced. float16 and bfloat16 inputs travel as Uint16Array (raw
 * bits), int64 as BigInt64Array, bool as Uint8Array. float16/bfloat16 outputs are widened to float32.
 */
export type NativeTypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | BigInt64Array;

/** A dense tensor. Inputs are wrapped in place (no copy on CPU); outputs own the tensor's memory. */
export interface NativeTensor {
  data: NativeTypedArray;
  shape: number[];
  dtype: NativeDType;
  /** Element strides of the input view (default: contiguous). Outputs never carry strides. */
  strides?: number[];
}

/** What a TorchScript method may return, converted recursively. */
export type NativeValue =
  | NativeTensor
  | number
  | boolean
  | string
  | null
  | NativeValue[]
  | { [key: string]: NativeValue };

/**
 * Options of {@link NativeModel.load}. lib/model.ts checks them with sharp-style errors before the
 * call (lib/model-options.ts); the addon's own checks are a backstop for direct callers.
 */
export interface NativeLoadOptions {
  /** 'cpu', 'cuda' or 'cuda:N'. */
  device: string;
  /** Floating-point dtype the parameters are cast to after load. */
  dtype: 'float32' | 'float16' | 'bfloat16';
  /** Run torch.jit.freeze + optimize_for_inference after load (default false). */
  optimize?: boolean;
  /** Names of extra files to read from the archive (e.g. 'dfdet.json'). Missing ones are skipped. */
  extraFiles?: string[];
}

export interface NativeModelInfo {
  /** Methods callable through `run`, e.g. ['forward', 'features', 'head']. */
  methods: string[];
  parameterCount: number;
  parameterBytes: number;
  device: string;
  dtype: string;
  /** Version of the libtorch the addon was built against, e.g. '1.13.0'. */
  torchVersion: string;
  /** Extra files read at load time (name -> UTF-8 content). */
  extraFiles: Record<string, string>;
  /** Module attributes of simple types (str, int, float, bool) on the root module. */
  attributes: Record<string, string | number | boolean>;
}

export interface NativeRunOptions {
  /**
   * Reject inputs holding NaN or infinity with BAD_INPUT (default true). The check runs on the
   * thread pool; a caller that checked its data already (the Batcher checks each item, to fail
   * only its owner) passes false so no input is checked twice.
   */
  checkFinite?: boolean;
}

export declare class NativeModel {
  private constructor();
  /** Load a TorchScript archive from a path or from bytes. Runs on the thread pool. */
  static load(source: string | Uint8Array, options: NativeLoadOptions): Promise<NativeModel>;
  info(): NativeModelInfo;
  /**
   * Run `method` on the inputs (pinned until the promise settles); outputs are typed arrays over
   * the result tensors' own memory. lib/model.ts queues runs per model (the owner of their order);
   * the addon also holds a per-model lock during a run, a backstop that keeps direct callers of
   * this binding from running one module on two threads.
   * The inputs' memory is read in place on another thread: do not transfer or detach their
   * ArrayBuffers before the promise settles (lib/model.ts marks them untransferable for you).
   */
  run(method: string, inputs: NativeTensor[], options?: NativeRunOptions): Promise<NativeValue>;
  /** Wait for in-flight runs, then free the module. Later calls reject with code DISPOSED. */
  dispose(): Promise<void>;
  readonly disposed: boolean;
}

/** One module of a build spec: TorchScript method source, tensors, attributes and children. */
export interface NativeModuleSpec {
  /** Qualified class name suffix, unique within one build (e.g. 'VisionTransformer', 'Block3'). */
  className: string;
  /** TorchScript source of the methods (`def forward(self, x): ...`), passed to Module::define. */
  source: string;
  /** Trainable tensors (`register_parameter`). */
  parameters?: Record<string, NativeTensor>;
  /** Non-trainable tensors (`register_buffer`). */
  buffers?: Record<string, NativeTensor>;
  /** Constant attributes (`register_attribute`) of simple types. */
  attributes?: Record<string, string | number | boolean | number[]>;
  /** Submodules, registered before `source` is defined so it can call them. */
  submodules?: Record<string, NativeModuleSpec>;
}

export interface NativeBuildOptions {
  /** Extra files stored in the archive (name -> content), e.g. metadata JSON. */
  extraFiles?: Record<string, string>;
}

/**
 * Build a TorchScript module from source and tensors and save it to `outPath`.
 * Runs on the thread pool; inputs are pinned until it settles.
 */
export declare function buildModule(
  spec: NativeModuleSpec,
  outPath: string,
  options?: NativeBuildOptions,
): Promise<void>;

export interface NativeRuntimeInfo {
  /** libtorch version, e.g. '1.13.1'. */
  torchVersion: string;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  /** Intra-op threads libtorch uses now. */
  threads: number;
  /** at::show_config() output: build flags, BLAS, OpenMP. */
  config: string;
  /** Whether the addon registered its own aten::scaled_dot_product_attention (libtorch < 2). */
  sdpaShim: boolean;
  /** Whether TorchScript's profiling executor is on (off unless DFDET_JIT_PROFILING=1: faster first runs). */
  jitProfiling: boolean;
  /** Shared libraries mapped into the process whose names say BLAS/LAPACK (Linux). */
  blasLibraries: string[];
}

export declare function runtimeInfo(): NativeRuntimeInfo;

/** Set libtorch's intra-op thread count (process-wide): an integer from 1 to 1024, else BAD_INPUT. */
export declare function setThreads(threads: number): void;

/** Tensors whose memory JS ArrayBuffers own right now (leak checks and zero-copy tests). */
export declare function debugCounters(): { liveExternalTensors: number; liveExternalBytes: number };

export interface NativeTrainerOptions {
  /** 'cpu', 'cuda' or 'cuda:N'. */
  device?: string;
  /** 'float32', or 'bfloat16' for autocast (bf16 matmuls, float32 weights, LayerNorms and losses). */
  dtype?: 'float32' | 'bfloat16';
  /** Regular expression (ECMAScript source) matching the names of the parameters to train; all others are frozen. */
  trainable: string;
  /** Regular expression matching the trained parameters that get weight decay (the others get none). */
  decay?: string;
  /** AdamW hyper-parameters (defaults 0, 0.9, 0.999, 1e-8). */
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Cross-entropy label smoothing (default 0). */
  labelSmoothing?: number;
  /** Weights of GenD's alignment and uniformity losses on the normalised features (default 0: off). */
  alignment?: number;
  uniformity?: number;
  /** Clip the gradients' global L2 norm to this (default 0: no clipping). */
  gradClip?: number;
}

export interface NativeTrainStepOptions {
  /** Learning rate of this step. */
  lr: number;
  /** Slerp augmentation: index of each row's same-class partner, -1 for none (int32 [B]). */
  slerpPartner?: NativeTensor;
  /** Slerp interpolation weight t of each row (float32 [B]). */
  slerpWeight?: NativeTensor;
}

export interface NativeTrainStepResult {
  /** Total loss, and its parts (unweighted alignment and uniformity; 0 when off). */
  loss: number;
  ce: number;
  alignment: number;
  uniformity: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Optimiser steps taken so far (this one included). */
  step: number;
  /** Logits [B, 2] of the training forward. */
  logits: NativeTensor;
}

export interface NativeTrainerInfo {
  /** Trained parameters, in optimiser order. */
  trainable: string[];
  /** Every parameter of the model. */
  parameters: string[];
  trainableCount: number;
  device: string;
  dtype: string;
}

/** LayerNorm/head fine-tuning of a dfdet detector file (its `pooled` and `head` methods). */
export declare class NativeTrainer {
  private constructor();
  static create(path: string, options: NativeTrainerOptions): Promise<NativeTrainer>;
  info(): NativeTrainerInfo;
  /** One AdamW step on a batch of CLIP tensors [B, 3, H, W] with labels (int32 [B], 0 real / 1 fake). */
  step(images: NativeTensor, labels: NativeTensor, options: NativeTrainStepOptions): Promise<NativeTrainStepResult>;
  /** Logits [B, 2] in inference mode, without gradients. */
  evaluate(images: NativeTensor): Promise<NativeTensor>;
  /** Save the current weights as a TorchScript detector with these extra files. */
  saveModel(path: string, extraFiles?: Record<string, string>): Promise<void>;
  /** Save trained tensors, optimiser state and `meta` (JSON text) to resume from. */
  saveCheckpoint(path: string, meta: string): Promise<void>;
  /** Restore a checkpoint of the same model and trainable set; resolves with its `meta`. */
  loadCheckpoint(path: string): Promise<string>;
  dispose(): Promise<void>;
  readonly disposed: boolean;
}

/**
 * A batch of crops for {@link preprocess}: crop `i` comes from `images[imageOf[i]]`; its
 * `matrices[6i .. 6i+6]` map image index coordinates to crop index coordinates (an affine
 * `[a, b, c, d, e, f]`, as lib/faces/align.ts cropMatrix gives), or start with NaN for the whole
 * image (the `faces: 'none'` path).
 */
export interface NativePreprocessRequest {
  /** Decoded frames: uint8 `[H, W, 3]` RGB tensors (read in place). */
  images: NativeTensor[];
  imageOf: Int32Array;
  matrices: Float64Array;
  /** Side of the warped face crop (256). */
  cropSize: number;
  /** Model input side: shortest-side resize to it, then a centre crop (224). */
  size: number;
  mean: number[];
  std: number[];
  /** Pillow filter of the resize: 'bicubic' (default) or 'bilinear'. */
  interpolation?: 'bicubic' | 'bilinear';
  /** Where the ops run: 'cpu', 'cuda' or 'cuda:N' (UNSUPPORTED without CUDA). */
  device?: string;
  /**
   * 'loops' (default on the CPU: C++ loops, crops in parallel, the widest vector clones the CPU
   * runs: AVX-512 or AVX2), 'avx2' (the loops with at most the AVX2 clones), 'baseline' (the loops
   * without clones) or 'ops' (batched libtorch ops: always on CUDA devices; on the CPU for tests
   * that check every kernel against the JS reference).
   */
  kernel?: 'loops' | 'avx2' | 'baseline' | 'ops';
}

/**
 * Crops (bilinear affine warp, black border), Pillow-exact resize and CLIP normalisation of a
 * batch, as libtorch ops on `device`: the float32 `[N, 3, size, size]` model input (on the CPU).
 * The same arithmetic as the JS path (align.ts warpAffine + transform.ts clipTransform).
 */
export declare function preprocess(request: NativePreprocessRequest): Promise<NativeTensor>;

/** `[major, minor]` compute capability of CUDA device `index`; UNSUPPORTED without CUDA. */
export declare function cudaCapability(index: number): [number, number];
