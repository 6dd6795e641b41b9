/**
 * Model files that crashed libtorch 1.13 (issue 15) are refused before libtorch sees them, through
 * Model.load (path and bytes) and through `dfdet info`, whose exit status must never be a signal.
 * Each file is a real tiny detector (`initModel`) with one entry replaced, the ZIP layer kept valid.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { convertModel } from '../lib/convert';
import { initModel } from '../lib/detector-model/init';
import { codeProblem, MAX_CODE_NESTING, MAX_CODE_OPERATORS } from '../lib/formats/torchscript-check';
import { buildModule, expectTensor, Model, tensor } from '../lib/model';
import { dfdet, ensureBuilt } from './helpers/cli';
import { expectDfdetError } from './helpers/errors';
import { readZip, replaceEntry } from './helpers/zip';

let dir: string;
let good: Buffer;
const files: Record<string, { file: string; message: RegExp }> = {};

/** Writes `bytes` as `name` in the temp folder and records the message Model.load must give. */
function plant(name: string, bytes: Uint8Array, message: RegExp): void {
  const file = path.join(dir, `${name}.pt`);
  fs.writeFileSync(file, bytes);
  files[name] = { file, message };
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-tscheck-'));
  const tiny = path.join(dir, 'tiny.pt');
  await initModel({ arch: 'tiny', seed: 3, output: tiny });
  good = fs.readFileSync(tiny);
  const entries = await readZip(good);
  // The largest storage (the patch embedding), cut to 1,024 bytes: libtorch loaded it and read out of bounds.
  const largest = entries.filter((e) => /\/data\/\d+$/.test(e.name)).sort((a, b) => b.data.length - a.data.length)[0]!;
  plant('short-storage', await replaceEntry(good, largest.name, largest.data.subarray(0, 1024)), /holds 1024 bytes but its FloatStorage of \d+ elements needs/);
  plant('reduce-empty', await replaceEntry(good, '/data.pkl', Buffer.from([0x80, 0x02, 0x52, 0x2e])), /data\.pkl.*stack underflow/);
  const nested = `def forward(self, x):\n    return ${'('.repeat(50_000)}x${')'.repeat(50_000)}\n`;
  plant('nested-code', await replaceEntry(good, '.py', Buffer.from(nested)), /brackets nested more than 256 deep/);
  const chain = `def forward(self, x):\n    return x${' + x'.repeat(10_000)}\n`;
  plant('operator-chain', await replaceEntry(good, '.py', Buffer.from(chain)), /more than 1000 operators in one expression/);
  // BINUNICODE8 declaring 4 GiB in a 1 MB file: libtorch allocated it before reading.
  const huge = Buffer.alloc(16);
  huge.set([0x80, 0x02, 0x8d]);
  huge.writeBigUInt64LE(4n << 30n, 3);
  plant('huge-string', await replaceEntry(good, '/data.pkl', huge), /length 4294967296 exceeds the stream/);
  // Lists nested 10^6 deep through MARK/APPENDS: libtorch read them and crashed freeing them.
  const deep = Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.from(']('.repeat(999_000), 'latin1'), Buffer.from([0x5d]), Buffer.alloc(999_000, 0x65), Buffer.from([0x2e])]);
  plant('deep-lists', await replaceEntry(good, '/data.pkl', deep), /nests values more than 1000 levels deep/);
  const evil = Buffer.from('\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R.', 'latin1');
  plant('malicious-pickle', await replaceEntry(good, '/data.pkl', evil), /names the Python global os\.system/);
  // One flipped bit in a weight, CRC left as it was.
  const flipped = Buffer.from(good);
  flipped[Math.floor(flipped.length / 2)]! ^= 0x10;
  plant('bit-flip', flipped, /entry \S+ is corrupt \(CRC-32/);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('model files checked before libtorch', () => {
  it('the untouched tiny model still loads and runs (path and bytes)', async () => {
    for (const source of [path.join(dir, 'tiny.pt'), good]) {
      const m = await Model.load(source);
      try {
        const out = expectTensor(await m.forward(tensor(new Float32Array(3 * 224 * 224), [1, 3, 224, 224])));
        expect(out.shape).toEqual([1, 2]);
        expect([...(out.data as Float32Array)].every(Number.isFinite)).toBe(true);
      } finally {
        await m.dispose();
      }
    }
  });

  it('refuses each crash recipe with MODEL_LOAD_FAILED saying what is wrong (path and bytes)', async () => {
    expect(Object.keys(files)).toHaveLength(8);
    for (const [name, { file, message }] of Object.entries(files)) {
      const err = await expectDfdetError(Model.load(file), 'MODEL_LOAD_FAILED', message);
      expect(err.message, name).not.toMatch(/newer libtorch/);
      await expectDfdetError(Model.load(fs.readFileSync(file)), 'MODEL_LOAD_FAILED', message);
    }
  });

  it('a FIFO or a folder given as a model or a checkpoint fails at once (opening a FIFO waited for a writer)', async () => {
    const fifo = path.join(dir, 'model-fifo.pt');
    execFileSync('mkfifo', [fifo]);
    await expectDfdetError(Model.load(fifo), 'MODEL_LOAD_FAILED', /Expected a regular file for .*model-fifo\.pt but it is a FIFO/);
    await expectDfdetError(Model.load(dir), 'MODEL_LOAD_FAILED', /but it is a directory/);
    await expectDfdetError(convertModel(fifo, path.join(dir, 'from-fifo.pt')), 'BAD_FORMAT', /but it is a FIFO/);
    await ensureBuilt();
    const r = await dfdet(['info', fifo]);
    expect(r.signal).toBeNull();
    expect(r.code, r.stderr).toBe(2);
    expect(fs.lstatSync(fifo).isFIFO()).toBe(true);
  });

  it('a NaN weight fails the load with BAD_WEIGHTS naming the tensor', async () => {
    const file = path.join(dir, 'nan.pt');
    const spec = (v: number) => ({
      className: 'NanBias',
      source: 'def forward(self, x):\n    return x + self.bias\n',
      parameters: { bias: tensor(new Float32Array([0, v]), [2]) },
      submodules: { head: { className: 'Head', source: '', buffers: { scale: tensor(new Float32Array([1, 1]), [2]) } } },
    });
    await buildModule(spec(Number.NaN), file);
    await expectDfdetError(Model.load(file), 'BAD_WEIGHTS', /weight 'bias' holds NaN or infinite values/);
    await buildModule(spec(Number.POSITIVE_INFINITY), file);
    await expectDfdetError(Model.load(file), 'BAD_WEIGHTS', /'bias'/);
  });

  it('`dfdet info` exits 2 with one message on every recipe, never by a signal', async () => {
    await ensureBuilt();
    for (const [name, { file, message }] of Object.entries(files)) {
      const r = await dfdet(['info', file]);
      expect(r.signal, name).toBeNull();
      expect(r.code, `${name}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
  });
});

describe('codeProblem', () => {
  it('accepts real generated code and bounds nesting, unary runs and operator chains', async () => {
    const code = (await readZip(good)).find((e) => e.name.endsWith('.py'))!;
    expect(codeProblem(Buffer.from(code.data).toString('utf8'))).toBeUndefined();
    const deep = MAX_CODE_NESTING + 1;
    expect(codeProblem(`x = ${'['.repeat(deep)}${']'.repeat(deep)}`)).toMatch(/brackets nested/);
    expect(codeProblem(`x = ${'('.repeat(deep - 2)}1${')'.repeat(deep - 2)}`)).toBeUndefined();
    expect(codeProblem(`x = ${'- '.repeat(deep)}1`)).toMatch(/unary operators/);
    expect(codeProblem(`x = ${'not '.repeat(deep)}y`)).toMatch(/unary operators/);
    // 10,000 chained `+` crashed libtorch: a chain is an equally deep tree.
    expect(codeProblem(`x = a${' + a'.repeat(MAX_CODE_OPERATORS)}`)).toMatch(/operators in one expression/);
    expect(codeProblem(`x = a${' and a'.repeat(MAX_CODE_OPERATORS)}`)).toMatch(/operators in one expression/);
    expect(codeProblem(`x = a${' ** a'.repeat(MAX_CODE_OPERATORS - 1)}`)).toBeUndefined();
    // Flat lists of negative numbers are not chains, and `->` / `==` are single operators.
    expect(codeProblem(`def f(x) -> List[int]:\n  return [${'-1, '.repeat(5000)}-1] == x`)).toBeUndefined();
    expect(codeProblem(`x = "${'('.repeat(1000)}"  # ${'['.repeat(1000)}\ny = 1 - -2`)).toBeUndefined();
    const indented = Array.from({ length: deep + 1 }, (_, i) => `${' '.repeat(i)}if x:`).join('\n');
    expect(codeProblem(indented)).toMatch(/indentation nested/);
  });
});
