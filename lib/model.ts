/**
 * A TorchScript model in the native addon: load, inspect, run, dispose. Every heavy step runs on
 * the thread pool.
 *
 * Runs of one model are ordered here and only here: the queue below keeps one native run in flight
 * per model (two concurrent forwards on this class of machine are slower than two in a row, and
 * each would block a libuv thread), rejects aborted runs while they wait, and lets dispose() wait
 * for the queue. The Batcher only decides what goes into a batch (it sends one at a time so the
 * next fills while one runs); the addon's per-model lock is a backstop for the raw binding.
 *
 * This module knows no file format of its own: which extra archive files to read (a detector's
 * metadata, see lib/detector-model/metadata.ts) is the caller's business.
 */
import * as fs from 'node:fs';
import { markAsUntransferable } from 'node:worker_threads';

import type {
  NativeBuildOptions,
  NativeDType,
  NativeModel,
  NativeModelInfo,
  NativeModuleSpec,
  NativeTensor,
  NativeTypedArray,
  NativeValue,
} from '../binding';
import { DfdetError, invalidParameter, parameterError } from './errors';
import { checkTorchScriptArchive } from './formats/torchscript-check';
import { checkDevice, checkDTypeOption, checkThreads, cpuBf16, type DTypeOption, type ModelDType, resolveDType } from './model-options';
import { native, torchVersion, wrapNativeError } from './native';
import { checkOutputPath } from './output-path';
import { cpuGate, type CpuGateMode } from './runtime/cpu-gate';

export type { NativeModelInfo, NativeTensor, NativeValue, NativeModuleSpec, NativeDType, NativeTypedArray };
export type { ModelDType, DTypeOption };

/** Options of {@link Model.load}. */
export interface ModelLoadOptions {
  /** 'cpu', 'cuda' or 'cuda:N'. Default 'cpu'. */
  device?: string;
  /**
   * Parameter precision after load. Default 'float32'. 'auto': bfloat16 on CPUs with native bf16
   * (AVX512-BF16 or AMX) and on CUDA devices of compute capability >= 8.0, float16 on older CUDA
   * devices, float32 elsewhere; `DFDET_DTYPE` overrides 'auto' (see resolveDType in
   * lib/model-options.ts). `info.dtype` says which was chosen. (bfloat16 on CPUs without native
   * bf16 is very slow.)
   */
  dtype?: DTypeOption;
  /** Freeze + optimize_for_inference after load: slower load, ±10% speed. Default false. */
  optimize?: boolean;
  /** libtorch intra-op threads (process-wide), 1 to 1024. Default: the number of cores (or DFDET_THREADS). */
  threads?: number;
  /**
   * Names of extra files to read from the archive into `info.extraFiles` (e.g. the detector's
   * METADATA_FILE of lib/detector-model/metadata.ts); missing ones are skipped. Default none.
   */
  extraFiles?: string[];
  /**
   * How this model's runs share the CPU with other models' runs in this process (CPU models only;
   * see lib/runtime/cpu-gate.ts): 'exclusive' runs alone (a large model whose runs keep every core
   * busy), 'shared' runs may overlap each other but not an exclusive run (small models), 'none'
   * (default) is not gated. The Detector loads its model as 'exclusive' and its face detectors as
   * 'shared'.
   */
  cpuGate?: CpuGateMode | 'none';
}

/** Options of {@link Model.run}. */
export interface RunOptions {
  /**
   * Reject inputs holding NaN/Infinity with BAD_INPUT. Default true: the addon checks on the thread
   * pool. Pass false when the data was checked already (the Batcher checks item by item).
   */
  checkFinite?: boolean;
  /** Abort while queued (a run already inside libtorch finishes, its result is dropped). */
  signal?: AbortSignal;
}

/** A loaded TorchScript model. Create with {@link Model.load}; free with {@link Model.dispose}. */
export class Model {
  #native: NativeModel | undefined;
  #info: NativeModelInfo;
  #queue: Promise<unknown> = Promise.resolve();
  #pending = 0;
  #disposing: Promise<void> | undefined;
  readonly #gate: CpuGateMode | undefined;

  private constructor(m: NativeModel, gate: CpuGateMode | undefined) {
    this.#native = m;
    this.#info = m.info();
    this.#gate = gate;
  }

  /**
   * Loads a TorchScript archive from a path or from its bytes (the bytes are read in place).
   * @throws DfdetError MODEL_LOAD_FAILED (not a TorchScript file, truncated, unknown ops, or a
   *   corrupt or malformed archive, refused before libtorch reads it), BAD_WEIGHTS (a NaN or
   *   infinite weight, named), BAD_INPUT (bad options), UNSUPPORTED (CUDA requested without a CUDA libtorch).
   */
  static async load(source: string | Uint8Array, options: ModelLoadOptions = {}): Promise<Model> {
    if (typeof source !== 'string' && !(source instanceof Uint8Array)) invalidParameter('source', 'a path or a Uint8Array', source);
    if (typeof source === 'string' && source.length === 0) invalidParameter('source', 'a non-empty path', source);
    if (typeof options !== 'object' || options === null) invalidParameter('options', 'an options object', options);
    const device = checkDevice(options.device ?? 'cpu');
    const dtype = resolveDType(checkDTypeOption(options.dtype ?? 'float32'), device, MACHINE);
    const extraFiles = options.extraFiles ?? [];
    if (!Array.isArray(extraFiles) || !extraFiles.every((f) => typeof f === 'string' && f.length > 0))
      invalidParameter('extraFiles', 'an array of file names', extraFiles);
    const gate = options.cpuGate ?? 'none';
    if (gate !== 'none' && gate !== 'exclusive' && gate !== 'shared') invalidParameter('cpuGate', "'exclusive', 'shared' or 'none'", gate);
    if (options.threads !== undefined) setThreads(options.threads);
    if (typeof source === 'string' && !fs.existsSync(source)) throw new DfdetError('NOT_FOUND', `model file not found: ${source}`);
    if (typeof source !== 'string' && source.buffer instanceof ArrayBuffer) markAsUntransferable(source.buffer);
    // libtorch trusts the archive (a short storage or a malformed pickle crashes the process): check it first.
    await checkTorchScriptArchive(source);
    const b = native();
    const version = torchVersion();
    if (dtype === 'float16' && device === 'cpu' && version.startsWith('1.'))
      throw new DfdetError(
        'UNSUPPORTED',
        `float16 on CPU is not supported by libtorch ${version} (no half-precision matmul): use float32, or float16 on a CUDA device`,
      );
    try {
      const m = await b.NativeModel.load(source, {
        device,
        dtype,
        optimize: options.optimize ?? false,
        extraFiles,
      });
      return new Model(m, gate !== 'none' && device === 'cpu' ? gate : undefined);
    } catch (e) {
      const where = typeof source === 'string' ? source : `${source.byteLength} bytes`;
      const err = wrapNativeError(e, `cannot load model from ${where}`);
      throw newerTorchHint(err, version);
    }
  }

  /** Methods, parameter count/bytes, device, dtype, extra files and attributes. */
  get info(): NativeModelInfo {
    return this.#info;
  }

  /** True once {@link dispose} was called. */
  get disposed(): boolean {
    return this.#native === undefined || this.#disposing !== undefined;
  }

  /** Runs are queued per model; this is how many wait or run now. */
  get pendingRuns(): number {
    return this.#pending;
  }

  /**
   * Runs `method` (default export names: 'forward', 'features', 'head', ...) on the inputs.
   * Inputs are used in place (no copy): a method that mutates its input mutates your array. Their
   * ArrayBuffers are marked untransferable (worker_threads.markAsUntransferable), so a transfer
   * while the run reads them copies instead of detaching the memory under libtorch.
   * Outputs are typed arrays that own the result tensors' memory.
   * @throws DfdetError DISPOSED, BAD_INPUT (malformed tensor, NaN, unknown method), RUNTIME_ERROR
   *   (libtorch's message, e.g. a shape the model rejects), OUT_OF_MEMORY, ABORTED.
   */
  run(method: string, inputs: NativeTensor[], options: RunOptions = {}): Promise<NativeValue> {
    if (this.disposed) return Promise.reject(new DfdetError('DISPOSED', 'the model was disposed'));
    if (typeof method !== 'string' || method.length === 0) return Promise.reject(parameterError('method', 'a method name', method));
    if (!Array.isArray(inputs)) return Promise.reject(parameterError('inputs', 'an array of tensors', inputs));
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(aborted(signal));
    pinBuffers(inputs);
    this.#pending++;
    let skip = false;
    const job = this.#queue.then(async () => {
      if (skip) return undefined as never; // aborted while queued: already rejected
      const m = this.#native;
      if (!m) throw new DfdetError('DISPOSED', 'the model was disposed');
      try {
        // An abort while the run waited at the gate has rejected already: skip the work.
        const call = (): Promise<NativeValue> => (skip ? Promise.resolve(undefined as never) : m.run(method, inputs, { checkFinite: options.checkFinite ?? true }));
        return await (this.#gate ? cpuGate.run(this.#gate, call) : call());
      } catch (e) {
        throw wrapNativeError(e);
      }
    });
    const settled = job.finally(() => this.#pending--);
    // The chain must not hold on to the result (it owns tensor memory).
    this.#queue = settled.then(
      () => undefined,
      () => undefined,
    );
    if (!signal) return settled;
    // An abort rejects at once while the run waits in the queue; a run already inside libtorch
    // cannot be interrupted, so its result is dropped instead.
    return new Promise<NativeValue>((resolve, reject) => {
      const onAbort = (): void => {
        skip = true;
        reject(aborted(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      settled.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  /** Shorthand for `run('forward', inputs)`. */
  forward(...inputs: NativeTensor[]): Promise<NativeValue> {
    return this.run('forward', inputs);
  }

  /** Waits for queued and running work, then frees the module. Idempotent. */
  dispose(): Promise<void> {
    if (!this.#disposing) {
      const m = this.#native;
      this.#disposing = this.#queue.then(async () => {
        this.#native = undefined;
        await m?.dispose();
      });
    }
    return this.#disposing;
  }

  /** `await using model = await Model.load(...)` disposes at scope exit. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

/**
 * Files traced by a newer torch (the authors' model.torchscript is torch 2.6) can use ops or
 * format features an older libtorch lacks: say what to do instead of only libtorch's message.
 */
function newerTorchHint(err: DfdetError, torchVersion: string): DfdetError {
  if (err.code !== 'MODEL_LOAD_FAILED' || !/Unknown builtin op|Unknown type name|Unsupported|version|schema/i.test(err.message)) return err;
  return new DfdetError(
    'MODEL_LOAD_FAILED',
    `${err.message}\nThis file may need a newer libtorch than ${torchVersion}. Convert the original checkpoint instead ` +
      '(dfdet convert model.ckpt -o model.pt, or dfdet pull), or rebuild dfdet against libtorch 2.x (LIBTORCH=/path npm rebuild dfdet).',
    { cause: err.cause, details: err.details },
  );
}

function aborted(signal: AbortSignal): DfdetError {
  return new DfdetError('ABORTED', 'the run was aborted', { cause: signal.reason });
}

/**
 * libtorch reads inputs from JS memory on another thread. A reference keeps them alive, but a
 * transfer (postMessage/structuredClone with a transfer list) would detach and free that memory
 * mid-run: marked untransferable, such a transfer copies instead (a permanent, harmless mark).
 */
function pinBuffers(tensors: readonly NativeTensor[]): void {
  for (const t of tensors) {
    const buffer = (t as { data?: { buffer?: unknown } } | null)?.data?.buffer;
    if (buffer instanceof ArrayBuffer) markAsUntransferable(buffer);
  }
}

/** The real machine, for 'auto' precision. */
const MACHINE = {
  cpuBf16,
  cudaCapability(index: number): [number, number] {
    try {
      return native().cudaCapability(index);
    } catch (e) {
      throw wrapNativeError(e, `cannot choose a precision for cuda:${index}`);
    }
  },
};

/** The precision `dtype: 'auto'` (or an explicit dtype) gives on `device` on this machine. */
export function chooseDType(dtype: DTypeOption, device: string): ModelDType {
  return resolveDType(checkDTypeOption(dtype), checkDevice(device), MACHINE);
}

/** Sets libtorch's intra-op thread count for this process: an integer from 1 to 1024. */
export function setThreads(threads: number): void {
  native().setThreads(checkThreads(threads));
}

/**
 * Builds a TorchScript module from method source, tensors and attributes and saves it
 * (atomically) to `outPath`. The tensors are read in place while the build runs.
 * @throws DfdetError BAD_INPUT (malformed spec, TorchScript compile error with its message).
 */
export async function buildModule(spec: NativeModuleSpec, outPath: string, options: NativeBuildOptions = {}): Promise<void> {
  await checkOutputPath(outPath, 'outPath');
  pinSpec(spec);
  try {
    await native().buildModule(spec, outPath, options);
  } catch (e) {
    throw wrapNativeError(e, `cannot build module ${spec?.className ?? ''}`);
  }
}

function pinSpec(spec: NativeModuleSpec | undefined): void {
  if (!spec || typeof spec !== 'object') return;
  pinBuffers(Object.values(spec.parameters ?? {}));
  pinBuffers(Object.values(spec.buffers ?? {}));
  for (const sub of Object.values(spec.submodules ?? {})) pinSpec(sub);
}

/** The dtype name of a typed array (Uint16Array is read as float16 unless told otherwise). */
export function dtypeOf(data: NativeTypedArray): NativeDType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Uint16Array) return 'float16';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  return invalidParameter('data', 'a typed array', data);
}

/** Makes a {@link NativeTensor} from a typed array and a shape. */
export function tensor(data: NativeTypedArray, shape: number[], dtype: NativeDType = dtypeOf(data)): NativeTensor {
  return { data, shape, dtype };
}

/** True when a run result (or a part of one) is a tensor. */
export function isTensor(v: NativeValue | undefined): v is NativeTensor {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && 'data' in v && 'shape' in v && 'dtype' in v;
}

/** Narrows a run result to a tensor, or throws RUNTIME_ERROR naming what came back. */
export function expectTensor(v: NativeValue, what = 'output'): NativeTensor {
  if (isTensor(v)) return v;
  throw new DfdetError('RUNTIME_ERROR', `Expected a tensor for ${what} but the model returned ${Array.isArray(v) ? 'a list' : typeof v}`);
}
