/**
 * The media and input rules seen through the Detector (the one pipeline of the API, CLI and
 * server): video streams are spooled once and score as the file does, playlists and symlinked
 * folders bring in nothing from outside, kinds are checked, and messages name the caller's input.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Detector } from '../lib/detector';
import { initModel } from '../lib/detector-model/init';
import { haveFfmpeg } from './helpers/ffmpeg';

if (!haveFfmpeg) {
  if (process.env.CI) throw new Error('ffmpeg is required in CI for test/media-detector-inputs.test.ts');
  console.warn('SKIPPING the detector input tests: ffmpeg not found on PATH');
}

let dir: string;
let detector: Detector;
let clip: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-detin-'));
  const model = path.join(dir, 'tiny.pt');
  await initModel({ arch: 'tiny', seed: 7, output: model });
  detector = await Detector.create({ model, frames: 4 });
  if (!haveFfmpeg) return;
  for (const d of ['scan', 'outside']) fs.mkdirSync(path.join(dir, d));
  clip = path.join(dir, 'clip.mp4');
  const r = spawnSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=s=96x64:r=10:d=2', '-c:v', 'libx264', clip]);
  if (r.status !== 0) throw new Error(String(r.stderr));
  fs.copyFileSync(clip, path.join(dir, 'outside', 'secret.mp4'));
  spawnSync('ffmpeg', ['-v', 'error', '-y', '-i', clip, '-c', 'copy', '-f', 'mpegts', path.join(dir, 'outside', 'secret.ts')]);
  await sharp({ create: { width: 64, height: 64, channels: 3, background: '#456' } }).png().toFile(path.join(dir, 'outside', 'secret.png'));
  await sharp({ create: { width: 64, height: 64, channels: 3, background: '#654' } }).png().toFile(path.join(dir, 'scan', 'mine.png'));
  fs.writeFileSync(path.join(dir, 'scan', 'playlist.mp4'), `#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n../outside/secret.ts\n#EXT-X-ENDLIST\n`);
  fs.symlinkSync(path.join(dir, 'outside'), path.join(dir, 'scan', 'innocent.jpg'));
}, 120_000);

afterAll(async () => {
  await detector?.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!haveFfmpeg)('inputs through the Detector', () => {
  it('a video stream is spooled once and scores exactly as its file', async () => {
    const byPath = await detector.detect(clip);
    const byStream = await detector.detect({ data: fs.createReadStream(clip), name: 'upload.mp4' });
    expect(byPath.error).toBeUndefined();
    expect(byStream).toMatchObject({ source: 'upload.mp4', kind: 'video' });
    expect(byStream.pFake).toBe(byPath.pFake);
    expect(byStream.frames?.map((f) => f.index)).toEqual(byPath.frames?.map((f) => f.index));
  });

  it('a folder scan scores only its own files: no playlist target, no symlinked folder', async () => {
    const rs = await detector.detect([path.join(dir, 'scan')]);
    expect(rs.map((r) => path.basename(r.source))).toEqual(['mine.png', 'playlist.mp4']);
    expect(rs[0]!.error).toBeUndefined();
    expect(rs[1]!.error).toMatchObject({ code: 'DECODE_FAILED' });
    expect(rs[1]!.error!.message).toMatch(/playlist\.mp4.*playlist or index of other files/);
  });

  it("kind 'audio' is BAD_INPUT; a corrupt upload names the upload, never a temp path", async () => {
    const audio = await detector.detect({ data: fs.readFileSync(clip), kind: 'audio' as never });
    expect(audio.error).toMatchObject({ code: 'BAD_INPUT' });
    const bad = Buffer.concat([fs.readFileSync(clip).subarray(0, 64), Buffer.alloc(512, 0x55)]);
    const r = await detector.detect({ data: bad, name: 'broken.mp4' });
    expect(r.error).toMatchObject({ code: 'DECODE_FAILED' });
    expect(r.error!.message).toContain('broken.mp4');
    expect(r.error!.message).not.toMatch(/dfdet-video-|\/input\b|<buffer of/);
  });
});
