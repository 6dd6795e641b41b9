/**
 * Raw tensors read from weight files (safetensors, torch zip), before they become model parameters.
 * Shared by the format readers and the converters so dtype handling lives in one place.
 */

import { DfdetError } from '../errors';

/** Element types the weight readers understand (names as in binding.d.ts). */
export type RawDType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'bfloat16'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

/** Bytes per element of each {@link RawDType}. */
export const DTYPE_SIZE: Readonly<Record<RawDType, number>> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** A dense, C-contiguous, little-endian tensor as raw bytes (its own buffer). */
export interface RawTensor {
  dtype: RawDType;
  shape: number[];
  /** Little-endian element bytes, exactly `numel(shape) * DTYPE_SIZE[dtype]` long. */
  bytes: Uint8Array;
}

/** Shape and dtype of a tensor without its data. */
export interface TensorMeta {
  dtype: RawDType;
  shape: number[];
}

/** A set of named tensors readable one at a time (lazily, so huge files are not held twice). */
export interface TensorSource {
  /** Tensor names in file order. */
  keys(): string[];
  /** Shape and dtype of `key`, or undefined when absent. */
  meta(key: string): TensorMeta | undefined;
  /** Read one tensor into its own buffer. */
  read(key: string): Promise<RawTensor>;
  /** Release the file handle. Idempotent. */
  close(): Promise<void>;
}

/** Product of the dimensions (1 for a scalar). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half bits → float. */
function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Lookup table: all 65536 half values as float32 (built on first use). */
let halfTable: Float32Array | undefined;
function getHalfTable(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) halfTable[i] = halfToFloat(i);
  }
  return halfTable;
}

/**
 * Convert a floating-point raw tensor to float32 (exact for float16/bfloat16; float64 rounds).
 * Integer and bool tensors are rejected with BAD_WEIGHTS: model weights are floating point.
 */
export function toFloat32(t: RawTensor, name = 'tensor'): Float32Array {
  const n = numel(t.shape);
  const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  const out = new Float32Array(n);
  switch (t.dtype) {
    case 'float32':
      if (t.bytes.byteOffset % 4 === 0) out.set(new Float32Array(t.bytes.buffer, t.bytes.byteOffset, n));
      else for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    case 'float64':
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, true);
      return out;
    case 'float16': {
      const table = getHalfTable();
      for (let i = 0; i < n; i++) out[i] = table[view.getUint16(i * 2, true)]!;
      return out;
    }
    case 'bfloat16':
      // bf16 is the top half of a float32.
      for (let i = 0; i < n; i++) {
        u32[0] = view.getUint16(i * 2, true) << 16;
        out[i] = f32[0]!;
      }
      return out;
    default:
      throw new DfdetError('BAD_WEIGHTS', `Tensor ${name} has dtype ${t.dtype}; expected a floating-point dtype`, {
        details: { key: name, dtype: t.dtype },
      });
  }
}

/**
 * Returns `a` when every value is finite. A weight holding NaN or Infinity never gives a meaningful
 * score, and a converted model holding one would be refused at load.
 * @throws DfdetError BAD_WEIGHTS naming the tensor and the first bad element.
 */
export function checkFinite(a: Float32Array, name = 'tensor'): Float32Array {
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    // v - v is 0 for finite values and NaN for NaN and ±Infinity.
    if (v - v !== 0) {
      throw new DfdetError('BAD_WEIGHTS', `Tensor ${name} holds ${v} at element ${i}: weights must be finite`, { details: { key: name, index: i } });
    }
  }
  return a;
}

/** Check that a header-declared shape is a list of non-negative safe integers with a sane element count. */
export function validShape(shape: unknown): shape is number[] {
  if (!Array.isArray(shape) || shape.length > 16) return false;
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) return false;
    n *= d;
  }
  return Number.isSafeInteger(n);
}
