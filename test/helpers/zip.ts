/**
 * Rewriting the entries of a real archive (a TorchScript model, a torch.save checkpoint) with
 * correct CRCs, so a test can plant one malformed entry behind a valid ZIP layer.
 */
import * as zlib from 'node:zlib';

import { ZipReader } from '../../lib/formats/zip';

/** One archive entry, uncompressed. */
export interface ZipItem {
  name: string;
  data: Uint8Array;
}

/** The entries of a ZIP archive in central-directory order, inflated. */
export async function readZip(bytes: Uint8Array): Promise<ZipItem[]> {
  const zip = await ZipReader.fromBytes(bytes, 'test archive');
  try {
    const out: ZipItem[] = [];
    for (const e of zip.order) out.push({ name: e.name, data: (await zip.read(e.name)).slice() });
    return out;
  } finally {
    await zip.close();
  }
}

/** A stored (uncompressed) ZIP of `items`, CRCs correct, data aligned to 64 bytes as PyTorch writes it. */
export function writeZip(items: readonly ZipItem[]): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const { name, data } of items) {
    const nameBytes = Buffer.from(name, 'utf8');
    const crc = zlib.crc32(data);
    const pad = (64 - ((offset + 30 + nameBytes.length + 4) % 64)) % 64;
    const extra = Buffer.alloc(4 + pad);
    extra.writeUInt16LE(0x4650, 0); // PyTorch's padding field id ('FP')
    extra.writeUInt16LE(pad, 2);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    local.writeUInt16LE(extra.length, 28);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(20, 4);
    cd.writeUInt16LE(20, 6);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(data.length, 20);
    cd.writeUInt32LE(data.length, 24);
    cd.writeUInt16LE(nameBytes.length, 28);
    cd.writeUInt32LE(offset, 42);
    central.push(cd, nameBytes);
    parts.push(local, nameBytes, extra, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    offset += 30 + nameBytes.length + extra.length + data.length;
  }
  const cdBytes = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(items.length, 8);
  eocd.writeUInt16LE(items.length, 10);
  eocd.writeUInt32LE(cdBytes.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, cdBytes, eocd]);
}

/** `bytes` with the entries whose name ends with `suffix` replaced by `data` (CRCs recomputed). */
export async function replaceEntry(bytes: Uint8Array, suffix: string, data: Uint8Array | ((old: Uint8Array) => Uint8Array)): Promise<Buffer> {
  const items = await readZip(bytes);
  let found = false;
  for (const it of items) {
    if (!it.name.endsWith(suffix)) continue;
    it.data = typeof data === 'function' ? data(it.data) : data;
    found = true;
  }
  if (!found) throw new Error(`no entry ending with ${suffix}`);
  return writeZip(items);
}
