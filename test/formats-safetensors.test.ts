/**
 * safetensors reader/writer: round trips, Python-written files, every validation rule, and fuzzing
 * (random mutations never crash or hang: BAD_FORMAT or a valid file).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertModel } from '../lib/convert';
import { encodeSafetensors, MAX_HEADER_BYTES, SafetensorsFile } from '../lib/formats/safetensors';
import { toFloat32 } from '../lib/formats/tensor';
import { SeededRandom } from '../lib/detector-model/init';
import { isDfdetError } from '../lib/errors';
import { runPythonCode, skipWithoutPython } from './helpers/python';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-st-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function sample(): Buffer {
  return encodeSafetensors(
    {
      a: { dtype: 'float32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, -6.5]) },
      // 1.0, -2.0, 65504 (max half) as float16 bits
      h: { dtype: 'float16', shape: [3], data: new Uint16Array([0x3c00, 0xc000, 0x7bff]) },
      // 1.0, -3.0 as bfloat16 bits
      b: { dtype: 'bfloat16', shape: [2], data: new Uint16Array([0x3f80, 0xc040]) },
      i: { dtype: 'int64', shape: [1], data: new BigInt64Array([-5n]) },
      e: { dtype: 'float32', shape: [0, 4], data: new Float32Array(0) },
      s: { dtype: 'uint8', shape: [], data: new Uint8Array([9]) },
    },
    { format: 'pt' },
  );
}

/** A file from a raw header object and a data section. */
function raw(header: unknown, data: Uint8Array, lengthOverride?: bigint): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

async function openBuf(b: Uint8Array, name = 'x.safetensors'): Promise<SafetensorsFile> {
  const f = path.join(dir, name);
  fs.writeFileSync(f, b);
  return SafetensorsFile.open(f);
}

async function expectBad(b: Uint8Array, msg: RegExp) {
  const e = await openBuf(b).then(
    async (st) => {
      await st.close();
      return undefined;
    },
    (err: unknown) => err,
  );
  expect(isDfdetError(e, 'BAD_FORMAT'), String(e)).toBe(true);
  expect((e as Error).message).toMatch(msg);
}

describe('safetensors', () => {
  it('round-trips tensors, dtypes and metadata; reads lazily by name', async () => {
    const st = await openBuf(sample());
    try {
      expect(st.keys()).toEqual(['a', 'h', 'b', 'i', 'e', 's']);
      expect(st.metadata).toEqual({ format: 'pt' });
      expect(st.meta('a')).toEqual({ dtype: 'float32', shape: [2, 3] });
      expect(Array.from(toFloat32(await st.read('a')))).toEqual([1, 2, 3, 4, 5, -6.5]);
      expect(Array.from(toFloat32(await st.read('h')))).toEqual([1, -2, 65504]);
      expect(Array.from(toFloat32(await st.read('b')))).toEqual([1, -3]);
      const i = await st.read('i');
      expect(new DataView(i.bytes.buffer, i.bytes.byteOffset).getBigInt64(0, true)).toBe(-5n);
      expect((await st.read('e')).bytes.length).toBe(0);
      expect((await st.read('s')).shape).toEqual([]);
      expect(() => toFloat32(i, 'i')).toThrow(/dtype int64/);
      await expect(st.read('nope')).rejects.toMatchObject({ code: 'BAD_WEIGHTS' });
    } finally {
      await st.close();
    }
    await expect(SafetensorsFile.open(path.join(dir, 'missing.safetensors'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it.skipIf(skipWithoutPython('torch'))('reads files written by the Python reference writer', async () => {
    const f = path.join(dir, 'py.safetensors');
    const code = `
import sys, torch; sys.path.insert(0, ${JSON.stringify(path.join(__dirname, 'python'))})
from vit_ref import write_safetensors
write_safetensors(${JSON.stringify(f)}, {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4, "h": torch.tensor([0.1, -7.0]).half(), "z": torch.tensor([1.5]).bfloat16()})`;
    runPythonCode(code);
    const st = await SafetensorsFile.open(f);
    expect(Array.from(toFloat32(await st.read('w')))).toEqual([0, 0.25, 0.5, 0.75, 1, 1.25]);
    expect(Array.from(toFloat32(await st.read('h')))).toEqual([Math.fround(0.0999755859375), -7]);
    expect(Array.from(toFloat32(await st.read('z')))).toEqual([1.5]);
    await st.close();
  });

  it('validates every header rule', async () => {
    const d8 = new Uint8Array(8);
    await expectBad(Buffer.from([1, 2, 3]), /shorter than the 8-byte/);
    await expectBad(raw('{}', new Uint8Array(0), 10n ** 12n), /header is 1000000000000 bytes, more than the 100000000-byte limit/);
    await expectBad(raw('{}', new Uint8Array(0), 50n), /exceeds the file size/);
    await expectBad(raw('[1,2]', new Uint8Array(0)), /does not start with "\{"/);
    await expectBad(raw('{"a": ', new Uint8Array(0)), /not valid JSON/);
    await expectBad(raw({ a: { dtype: 'F8', shape: [2], data_offsets: [0, 8] } }, d8), /unsupported dtype "F8"/);
    await expectBad(raw({ a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, d8), /invalid shape/);
    await expectBad(raw({ a: { dtype: 'F32', shape: [2.5], data_offsets: [0, 8] } }, d8), /invalid shape/);
    await expectBad(raw({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, d8), /invalid data_offsets/);
    await expectBad(raw({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 16] } }, d8), /past the data section/);
    await expectBad(raw({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, d8), /needs 12/);
    await expectBad(
      raw({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, d8),
      /overlaps/,
    );
    await expectBad(raw({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, d8), /unindexed bytes/);
    await expectBad(raw({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, d8), /bytes after the last tensor/);
    await expectBad(raw({ __metadata__: { a: 1 } }, new Uint8Array(0)), /__metadata__\.a is not a string/);
    await expectBad(raw({ a: 5 }, new Uint8Array(0)), /is not an object/);
    await expectBad(raw({ a: { dtype: 'F32', shape: [1e300], data_offsets: [0, 8] } }, d8), /invalid shape/);
  });

  it('a header at the 100 MB limit is read as safetensors; one byte more names the limit (issue 15)', async () => {
    // Exactly MAX_HEADER_BYTES of header (JSON padded with spaces, as the spec allows) is valid.
    const json = JSON.stringify({ w: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } });
    const big = path.join(dir, 'big-header.safetensors');
    const header = Buffer.alloc(MAX_HEADER_BYTES, 0x20);
    header.write(json);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(MAX_HEADER_BYTES));
    fs.writeFileSync(big, Buffer.concat([len, header, Buffer.from(new Float32Array([0.5]).buffer)]));
    const st = await SafetensorsFile.open(big);
    expect(Array.from(toFloat32(await st.read('w')))).toEqual([0.5]);
    await st.close();
    // convert sniffs it as safetensors (it said "neither safetensors nor zip") and names the key it cannot use.
    await expect(convertModel(big, path.join(dir, 'big.pt'))).rejects.toMatchObject({ code: 'BAD_WEIGHTS', message: /Unknown key w/ });
    const over = path.join(dir, 'over-limit.safetensors');
    len.writeBigUInt64LE(BigInt(MAX_HEADER_BYTES + 8));
    fs.writeFileSync(over, Buffer.concat([len, Buffer.from(json), Buffer.alloc(64)]));
    await expect(convertModel(over, path.join(dir, 'over.pt'))).rejects.toMatchObject({
      code: 'BAD_FORMAT',
      message: /header is 100000008 bytes, more than the 100000000-byte limit/,
    });
  });

  it('fuzz: random mutations give BAD_FORMAT or a valid file, never another error', async () => {
    const orig = sample();
    const headerEnd = 8 + Number(orig.readBigUInt64LE(0));
    const rng = new SeededRandom(7);
    let valid = 0;
    let rejected = 0;
    const N = 600;
    for (let i = 0; i < N; i++) {
      let b = Buffer.from(orig);
      const mode = i % 4;
      if (mode === 0) {
        // Flip bytes in the header (JSON text and length).
        for (let j = 0; j < 1 + (i % 5); j++) b[Math.floor(rng.uniform() * headerEnd)] = Math.floor(rng.uniform() * 256);
      } else if (mode === 1) {
        // Replace a digit of the JSON by another digit: plausible but wrong offsets/shapes.
        const s = b.toString('latin1', 8, headerEnd);
        const digits = [...s.matchAll(/\d/g)].map((m) => m.index!);
        const at = digits[Math.floor(rng.uniform() * digits.length)]!;
        b[8 + at] = 0x30 + Math.floor(rng.uniform() * 10);
      } else if (mode === 2) {
        b = b.subarray(0, Math.floor(rng.uniform() * b.length));
      } else {
        b = Buffer.concat([b, Buffer.alloc(1 + Math.floor(rng.uniform() * 16), 0xab)]);
      }
      try {
        const st = await openBuf(b, 'fuzz.safetensors');
        try {
          for (const k of st.keys()) await st.read(k);
        } finally {
          await st.close();
        }
        valid++;
      } catch (e) {
        if (!isDfdetError(e, 'BAD_FORMAT')) throw e;
        rejected++;
      }
    }
    expect(valid + rejected).toBe(N);
    expect(rejected).toBeGreaterThan(N / 2);
  });
});
