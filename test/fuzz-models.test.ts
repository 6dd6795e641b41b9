/**
 * Seeded fuzzing of model files (issue 15): bit flips, truncations and entry mutations (behind a
 * valid ZIP layer) of a real tiny TorchScript detector, of a Lightning-style .ckpt and of a GenD
 * safetensors file, plus malicious pickles. Every case runs in a child process (a SIGSEGV there is
 * a failure here, not the end of the run): loads go through Model.load, checkpoints through
 * convertModel and then Model.load; every model that loads runs forward once.
 *
 * Asserts: no crash, no hang, no silent score (every failure is a DfdetError with a code, every
 * success gives finite outputs). `DFDET_FUZZ_CASES=3000 npx vitest run test/fuzz-models` (or
 * `npm run fuzz`) runs more; the default is a few hundred.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { expectedShapes, resolveArch } from '../lib/detector-model/arch';
import { initModel, randomWeights } from '../lib/detector-model/init';
import { encodeSafetensors, type SafetensorsInput } from '../lib/formats/safetensors';
import { lightningCheckpoint, type CkptTensor } from './helpers/ckpt';
import { ensureBuilt } from './helpers/cli';
import { rng } from './helpers/random';
import { readZip, replaceEntry } from './helpers/zip';

const CASES = Number(process.env.DFDET_FUZZ_CASES) || 300;
const SEED = Number(process.env.DFDET_FUZZ_SEED) || 15;
/** A case that gives no answer for this long is a hang (generous: the machine may be busy). */
const HANG_MS = 120_000;

interface Base {
  name: 'pt' | 'ckpt' | 'safetensors';
  bytes: Buffer;
  op: 'load' | 'convert';
}

let dir: string;
const bases: Record<Base['name'], Base> = {} as never;

beforeAll(async () => {
  await ensureBuilt();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-fuzz-models-'));
  const pt = path.join(dir, 'tiny.pt');
  await initModel({ arch: 'tiny', seed: 5, output: pt });
  bases.pt = { name: 'pt', bytes: fs.readFileSync(pt), op: 'load' };
  const arch = resolveArch('tiny');
  const shapes = expectedShapes(arch);
  const weights = randomWeights(arch, 5);
  const keyOf = (k: string): string => (k.startsWith('head.') ? `model.linear.${k.slice(5)}` : `feature_extractor.vision_model.${k}`);
  const ckpt = new Map<string, CkptTensor>();
  const st: Record<string, SafetensorsInput> = {};
  for (const [k, data] of weights) {
    ckpt.set(keyOf(k), { shape: shapes.get(k)!, data });
    st[keyOf(k)] = { dtype: 'float32', shape: shapes.get(k)!, data };
  }
  bases.ckpt = { name: 'ckpt', bytes: lightningCheckpoint(ckpt, 'LinearNorm'), op: 'convert' };
  bases.safetensors = { name: 'safetensors', bytes: encodeSafetensors(st), op: 'convert' };
}, 120_000);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Pickles that tried to run code, crash libtorch's unpickler, or blow up memory. */
function maliciousPickles(r: () => number): Buffer[] {
  const u64 = Buffer.alloc(8);
  u64.writeBigUInt64LE(4n << 30n);
  const storage = (numel: number, offset: number, size: number) => {
    const n = Buffer.alloc(4);
    n.writeInt32LE(numel);
    const o = Buffer.alloc(4);
    o.writeInt32LE(offset);
    const s = Buffer.alloc(4);
    s.writeInt32LE(size);
    return Buffer.concat([
      Buffer.from('\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ', 'latin1'),
      n,
      Buffer.from('tQJ', 'latin1'),
      o,
      Buffer.from('J', 'latin1'),
      s,
      Buffer.from('\x85K\x01\x85\x89tR.', 'latin1'),
    ]);
  };
  const soup = (): Buffer => {
    const ops = [0x28, 0x29, 0x4e, 0x5d, 0x7d, 0x61, 0x65, 0x73, 0x75, 0x74, 0x85, 0x86, 0x87, 0x52, 0x81, 0x62, 0x51, 0x32, 0x30, 0x31, 0x94, 0x88, 0x89];
    const parts: number[] = [0x80, 0x02];
    const n = 5 + Math.floor(r() * 200);
    for (let i = 0; i < n; i++) {
      const x = r();
      if (x < 0.1) parts.push(0x4b, Math.floor(r() * 256));
      else if (x < 0.15) parts.push(0x68, Math.floor(r() * 4));
      else if (x < 0.2) parts.push(...Buffer.from('ctorch._utils\n_rebuild_tensor_v2\n', 'latin1'));
      else if (x < 0.23) parts.push(...Buffer.from('c__torch__.dfdet\nClipVitDetector\n', 'latin1'));
      else if (x < 0.26) parts.push(0x8c, 1, 0x30 + Math.floor(r() * 3));
      else parts.push(ops[Math.floor(r() * ops.length)]!);
    }
    parts.push(0x2e);
    return Buffer.from(parts);
  };
  return [
    Buffer.from('\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R.', 'latin1'),
    Buffer.from('\x80\x02cbuiltins\neval\nX\x07\x00\x00\x00print()\x85R.', 'latin1'),
    Buffer.from("cposix\nsystem\n(S'echo pwned'\ntR.", 'latin1'),
    Buffer.from([0x80, 0x02, 0x52, 0x2e]),
    Buffer.concat([Buffer.from([0x80, 0x02, 0x8d]), u64, Buffer.from('x.')]),
    Buffer.concat([Buffer.from([0x80, 0x02, 0x4e]), Buffer.alloc(200_000, 0x32), Buffer.from([0x2e])]),
    // Lists nested 100,000 deep (EMPTY_LIST x N, APPEND x N-1).
    Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.alloc(100_000, 0x5d), Buffer.alloc(99_999, 0x61), Buffer.from([0x2e])]),
    Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.alloc(100_000, 0x28), Buffer.from([0x4e]), Buffer.alloc(100_000, 0x6c), Buffer.from([0x2e])]),
    // Lists nested 500,000 deep through MARK/APPENDS, which libtorch does read: 10^6 levels crashed it.
    Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.from('](' .repeat(500_000), 'latin1'), Buffer.from([0x5d]), Buffer.alloc(500_000, 0x65), Buffer.from([0x2e])]),
    storage(1 << 30, 0, 1), // a storage of 2^30 floats in a 4-byte entry
    storage(1, 5, 1), // a view past its storage
    storage(1, 0, 1 << 30), // a view of 2^30 elements over one
    soup(),
    soup(),
  ];
}

function flipBits(b: Buffer, r: () => number, n: number, from = 0, to = b.length): Buffer {
  const out = Buffer.from(b);
  for (let i = 0; i < n; i++) out[from + Math.floor(r() * (to - from))]! ^= 1 << Math.floor(r() * 8);
  return out;
}

function mutateBytes(b: Uint8Array, r: () => number): Uint8Array {
  const out = Buffer.from(b);
  const x = r();
  if (x < 0.5) {
    for (let i = 0; i < 1 + Math.floor(r() * 4); i++) out[Math.floor(r() * out.length)] = Math.floor(r() * 256);
    return out;
  }
  const at = Math.floor(r() * out.length);
  if (x < 0.75) return Buffer.concat([out.subarray(0, at), out.subarray(Math.min(out.length, at + 1 + Math.floor(r() * 64)))]);
  const y = r();
  const junk =
    y < 0.4
      ? Buffer.alloc(1 + Math.floor(r() * 5000), '([{-'[Math.floor(r() * 4)]!)
      : y < 0.6
        ? Buffer.from(' + x'.repeat(1 + Math.floor(r() * 12_000)))
        : Buffer.from(Array.from({ length: 1 + Math.floor(r() * 16) }, () => Math.floor(r() * 256)));
  return Buffer.concat([out.subarray(0, at), junk, out.subarray(at)]);
}

interface Case {
  kind: string;
  base: Base;
  bytes: Buffer;
}

/** The i-th case (deterministic in the seed). */
async function makeCase(i: number, r: () => number, evil: Buffer[]): Promise<Case> {
  const names = ['pt', 'pt', 'pt', 'pt', 'ckpt', 'ckpt', 'safetensors'] as const;
  const base = bases[names[Math.floor(r() * names.length)]!];
  const b = base.bytes;
  if (i % 50 === 0) return { kind: 'control', base, bytes: b };
  const x = r();
  if (base.name === 'safetensors') {
    // No checksum in safetensors: a flipped weight bit is a different valid file. Fuzz the header and the length.
    const headerEnd = 8 + Number(b.readBigUInt64LE(0));
    if (x < 0.5) return { kind: 'header-flip', base, bytes: flipBits(b, r, 1 + Math.floor(r() * 8), 0, headerEnd) };
    if (x < 0.8) return { kind: 'truncate', base, bytes: b.subarray(0, Math.floor(r() * b.length)) };
    return { kind: 'append', base, bytes: Buffer.concat([b, Buffer.alloc(1 + Math.floor(r() * 64), 0xab)]) };
  }
  if (x < 0.35) return { kind: 'bit-flip', base, bytes: flipBits(b, r, 1 + Math.floor(r() * 8)) };
  if (x < 0.45) return { kind: 'truncate', base, bytes: b.subarray(0, Math.floor(r() * b.length)) };
  if (x < 0.6) return { kind: 'malicious-pickle', base, bytes: await replaceEntry(b, '/data.pkl', evil[Math.floor(r() * evil.length)]!) };
  // An entry mutated behind correct CRCs: the checks past the ZIP layer must hold on their own.
  const entries = (await readZip(b)).map((e) => e.name);
  const storages = entries.filter((e) => /\/data\/\d+$/.test(e));
  const others = entries.filter((e) => !storages.includes(e));
  if (r() < 0.4) {
    const pick = storages[Math.floor(r() * storages.length)]!;
    if (r() < 0.8) return { kind: 'storage-cut', base, bytes: await replaceEntry(b, pick, (old) => old.subarray(0, Math.floor(r() * old.length))) };
    return { kind: 'storage-grow', base, bytes: await replaceEntry(b, pick, (old) => Buffer.concat([old, Buffer.alloc(8)])) };
  }
  // Pickles and code most often: they are what libtorch parses.
  const target = r() < 0.3 ? others[Math.floor(r() * others.length)]! : (others.find((e) => e.endsWith(r() < 0.5 ? '/data.pkl' : '.py')) ?? others[0]!);
  return { kind: `entry-mutation:${target.split('/').pop()}`, base, bytes: await replaceEntry(b, target, (old) => mutateBytes(old, r)) };
}

interface Outcome {
  outcome: 'ok' | 'error' | 'untyped' | 'nonfinite' | 'crash' | 'hang';
  code?: string;
  message?: string;
}

/** One child process at a time; a crashed or hung one is replaced for the next case. */
class ChildRunner {
  private child: ChildProcess | undefined;
  private lines: readline.Interface | undefined;
  private waiting: ((o: Outcome) => void) | undefined;
  private running: number | undefined;

  private spawnChild(): ChildProcess {
    const child = spawn(process.execPath, [path.join(__dirname, 'helpers', 'fuzz-models-child.cjs')], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, OMP_NUM_THREADS: '1' },
    });
    child.stderr!.resume();
    child.stdin!.on('error', () => undefined);
    this.lines = readline.createInterface({ input: child.stdout! });
    this.lines.on('line', (line) => {
      const msg = JSON.parse(line) as { i: number; start?: boolean } & Outcome;
      if (msg.start) this.running = msg.i;
      else this.settle({ outcome: msg.outcome, code: msg.code, message: msg.message });
    });
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      this.settle({ outcome: 'crash', message: `child exited with ${signal ?? `code ${code}`} during case ${this.running}` });
    });
    return child;
  }

  private settle(o: Outcome): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.(o);
  }

  run(i: number, file: string, op: Base['op']): Promise<Outcome> {
    this.child ??= this.spawnChild();
    const child = this.child;
    return new Promise<Outcome>((resolve) => {
      const timer = setTimeout(() => {
        this.settle({ outcome: 'hang', message: `no answer within ${HANG_MS} ms` });
        if (this.child === child) this.child = undefined;
        child.kill('SIGKILL');
      }, HANG_MS);
      this.waiting = (o) => {
        clearTimeout(timer);
        resolve(o);
      };
      child.stdin!.write(`${JSON.stringify({ i, file, op })}\n`);
    });
  }

  close(): void {
    const c = this.child;
    this.child = undefined;
    c?.stdin!.end();
  }
}

describe('model file fuzzing', () => {
  it(`${CASES} seeded cases: no crash, no hang, no silent score`, async () => {
    const r = rng(SEED);
    const evil = maliciousPickles(r);
    const runner = new ChildRunner();
    const counts = new Map<string, number>();
    const failures: string[] = [];
    let controls = 0;
    try {
      for (let i = 0; i < CASES; i++) {
        const c = await makeCase(i, r, evil);
        const file = path.join(dir, `case-${i}.${c.base.name}`);
        fs.writeFileSync(file, c.bytes);
        const o = await runner.run(i, file, c.base.op);
        fs.rmSync(file, { force: true });
        const key = `${c.base.name} ${c.kind}: ${o.outcome === 'error' ? o.code : o.outcome}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
        if (c.kind === 'control') {
          controls++;
          if (o.outcome !== 'ok') failures.push(`case ${i} (unchanged ${c.base.name}) did not load: ${o.code ?? o.outcome} ${o.message ?? ''}`);
        } else if (!(o.outcome === 'ok' || (o.outcome === 'error' && o.code))) {
          failures.push(`case ${i} (${c.base.name} ${c.kind}): ${o.outcome} ${o.message ?? ''}`);
        }
      }
    } finally {
      runner.close();
    }
    const table = [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `  ${String(n).padStart(5)}  ${k}`);
    console.log(`model fuzzing, seed ${SEED}, ${CASES} cases:\n${table.join('\n')}`);
    expect(failures).toEqual([]);
    expect(controls).toBeGreaterThan(0);
  }, 3_600_000);
});
