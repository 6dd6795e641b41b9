/**
 * The one check of the runtime options every model load takes: device, dtype and libtorch
 * threads. Model.load and setThreads call it before the addon, so every face (API, CLI, server,
 * workers) gets the same sharp-style BAD_INPUT; the addon's own checks are only a backstop for
 * callers of the raw binding.
 */
import { invalidParameter } from './errors';

/** Floating-point precisions a model can be loaded in. */
export const MODEL_DTYPES = ['float32', 'float16', 'bfloat16'] as const;

/** Floating-point precisions a model can be loaded in. */
export type ModelDType = (typeof MODEL_DTYPES)[number];

/** Most libtorch intra-op threads accepted (the addon refuses more). */
export const MAX_THREADS = 1024;

/** Devices: 'cpu', 'cuda' or 'cuda:N'. */
const DEVICE = /^(cpu|cuda(:\d+)?)$/;

/** `value` as a device string, or BAD_INPUT: "Expected 'cpu', 'cuda' or 'cuda:N' for device but received ...". */
export function checkDevice(value: unknown, name = 'device'): string {
  if (typeof value !== 'string' || !DEVICE.test(value)) invalidParameter(name, "'cpu', 'cuda' or 'cuda:N'", value);
  return value;
}

/** `value` as a {@link ModelDType}, or BAD_INPUT naming the choices. */
export function checkDType(value: unknown, name = 'dtype'): ModelDType {
  if (!(MODEL_DTYPES as readonly unknown[]).includes(value)) invalidParameter(name, `one of ${MODEL_DTYPES.join(', ')}`, value);
  return value as ModelDType;
}

/** `value` as a thread count (an integer from 1 to {@link MAX_THREADS}), or BAD_INPUT. */
export function checkThreads(value: unknown, name = 'threads'): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_THREADS)
    invalidParameter(name, `an integer between 1 and ${MAX_THREADS}`, value);
  return value;
}
