/**
 * The one check of the runtime options every model load takes: device, dtype and libtorch
 * threads. Model.load and setThreads call it before the addon, so every face (API, CLI, server,
 * workers) gets the same sharp-style BAD_INPUT; the addon's own checks are only a backstop for
 * callers of the raw binding.
 */
import { invalidParameter } from './errors';
import { cpuFeatures } from './runtime/cpu';

/** Floating-point precisions a model can be loaded in. */
export const MODEL_DTYPES = ['float32', 'float16', 'bfloat16'] as const;

/** Floating-point precisions a model can be loaded in. */
export type ModelDType = (typeof MODEL_DTYPES)[number];

/** A precision, or 'auto': the fastest one the device computes natively (see {@link resolveDType}). */
export type DTypeOption = ModelDType | 'auto';

/** What `dtype` accepts. */
export const DTYPE_OPTIONS = ['auto', ...MODEL_DTYPES] as const;

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

/** `value` as a {@link DTypeOption}, or BAD_INPUT naming the choices. */
export function checkDTypeOption(value: unknown, name = 'dtype'): DTypeOption {
  if (!(DTYPE_OPTIONS as readonly unknown[]).includes(value)) invalidParameter(name, `one of ${DTYPE_OPTIONS.join(', ')}`, value);
  return value as DTypeOption;
}

/** What {@link resolveDType} needs to know about the machine (the real one by default). */
export interface DTypeProbe {
  /** True when the CPU computes bf16 natively (AVX512-BF16 or AMX). */
  cpuBf16: () => boolean;
  /** [major, minor] compute capability of CUDA device `index` (throws UNSUPPORTED without CUDA). */
  cudaCapability: (index: number) => [number, number];
}

/**
 * The precision a model runs in on `device`. An explicit dtype is kept; 'auto' becomes
 * `DFDET_DTYPE` when that is set (an override for machines where auto guesses wrong), else:
 * bfloat16 on CPUs with native bf16 (AVX512-BF16 or AMX: about 2x fp32 on the matmuls), on CUDA
 * devices of compute capability >= 8.0 bfloat16 and below that float16, float32 elsewhere.
 * @throws DfdetError BAD_INPUT (a bad value or DFDET_DTYPE), UNSUPPORTED (CUDA without CUDA).
 */
export function resolveDType(dtype: DTypeOption, device: string, probe: DTypeProbe): ModelDType {
  if (dtype !== 'auto') return checkDType(dtype);
  const env = process.env.DFDET_DTYPE;
  if (env !== undefined && env !== '' && env !== 'auto') return checkDType(env, 'DFDET_DTYPE');
  if (device === 'cpu') return probe.cpuBf16() ? 'bfloat16' : 'float32';
  const [major] = probe.cudaCapability(device === 'cuda' ? 0 : Number(device.slice(5)));
  return major >= 8 ? 'bfloat16' : 'float16';
}

/** The probe of this machine's CPU (the CUDA part needs the addon: lib/model.ts adds it). */
export const cpuBf16 = (): boolean => cpuFeatures().bf16;

/** `value` as a thread count (an integer from 1 to {@link MAX_THREADS}), or BAD_INPUT. */
export function checkThreads(value: unknown, name = 'threads'): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_THREADS)
    invalidParameter(name, `an integer between 1 and ${MAX_THREADS}`, value);
  return value;
}
