/**
 * The Detector end to end on real media (Debian's photos, images drawn by sharp, videos encoded by
 * ffmpeg) with a small real detector built by the model factory.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Detector, softmaxFake, type DetectResult } from '../lib/detector';
import { initModel } from '../lib/detector-model/init';
import { decodeImage } from '../lib/media/image';
import { clipTransform } from '../lib/media/transform';
import { Model, expectTensor } from '../lib/model';
import { debianPhotos } from './helpers/cli';
import { haveFfmpeg } from './helpers/ffmpeg';

const photos = debianPhotos();
const havePhotos = photos !== null;
const PHOTOS: string[] = photos ?? [];
if (!haveFfmpeg) {
  const msg = 'ffmpeg missing: the video tests need it (scripts/setup-system.sh --test)';
  if (process.env.CI) throw new Error(msg);
  console.warn(`SKIPPED: ${msg}`);
}

let dir: string;
let modelPath: string;
let detector: Detector;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-detector-'));
  modelPath = path.join(dir, 'tiny.pt');
  await initModel({ arch: 'tiny', seed: 7, output: modelPath });
  detector = await Detector.create({ model: modelPath, frames: 8 });
});
afterAll(async () => {
  await detector?.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function blank(file: string, w = 320, h = 240): Promise<string> {
  await sharp({ create: { width: w, height: h, channels: 3, background: { r: 90, g: 120, b: 200 } } }).png().toFile(file);
  return file;
}

function expectScored(r: DetectResult): void {
  expect(r.error).toBeUndefined();
  expect(r.pFake).not.toBeNull();
  expect(r.pFake!).toBeGreaterThanOrEqual(0);
  expect(r.pFake!).toBeLessThanOrEqual(1);
}

describe.skipIf(!havePhotos)('images', () => {
  it('finds and scores the face in real photos; pFake is the max over faces', async () => {
    const [a, b] = await detector.detect(PHOTOS);
    for (const r of [a!, b!]) {
      expectScored(r);
      expect(r.kind).toBe('image');
      expect(r.faces).toHaveLength(1);
      expect(r.noFace).toBe(false);
      expect(r.aggregate).toBe('max-face');
      expect(r.pFake).toBe(Math.max(...r.faces.map((f) => f.pFake)));
      expect(r.label).toBe(r.pFake! >= 0.5 ? 'fake' : 'real');
      expect(r.model.sourceKind).toBe('init');
      const f = r.faces[0]!;
      expect(f.keypoints!.rightEye[1]).toBeLessThan(f.keypoints!.mouth[1]);
    }
  });

  it('scores exactly what the model gives for the same crop (faces: none == direct model call)', async () => {
    const d = await Detector.create({ model: modelPath, faces: 'none', dtype: 'float32' });
    const r = await d.detect(PHOTOS[0]!);
    expectScored(r);
    expect(r.aggregate).toBe('whole-image');
    const model = await Model.load(modelPath);
    const img = await decodeImage(PHOTOS[0]!);
    const t = clipTransform([img], { size: 224, mean: d.metadata.input.mean as never, std: d.metadata.input.std as never });
    const logits = expectTensor(await model.forward({ data: t.data, shape: t.shape, dtype: 'float32' }));
    expect(r.pFake).toBeCloseTo(softmaxFake(logits.data as Float32Array), 6);
    await Promise.all([d.dispose(), model.dispose()]);
  });

  it('says "no face" for a picture without one, not an error and not 0.5', async () => {
    const r = await detector.detect(await blank(path.join(dir, 'blank.png')));
    expect(r.error).toBeUndefined();
    expect(r.noFace).toBe(true);
    expect(r.pFake).toBeNull();
    expect(r.label).toBeNull();
  });

  it('takes Buffers, streams and described inputs, and gives the same score as the path', async () => {
    const byPath = await detector.detect(PHOTOS[0]!);
    const byBuffer = await detector.detect(fs.readFileSync(PHOTOS[0]!));
    const byStream = await detector.detect(fs.createReadStream(PHOTOS[0]!));
    const described = await detector.detect({ data: Readable.from([fs.readFileSync(PHOTOS[0]!)]), name: 'grace' });
    expect(byBuffer.source).toBe('<buffer>');
    expect(byStream.source).toBe('<stream>');
    expect(described.source).toBe('grace');
    for (const r of [byBuffer, byStream, described]) expect(r.pFake).toBe(byPath.pFake);
  });

  it('reports bad inputs as results with typed errors and keeps going', async () => {
    const zero = path.join(dir, 'zero.jpg');
    fs.writeFileSync(zero, '');
    const trunc = path.join(dir, 'trunc.png');
    fs.writeFileSync(trunc, fs.readFileSync(PHOTOS[1]!).subarray(0, 5000));
    const rnd = path.join(dir, 'random.mp4');
    fs.writeFileSync(rnd, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251)));
    const rs = await detector.detect([zero, PHOTOS[0]!, trunc, rnd, path.join(dir, 'missing.png'), 42 as never]);
    expect(rs.map((r) => r.error?.code ?? 'ok')).toEqual(['DECODE_FAILED', 'ok', 'DECODE_FAILED', 'DECODE_FAILED', 'NOT_FOUND', 'BAD_INPUT']);
    expect(rs.map((r) => r.index)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('expands folders and returns embeddings of unit norm', async () => {
    const sub = path.join(dir, 'folder', 'nested');
    fs.mkdirSync(sub, { recursive: true });
    fs.copyFileSync(PHOTOS[0]!, path.join(dir, 'folder', 'a.jpg'));
    fs.copyFileSync(PHOTOS[1]!, path.join(sub, 'b.png'));
    fs.writeFileSync(path.join(sub, 'notes.txt'), 'not media');
    const rs = await detector.detect([path.join(dir, 'folder')]);
    expect(rs.map((r) => path.relative(dir, r.source))).toEqual(['folder/a.jpg', 'folder/nested/b.png']);
    // One input, one result: a folder given alone is a BAD_INPUT result, as any other unusable input.
    expect(await detector.detect(path.join(dir, 'folder'))).toMatchObject({ source: path.join(dir, 'folder'), pFake: null, error: { code: 'BAD_INPUT', message: expect.stringContaining('detectStream') } });
    const e = await detector.embed(PHOTOS[0]!);
    expect(e.faces).toHaveLength(1);
    const v = e.faces[0]!.embedding;
    expect(v.length).toBe(detector.metadata.arch.width);
    expect(Math.hypot(...v)).toBeCloseTo(1, 5);
  });
});

describe.skipIf(!havePhotos || !haveFfmpeg)('videos', () => {
  let video: string;
  beforeAll(() => {
    // A real face moving across the frame: a slow pan over Grace Hopper's portrait.
    video = path.join(dir, 'pan.mp4');
    execFileSync('ffmpeg', ['-v', 'error', '-loop', '1', '-i', PHOTOS[0]!, '-vf', "scale=640:-2,crop=480:480:'t*40':0", '-t', '2', '-r', '15', '-pix_fmt', 'yuv420p', '-y', video]);
  });

  it('samples frames, tracks the face and averages the main track’s frame probabilities', async () => {
    const r = await detector.detect(video);
    expectScored(r);
    expect(r.kind).toBe('video');
    expect(r.frames).toHaveLength(8);
    expect(r.aggregate).toBe('mean-frames-main-track');
    const main = r.tracks!.find((t) => t.main)!;
    expect(main.frames).toBeGreaterThanOrEqual(7);
    const framePs = r.frames!.filter((f) => f.pFake !== null).map((f) => f.pFake!);
    expect(framePs.length).toBe(main.frames);
    expect(r.pFake).toBeCloseTo(framePs.reduce((a, b) => a + b, 0) / framePs.length, 10);
    const ts = r.frames!.map((f) => f.timestampSec);
    expect([...ts].sort((a, b) => a - b)).toEqual(ts);
    expect(ts[ts.length - 1]!).toBeGreaterThan(1.5);
  });

  it('scales large frames down (maxFrameSide) yet reports face geometry in source pixels', async () => {
    const full = await detector.detect(video);
    const small = await Detector.create({ model: modelPath, frames: 8, maxFrameSide: 240 });
    const r = await small.detect(video);
    expectScored(r);
    expect(r.faces.length).toBeGreaterThan(0);
    // Same frames, same face: boxes agree in the 480 px source frame within a tenth of the face.
    const a = full.frames!.find((f) => f.faces.length > 0)!;
    const b = r.frames!.find((f) => f.index === a.index)!;
    const [fa, fb] = [a.faces[0]!.box, b.faces[0]!.box];
    const tol = fa.width / 10;
    expect(Math.abs(fb.x - fa.x)).toBeLessThan(tol);
    expect(Math.abs(fb.y - fa.y)).toBeLessThan(tol);
    expect(Math.abs(fb.width - fa.width)).toBeLessThan(tol);
    await small.dispose();
    await expect(Detector.create({ model: modelPath, maxFrameSide: 0 })).rejects.toMatchObject({ code: 'BAD_INPUT' });
  });

  it('aborts mid-video with an ABORTED result', async () => {
    const ac = new AbortController();
    // Abort on an event, not after a delay: as soon as the video decoder listens to the signal.
    const listen = ac.signal.addEventListener.bind(ac.signal);
    let decoding = false;
    ac.signal.addEventListener = ((...args: Parameters<AbortSignal['addEventListener']>) => {
      listen(...args);
      if (!decoding && /media[\\/]video/.test(new Error().stack ?? '')) {
        decoding = true;
        queueMicrotask(() => ac.abort());
      }
    }) as AbortSignal['addEventListener'];
    const r = await detector.detect(video, { signal: ac.signal });
    expect(decoding).toBe(true);
    expect(r).toMatchObject({ kind: 'video', pFake: null, error: { code: 'ABORTED' } });
    // The detector is still usable afterwards.
    expectScored(await detector.detect(PHOTOS[0]!));
  });
});

describe.skipIf(!havePhotos)('batching and lifecycle', () => {
  it('concurrent detect calls share model batches', async () => {
    const d = await Detector.create({ model: modelPath, faces: 'none', batchSize: 8, maxWaitMs: 200 });
    const files = await Promise.all(
      Array.from({ length: 16 }, (_, i) => blank(path.join(dir, `b${i}.png`), 64 + i, 64)),
    );
    const rs = await Promise.all(files.map((f) => d.detect(f)));
    rs.forEach(expectScored);
    const { batches, items, sizes } = d.stats;
    expect(items).toBe(16);
    expect(batches).toBeLessThan(16);
    expect(Math.max(...Object.keys(sizes).map(Number))).toBeGreaterThan(1);
    await d.dispose();
  });

  it('detectStream yields every result with bounded concurrency from an async iterable', async () => {
    const d = await Detector.create({ model: modelPath, faces: 'none', concurrency: 2 });
    async function* gen() {
      for (let i = 0; i < 6; i++) yield await blank(path.join(dir, `s${i}.png`), 50 + i, 40);
    }
    const seen: number[] = [];
    for await (const r of d.detectStream(gen())) {
      expectScored(r);
      seen.push(r.index);
    }
    expect(seen.sort()).toEqual([0, 1, 2, 3, 4, 5]);
    await d.dispose();
  });

  it('dispose while busy waits for work in flight, then rejects new calls with DISPOSED', async () => {
    const d = await Detector.create({ model: modelPath });
    const busy = d.detect([PHOTOS[0]!, PHOTOS[1]!, PHOTOS[0]!]);
    const disposing = d.dispose();
    expect(d.disposed).toBe(true);
    await expect(d.detect(PHOTOS[0]!)).rejects.toMatchObject({ code: 'DISPOSED' });
    const rs = await busy;
    for (const r of rs) expect(r.error === undefined || r.error.code === 'DISPOSED').toBe(true);
    await disposing;
  });

  it('rejects bad options and missing models with typed errors', async () => {
    await expect(Detector.create({ model: modelPath, batchSize: 0 })).rejects.toMatchObject({ code: 'BAD_INPUT' });
    await expect(Detector.create({ model: modelPath, faces: 'maybe' as never })).rejects.toMatchObject({ code: 'BAD_INPUT' });
    await expect(Detector.create({ model: path.join(dir, 'nope.pt') })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const notModel = path.join(dir, 'not-a-model.pt');
    fs.writeFileSync(notModel, 'text');
    await expect(Detector.create({ model: notModel })).rejects.toMatchObject({ code: 'MODEL_LOAD_FAILED' });
  });
});

describe('abort and dispose', () => {
  it('an aborted detectStream takes no further input; every input taken gets a result, ABORTED when not started', async () => {
    const d = await Detector.create({ model: modelPath, faces: 'none', concurrency: 2 });
    const files = await Promise.all(Array.from({ length: 8 }, (_, i) => blank(path.join(dir, `ab${i}.png`), 40 + i, 40)));
    const ac = new AbortController();
    let taken = 0;
    async function* gen() {
      for (const f of files) {
        taken++;
        if (taken === 3) ac.abort(); // fires while the stream waits for its third input
        yield f;
      }
    }
    const rs: DetectResult[] = [];
    for await (const r of d.detectStream(gen(), { signal: ac.signal })) rs.push(r);
    expect(taken).toBe(3);
    // The stream decodes ahead: the first two inputs were taken before the abort, and end scored
    // or, when the abort caught them waiting for the model, ABORTED.
    rs.sort((a, b) => a.index - b.index);
    for (const r of rs.slice(0, 2)) if (r.error) expect(r.error.code).toBe('ABORTED');
    else expectScored(r);
    expect(rs.map((r) => r.index)).toEqual([0, 1, 2]);
    expect(rs[2]).toMatchObject({ source: files[2], kind: 'unknown', pFake: null, error: { code: 'ABORTED' } });
    expect(d.stats.inputs).toBe(3);
    // An array's inputs all get a result, ABORTED without being decoded.
    const all = await d.detect(files, { signal: ac.signal });
    expect(all.map((r) => [r.index, r.source, r.error?.code])).toEqual(files.map((f, i) => [i, f, 'ABORTED']));
    await d.dispose();
  });

  it('an aborted call decodes nothing it had not started', async () => {
    const d = await Detector.create({ model: modelPath, faces: 'none' });
    // Undecodable: without the abort this is DECODE_FAILED, which only decoding can find out.
    const bad = path.join(dir, 'undecodable.png');
    fs.writeFileSync(bad, Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(4000, 7)]));
    expect((await d.detect(bad)).error?.code).toBe('DECODE_FAILED');
    const r = await d.detect(bad, { signal: AbortSignal.abort() });
    expect(r).toMatchObject({ source: bad, kind: 'unknown', pFake: null, error: { code: 'ABORTED' } });
    expect((await d.embed(bad, { signal: AbortSignal.abort() })).error?.code).toBe('ABORTED');
    await d.dispose();
  });

  it('dispose() waits for every call in flight (detect, detect([...]), embed, a running stream), which all finish', async () => {
    const d = await Detector.create({ model: modelPath, faces: 'none', concurrency: 2 });
    const files = await Promise.all(Array.from({ length: 9 }, (_, i) => blank(path.join(dir, `dp${i}.png`), 48 + i, 48)));
    const single = d.detect(files[0]!);
    const many = d.detect(files.slice(1, 5));
    const embedded = d.embed(files[5]!);
    const stream = d.detectStream(files.slice(6, 9));
    const first = stream.next();
    await d.dispose();
    expectScored(await single);
    const rs = await many;
    expect(rs).toHaveLength(4);
    rs.forEach(expectScored);
    const e = await embedded;
    expect(e.error).toBeUndefined();
    expect(e.faces).toHaveLength(1);
    expect(Math.hypot(...e.faces[0]!.embedding)).toBeCloseTo(1, 5);
    // The stream had started two inputs (its concurrency) before reaching its first yield: those
    // finish. The input it would start after dispose() ends DISPOSED; nothing runs on freed models.
    const streamed = [(await first).value as DetectResult];
    for await (const r of stream) streamed.push(r);
    streamed.sort((a, b) => a.index - b.index);
    expect(streamed.map((r) => r.index)).toEqual([0, 1, 2]);
    expectScored(streamed[0]!);
    expectScored(streamed[1]!);
    expect(streamed[2]!.error?.code).toBe('DISPOSED');
    await expect(d.embed(files[0]!)).rejects.toMatchObject({ code: 'DISPOSED' });
  });
});

