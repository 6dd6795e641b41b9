/**
 * torch.save zip reader and pickle VM against files written by real PyTorch (test/python/torch_writers.py),
 * plus fuzzing: corrupted files only ever give BAD_FORMAT (or a valid result), never a crash or hang.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TorchCheckpoint, dictGet, isTensorRef } from '../lib/formats/torchzip';
import { unpickle, type PickleValue, isTuple, MAX_PICKLE_ITEMS, PickleObject } from '../lib/formats/pickle';
import { numel, toFloat32 } from '../lib/formats/tensor';
import { SeededRandom } from '../lib/detector-model/init';
import { isDfdetError } from '../lib/errors';
import { PYTHON, runPython, skipWithoutPython } from './helpers/python';
import { writeZip } from './helpers/zip';

interface Expected {
  tensors: Record<string, { dtype: string; shape: number[]; values: number[] }>;
  plain: Record<string, unknown>;
}

/** Plain JSON view of an unpickled value (Maps → objects, bytes → arrays, bigint → string). */
function toJson(v: PickleValue): unknown {
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), toJson(x)]));
  if (v instanceof Uint8Array) return [...v];
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return v.map((x) => toJson(x as PickleValue));
  return v;
}

function values(dtype: string, bytes: Uint8Array, n: number): number[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    switch (dtype) {
      case 'int64':
        out.push(Number(dv.getBigInt64(i * 8, true)));
        break;
      case 'int32':
        out.push(dv.getInt32(i * 4, true));
        break;
      case 'int16':
        out.push(dv.getInt16(i * 2, true));
        break;
      case 'int8':
        out.push(dv.getInt8(i));
        break;
      case 'uint8':
      case 'bool':
        out.push(dv.getUint8(i));
        break;
    }
  }
  return out;
}

const skip = skipWithoutPython('torch');

describe.skipIf(skip)('torch zip reader', () => {
  let dir: string;
  let exp: Expected;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-torchzip-'));
    exp = runPython<Expected>('torch_writers.py', [dir]);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const file of ['tensors.pt', 'deflated.pt']) {
    it(`reads every tensor of ${file} exactly (dtypes, strided views, offsets, empty, scalar)`, async () => {
      const ck = await TorchCheckpoint.open(path.join(dir, file));
      try {
        const weights = dictGet(ck.root, 'weights');
        const meta = dictGet(ck.root, 'meta');
        expect(toJson(meta!)).toEqual({ name: 'x', n: 3, ok: true, ratio: 0.5, nested: [1, [2, 3]] });
        expect(isTuple((dictGet(meta, 'nested') as PickleValue[])[1])).toBe(true);
        const src = ck.tensorSource(weights!);
        expect(src.keys()).toEqual(Object.keys(exp.tensors));
        for (const [name, e] of Object.entries(exp.tensors)) {
          const t = await src.read(name);
          expect(t.dtype, name).toBe(e.dtype);
          expect(t.shape, name).toEqual(e.shape);
          const n = numel(t.shape);
          const got = t.dtype.startsWith('float') || t.dtype === 'bfloat16' ? Array.from(toFloat32(t, name)) : values(t.dtype, t.bytes, n);
          // float32 round trip: compare as float32 (float64 is rounded by toFloat32, exactly like Math.fround).
          expect(got, name).toEqual(e.values.map((v) => (t.dtype === 'int64' ? v : Math.fround(v))));
        }
      } finally {
        await ck.close();
      }
    });
  }

  it('rejects TorchScript archives and the legacy format with clear BAD_FORMAT errors', async () => {
    await expect(TorchCheckpoint.open(path.join(dir, 'scripted.pt'))).rejects.toMatchObject({ code: 'BAD_FORMAT', message: /TorchScript archive/ });
    await expect(TorchCheckpoint.open(path.join(dir, 'legacy.pt'))).rejects.toMatchObject({ code: 'BAD_FORMAT', message: /legacy/ });
    await expect(TorchCheckpoint.open(path.join(dir, 'missing.pt'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('refuses stride-0 views that would expand a tiny storage into gigabytes, naming the key', async () => {
    // torch.save keeps expand()ed views as they are: a 1-element storage with stride 0, a few hundred bytes on disk.
    const f = path.join(dir, 'expanded.pt');
    const code = [
      'import sys, torch',
      "torch.save({'ids': torch.arange(3).expand(4, 3), 'huge': torch.zeros(1).expand(1 << 20, 1 << 20, 1 << 10),",
      "            'big': torch.zeros(1).expand(1 << 16, 1 << 15)}, sys.argv[1])",
    ].join('\n');
    execFileSync(PYTHON, ['-c', code, f]);
    expect(fs.statSync(f).size).toBeLessThan(4096);
    const ck = await TorchCheckpoint.open(f);
    try {
      const src = ck.tensorSource(ck.root);
      // A real broadcast buffer (like CLIP's position_ids) still reads, gathered.
      const ids = await src.read('ids');
      expect(ids.shape).toEqual([4, 3]);
      expect(values('int64', ids.bytes, 12)).toEqual([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
      await expect(src.read('huge')).rejects.toMatchObject({ code: 'BAD_FORMAT', message: /tensor huge expands a 1-element storage/, details: { key: 'huge' } });
      // 2^31 float32 elements: 8 GiB from a 1-element storage.
      await expect(src.read('big')).rejects.toMatchObject({ code: 'BAD_FORMAT', message: /tensor big expands .* 8589934592 bytes/, details: { key: 'big' } });
    } finally {
      await ck.close();
    }
  });

  it('unpickles plain data at protocols 2-5', () => {
    for (const p of [2, 3, 4, 5]) {
      const v = unpickle(fs.readFileSync(path.join(dir, `pickle_p${p}.bin`)));
      expect(toJson(v), `protocol ${p}`).toEqual(exp.plain);
    }
  });

  it('keeps unknown classes as inert placeholders and never runs code', () => {
    // cos.system('echo pwned') R . — the classic pickle exploit.
    const evil = Buffer.from("cos\nsystem\n(S'echo pwned'\ntR.", 'latin1');
    // 'S' (protocol-0 STRING) is not supported: rejected before anything could happen.
    expect(() => unpickle(evil)).toThrow(/unsupported opcode 0x53/);
    const evil2 = Buffer.concat([Buffer.from('\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R.', 'latin1')]);
    const o = unpickle(evil2);
    expect(o).toBeInstanceOf(PickleObject);
    expect((o as PickleObject).cls.qualifiedName).toBe('os.system');
    expect((o as PickleObject).args).toEqual(['echo']);
  });

  it('fuzz: mutated checkpoints give BAD_FORMAT or a valid result, never another error', async () => {
    const orig = fs.readFileSync(path.join(dir, 'tensors.pt'));
    const rng = new SeededRandom(42);
    const f = path.join(dir, 'fuzz.pt');
    let ok = 0;
    let bad = 0;
    for (let i = 0; i < 300; i++) {
      const b = Buffer.from(orig);
      const mode = i % 3;
      if (mode === 0) {
        for (let j = 0; j < 1 + (i % 8); j++) b[Math.floor(rng.uniform() * b.length)] = Math.floor(rng.uniform() * 256);
      } else if (mode === 1) {
        // Target the pickle (the first entry's data, right after its local header).
        const start = 30 + b.readUInt16LE(26) + b.readUInt16LE(28);
        for (let j = 0; j < 1 + (i % 4); j++) b[start + Math.floor(rng.uniform() * 600)] = Math.floor(rng.uniform() * 256);
      }
      const data = mode === 2 ? b.subarray(0, Math.floor(rng.uniform() * b.length)) : b;
      fs.writeFileSync(f, data);
      try {
        const ck = await TorchCheckpoint.open(f);
        try {
          const w = dictGet(ck.root, 'weights');
          if (w instanceof Map) for (const v of w.values()) if (isTensorRef(v)) await ck.readTensor(v);
        } finally {
          await ck.close();
        }
        ok++;
      } catch (e) {
        if (!isDfdetError(e, 'BAD_FORMAT') && !isDfdetError(e, 'BAD_WEIGHTS')) throw e;
        bad++;
      }
    }
    expect(ok + bad).toBe(300);
    expect(bad).toBeGreaterThan(50);
  });
});

describe('pickle VM (no Python needed)', () => {
  it('rejects truncated streams and stack misuse with BAD_FORMAT', () => {
    const cases = [
      Buffer.from([0x80, 0x02]), // no STOP
      Buffer.from([0x80, 0x02, 0x58, 0xff, 0xff, 0xff, 0x7f]), // BINUNICODE longer than the stream
      Buffer.from([0x80, 0x02, 0x73, 0x2e]), // SETITEM on an empty stack
      Buffer.from([0x80, 0x02, 0x68, 0x05, 0x2e]), // BINGET of an undefined memo slot
      Buffer.from([0x80, 0x09, 0x4e, 0x2e]), // unknown protocol
      Buffer.from([0x80, 0x02, 0x4e, 0x4e, 0x2e]), // two items at STOP
      Buffer.from([0x80, 0x02, 0x65, 0x2e]), // APPENDS without MARK
    ];
    for (const c of cases) {
      let err: unknown;
      try {
        unpickle(c);
      } catch (e) {
        err = e;
      }
      expect(isDfdetError(err, 'BAD_FORMAT'), `${c.toString('hex')}: ${String(err)}`).toBe(true);
    }
  });
});

describe('pickle and zip bounds (issue 15, no Python needed)', () => {
  const badFormat = (data: Uint8Array, message: RegExp): void => {
    let err: unknown;
    try {
      unpickle(data);
    } catch (e) {
      err = e;
    }
    expect(isDfdetError(err, 'BAD_FORMAT'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(message);
  };

  it('10^6 DUP opcodes: BAD_FORMAT naming the bound, not "Maximum call stack size exceeded"', () => {
    // None, DUP x 10^6, STOP.
    badFormat(Buffer.concat([Buffer.from([0x80, 0x02, 0x4e]), Buffer.alloc(1_000_000, 0x32), Buffer.from([0x2e])]), new RegExp(`more than ${MAX_PICKLE_ITEMS} values`));
    // EMPTY_LIST MARK None DUP x 500,000 APPENDS STOP: a legal list of half a million Nones (spread once overflowed the call stack).
    const list = unpickle(Buffer.concat([Buffer.from([0x80, 0x02, 0x5d, 0x28, 0x4e]), Buffer.alloc(500_000, 0x32), Buffer.from([0x65, 0x2e])]));
    expect((list as unknown[]).length).toBe(500_001);
    // Memo: None, then LONG_BINPUT to 1.1 million distinct slots.
    const puts = Buffer.alloc(5 * 1_100_000);
    for (let i = 0; i < 1_100_000; i++) {
      puts[i * 5] = 0x72;
      puts.writeUInt32LE(i, i * 5 + 1);
    }
    badFormat(Buffer.concat([Buffer.from([0x80, 0x02, 0x4e]), puts, Buffer.from([0x2e])]), /the memo holds more than/);
  });

  it('declared lengths are bounded by the bytes that are there', () => {
    const u64 = Buffer.alloc(8);
    u64.writeBigUInt64LE(4n << 30n);
    badFormat(Buffer.concat([Buffer.from([0x80, 0x02, 0x8d]), u64, Buffer.from('x.')]), /length 4294967296 exceeds the stream/);
    badFormat(Buffer.from([0x80, 0x02, 0x58, 0xff, 0xff, 0xff, 0xff, 0x2e]), /truncated/);
    const long4 = Buffer.alloc(4);
    long4.writeInt32LE(1 << 20);
    badFormat(Buffer.concat([Buffer.from([0x80, 0x02, 0x8b]), long4, Buffer.alloc(1 << 20), Buffer.from('.')]), /LONG4 of 1048576 bytes/);
    badFormat(Buffer.from([0x80, 0x02, 0x52, 0x2e]), /stack underflow/);
  });

  it('a checkpoint whose entry fails its CRC is refused naming the entry; the intact one opens', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-crc-'));
    try {
      // {'a': 1}: EMPTY_DICT, SHORT_BINUNICODE 'a', BININT1 1, SETITEM, STOP.
      const zip = writeZip([
        { name: 'archive/data.pkl', data: Buffer.from([0x80, 0x02, 0x7d, 0x8c, 0x01, 0x61, 0x4b, 0x01, 0x73, 0x2e]) },
        { name: 'archive/version', data: Buffer.from('3\n') },
      ]);
      const ok = path.join(dir, 'ok.ckpt');
      fs.writeFileSync(ok, zip);
      const ck = await TorchCheckpoint.open(ok);
      expect(dictGet(ck.root, 'a')).toBe(1);
      await ck.close();
      const flipped = Buffer.from(zip);
      flipped[flipped.indexOf(Buffer.from([0x4b, 0x01]))! + 1] = 0x02; // {'a': 2}: a valid pickle, a wrong CRC
      const bad = path.join(dir, 'flipped.ckpt');
      fs.writeFileSync(bad, flipped);
      await expect(TorchCheckpoint.open(bad)).rejects.toMatchObject({ code: 'BAD_FORMAT', message: /entry archive\/data\.pkl is corrupt \(CRC-32/ });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
