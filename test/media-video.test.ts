import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { probeVideo, sampleFrames, iterateFrames } from '../lib/media/video';
import { makePlan } from '../lib/media/video/plan';
import type { RgbImage } from '../lib/media/image';
import type { DfdetError, ErrorCode } from '../lib/errors';
import { expectDfdetError } from './helpers/errors';
import { ffmpeg, haveFfmpeg } from './helpers/ffmpeg';

if (!haveFfmpeg) {
  if (process.env.CI) throw new Error('ffmpeg/ffprobe are required in CI for test/media-video.test.ts');
  console.warn('SKIPPING video tests: ffmpeg/ffprobe not found on PATH');
}

let dir: string;
const BAR = 8;
const BITS = 10;

/** A video whose frame n shows n in binary: bar k (8 px wide) is white when bit k of n is set. */
function bitsVideo(file: string, seconds: number, fps: number, extra: string[] = []): void {
  ffmpeg(
    '-f', 'lavfi',
    '-i', `color=c=black:s=${BAR * BITS}x32:r=${fps}:d=${seconds},format=gray,geq=lum='mod(floor(N/pow(2\\,floor(X/${BAR})))\\,2)*255',format=yuv420p`,
    '-c:v', 'libx264', '-crf', '10', ...extra, file,
  );
}

/** Read back the frame number drawn by {@link bitsVideo} (the bars may have been scaled to any frame size). */
function frameNumber(img: RgbImage): number {
  let n = 0;
  for (let k = 0; k < BITS; k++) {
    const i = (Math.floor(img.height / 2) * img.width + Math.floor(((k + 0.5) * img.width) / BITS)) * 3;
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

/** The frame indices the `uniform` strategy plans (through the real plan). */
function uniformIndices(frameCount: number, count: number): number[] {
  return makePlan({ kind: 'uniform', count }, { frameCount, durationSec: 0, startTimeSec: 0 }, Infinity).indices!;
}

describe('uniform plan', () => {
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
    const p = await probeVideo(fs.readFileSync(bits));
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

describe.skipIf(!haveFfmpeg)('streams that do not start at 0', () => {
  // MPEG-TS stores raw timestamps: here the video starts at 1.5 s + the muxer's own delay.
  let ts: string;
  beforeAll(() => {
    ts = path.join(dir, 'offset.ts');
    bitsVideo(ts, 4, 25, ['-output_ts_offset', '1.5', '-f', 'mpegts']);
  });

  it('the probe sees the non-zero start', async () => {
    const p = await probeVideo(ts);
    expect(p.startTimeSec).toBeGreaterThan(1.4);
    expect(p).toMatchObject({ frameCount: 100, frameCountExact: true, fps: 25 });
  });

  it('uniform: right frames, timestamps from the first frame', async () => {
    const r = await sampleFrames(ts, { strategy: { kind: 'uniform', count: 5 } });
    const want = uniformIndices(100, 5);
    expect(r.frames.map((f) => frameNumber(f.image))).toEqual(want);
    expect(r.frames.map((f) => f.index)).toEqual(want);
    for (const f of r.frames) expect(f.timestampSec).toBeCloseTo(f.index / 25, 6);
    expect(r.partial).toBe(false);
  });

  it('every k: right frames and timestamps', async () => {
    const r = await sampleFrames(ts, { strategy: { kind: 'every', k: 20 } });
    expect(r.frames.map((f) => frameNumber(f.image))).toEqual([0, 20, 40, 60, 80]);
    expect(r.frames.map((f) => f.index)).toEqual([0, 20, 40, 60, 80]);
    for (const f of r.frames) expect(f.timestampSec).toBeCloseTo(f.index / 25, 6);
  });

  it('fps: buckets and indices measured from the first frame', async () => {
    const r = await sampleFrames(ts, { strategy: { kind: 'fps', fps: 1.5 } });
    const want = Array.from({ length: 6 }, (_, k) => Math.max(0, Math.ceil((25 * k) / 1.5 - 1e-9)));
    expect(r.frames.map((f) => frameNumber(f.image))).toEqual(want);
    expect(r.frames.map((f) => f.index)).toEqual(want);
    for (const f of r.frames) expect(f.timestampSec).toBeCloseTo(f.index / 25, 6);
  });

  it('audio that starts before the video: timestamps are relative to the video stream', async () => {
    const av = path.join(dir, 'late-video.ts');
    ffmpeg(
      '-itsoffset', '0.5',
      '-f', 'lavfi', '-i', `color=c=black:s=${BAR * BITS}x32:r=25:d=2,format=gray,geq=lum='mod(floor(N/pow(2\\,floor(X/${BAR})))\\,2)*255',format=yuv420p`,
      '-f', 'lavfi', '-i', 'sine=d=2.5',
      '-map', '0:v', '-map', '1:a', '-c:v', 'libx264', '-crf', '10', '-c:a', 'aac', '-f', 'mpegts', av,
    );
    const r = await sampleFrames(av, { strategy: { kind: 'fps', fps: 2 } });
    expect(r.frames.map((f) => frameNumber(f.image))).toEqual([0, 13, 25, 38]);
    expect(r.frames.map((f) => f.index)).toEqual([0, 13, 25, 38]);
    for (const f of r.frames) expect(f.timestampSec).toBeCloseTo(f.index / 25, 6);
  });
});

describe.skipIf(!haveFfmpeg)('ffmpeg only ever reads the local file', () => {
  it('a playlist that points at http:// fails fast without any request', async () => {
    let requests = 0;
    const server = http.createServer((_req, res) => {
      requests++;
      res.writeHead(200, { 'content-type': 'video/mp2t' });
      res.end(fs.readFileSync(path.join(dir, 'bits.mp4')));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const m3u8 = path.join(dir, 'remote.m3u8');
      fs.writeFileSync(m3u8, `#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:${port}/seg.ts\n#EXT-X-ENDLIST\n`);
      await expectCode(probeVideo(m3u8), 'DECODE_FAILED');
      // ffmpeg itself too (a probe given by the caller skips ffprobe).
      const probe = await probeVideo(bits);
      await expectCode(sampleFrames(m3u8, { probe }), 'DECODE_FAILED');
      expect(requests).toBe(0);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('file names that look like protocols or options are plain files', async () => {
    const short = path.join(dir, 'short10.mp4');
    bitsVideo(short, 0.4, 25);
    const old = process.cwd();
    process.chdir(dir); // relative names: "concat:bits.mp4" would otherwise mean the concat protocol over bits.mp4
    try {
      for (const name of ['concat:bits.mp4', 'http:x.mp4', '-x.mp4']) {
        fs.copyFileSync(short, name);
        const p = await probeVideo(name);
        expect(p.frameCount, name).toBe(10);
        const r = await sampleFrames(name, { strategy: { kind: 'every', k: 1 } });
        expect(r.frames.map((f) => frameNumber(f.image)), name).toEqual([...Array(10).keys()]);
      }
    } finally {
      process.chdir(old);
    }
  });
});

describe.skipIf(!haveFfmpeg)('decoded memory is bounded', () => {
  let uhd: string;
  beforeAll(() => {
    // The bits pattern drawn at 160x90, blown up to 3840x2160 (bars 384 px wide).
    uhd = path.join(dir, 'uhd.mp4');
    ffmpeg(
      '-f', 'lavfi',
      '-i', `color=c=black:s=160x90:r=25:d=0.2,format=gray,geq=lum='mod(floor(N/pow(2\\,floor(X/16)))\\,2)*255',scale=3840:2160:flags=neighbor,format=yuv420p`,
      '-c:v', 'libx264', '-preset', 'ultrafast', '-crf', '10', uhd,
    );
  });

  it('4K frames come back at 1920x1080 by default, at full size with maxFrameSide: Infinity', async () => {
    const small = await sampleFrames(uhd, { strategy: { kind: 'every', k: 1 } });
    expect(small.frames.map((f) => [f.image.width, f.image.height, f.image.data.length])).toEqual(
      Array.from({ length: 5 }, () => [1920, 1080, 1920 * 1080 * 3]),
    );
    expect(small.frames.map((f) => frameNumber(f.image))).toEqual([0, 1, 2, 3, 4]);
    const full = await sampleFrames(uhd, { strategy: { kind: 'uniform', count: 2 }, maxFrameSide: Infinity });
    expect(full.frames.map((f) => [f.image.width, f.image.height, f.image.data.length])).toEqual([
      [3840, 2160, 3840 * 2160 * 3],
      [3840, 2160, 3840 * 2160 * 3],
    ]);
    expect(full.frames.map((f) => frameNumber(f.image))).toEqual([0, 4]);
    // Portrait, other limit: the longer side (height) is the one capped; the aspect is kept.
    const rot = path.join(dir, 'uhd-rot.mp4');
    ffmpeg('-i', uhd, '-c', 'copy', '-metadata:s:v:0', 'rotate=90', rot);
    const portrait = await sampleFrames(rot, { strategy: { kind: 'uniform', count: 1 }, maxFrameSide: 640 });
    expect([portrait.frames[0].image.width, portrait.frames[0].image.height]).toEqual([360, 640]);
  });

  it('small videos are not scaled', async () => {
    const r = await sampleFrames(bits, { strategy: { kind: 'uniform', count: 1 }, maxFrameSide: 80 });
    expect([r.frames[0].image.width, r.frames[0].image.height]).toEqual([80, 32]);
    const s = await sampleFrames(bits, { strategy: { kind: 'uniform', count: 1 }, maxFrameSide: 40 });
    expect([s.frames[0].image.width, s.frames[0].image.height]).toEqual([40, 16]);
  });

  it('sampleFrames stops at maxTotalBytes with a partial result', async () => {
    const frameBytes = 80 * 32 * 3;
    const r = await sampleFrames(bits, { strategy: { kind: 'every', k: 1 }, maxTotalBytes: 5 * frameBytes + 100 });
    expect(r.frames.map((f) => frameNumber(f.image))).toEqual([0, 1, 2, 3, 4]);
    expect(r.planned).toBe(250);
    expect(r.partial).toBe(true);
    expect(r.errors.join('\n')).toMatch(/stopped after 5 frames.*maxTotalBytes/);
    // A plan that fits is not affected.
    const ok = await sampleFrames(bits, { strategy: { kind: 'uniform', count: 5 }, maxTotalBytes: 5 * frameBytes });
    expect(ok.frames.length).toBe(5);
    expect(ok.partial).toBe(false);
    expect(ok.errors).toEqual([]);
    await expectCode(sampleFrames(bits, { maxTotalBytes: frameBytes - 1 }), 'DECODE_FAILED', /7680 bytes, over the limit of 7679 \(option maxTotalBytes\)/);
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
    await expectCode(sampleFrames(bits, { maxFrameSide: 0 }), 'BAD_INPUT', /positive integer or Infinity for maxFrameSide/);
    await expectCode(sampleFrames(bits, { maxTotalBytes: -1 }), 'BAD_INPUT', /positive integer or Infinity for maxTotalBytes/);
  });
});
