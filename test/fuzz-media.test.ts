/**
 * Seeded fuzzing of the media path: mutations and truncations of real images and videos (made
 * here with sharp and ffmpeg) go through the same steps as detect() (resolveInput, then decodeImage
 * or sampleFrames), as bytes, as streams and as files. Every call must settle within a bound, and
 * every failure must be a DfdetError with a code: no crash, no hang, no raw error.
 *
 * Cases: a few hundred by default (under a minute); `DFDET_FUZZ_CASES` sets the number
 * (`npm run fuzz`), `DFDET_FUZZ_SEED` the seed. Counts per outcome are printed.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Readable } from 'node:stream';
import sharp from 'sharp';
import { isDfdetError } from '../lib/errors';
import { resolveInput, type DetectInput } from '../lib/inputs';
import { decodeImage } from '../lib/media/image';
import { sampleFrames } from '../lib/media/video';
import { rng } from './helpers/random';
import { haveFfmpeg } from './helpers/ffmpeg';

const CASES = Number(process.env.DFDET_FUZZ_CASES) > 0 ? Math.floor(Number(process.env.DFDET_FUZZ_CASES)) : 200;
const SEED = Number(process.env.DFDET_FUZZ_SEED) || 20261201;
/** A call that has not settled after this long counts as a hang (the decoders' own timeouts are far lower). */
const HANG_MS = 30_000;
if (!haveFfmpeg) {
  if (process.env.CI) throw new Error('ffmpeg/ffprobe are required in CI for test/fuzz-media.test.ts');
  console.warn('SKIPPING the video part of the media fuzz test: ffmpeg/ffprobe not found on PATH');
}

/** Messages that leave the user guessing (issue 15's list): they must be explained when they occur. */
const UNCLEAR = /^[^(]*(Warning treated as error|Error marking filters as finished|Device or resource busy)|corrupt header:\s*$/;

interface Seed {
  name: string;
  bytes: Buffer;
}

let dir: string;
const seeds: Seed[] = [];

function ffmpegFile(name: string, args: string[]): void {
  const file = path.join(dir, name);
  const r = spawnSync('ffmpeg', ['-hide_banner', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=s=32x24:r=10:d=1', ...args, file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ffmpeg ${name} failed: ${r.stderr}`);
  seeds.push({ name, bytes: fs.readFileSync(file) });
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-fuzz-media-'));
  const base = sharp({ create: { width: 40, height: 30, channels: 3, background: '#3a7' } }).composite([
    { input: Buffer.from('<svg width="20" height="10"><rect width="20" height="10" fill="#f0f"/></svg>'), left: 5, top: 5 },
  ]);
  const raw = await base.clone().raw().toBuffer();
  const img = (): sharp.Sharp => sharp(raw, { raw: { width: 40, height: 30, channels: 3 } });
  seeds.push({ name: 'a.jpg', bytes: await img().jpeg().toBuffer() });
  seeds.push({ name: 'a.png', bytes: await img().png().toBuffer() });
  seeds.push({ name: 'a.webp', bytes: await img().webp().toBuffer() });
  seeds.push({ name: 'a.tif', bytes: await img().tiff().toBuffer() });
  seeds.push({ name: 'a.gif', bytes: await img().gif().toBuffer() });
  seeds.push({ name: 'a.avif', bytes: await img().avif({ effort: 0 }).toBuffer() });
  if (haveFfmpeg) {
    ffmpegFile('v.mp4', ['-c:v', 'libx264', '-preset', 'ultrafast']);
    ffmpegFile('v.mkv', ['-c:v', 'libx264', '-preset', 'ultrafast']);
    ffmpegFile('v.webm', ['-c:v', 'libvpx', '-b:v', '100k']);
    ffmpegFile('v.avi', ['-c:v', 'mjpeg']);
    ffmpegFile('v.ts', ['-c:v', 'mpeg2video']);
    ffmpegFile('v.y4m', ['-pix_fmt', 'yuv420p']);
  }
}, 120_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

type Rand = () => number;
const int = (r: Rand, n: number): number => Math.floor(r() * n);

/** One malformed variant of `b`: flips, overwrites, truncations, cut/duplicated ranges, foreign headers. */
function mutate(r: Rand, b: Buffer): { bytes: Buffer; how: string } {
  const out = Buffer.from(b);
  switch (int(r, 8)) {
    case 0: {
      const n = 1 + int(r, 8);
      for (let i = 0; i < n; i++) out[int(r, out.length)] ^= 1 << int(r, 8);
      return { bytes: out, how: `flip ${n} bits` };
    }
    case 1: {
      const n = 1 + int(r, 32);
      for (let i = 0; i < n; i++) out[int(r, out.length)] = int(r, 256);
      return { bytes: out, how: `set ${n} bytes` };
    }
    case 2: {
      const at = int(r, out.length);
      return { bytes: out.subarray(0, at), how: `truncate at ${at}` };
    }
    case 3: {
      // The header region, where sizes and counts live.
      const n = 1 + int(r, 6);
      for (let i = 0; i < n; i++) out[int(r, Math.min(out.length, 64))] = [0, 0xff, 0x7f, 0x80][int(r, 4)]!;
      return { bytes: out, how: `header bytes x${n}` };
    }
    case 4: {
      const a = int(r, out.length);
      const len = 1 + int(r, Math.min(4096, out.length - a));
      return { bytes: Buffer.concat([out.subarray(0, a), out.subarray(a + len)]), how: `cut ${len} at ${a}` };
    }
    case 5: {
      const a = int(r, out.length);
      const len = 1 + int(r, Math.min(4096, out.length - a));
      return { bytes: Buffer.concat([out.subarray(0, a + len), out.subarray(a, a + len), out.subarray(a + len)]), how: `dup ${len} at ${a}` };
    }
    case 6: {
      // A huge declared size in a 16/32-bit field near the start.
      const at = 4 + int(r, Math.max(1, Math.min(out.length, 48) - 8));
      if (r() < 0.5) out.writeUInt16BE(0xffff, at);
      else out.writeUInt32LE(0x7fffffff, at);
      return { bytes: out, how: `big field at ${at}` };
    }
    default: {
      const foreign = ['#EXTM3U\n#EXTINF:1,\n/etc/passwd\n', 'ffconcat version 1.0\nfile /etc/hostname\n', '<svg xmlns="http://www.w3.org/2000/svg"><image href="/etc/passwd"/></svg>', ''][int(r, 4)]!;
      return { bytes: Buffer.concat([Buffer.from(foreign), out.subarray(int(r, 16))]), how: `foreign head ${JSON.stringify(foreign.slice(0, 8))}` };
    }
  }
}

/** The input as detect() gets it: bytes, a stream in pieces, or a file named like its seed. */
function asInput(r: Rand, bytes: Buffer, seed: Seed, i: number): { input: DetectInput; via: string } {
  const v = int(r, 3);
  if (v === 0) return { input: { data: bytes, name: `case${i}-${seed.name}` }, via: 'bytes' };
  if (v === 1) {
    const pieces: Buffer[] = [];
    for (let o = 0; o < bytes.length; ) {
      const n = 1 + int(r, 8192);
      pieces.push(bytes.subarray(o, o + n));
      o += n;
    }
    return { input: { data: Readable.from(pieces), name: `case${i}-${seed.name}` }, via: 'stream' };
  }
  const file = path.join(dir, `case${i}-${seed.name}`);
  fs.writeFileSync(file, bytes);
  return { input: file, via: 'file' };
}

/** What detect() does before scoring: resolve, then decode by kind. */
async function decode(input: DetectInput): Promise<void> {
  for (const s of await resolveInput(input)) {
    const src = s.path ?? s.bytes ?? s.stream!;
    if (s.kind === 'video') await sampleFrames(src, { name: s.name, timeoutMs: 20_000, strategy: { kind: 'uniform', count: 4 } });
    else await decodeImage(src, { name: s.name });
  }
}

function settleWithin<T>(p: Promise<T>, ms: number): Promise<{ value?: T; error?: unknown; hung?: boolean }> {
  let timer: NodeJS.Timeout;
  const hang = new Promise<{ hung: true }>((resolve) => {
    timer = setTimeout(() => resolve({ hung: true }), ms);
  });
  return Promise.race([p.then((value) => ({ value }), (error: unknown) => ({ error })), hang]).finally(() => clearTimeout(timer));
}

describe('media fuzz', () => {
  it(`${CASES} malformed images and videos (seed ${SEED}) end in a result or a typed error`, async () => {
    const r = rng(SEED);
    const counts = new Map<string, number>();
    const bad: string[] = [];
    const pool = seeds.filter((s) => haveFfmpeg || !s.name.startsWith('v.'));
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < CASES; i = next++) {
        const seed = pool[int(r, pool.length)]!;
        const m = mutate(r, seed.bytes);
        const { input, via } = asInput(r, m.bytes, seed, i);
        const what = `case ${i}: ${seed.name} ${m.how} via ${via}`;
        const res = await settleWithin(decode(input), HANG_MS);
        let outcome: string;
        if (res.hung) {
          outcome = 'HANG';
          bad.push(`${what}: did not settle within ${HANG_MS} ms`);
        } else if (res.error === undefined) outcome = 'ok';
        else if (isDfdetError(res.error)) {
          outcome = res.error.code;
          if (process.env.DFDET_FUZZ_VERBOSE) console.log(`MSG ${res.error.code} ${res.error.message.replace(/case\d+-/, '').split('\n')[0]}`);
          const msg = res.error.message;
          if (via !== 'file' && /dfdet-video-|<buffer of|\/input\b/.test(msg)) bad.push(`${what}: message leaks a temp path: ${msg}`);
          if (!msg.includes(`case${i}-${seed.name}`)) bad.push(`${what}: message does not name the input: ${msg}`);
          if (UNCLEAR.test(msg)) bad.push(`${what}: message does not say what is wrong: ${msg}`);
        } else {
          outcome = 'RAW ERROR';
          bad.push(`${what}: ${String((res.error as Error)?.stack ?? res.error)}`);
        }
        counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
        if (via === 'file') fs.rmSync(input as string, { force: true });
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    const summary = [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}: ${v}`).join(', ');
    console.log(`media fuzz, ${CASES} cases, seed ${SEED}: ${summary}`);
    expect(bad, bad.slice(0, 10).join('\n')).toEqual([]);
    expect([...counts.values()].reduce((a, b) => a + b, 0)).toBe(CASES);
    // Mutations that keep the file decodable exist, and so do refusals: the fuzz reaches both sides.
    expect(counts.get('ok') ?? 0).toBeGreaterThan(0);
    expect(counts.get('DECODE_FAILED') ?? 0).toBeGreaterThan(0);
  }, 600_000);
});
