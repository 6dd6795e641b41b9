/**
 * Video inputs are single media files: playlists and indexes are refused (no other file is read),
 * ffmpeg processes are bounded by a process-wide pool whose queue an AbortSignal empties, streams
 * are spooled once, and messages name the caller's input, never a temp path.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Readable } from 'node:stream';

// Before the pool is first used (it reads this once per process).
process.env.DFDET_FFMPEG_PROCESSES = '2';

import { ffmpegPool, iterateFrames, probeVideo, sampleFrames } from '../lib/media/video';
import { listMediaFiles, resolveInput } from '../lib/inputs';
import { explainFfmpeg } from '../lib/media/video/messages';
import { expectDfdetError } from './helpers/errors';
import { ffmpeg, haveFfmpeg } from './helpers/ffmpeg';

if (!haveFfmpeg) {
  if (process.env.CI) throw new Error('ffmpeg/ffprobe are required in CI for test/media-video-safety.test.ts');
  console.warn('SKIPPING video safety tests: ffmpeg/ffprobe not found on PATH');
}

let dir: string;
let secret: string;
let small: string;
let long: string;

beforeAll(() => {
  if (!haveFfmpeg) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-vsafe-'));
  fs.mkdirSync(path.join(dir, 'outside'));
  fs.mkdirSync(path.join(dir, 'scan'));
  secret = path.join(dir, 'outside', 'secret.mp4');
  ffmpeg('-f', 'lavfi', '-i', 'testsrc=s=64x48:r=10:d=1', '-c:v', 'libx264', secret);
  ffmpeg('-i', secret, '-c', 'copy', '-f', 'mpegts', path.join(dir, 'outside', 'secret.ts'));
  small = path.join(dir, 'small.mp4');
  ffmpeg('-f', 'lavfi', '-i', 'testsrc=s=32x24:r=10:d=1', '-c:v', 'libx264', small);
  long = path.join(dir, 'long.mkv');
  ffmpeg('-f', 'lavfi', '-i', 'testsrc=s=320x240:r=25:d=20', '-c:v', 'libx264', '-preset', 'ultrafast', long);
  const hls = (seg: string): string => `#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n${seg}\n#EXT-X-ENDLIST\n`;
  fs.writeFileSync(path.join(dir, 'scan', 'abs.mp4'), hls(path.join(dir, 'outside', 'secret.ts')));
  fs.writeFileSync(path.join(dir, 'scan', 'rel.mp4'), hls('../outside/secret.ts'));
  fs.writeFileSync(path.join(dir, 'scan', 'concat.mp4'), `ffconcat version 1.0\nfile '${secret}'\n`);
});

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!haveFfmpeg)('playlists and indexes are refused', () => {
  it('the recipe really is a playlist ffmpeg would follow (else this test proves nothing)', () => {
    const r = spawnSync('ffprobe', ['-v', 'error', '-protocol_whitelist', 'file', '-show_entries', 'stream=width', '-of', 'csv=p=0', path.join(dir, 'scan', 'rel.mp4')], { encoding: 'utf8' });
    expect(r.stdout.trim()).toMatch(/^64\b/);
  });

  for (const name of ['abs.mp4', 'rel.mp4', 'concat.mp4']) {
    it(`${name} found by a folder scan: DECODE_FAILED, nothing outside is read`, async () => {
      const file = (await listMediaFiles(path.join(dir, 'scan'))).find((f) => f.endsWith(name))!;
      const [src] = await resolveInput(file);
      expect(src!.kind).toBe('video');
      await expectDfdetError(probeVideo(file), 'DECODE_FAILED', /playlist or index of other files/);
      await expectDfdetError(sampleFrames(file), 'DECODE_FAILED', /playlist or index/);
    });

    it(`${name} as bytes (uploaded): DECODE_FAILED naming the upload, no temp path`, async () => {
      const bytes = fs.readFileSync(path.join(dir, 'scan', name));
      const e = await expectDfdetError(sampleFrames(bytes, { name: 'upload.mp4' }), 'DECODE_FAILED', /upload\.mp4.*playlist or index/);
      expect(e.message).not.toContain(os.tmpdir());
    });
  }
});

describe.skipIf(!haveFfmpeg)('names and streams', () => {
  it('errors of bytes and streams name the caller’s input, never a temp path', async () => {
    const junk = Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from('ftypisom'), Buffer.alloc(200, 7)]);
    for (const input of [junk, Readable.from([junk])]) {
      const e = await expectDfdetError(sampleFrames(input, { name: 'clip.mp4' }), 'DECODE_FAILED', /clip\.mp4/);
      expect(e.message).not.toMatch(/dfdet-video-|\/tmp\//);
    }
  });

  it('a video stream is spooled once and decoded; the frames carry their scale', async () => {
    const r = await sampleFrames(fs.createReadStream(long), { strategy: { kind: 'uniform', count: 3 }, maxFrameSide: 160, name: 'long.mkv' });
    expect(r.frames.map((f) => f.index)).toEqual([0, 249, 499]);
    expect(r.frames[0]!.image.width).toBe(160);
    expect(r.frames.every((f) => f.scale === 2)).toBe(true);
    const same = await sampleFrames(small, { strategy: { kind: 'uniform', count: 1 } });
    expect(same.frames[0]!.scale).toBe(1);
  });

  it('a video stream that never ends: abort settles at once with ABORTED', async () => {
    const head = fs.readFileSync(small).subarray(0, 100);
    const s = new Readable({ read() {} });
    s.push(head);
    const ac = new AbortController();
    const [src] = await resolveInput({ data: s, name: 'live.mp4' }, { signal: ac.signal });
    expect(src).toMatchObject({ kind: 'video', name: 'live.mp4' });
    const p = sampleFrames(src!.stream!, { signal: ac.signal, name: src!.name });
    await new Promise((r) => setImmediate(r));
    ac.abort();
    await expectDfdetError(p, 'ABORTED', /live\.mp4/);
    expect(s.destroyed).toBe(true);
  });
});

/** A wrapper around ffmpeg/ffprobe that logs each start and end to `log`. */
function loggingTool(tool: string, log: string): string {
  const file = path.join(dir, `logging-${tool}`);
  fs.writeFileSync(file, `#!/bin/sh\necho "start $$ $*" >> '${log}'\n${tool} "$@"\nrc=$?\necho "end $$" >> '${log}'\nexit $rc\n`, { mode: 0o755 });
  return file;
}

/** Most processes running at once according to a log of `start`/`end` lines. */
function maxOverlap(lines: string[]): number {
  let now = 0;
  let most = 0;
  for (const l of lines) {
    now += l.startsWith('start') ? 1 : -1;
    most = Math.max(most, now);
  }
  return most;
}

describe.skipIf(!haveFfmpeg)('the process-wide ffmpeg pool', () => {
  it('runs at most DFDET_FFMPEG_PROCESSES tools at once, whatever the number of calls', async () => {
    const log = path.join(dir, 'pool.log');
    const saved = [process.env.DFDET_FFMPEG, process.env.DFDET_FFPROBE];
    process.env.DFDET_FFMPEG = loggingTool('ffmpeg', log);
    process.env.DFDET_FFPROBE = loggingTool('ffprobe', log);
    try {
      expect(ffmpegPool().total).toBe(2);
      const results = await Promise.all(Array.from({ length: 12 }, () => sampleFrames(small, { strategy: { kind: 'uniform', count: 2 } })));
      expect(results.every((r) => r.frames.length === 2)).toBe(true);
      const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
      expect(lines.filter((l) => l.startsWith('start')).length).toBeGreaterThanOrEqual(24);
      expect(maxOverlap(lines)).toBeLessThanOrEqual(2);
      expect(maxOverlap(lines)).toBeGreaterThanOrEqual(1);
    } finally {
      [process.env.DFDET_FFMPEG, process.env.DFDET_FFPROBE] = saved;
      if (saved[0] === undefined) delete process.env.DFDET_FFMPEG;
      if (saved[1] === undefined) delete process.env.DFDET_FFPROBE;
    }
  });

  it('an aborted or timed-out call waiting in the queue never starts a process', async () => {
    const log = path.join(dir, 'queue.log');
    process.env.DFDET_FFMPEG = loggingTool('ffmpeg', log);
    process.env.DFDET_FFPROBE = loggingTool('ffprobe', log);
    const holders: AsyncGenerator<unknown>[] = [];
    try {
      // Two slow consumers hold both slots: ffmpeg waits on its full pipe.
      for (let i = 0; i < 2; i++) {
        const it = iterateFrames(long, { strategy: { kind: 'every', k: 1 } });
        await it.next();
        holders.push(it);
      }
      expect(ffmpegPool().used).toBe(2);
      const ac = new AbortController();
      const queued = sampleFrames(small, { signal: ac.signal, name: 'queued.mp4' });
      while (ffmpegPool().waiting === 0) await new Promise((r) => setImmediate(r));
      ac.abort();
      await expectDfdetError(queued, 'ABORTED', /queued\.mp4/);
      expect(ffmpegPool().waiting).toBe(0);
      // The timeout covers the wait in the queue too.
      await expectDfdetError(sampleFrames(small, { timeoutMs: 200, name: 'late.mp4' }), 'TIMEOUT', /late\.mp4 timed out after 200 ms/);
      expect(ffmpegPool().waiting).toBe(0);
      expect(fs.readFileSync(log, 'utf8')).not.toContain(small);
    } finally {
      for (const it of holders) await it.return(undefined);
      delete process.env.DFDET_FFMPEG;
      delete process.env.DFDET_FFPROBE;
    }
    expect(ffmpegPool().used).toBe(0);
  });
});

describe('ffmpeg messages say what is wrong with the input', () => {
  it.skipIf(!haveFfmpeg)('a .y4m whose header declares width 0 ("Device or resource busy") says its header is corrupt', async () => {
    const y4m = Buffer.concat([Buffer.from('YUV4MPEG2 W0 H24 F10:1\nFRAME\n'), Buffer.alloc(2000)]);
    const e = await expectDfdetError(sampleFrames(y4m, { name: 'cam.y4m' }), 'DECODE_FAILED');
    expect(e.message).toMatch(/^Could not read video cam\.y4m: its header is corrupt/);
    expect(e.message).not.toMatch(/dfdet-video-/);
  });

  it('explains the raw messages found by fuzzing, replacing the temp path by the name', () => {
    const f = '/tmp/dfdet-video-x/input';
    const cases: [string, RegExp][] = [
      [`${f}: Device or resource busy`, /^its header is corrupt .*\(ffmpeg: up\.y4m: Device or resource busy\)$/],
      ['[vist#0:0/h264 @ 0x1] Error marking filters as finished', /^its video stream is corrupt/],
      [`[hls @ 0x55d] Format not on whitelist 'mov'\nfile:${f}: Invalid argument`, /playlist or index of other files.*detected as 'hls'/],
      [`file:${f}: Invalid data found when processing input`, /not a video in a format ffmpeg recognises.*\(ffmpeg: up\.y4m: Invalid data/],
      ['[mov @ 0x1] moov atom not found', /incomplete MP4\/MOV/],
      ['something new', /^ffmpeg: something new$/],
    ];
    for (const [raw, want] of cases) expect(explainFfmpeg(raw, f, 'up.y4m')).toMatch(want);
  });
});
