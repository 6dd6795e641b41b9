/**
 * Loads the native addon once per process (per worker thread) and turns its errors into
 * {@link DfdetError}s. The only module that touches the .node file.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import type * as Binding from '../binding';
import { DfdetError, type ErrorCode } from './errors';

/** The addon's exports, as declared in binding.d.ts, plus its test counters. */
export type NativeBinding = {
  NativeModel: typeof Binding.NativeModel;
  buildModule: typeof Binding.buildModule;
  runtimeInfo: typeof Binding.runtimeInfo;
  setThreads: typeof Binding.setThreads;
  debugCounters: typeof Binding.debugCounters;
  errorCodes: typeof Binding.errorCodes;
};

/** Every native code must be a dfdet code: this line stops compiling when native/errors.h gains one lib/errors.ts lacks. */
const nativeCodesAreErrorCodes: (code: Binding.NativeErrorCode) => ErrorCode = (code) => code;
void nativeCodesAreErrorCodes;

/** Package root: the folder holding package.json (lib/ in sources, dist/lib/ when built). */
export const packageRoot: string = (() => {
  let dir = __dirname;
  for (let i = 0; i < 4; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'binding.d.ts'))) return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..');
})();

let cached: NativeBinding | undefined;

/** The native binding; throws NATIVE_LOAD_FAILED with what was tried and how to fix it. */
export function native(): NativeBinding {
  if (cached) return cached;
  const override = process.env.DFDET_NATIVE_PATH;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = (override ? require(override) : require('node-gyp-build')(packageRoot)) as NativeBinding;
    return cached;
  } catch (e) {
    throw new DfdetError('NATIVE_LOAD_FAILED', nativeLoadMessage(e, override), { cause: e });
  }
}

function nativeLoadMessage(e: unknown, override: string | undefined): string {
  const reason = e instanceof Error ? e.message.split('\n')[0] : String(e);
  const platform = `${process.platform}-${process.arch}, Node ${process.version} (N-API ${process.versions.napi})`;
  const tried = override
    ? [override]
    : [path.join(packageRoot, 'build', 'Release'), path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`)];
  const libtorch =
    process.env.LIBTORCH ?? process.env.Torch_DIR ??
    (fs.existsSync('/usr/lib/x86_64-linux-gnu/cmake/Torch/TorchConfig.cmake') ? 'system libtorch-dev found' : 'no libtorch found');
  const missingLib = /lib(torch|c10|blas|lapack|gomp)[^:]*\.so[^:]*: cannot open/.exec(reason);
  const fix = missingLib
    ? `A shared library is missing (${missingLib[0]}). Install the system dependencies: sudo bash ${path.join(packageRoot, 'scripts/setup-system.sh')}` +
      ' (or point LD_LIBRARY_PATH at your libtorch/lib).'
    : `Build the addon: install the system dependencies (sudo bash ${path.join(packageRoot, 'scripts/setup-system.sh')}), then run ` +
      `\`npm run build:native\` in ${packageRoot} (set LIBTORCH=/path/to/libtorch for a CUDA build).`;
  return [
    `dfdet's native addon could not be loaded on ${platform}: ${reason}`,
    `Tried: ${tried.join(', ')}. libtorch: ${libtorch}.`,
    fix,
  ].join('\n');
}

let version: string | undefined;

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
