/**
 * Typed errors. Every error dfdet raises on purpose is a {@link DfdetError} with a stable `code`;
 * callers branch on the code, never on the message.
 */

/** Stable error codes. */
export type ErrorCode =
  /** The native addon could not be loaded (missing build, missing libtorch, ABI mismatch). */
  | 'NATIVE_LOAD_FAILED'
  /** A model file could not be read or is not a model dfdet understands. */
  | 'MODEL_LOAD_FAILED'
  /** An argument or input is malformed (wrong shape, dtype, NaN, unknown option value). */
  | 'BAD_INPUT'
  /** A checkpoint/weights file is well formed but does not fit the architecture (names the key). */
  | 'BAD_WEIGHTS'
  /** A file is corrupt or not of the expected format (safetensors, torch zip, pickle). */
  | 'BAD_FORMAT'
  /** Media could not be decoded (corrupt, truncated, unsupported, too large). */
  | 'DECODE_FAILED'
  /** The object was disposed. */
  | 'DISPOSED'
  /** Memory could not be allocated. */
  | 'OUT_OF_MEMORY'
  /** The operation is not supported here (device, dtype, libtorch version, platform). */
  | 'UNSUPPORTED'
  /** The operation was aborted through an AbortSignal. */
  | 'ABORTED'
  /** The operation timed out. */
  | 'TIMEOUT'
  /** A file or resource does not exist. */
  | 'NOT_FOUND'
  /** A download failed (network, HTTP status, dropped connection). */
  | 'DOWNLOAD_FAILED'
  /** Downloaded or converted bytes do not match the expected sha256. */
  | 'CHECKSUM_MISMATCH'
  /** libtorch raised an error while running a model. */
  | 'RUNTIME_ERROR'
  /**
   * The model ran but gave NaN or infinite outputs (a broken model: NaN or overflowing weights).
   * Reported on each input it scored, never turned into a score or a label.
   */
  | 'MODEL_OUTPUT_INVALID';

/** The error class for everything dfdet reports. */
export class DfdetError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode;
  /** Optional structured context (file path, key name, ...). */
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DfdetError';
    this.code = code;
    if (options?.details) this.details = options.details;
  }
}

/** True when `e` is a DfdetError, optionally with the given code. */
export function isDfdetError(e: unknown, code?: ErrorCode): e is DfdetError {
  return e instanceof DfdetError && (code === undefined || e.code === code);
}

/** Throw BAD_INPUT with sharp-style wording: "Expected <what> for <name> but received <value>". */
export function invalidParameter(name: string, expected: string, value: unknown): never {
  throw parameterError(name, expected, value);
}

/** The BAD_INPUT error {@link invalidParameter} throws, for callers that reject instead of throwing. */
export function parameterError(name: string, expected: string, value: unknown): DfdetError {
  let shown: string;
  try {
    shown = typeof value === 'string' ? JSON.stringify(value) : String(value);
  } catch {
    shown = typeof value;
  }
  if (shown.length > 80) shown = `${shown.slice(0, 77)}...`;
  return new DfdetError('BAD_INPUT', `Expected ${expected} for ${name} but received ${shown} of type ${typeof value}`);
}
