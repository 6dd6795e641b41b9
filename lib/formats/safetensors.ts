/**
 * Reader (lazy, from a file descriptor) and writer of the safetensors format:
 * `u64 LE header length | JSON header | data`, header entries `{dtype, shape, data_offsets: [begin, end]}`
 * relative to the data section, plus an optional `__metadata__` map of strings.
 * Every field is validated; any violation is a DfdetError BAD_FORMAT.
 */

import type * as fs from 'node:fs';
import { DfdetError } from '../errors';
import { openFileWith, readExactly } from './file';
import { DTYPE_SIZE, numel, type RawDType, type RawTensor, type TensorMeta, type TensorSource, validShape } from './tensor';

/** Largest header accepted (the reference implementation uses the same 100 MB bound). */
export const MAX_HEADER_BYTES = 100_000_000;

/** safetensors dtype names → ours. */
const DTYPES: Readonly<Record<string, RawDType>> = {
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  F64: 'float64',
  I64: 'int64',
  I32: 'int32',
  I16: 'int16',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};

const DTYPE_NAMES: Readonly<Record<RawDType, string>> = Object.fromEntries(
  Object.entries(DTYPES).map(([k, v]) => [v, k]),
) as Record<RawDType, string>;

/** One tensor entry of a safetensors header, offsets absolute within the file. */
export interface SafetensorsEntry extends TensorMeta {
  name: string;
  /** Absolute file offset of the first byte. */
  offset: number;
  byteLength: number;
}

/** Parsed header of a safetensors file. */
export interface SafetensorsHeader {
  entries: Map<string, SafetensorsEntry>;
  /** The `__metadata__` map (empty when absent). */
  metadata: Record<string, string>;
  /** Absolute offset of the data section. */
  dataStart: number;
}

function bad(file: string, msg: string): never {
  throw new DfdetError('BAD_FORMAT', `Invalid safetensors file ${file}: ${msg}`, { details: { file } });
}

/**
 * Validate a header (its JSON text already read) against the file size.
 * @param fileSize total file size in bytes
 * @param headerLength the u64 from the first 8 bytes
 */
export function parseSafetensorsHeader(
  json: string,
  headerLength: number,
  fileSize: number,
  file = '<buffer>',
): SafetensorsHeader {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (e) {
    bad(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) bad(file, 'header is not a JSON object');
  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  const entries = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  const ranges: Array<[number, number, string]> = [];
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) bad(file, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') bad(file, `__metadata__.${k} is not a string`);
      }
      metadata = { ...(value as Record<string, string>) };
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) bad(file, `entry ${JSON.stringify(name)} is not an object`);
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPES, dtype)) {
      bad(file, `tensor ${JSON.stringify(name)} has unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPES).join(', ')})`);
    }
    if (!validShape(shape)) bad(file, `tensor ${JSON.stringify(name)} has an invalid shape ${JSON.stringify(shape)}`);
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      bad(file, `tensor ${JSON.stringify(name)} has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLength) bad(file, `tensor ${JSON.stringify(name)} ends at ${end}, past the data section (${dataLength} bytes)`);
    const rawDtype = DTYPES[dtype]!;
    const expected = numel(shape) * DTYPE_SIZE[rawDtype];
    if (end - begin !== expected) {
      bad(file, `tensor ${JSON.stringify(name)} spans ${end - begin} bytes but ${dtype}${JSON.stringify(shape)} needs ${expected}`);
    }
    entries.set(name, { name, dtype: rawDtype, shape: [...shape], offset: dataStart + begin, byteLength: expected });
    ranges.push([begin, end, name]);
  }
  // The spec requires the data section to be fully indexed: no holes, no overlaps.
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let pos = 0;
  for (const [begin, end, name] of ranges) {
    if (begin < pos) bad(file, `tensor ${JSON.stringify(name)} overlaps another tensor`);
    if (begin > pos) bad(file, `${begin - pos} unindexed bytes before tensor ${JSON.stringify(name)}`);
    pos = end;
  }
  if (pos !== dataLength) bad(file, `data section has ${dataLength - pos} bytes after the last tensor`);
  return { entries, metadata, dataStart };
}

/** A safetensors file opened for lazy reads: the header is parsed up front, tensors are read on demand. */
export class SafetensorsFile implements TensorSource {
  private constructor(
    /** Path it was opened from. */
    readonly path: string,
    private handle: fs.promises.FileHandle | undefined,
    /** Parsed, validated header. */
    readonly header: SafetensorsHeader,
  ) {}

  /** Open and validate `path`. Throws NOT_FOUND when missing, BAD_FORMAT when malformed. */
  static async open(path: string): Promise<SafetensorsFile> {
    return openFileWith(path, async (handle) => {
      const { size } = await handle.stat();
      if (size < 8) bad(path, `file is ${size} bytes, shorter than the 8-byte header length`);
      const head = Buffer.alloc(8);
      await readExactly(handle, head, 0, truncated);
      const len = head.readBigUInt64LE(0);
      if (len < 2n) bad(path, `header length ${len} is too short for a JSON object`);
      if (len > BigInt(MAX_HEADER_BYTES)) {
        bad(path, `header is ${len} bytes, more than the ${MAX_HEADER_BYTES}-byte limit (MAX_HEADER_BYTES, the reference implementation's bound)`);
      }
      const headerLength = Number(len);
      if (8 + headerLength > size) bad(path, `header length ${headerLength} exceeds the file size ${size}`);
      const jsonBytes = Buffer.alloc(headerLength);
      await readExactly(handle, jsonBytes, 8, truncated);
      if (jsonBytes[0] !== 0x7b) bad(path, 'header does not start with "{"');
      const json = new TextDecoder('utf-8', { fatal: false }).decode(jsonBytes);
      const header = parseSafetensorsHeader(json, headerLength, size, path);
      return new SafetensorsFile(path, handle, header);
    });
  }

  /** The `__metadata__` map. */
  get metadata(): Record<string, string> {
    return this.header.metadata;
  }

  keys(): string[] {
    return [...this.header.entries.keys()];
  }

  meta(key: string): TensorMeta | undefined {
    const e = this.header.entries.get(key);
    return e && { dtype: e.dtype, shape: [...e.shape] };
  }

  async read(key: string): Promise<RawTensor> {
    const e = this.header.entries.get(key);
    if (!e) throw new DfdetError('BAD_WEIGHTS', `No tensor ${JSON.stringify(key)} in ${this.path}`, { details: { key, file: this.path } });
    if (!this.handle) throw new DfdetError('DISPOSED', `${this.path} is closed`);
    const bytes = new Uint8Array(e.byteLength);
    await readExactly(this.handle, bytes, e.offset, truncated);
    return { dtype: e.dtype, shape: [...e.shape], bytes };
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    if (h) await h.close();
  }
}

/** The BAD_FORMAT error of a file that ends before the bytes its header promises. */
function truncated(offset: number): never {
  throw new DfdetError('BAD_FORMAT', `Unexpected end of file at offset ${offset}`);
}

/** A tensor to write: raw little-endian bytes or a typed array matching `dtype`. */
export interface SafetensorsInput {
  dtype: RawDType;
  shape: number[];
  data: ArrayBufferView;
}

/**
 * Encode tensors as a safetensors file (keys in the given order, header padded with spaces to a
 * multiple of 8 bytes as the reference writer does).
 */
export function encodeSafetensors(tensors: Record<string, SafetensorsInput>, metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const expected = numel(t.shape) * DTYPE_SIZE[t.dtype];
    if (bytes.byteLength !== expected) {
      throw new DfdetError('BAD_INPUT', `Tensor ${name}: ${bytes.byteLength} bytes given, ${t.dtype}${JSON.stringify(t.shape)} needs ${expected}`);
    }
    header[name] = { dtype: DTYPE_NAMES[t.dtype], shape: t.shape, data_offsets: [offset, offset + expected] };
    offset += expected;
    parts.push(bytes);
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const jsonBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(jsonBytes.length));
  return Buffer.concat([len, jsonBytes, ...parts]);
}
