/**
 * Loads the native addon once per process (per worker thread; runtime/loader.ts picks the binary)
 * and turns its errors into {@link DfdetError}s.
 */
import type * as Binding from '../binding';
import { DfdetError, type ErrorCode } from './errors';
import { loadFailureMessage } from './runtime/advice';
import { loadAddon, type LoadReport } from './runtime/loader';
import { packageRoot } from './runtime/root';

/** The addon's exports, as declared in binding.d.ts, plus its test counters. */
export type NativeBinding = {
  NativeModel: typeof Binding.NativeModel;
  NativeTrainer: typeof Binding.NativeTrainer;
  buildModule: typeof Binding.buildModule;
  runtimeInfo: typeof Binding.runtimeInfo;
  setThreads: typeof Binding.setThreads;
  debugCounters: typeof Binding.debugCounters;
  errorCodes: typeof Binding.errorCodes;
  preprocess: typeof Binding.preprocess;
  cudaCapability: typeof Binding.cudaCapability;
};

/** Package root (re-exported: other modules find shipped files from it). */
export { packageRoot };
/** Every native code must be a dfdet code: this line stops compiling when native/errors.h gains one lib/errors.ts lacks. */
const nativeCodesAreErrorCodes: (code: Binding.NativeErrorCode) => ErrorCode = (code) => code;
void nativeCodesAreErrorCodes;

let cached: NativeBinding | undefined;
let report: LoadReport | undefined;

/**
 * The native binding; throws NATIVE_LOAD_FAILED naming the platform, the libtorch found, why each
 * candidate (source build, prebuilt flavours) did not load, and the fix.
 */
export function native(): NativeBinding {
  if (cached) return cached;
  const r = loadAddon(packageRoot);
  report = r.report;
  if (!r.binding) {
    const firstFailure = r.report.attempts.find((a) => a.outcome === 'failed');
    throw new DfdetError('NATIVE_LOAD_FAILED', loadFailureMessage(packageRoot, r.report), { details: { report: r.report, ...(firstFailure ? { reason: firstFailure.reason } : {}) } });
  }
  cached = r.binding as NativeBinding;
  return cached;
}

/** Which addon loaded and why each other candidate did not (loads it first if needed; never throws). */
export function nativeLoadReport(): LoadReport {
  try {
    native();
  } catch {
    // the report says why
  }
  return report!;
}

let version: string | undefined;

/**
 * What the loaded addon runs on: libtorch version and build configuration, threads, CUDA, the BLAS
 * libraries really mapped into the process. Loads the addon (NATIVE_LOAD_FAILED when none loads).
 */
export function runtimeInfo(): Binding.NativeRuntimeInfo {
  return native().runtimeInfo();
}

/**
 * The libtorch version the addon was built against. Cached: runtimeInfo() also formats libtorch's
 * build configuration and scans the process's mapped libraries, which a model load need not repeat.
 */
export function torchVersion(): string {
  version ??= native().runtimeInfo().torchVersion;
  return version;
}

let nativeCodes: ReadonlySet<string> | undefined;

/**
 * Converts an error thrown or rejected by the addon into a DfdetError (keeps the libtorch message).
 * Its code is kept when it is one of the addon's own codes (the list native/errors.h exports as
 * `errorCodes`, no second copy here); anything else (a TypeError from N-API) becomes RUNTIME_ERROR.
 */
export function wrapNativeError(e: unknown, context?: string): DfdetError {
  if (e instanceof DfdetError) return e;
  nativeCodes ??= new Set(native().errorCodes);
  const err = e as { code?: unknown; message?: unknown };
  const code = typeof err?.code === 'string' && nativeCodes.has(err.code) ? (err.code as Binding.NativeErrorCode) : 'RUNTIME_ERROR';
  const message = typeof err?.message === 'string' ? err.message : String(e);
  return new DfdetError(code, context ? `${context}: ${message}` : message, { cause: e });
}
