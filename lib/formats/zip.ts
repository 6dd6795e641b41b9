/**
 * A ZIP reader for the archives PyTorch writes (torch.save checkpoints, TorchScript models): the
 * central directory up front (zip64 aware), entries read by range from a file or from bytes in
 * memory, and a streaming CRC-32 check of every entry (libtorch never checks them).
 * Every length read from the file is bounded by the bytes that are actually there.
 */

import type * as fs from 'node:fs';
import * as zlib from 'node:zlib';

import { DfdetError } from '../errors';
import { openFileWith, readExactly } from './file';

/** One entry of the ZIP central directory. */
export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate. */
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
  /** CRC-32 of the uncompressed data, from the central directory. */
  crc32: number;
}

/** Random access to the bytes of an archive: a file handle or a buffer. */
interface ByteSource {
  readonly size: number;
  /** Fills `into` with the bytes at `position` (the caller checked the range). */
  read(into: Uint8Array, position: number): Promise<void>;
  close(): Promise<void>;
}

/** Largest central directory accepted (bounds memory on corrupt input). */
const MAX_CENTRAL_DIRECTORY = 256 * 1024 * 1024;
/** Largest entry inflated into memory (data.pkl of a checkpoint is small). */
export const MAX_INFLATED = 1024 * 1024 * 1024;
/** Chunk of a streaming CRC check. */
const CRC_CHUNK = 4 * 1024 * 1024;

/** Options of {@link ZipReader}. */
export interface ZipOptions {
  /** Names the archive in messages, e.g. 'torch zip file' (default 'ZIP file'). */
  kind?: string;
}

/** A ZIP archive: central directory parsed up front, entries read by range. */
export class ZipReader {
  private constructor(
    /** Path (or a description of the bytes) used in messages. */
    readonly path: string,
    private source: ByteSource | undefined,
    readonly size: number,
    /** Entries by name. */
    readonly entries: Map<string, ZipEntry>,
    /** Entries in central-directory order (libtorch takes the archive folder from the first). */
    readonly order: readonly ZipEntry[],
    private readonly kind: string,
  ) {}

  /** Opens `path` and parses its central directory. */
  static async open(path: string, options: ZipOptions = {}): Promise<ZipReader> {
    return openFileWith(path, async (handle) => {
      const { size } = await handle.stat();
      return ZipReader.from(path, fileSource(handle, size, path, options.kind), options);
    });
  }

  /** Parses the central directory of an archive held in memory (read in place, not copied). */
  static async fromBytes(bytes: Uint8Array, name: string, options: ZipOptions = {}): Promise<ZipReader> {
    return ZipReader.from(name, bytesSource(bytes), options);
  }

  private static async from(name: string, source: ByteSource, options: ZipOptions): Promise<ZipReader> {
    const kind = options.kind ?? 'ZIP file';
    const order = await readCentralDirectory(source, name, kind);
    const entries = new Map<string, ZipEntry>();
    for (const e of order) {
      if (entries.has(e.name)) fail(kind, name, `entry ${e.name} appears twice`);
      entries.set(e.name, e);
    }
    return new ZipReader(name, source, source.size, entries, order, kind);
  }

  private bad(msg: string): never {
    return fail(this.kind, this.path, msg);
  }

  private async readAt(position: number, length: number): Promise<Uint8Array> {
    if (!this.source) throw new DfdetError('DISPOSED', `${this.path} is closed`);
    if (position < 0 || length < 0 || position + length > this.size) this.bad(`range ${position}+${length} is outside the file`);
    const buf = new Uint8Array(length);
    await this.source.read(buf, position);
    return buf;
  }

  /** Absolute offset of an entry's data (after its local header). */
  async dataOffset(entry: ZipEntry): Promise<number> {
    const h = await this.readAt(entry.localHeaderOffset, 30);
    const v = new DataView(h.buffer);
    if (v.getUint32(0, true) !== 0x04034b50) this.bad(`bad local header for ${entry.name}`);
    const start = entry.localHeaderOffset + 30 + v.getUint16(26, true) + v.getUint16(28, true);
    if (start + entry.compressedSize > this.size) this.bad(`entry ${entry.name} extends past the end of the file`);
    return start;
  }

  /** Reads a whole entry (inflating deflated ones). */
  async read(name: string): Promise<Uint8Array> {
    const e = this.entries.get(name);
    if (!e) this.bad(`missing entry ${name}`);
    return this.readRange(e, 0, e.size);
  }

  /** Reads `length` bytes at `offset` inside an entry's uncompressed data. */
  async readRange(e: ZipEntry, offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > e.size) this.bad(`range ${offset}+${length} outside entry ${e.name} (${e.size} bytes)`);
    const start = await this.dataOffset(e);
    if (e.method === 0) {
      if (e.size !== e.compressedSize) this.bad(`stored entry ${e.name} has differing sizes`);
      return this.readAt(start + offset, length);
    }
    const out = await this.inflate(e, start);
    return out.subarray(offset, offset + length);
  }

  private async inflate(e: ZipEntry, start: number): Promise<Uint8Array> {
    if (e.method !== 8) this.bad(`entry ${e.name} uses unsupported compression method ${e.method}`);
    if (e.size > MAX_INFLATED) this.bad(`deflated entry ${e.name} is too large (${e.size} bytes; at most ${MAX_INFLATED})`);
    const raw = await this.readAt(start, e.compressedSize);
    let out: Buffer;
    try {
      out = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
    } catch (err) {
      this.bad(`cannot inflate ${e.name}: ${(err as Error).message}`);
    }
    if (out.length !== e.size) this.bad(`entry ${e.name} inflates to ${out.length} bytes, expected ${e.size}`);
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  }

  /**
   * Checks the CRC-32 of one entry against the central directory, reading it in chunks.
   * @throws DfdetError BAD_FORMAT naming the entry when the data does not match.
   */
  async verify(e: ZipEntry): Promise<void> {
    const start = await this.dataOffset(e);
    let crc = 0;
    if (e.method === 0) {
      if (e.size !== e.compressedSize) this.bad(`stored entry ${e.name} has differing sizes`);
      for (let done = 0; done < e.size; ) {
        const n = Math.min(CRC_CHUNK, e.size - done);
        crc = zlib.crc32(await this.readAt(start + done, n), crc);
        done += n;
      }
    } else {
      crc = zlib.crc32(await this.inflate(e, start));
    }
    if (crc >>> 0 !== e.crc32 >>> 0) {
      this.bad(`entry ${e.name} is corrupt (CRC-32 ${hex(crc)}, the archive says ${hex(e.crc32)})`);
    }
  }

  /** {@link verify} for every entry, in file order. */
  async verifyAll(): Promise<void> {
    for (const e of [...this.order].sort((a, b) => a.localHeaderOffset - b.localHeaderOffset)) await this.verify(e);
  }

  /** Releases the file. Idempotent. */
  async close(): Promise<void> {
    const s = this.source;
    this.source = undefined;
    if (s) await s.close();
  }
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}

function fail(kind: string, file: string, msg: string): never {
  throw new DfdetError('BAD_FORMAT', `Invalid ${kind} ${file}: ${msg}`, { details: { file } });
}

function fileSource(handle: fs.promises.FileHandle, size: number, path: string, kind = 'ZIP file'): ByteSource {
  return {
    size,
    read: (into, position) => readExactly(handle, into, position, () => fail(kind, path, 'unexpected end of file')),
    close: () => handle.close(),
  };
}

function bytesSource(bytes: Uint8Array): ByteSource {
  let sinceYield = 0;
  return {
    size: bytes.byteLength,
    read: async (into, position) => {
      into.set(bytes.subarray(position, position + into.byteLength));
      // Let the event loop run every few MB, as file reads do: a CRC pass over a large model in
      // memory would otherwise hold it for seconds.
      sinceYield += into.byteLength;
      if (sinceYield >= CRC_CHUNK) {
        sinceYield = 0;
        await new Promise((resolve) => setImmediate(resolve));
      }
    },
    close: async () => undefined,
  };
}

async function readCentralDirectory(src: ByteSource, file: string, kind: string): Promise<ZipEntry[]> {
  const bad = (msg: string): never => fail(kind, file, msg);
  const size = src.size;
  if (size < 22) bad('file too short for a ZIP');
  const tailLen = Math.min(size, 22 + 65535 + 20);
  const tail = Buffer.alloc(tailLen);
  await src.read(tail, size - tailLen);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) bad('no end-of-central-directory record (not a ZIP file)');
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  if (eocd >= 20 && tail.readUInt32LE(eocd - 20) === 0x07064b50) {
    const z64Offset = Number(tail.readBigUInt64LE(eocd - 20 + 8));
    if (z64Offset + 56 > size) bad('zip64 end-of-central-directory record is outside the file');
    const rec = Buffer.alloc(56);
    await src.read(rec, z64Offset);
    if (rec.readUInt32LE(0) !== 0x06064b50) bad('bad zip64 end-of-central-directory record');
    count = Number(rec.readBigUInt64LE(32));
    cdSize = Number(rec.readBigUInt64LE(40));
    cdOffset = Number(rec.readBigUInt64LE(48));
  }
  if (cdSize > MAX_CENTRAL_DIRECTORY || cdOffset + cdSize > size || count * 46 > cdSize) {
    bad(`central directory (${count} entries, ${cdSize} bytes at ${cdOffset}) does not fit the file`);
  }
  const cd = Buffer.alloc(cdSize);
  await src.read(cd, cdOffset);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdSize || cd.readUInt32LE(p) !== 0x02014b50) bad(`bad central directory entry ${i}`);
    const method = cd.readUInt16LE(p + 10);
    const crc32 = cd.readUInt32LE(p + 16);
    let compressedSize = cd.readUInt32LE(p + 20);
    let usize = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let localHeaderOffset = cd.readUInt32LE(p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > cdSize) bad(`central directory entry ${i} overruns the directory`);
    const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
    // zip64 extended information: only the fields saturated in the fixed header are present, in order.
    let q = p + 46 + nameLen;
    const extraEnd = q + extraLen;
    while (q + 4 <= extraEnd) {
      const id = cd.readUInt16LE(q);
      const len = cd.readUInt16LE(q + 2);
      if (q + 4 + len > extraEnd) break;
      if (id === 0x0001) {
        let r = q + 4;
        const take = (): number => {
          if (r + 8 > q + 4 + len) bad(`truncated zip64 field in ${name}`);
          const v = Number(cd.readBigUInt64LE(r));
          r += 8;
          return v;
        };
        if (usize === 0xffffffff) usize = take();
        if (compressedSize === 0xffffffff) compressedSize = take();
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = take();
      }
      q += 4 + len;
    }
    if (localHeaderOffset + 30 > size || compressedSize > size) bad(`entry ${name} lies outside the file`);
    if (method === 0 && usize !== compressedSize) bad(`stored entry ${name} has differing sizes`);
    entries.push({ name, method, compressedSize, size: usize, localHeaderOffset, crc32 });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}
