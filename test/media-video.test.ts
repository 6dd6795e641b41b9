import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { probeVideo, sampleFrames, iterateFrames, uniformIndices, probeVideoBuffer } from '../lib/media/video';
import type { RgbImage } from '../lib/media/image';
import type { DfdetError, ErrorCode } from '../lib/errors';
import { expectDfdetError } from './helpers/errors';

const haveFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0 && spawnSync('ffprobe', ['-version']).status === 0;
if (!haveFfmpeg) {
  if (process.env.CI) throw new Error('ffmpeg/ffprobe are required in CI for test/media-video.test.ts');
  console.warn('SKIPPING video tests: ffmpeg/ffprobe not found on PATH');
}

let dir: string;
const BAR = 8;
const BITS = 10;

function ffmpeg(...args: string[]): void {
  const r = spawnSync('ffmpeg', ['-hide_banner', '-v', 'error', '-y', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ffmpeg ${args.join(' ')} failed: ${r.stderr}`);
}

/** A video whose frame n shows n in binary: bar k (8 px wide) is white when bit k of n is set. */
function bitsVideo(file: string, seconds: number, fps: number, extra: string[] = []): void {
  ffmpeg(
    '-f', 'lavfi',
    '-i', `color=c=black:s=${BAR * BITS}x32:r=${fps}:d=${seconds},format=gray,geq=lum='mod(floor(N/pow(2\\,floor(X/${BAR})))\\,2)*255',format=yuv420p`,
    '-c:v', 'libx264', '-crf', '10', ...extra, file,
  );
}

/** Read back the frame number drawn by {@link bitsVideo}. */
function frameNumber(img: RgbImage): number {
  let n = 0;
  for (let k = 0; k < BITS; k++) {
    const i = (16 * img.width + k * BAR + BAR / 2) * 3;
    if (img.data[i] > 128) n |= 1 << k;
  }
  return n;
}

/** Bad videos must be refused within 3 s by default (never hang). */
function expectCode(p: Promise<unknown>, code: ErrorCode, re?: RegExp, maxMs = 3000): Promise<DfdetError> {
  return expectDfdetError(p, code, re, maxMs);
}

/** ffmpeg processes (pids) whose command line mentions `needle`. Linux /proc only. */
function processesWith(needle: string): number[] {
  const pids: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (cmd.includes(needle) && cmd.includes('ffmpeg')) pids.push(Number(e));
    } catch {
      // process gone meanwhile
    }
  }
  return pids;
}

let bits: string;

beforeAll(() => {
  if (!haveFfmpeg) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-video-'));
  bits = path.join(dir, 'bits.mp4');
  bitsVideo(bits, 10, 25);
});

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('uniformIndices', () => {
  it('equals np.linspace(0, n - 1, count).astype(int)', () => {
    expect(uniformIndices(250, 7)).toEqual([0, 41, 83, 124, 166, 207, 249]);
    expect(uniformIndices(300, 32).length).toBe(32);
    expect(uniformIndices(300, 32)[31]).toBe(299);
    expect(uniformIndices(300, 32)[1]).toBe(9); // 299/31 = 9.645
    expect(uniformIndices(5, 32)).toEqual([0, 1, 2, 3, 4]);
    expect(uniformIndices(10, 1)).toEqual([0]);
    expect(uniformIndices(0, 4)).toEqual([]);
  });
});

describe.skipIf(!haveFfmpeg)('probeVideo', () => {
  it('reports size, fps, frame count, duration and codec', async () => {
    const p = await probeVideo(bits);
    expect(p).toMatchObject({ width: 80, height: 32, fps: 25, frameCount: 250, frameCountExact: true, codec: 'h264', rotation: 0 });
    expect(p.durationSec).toBeCloseTo(10, 1);
  });

  it('counts frames when the container stores no count (WebM)', async () => {
    const webm = path.join(dir, 'bits.webm');
    ffmpeg('-i', bits, '-c:v', 'libvpx-vp9', '-b:v', '300k', '-deadline', 'realtime', webm);
    const p = await probeVideo(webm);
    expect(p).toMatchObject({ frameCount: 250, frameCountExact: true, codec: 'vp9' });
  });

  it('swaps width and height of a 90°-rotated stream, as ffmpeg decodes it', async () => {
    const rot = path.join(dir, 'rot.mp4');
    ffmpeg('-i', bits, '-c', 'copy', '-metadata:s:v:0', 'rotate=90', rot);
    const p = await probeVideo(rot);
    expect(Math.abs(p.rotation)).toBe(90);
    expect([p.width, p.height]).toEqual([32, 80]);
    const r = await sampleFrames(rot, { strategy: { kind: 'uniform', count: 2 } });
    expect([r.frames[0].image.width, r.frames[0].image.height]).toEqual([32, 80]);
  });

  it('accepts a Buffer', async () => {
    const p = await probeVideoBuffer(fs.readFileSync(bits));
    expect(p.frameCount).toBe(250);
  });
});

describe.skipIf(!haveFfmpeg)('sampleFrames picks the promised frames', () => {
  it('uniform: linspace indices, right pixels and timestamps', async () => {
    const r = await sampleFrames(bits, { strategy: { kind: 'uniform', count: 32 } });
    const want = uniformIndices(250, 32);
    expect(r.partial).toBe(false);
    expect(r.planned).toBe(32);
    expect(r.frames.map((f) => f.index)).toEqual(want);
    expect(r.frames.map((f) => frameNumber(f.image))).toEqual(want);
    for (const f of r.frames) {
      expect(f.timestampSec).toBeCloseTo(f.index / 25, 6);
      expect(f.image.data.length).toBe(80 * 32 * 3);
    }
  });

  it('uniform with more frames than the video: every frame once', async () => {
    const short = path.join(dir, 'short.mp4');
    bitsVideo(short, 0.4, 25);
    const r = await sampleFrames(short, { strategy: { kind: 'uniform', count: 32 } });
    expect(r.frames.map((f) => frameNumber(f.image))).toEqual([...Array(10).keys()]);
    expect(r.partial).toBe(false);
  });

  it('every k', async () => {
    const r = await sampleFrames(bits, { strategy: { kind: 'every', k: 40 } });
    expect(r.frames.map((f) => frameNumber(f.image))).toEqual([0, 40, 80, 120, 160, 200, 240]);
    expect(r.frames.map((f) => f.index)).toEqual([0, 40, 80, 120, 160, 200, 240]);
    expect(r.partial).toBe(false);
  });

  it('fps: first frame of each 1/fps interval', async () => {
    const r = await sampleFrames(bits, { strategy: { kind: 'fps', fps: 1.5 } });
    // frame n is at n/25 s; interval k starts at k/1.5 s -> first frame ceil(25k/1.5)
    const want = Array.from({ length: 15 }, (_, k) => Math.max(0, Math.ceil((25 * k) / 1.5 - 1e-9)));
    expect(r.frames.map((f) => frameNumber(f.image))).toEqual(want);
    expect(r.frames.map((f) => f.index)).toEqual(want);
    for (const f of r.frames) expect(f.timestampSec).toBeCloseTo(f.index / 25, 6);
  });

  it('fps above the frame rate gives each frame once (no duplicates)', async () => {
    const short = path.join(dir, 'short2.mp4');
    bitsVideo(short, 0.4, 25);
    const r = await sampleFrames(short, { strategy: { kind: 'fps', fps: 100 } });
    expect(r.frames.map((f) => frameNumber(f.image))).toEqual([...Array(10).keys()]);
  });

  it('maxFrames caps the output', async () => {
    const r = await sampleFrames(bits, { strategy: { kind: 'every', k: 1 }, maxFrames: 5 });
    expect(r.frames.map((f) => frameNumber(f.image))).toEqual([0, 1, 2, 3, 4]);
    expect(r.partial).toBe(false);
  });

  it('Buffer input (via a temporary file) gives the same frames', async () => {
    const r = await sampleFrames(fs.readFileSync(bits), { strategy: { kind: 'uniform', count: 4 } });
    expect(r.frames.map((f) => frameNumber(f.image))).toEqual([0, 83, 166, 249]);
  });

  it('iterateFrames streams frames and stops ffmpeg on break', async () => {
    const got: number[] = [];
    for await (const f of iterateFrames(bits, { strategy: { kind: 'every', k: 1 } })) {
      got.push(frameNumber(f.image));
      if (got.length === 3) break;
    }
    expect(got).toEqual([0, 1, 2]);
    expect(processesWith(bits)).toEqual([]);
  });
});

describe.skipIf(!haveFfmpeg)('bad videos fail fast with typed errors', () => {
  it('truncated mp4 (index at the end): DECODE_FAILED', async () => {
    const buf = fs.readFileSync(bits);
    const cut = path.join(dir, 'cut.mp4');
    fs.writeFileSync(cut, buf.subarray(0, buf.length >> 1));
    await expectCode(sampleFrames(cut), 'DECODE_FAILED', /moov atom not found|Could not read video/);
  });

  it('truncated mp4 (index first): the frames before the cut, flagged partial', async () => {
    const fast = path.join(dir, 'fast.mp4');
    bitsVideo(fast, 10, 25, ['-movflags', '+faststart']);
    const buf = fs.readFileSync(fast);
    const cut = path.join(dir, 'fastcut.mp4');
    fs.writeFileSync(cut, buf.subarray(0, buf.length >> 1));
    const r = await sampleFrames(cut, { strategy: { kind: 'uniform', count: 32 } });
    expect(r.partial).toBe(true);
    expect(r.frames.length).toBeGreaterThan(0);
    expect(r.frames.length).toBeLessThan(32);
    // The frames delivered are the right ones.
    expect(r.frames.map((f) => frameNumber(f.image))).toEqual(uniformIndices(250, 32).slice(0, r.frames.length));
  });

  it('random bytes named .mp4: DECODE_FAILED', async () => {
    const f = path.join(dir, 'random.mp4');
    const b = Buffer.alloc(64 * 1024);
    for (let i = 0; i < b.length; i++) b[i] = (i * 2654435761) >>> 24;
    fs.writeFileSync(f, b);
    await expectCode(sampleFrames(f), 'DECODE_FAILED', /Could not read video/);
  });

  it('audio-only file: DECODE_FAILED "No video stream"', async () => {
    const f = path.join(dir, 'sine.m4a');
    ffmpeg('-f', 'lavfi', '-i', 'sine=d=2', f);
    await expectCode(probeVideo(f), 'DECODE_FAILED', /No video stream .*streams: audio/);
    await expectCode(sampleFrames(f), 'DECODE_FAILED', /No video stream/);
  });

  it('zero-byte file and empty Buffer: DECODE_FAILED; missing file: NOT_FOUND', async () => {
    const f = path.join(dir, 'empty.mp4');
    fs.writeFileSync(f, '');
    await expectCode(sampleFrames(f), 'DECODE_FAILED', /empty/);
    await expectCode(sampleFrames(Buffer.alloc(0)), 'DECODE_FAILED', /empty/);
    await expectCode(sampleFrames(path.join(dir, 'missing.mp4')), 'NOT_FOUND', /not found/);
  });

  it('frames over maxPixels: DECODE_FAILED', async () => {
    await expectCode(sampleFrames(bits, { maxPixels: 1000 }), 'DECODE_FAILED', /80x32 = 2560 pixels per frame, over the limit of 1000/);
  });

  it('abort mid-decode kills ffmpeg', async () => {
    const big = path.join(dir, 'big.mp4');
    ffmpeg('-f', 'lavfi', '-i', 'testsrc2=s=320x240:r=25:d=30', '-c:v', 'libx264', '-preset', 'ultrafast', big);
    const ac = new AbortController();
    const it = iterateFrames(big, { strategy: { kind: 'every', k: 1 }, signal: ac.signal });
    await it.next(); // ffmpeg is running and has delivered a frame
    expect(processesWith(big).length).toBe(1);
    ac.abort();
    await expectCode(it.next(), 'ABORTED', /aborted/);
    expect(processesWith(big)).toEqual([]);
    // Already aborted before start.
    await expectCode(sampleFrames(big, { signal: ac.signal }), 'ABORTED');
  });

  it('timeout kills ffmpeg', async () => {
    const big = path.join(dir, 'big.mp4');
    const p = await probeVideo(big);
    await expectCode(sampleFrames(big, { strategy: { kind: 'every', k: 1 }, timeoutMs: 300, probe: p }), 'TIMEOUT', /timed out after 300 ms/);
    expect(processesWith(big)).toEqual([]);
  });

  it('missing ffmpeg/ffprobe: UNSUPPORTED with an install hint', async () => {
    const old = process.env.DFDET_FFPROBE;
    process.env.DFDET_FFPROBE = path.join(dir, 'no-such-ffprobe');
    try {
      await expectCode(probeVideo(bits), 'UNSUPPORTED', /apt-get install ffmpeg.*DFDET_FFPROBE/);
    } finally {
      if (old === undefined) delete process.env.DFDET_FFPROBE;
      else process.env.DFDET_FFPROBE = old;
    }
    const probe = await probeVideo(bits);
    const oldF = process.env.DFDET_FFMPEG;
    process.env.DFDET_FFMPEG = path.join(dir, 'no-such-ffmpeg');
    try {
      await expectCode(sampleFrames(bits, { probe }), 'UNSUPPORTED', /no-such-ffmpeg was not found.*apt-get install ffmpeg.*DFDET_FFMPEG/);
    } finally {
      if (oldF === undefined) delete process.env.DFDET_FFMPEG;
      else process.env.DFDET_FFMPEG = oldF;
    }
  });

  it('validates options with BAD_INPUT', async () => {
    await expectCode(sampleFrames(bits, { strategy: { kind: 'uniform', count: 0 } }), 'BAD_INPUT', /strategy.count/);
    await expectCode(sampleFrames(bits, { strategy: { kind: 'fps', fps: -1 } }), 'BAD_INPUT', /strategy.fps/);
    await expectCode(sampleFrames(bits, { strategy: { kind: 'nope' } as never }), 'BAD_INPUT', /strategy.kind/);
    await expectCode(sampleFrames(bits, { timeoutMs: 0 }), 'BAD_INPUT', /timeoutMs/);
    await expectCode(sampleFrames(42 as never), 'BAD_INPUT', /for input/);
  });
});
