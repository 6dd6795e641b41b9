/**
 * dispose() cancels videos still waiting for an ffmpeg process instead of running them (issue 15:
 * 50 concurrent video calls made dispose take 47.7 s), while work already running finishes.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// One process slot, read when the pool is first used (once per test process).
process.env.DFDET_FFMPEG_PROCESSES = '1';

import { Detector } from '../lib/detector';
import { initModel } from '../lib/detector-model/init';
import { ffmpegPool, iterateFrames } from '../lib/media/video';
import { ffmpeg, haveFfmpeg } from './helpers/ffmpeg';

if (!haveFfmpeg && process.env.CI) throw new Error('ffmpeg is required in CI for test/detector-dispose-queue.test.ts');

let dir: string;
let modelPath: string;
let small: string;
let long: string;

beforeAll(async () => {
  if (!haveFfmpeg) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-dispose-queue-'));
  modelPath = path.join(dir, 'tiny.pt');
  await initModel({ arch: 'tiny', seed: 3, output: modelPath });
  small = path.join(dir, 'small.mp4');
  ffmpeg('-f', 'lavfi', '-i', 'testsrc=s=64x48:r=10:d=1', '-c:v', 'libx264', small);
  long = path.join(dir, 'long.mkv');
  ffmpeg('-f', 'lavfi', '-i', 'testsrc=s=320x240:r=25:d=20', '-c:v', 'libx264', '-preset', 'ultrafast', long);
});

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!haveFfmpeg)('dispose() and the ffmpeg queue', () => {
  it('cancels queued videos with DISPOSED without starting them, and resolves while the slot is still held', async () => {
    const detector = await Detector.create({ model: modelPath, faces: 'none', warmup: false, frames: 2 });
    // A slow consumer holds the only slot: ffmpeg waits on its full pipe.
    const holder = iterateFrames(long, { strategy: { kind: 'every', k: 1 } });
    try {
      await holder.next();
      expect(ffmpegPool().used).toBe(1);
      const calls = Array.from({ length: 6 }, () => detector.detect(small));
      // Wait (by event-loop turns, no timers) until the calls queue for the slot.
      while (ffmpegPool().waiting < 6) await new Promise((r) => setImmediate(r));
      await detector.dispose();
      // dispose() returned with the slot still held: nothing queued ran.
      expect(ffmpegPool().used).toBe(1);
      expect(ffmpegPool().waiting).toBe(0);
      const results = await Promise.all(calls);
      for (const r of results) expect(r).toMatchObject({ pFake: null, error: { code: 'DISPOSED' } });
    } finally {
      await holder.return(undefined as never);
    }
    expect(ffmpegPool().used).toBe(0);
  });

  it('lets a video already decoding finish: dispose() waits for it and it is scored', async () => {
    const detector = await Detector.create({ model: modelPath, faces: 'none', warmup: false, frames: 2 });
    const running = detector.detect(small);
    // Wait until its ffprobe or ffmpeg holds the slot, then dispose.
    while (ffmpegPool().used === 0) await new Promise((r) => setImmediate(r));
    await detector.dispose();
    const r = await running;
    expect(r.error).toBeUndefined();
    expect(r.pFake).toBeGreaterThan(0);
  });
});
