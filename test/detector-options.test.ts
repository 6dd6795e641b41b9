/**
 * The options schema (lib/options): one set of defaults and checks for the API, per-call options
 * and the CLI; invalid values fail at `Detector.create` (or the call) with BAD_INPUT naming them.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Command } from 'commander';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { addDetectorOptions, detectorOptions } from '../lib/cli/options';
import { Detector } from '../lib/detector';
import { initModel } from '../lib/detector-model/init';
import { DETECTOR_DEFAULTS, resolveCallOptions, resolveDetectorOptions } from '../lib/options';
import { haveFfmpeg } from './helpers/ffmpeg';

if (!haveFfmpeg) {
  const msg = 'ffmpeg missing: the per-call frames test needs it (scripts/setup-system.sh --test)';
  if (process.env.CI) throw new Error(msg);
  console.warn(`SKIPPED: ${msg}`);
}

function badInput(f: () => unknown, name: string): void {
  expect(f).toThrow(expect.objectContaining({ code: 'BAD_INPUT', message: expect.stringContaining(` for ${name} but received`) }));
}

describe('schema', () => {
  it('fills every default and normalises frames to a strategy', () => {
    const o = resolveDetectorOptions({});
    expect(o).toMatchObject({ ...DETECTOR_DEFAULTS, frames: { kind: 'uniform', count: 32 } });
    expect(resolveDetectorOptions({ frames: { kind: 'fps', fps: 2 } }).frames).toEqual({ kind: 'fps', fps: 2 });
  });

  it('refuses invalid strategies and sizes, naming the option (they used to fail every video later)', () => {
    badInput(() => resolveDetectorOptions({ frames: { kind: 'fps', fps: -1 } }), 'frames.fps');
    badInput(() => resolveDetectorOptions({ frames: { kind: 'uniform', count: 0 } }), 'frames.count');
    badInput(() => resolveDetectorOptions({ frames: { kind: 'every', k: 1.5 } }), 'frames.k');
    badInput(() => resolveDetectorOptions({ frames: { kind: 'audio' } as never }), 'frames.kind');
    badInput(() => resolveDetectorOptions({ frames: 0 }), 'frames');
    badInput(() => resolveDetectorOptions({ maxFrameSide: 100.5 }), 'maxFrameSide');
    badInput(() => resolveDetectorOptions({ maxVideoBytes: 0.5 }), 'maxVideoBytes');
    badInput(() => resolveDetectorOptions({ warmup: 'no' as never }), 'warmup');
    badInput(() => resolveDetectorOptions({ dtype: 'int8' as never }), 'dtype');
    badInput(() => resolveDetectorOptions(null as never), 'options');
    expect(resolveDetectorOptions({ maxFrameSide: Infinity, maxVideoBytes: Infinity })).toMatchObject({ maxFrameSide: Infinity, maxVideoBytes: Infinity });
  });

  it('per-call options override threshold, allFaces and frames, checked the same way', () => {
    const base = resolveDetectorOptions({ threshold: 0.3 });
    expect(resolveCallOptions(undefined, base)).toEqual({ threshold: 0.3, allFaces: false, frames: { kind: 'uniform', count: 32 } });
    expect(resolveCallOptions({ threshold: 0.9, allFaces: true, frames: 4 }, base)).toMatchObject({ threshold: 0.9, allFaces: true, frames: { kind: 'uniform', count: 4 } });
    badInput(() => resolveCallOptions({ threshold: 2 }, base), 'threshold');
    badInput(() => resolveCallOptions({ frames: { kind: 'fps', fps: 0 } }, base), 'frames.fps');
    badInput(() => resolveCallOptions({ allFaces: 1 as never }, base), 'allFaces');
    badInput(() => resolveCallOptions({ signal: {} as never }, base), 'signal');
  });

  it('the CLI flags take their defaults and checks from the schema', () => {
    const cmd = addDetectorOptions(new Command().exitOverride().configureOutput({ writeErr: () => undefined }), { faces: 'none' });
    cmd.parse(['--fps', '2.5', '--max-frame-side', 'Infinity'], { from: 'user' });
    const flags = cmd.opts();
    expect(flags).toMatchObject({ threshold: DETECTOR_DEFAULTS.threshold, batchSize: DETECTOR_DEFAULTS.batchSize, faces: 'none', warmup: true });
    const o = detectorOptions(flags);
    expect(resolveDetectorOptions(o)).toMatchObject({ frames: { kind: 'fps', fps: 2.5 }, maxFrameSide: Infinity, faces: 'none', warmup: true });
    const bad = addDetectorOptions(new Command().exitOverride().configureOutput({ writeErr: () => undefined }));
    expect(() => bad.parse(['--max-frame-side', '100.5'], { from: 'user' })).toThrow(/--max-frame-side must be an integer between 16 and 1000000 or Infinity/);
    expect(() => bad.parse(['--fps', '-1'], { from: 'user' })).toThrow(/--fps must be a positive number/);
    expect(addDetectorOptions(new Command()).parse(['--no-warmup'], { from: 'user' }).opts().warmup).toBe(false);
  });
});

describe('Detector', () => {
  let dir: string;
  let modelPath: string;
  let d: Detector;
  let image: string;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-options-'));
    modelPath = path.join(dir, 'tiny.pt');
    await initModel({ arch: 'tiny', seed: 7, output: modelPath });
    d = await Detector.create({ model: modelPath, faces: 'none', frames: 3, warmup: false });
    image = path.join(dir, 'img.png');
    await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 20, b: 20 } } }).png().toFile(image);
  });
  afterAll(async () => {
    await d?.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('create refuses invalid options with BAD_INPUT naming them', async () => {
    await expect(Detector.create({ model: modelPath, frames: { kind: 'fps', fps: -1 } })).rejects.toMatchObject({ code: 'BAD_INPUT', message: expect.stringContaining('frames.fps') });
    await expect(Detector.create({ model: modelPath, maxFrameSide: 100.5 })).rejects.toMatchObject({ code: 'BAD_INPUT', message: expect.stringContaining('maxFrameSide') });
  });

  it('a call overrides the threshold; invalid call options reject with BAD_INPUT', async () => {
    const r = await d.detect(image);
    const p = r.pFake!;
    const low = await d.detect(image, { threshold: 0 });
    const high = await d.detect([image], { threshold: 1 });
    expect(low).toMatchObject({ threshold: 0, label: 'fake', pFake: p });
    expect(high[0]).toMatchObject({ threshold: 1, label: p >= 1 ? 'fake' : 'real' });
    const streamed = [];
    for await (const x of d.detectStream([image], { threshold: 0 })) streamed.push(x);
    expect(streamed[0]).toMatchObject({ threshold: 0, label: 'fake' });
    await expect(d.detect(image, { threshold: -1 })).rejects.toMatchObject({ code: 'BAD_INPUT', message: expect.stringContaining('threshold') });
    await expect(d.embed(image, { frames: { kind: 'fps', fps: Number.NaN } })).rejects.toMatchObject({ code: 'BAD_INPUT' });
    await expect(d.detectStream([image], { frames: -3 }).next()).rejects.toMatchObject({ code: 'BAD_INPUT' });
  });

  it.skipIf(!haveFfmpeg)('a call overrides the frames sampled', async () => {
    const video = path.join(dir, 'v.mp4');
    spawnSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=96x64:rate=10', '-t', '2', '-pix_fmt', 'yuv420p', '-y', video]);
    expect((await d.detect(video)).frames).toHaveLength(3);
    expect((await d.detect(video, { frames: 5 })).frames).toHaveLength(5);
    const fps = await d.detect(video, { frames: { kind: 'fps', fps: 2 } });
    expect(fps.frames).toHaveLength(4);
  });
});
