/**
 * Defects found by review (issue 13) and fuzzing (issue 15), each with a real model and real media:
 * names in results, aggregate names, the single-input rule, non-finite model output, warm-up, and
 * abort/dispose while an input stream never ends.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Detector, softmaxFake } from '../lib/detector';
import { aggregate, aggregateRule } from '../lib/detector/aggregate';
import { resolveArch } from '../lib/detector-model/arch';
import { buildDetector } from '../lib/detector-model/builder';
import { initModel, randomWeights } from '../lib/detector-model/init';
import { makeMetadata } from '../lib/detector-model/metadata';
import { expectTensor, Model } from '../lib/model';
import { dfdet, ensureBuilt, ndjson } from './helpers/cli';

let dir: string;
let modelPath: string;
let image: string;
let d: Detector;

/** A tiny detector through the real builder, with `edit` applied to its canonical weights. */
async function tinyWith(file: string, edit: (w: Map<string, Float32Array>) => void): Promise<string> {
  const arch = resolveArch('tiny');
  const weights = randomWeights(arch, 7);
  edit(weights);
  await buildDetector(file, arch, 'LinearNorm', weights, makeMetadata(arch, 'LinearNorm', { kind: 'init', file: '', sha256: '', seed: 7 }));
  return file;
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-defects-'));
  modelPath = path.join(dir, 'tiny.pt');
  await initModel({ arch: 'tiny', seed: 7, output: modelPath });
  d = await Detector.create({ model: modelPath, faces: 'none', warmup: false });
  image = path.join(dir, 'img.png');
  await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 20, g: 160, b: 90 } } }).png().toFile(image);
});
afterAll(async () => {
  await d?.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('names in results', () => {
  it("uses the caller's name for inputs that fail before decoding, and never the model's path", async () => {
    const junk = Buffer.from('not an image at all, not a video either');
    const [named, buffer, ok] = await d.detect([{ data: junk, name: 'upload-17.jpg' }, junk, { data: fs.readFileSync(image), name: 'mine.png' }]);
    expect(named).toMatchObject({ source: 'upload-17.jpg', error: { code: 'DECODE_FAILED' } });
    expect(buffer).toMatchObject({ source: '<buffer>', error: { code: 'DECODE_FAILED' } });
    expect(ok!.source).toBe('mine.png');
    expect(ok!.error).toBeUndefined();
    expect((await d.detect({ data: junk, name: 'single.jpg' })).source).toBe('single.jpg');
    expect((await d.detect({ data: 7, name: 'odd' } as never)).source).toBe('odd');
    for (const r of [named!, buffer!, ok!]) {
      expect(r.model.name).toBe('tiny.pt');
      expect(JSON.stringify(r)).not.toContain(dir);
    }
  });
});

describe('aggregate', () => {
  it("names the rule truthfully: an image scored whole is 'whole-image', not 'mean-frames'", async () => {
    const r = await d.detect(image);
    expect(r).toMatchObject({ kind: 'image', aggregate: 'whole-image', noFace: false });
    expect(r.faces).toHaveLength(1);
    expect(r.pFake).toBe(r.faces[0]!.pFake);
  });

  it('every rule, as a pure function of the scored faces', () => {
    expect([aggregateRule('image', true, false), aggregateRule('image', false, true), aggregateRule('video', false, false), aggregateRule('video', true, false), aggregateRule('video', true, true)]).toEqual([
      'max-face',
      'whole-image',
      'mean-frames',
      'mean-frames-main-track',
      'max-track-mean',
    ]);
    const box = { x: 0, y: 0, width: 10, height: 10 };
    const face = (frame: number, track: number, pFake: number) => ({ face: { box, score: 1, track }, frame, pFake });
    const frames = [0, 1, 2].map((i) => ({ index: i * 10, timestampSec: i }));
    const points = (id: number, fs: number[]) => ({ id, score: 1, points: fs.map((frame) => ({ frame, face: { box, score: 1 } as never })) });
    const input = {
      kind: 'video' as const,
      detecting: true,
      faces: [face(0, 0, 0.2), face(1, 0, 0.4), face(0, 1, 0.9), face(2, 1, 0.7)],
      frames,
      tracks: [points(0, [0, 1]), points(1, [0, 2])],
      mainId: 0,
      partial: false,
    };
    const main = aggregate(input, { threshold: 0.5, allFaces: false });
    expect(main).toMatchObject({ aggregate: 'mean-frames-main-track', label: 'real' });
    expect(main.pFake).toBeCloseTo(0.3, 12);
    expect(main.frames!.map((f) => f.pFake)).toEqual([0.2, 0.4, null]);
    const all = aggregate(input, { threshold: 0.5, allFaces: true });
    expect(all).toMatchObject({ aggregate: 'max-track-mean', label: 'fake' });
    expect(all.pFake).toBeCloseTo(0.8, 12);
    expect(all.frames!.map((f) => f.pFake)).toEqual([0.9, 0.4, 0.7]);
    const none = aggregate({ ...input, faces: [], tracks: [] }, { threshold: 0.5, allFaces: false });
    expect(none).toMatchObject({ pFake: null, label: null, noFace: true });
  });
});

describe('the single-input rule', () => {
  it('any unusable single input resolves with a BAD_INPUT result (a folder as a number); only the detector state or call options reject', async () => {
    const folder = path.join(dir, 'folder');
    fs.mkdirSync(folder, { recursive: true });
    fs.copyFileSync(image, path.join(folder, 'only.png'));
    for (const input of [folder, 42, { path: folder, name: 'f' }]) {
      const r = await d.detect(input as never);
      expect(r, String(input)).toMatchObject({ pFake: null, label: null, aggregate: 'none', error: { code: 'BAD_INPUT' } });
    }
    expect((await d.embed(folder)).error?.code).toBe('BAD_INPUT');
    // The folder's own file, given alone, is fine; in an array the folder expands.
    expect((await d.detect(path.join(folder, 'only.png'))).error).toBeUndefined();
    expect((await d.detect([folder])).map((r) => r.source)).toEqual([path.join(folder, 'only.png')]);
    await expect(d.detect(image, { threshold: 7 })).rejects.toMatchObject({ code: 'BAD_INPUT' });
  });
});

describe('non-finite model output', () => {
  let nanModel: string;
  beforeAll(async () => {
    // Every weight finite (NaN/Inf weights are refused at load: BAD_WEIGHTS), yet the logits
    // overflow: a constant post-LN feature (weight 0, bias 1) normalises to 1/sqrt(d) per entry,
    // and a head of 3e38 everywhere sums it to 3e38 * sqrt(d) = Infinity in float32.
    nanModel = await tinyWith(path.join(dir, 'overflow-head.pt'), (w) => {
      w.get('post_layernorm.weight')!.fill(0);
      w.get('post_layernorm.bias')!.fill(1);
      w.get('head.weight')!.fill(3e38);
      w.get('head.bias')!.fill(0);
    });
  });

  it('is an error result MODEL_OUTPUT_INVALID on that input, never a label', async () => {
    await using nan = await Detector.create({ model: nanModel, faces: 'none' });
    const r = await nan.detect(image);
    expect(r).toMatchObject({ pFake: null, label: null, aggregate: 'none', error: { code: 'MODEL_OUTPUT_INVALID' } });
    expect(nan.stats.failed).toBe(1);
  });

  it('makes `dfdet detect --fail-on-fake` fail (exit 1), not pass', async () => {
    await ensureBuilt();
    const run = await dfdet(['detect', '--model', nanModel, '--faces', 'none', '--fail-on-fake', '--json', '--no-warmup', image]);
    expect(run.code, run.stderr).toBe(1);
    expect(ndjson(run.stdout)[0]).toMatchObject({ pFake: null, label: null, error: { code: 'MODEL_OUTPUT_INVALID' } });
  });
});

describe('warm-up', () => {
  it('create runs the models once unless warmup: false; the warm-up is not counted as work', async () => {
    await using warm = await Detector.create({ model: modelPath });
    await using cold = await Detector.create({ model: modelPath, warmup: false });
    expect(warm.stats.warmupMs).toBeGreaterThan(0);
    expect(warm.stats).toMatchObject({ batches: 0, items: 0, inputs: 0 });
    expect(cold.stats.warmupMs).toBeNull();
  });
});

describe('an input stream that never ends', () => {
  /** A stream that never produces data; `reading` resolves once the detector asks for data. */
  function stalled(): { stream: Readable; reading: Promise<void> } {
    let started!: () => void;
    const reading = new Promise<void>((r) => (started = r));
    return { stream: new Readable({ read: () => started() }), reading };
  }

  it('abort settles the call at once with ABORTED (detect, detectStream, embed)', async () => {
    const a = stalled();
    const ac = new AbortController();
    const p = d.detect({ data: a.stream, name: 'stalled.mp4' }, { signal: ac.signal });
    await a.reading;
    ac.abort();
    expect(await p).toMatchObject({ source: 'stalled.mp4', pFake: null, error: { code: 'ABORTED' } });

    const b = stalled();
    const ac2 = new AbortController();
    const it = d.detectStream([b.stream, image], { signal: ac2.signal });
    const first = it.next();
    await b.reading;
    ac2.abort();
    const rs = [(await first).value!];
    for await (const r of it) rs.push(r);
    expect(rs.map((r) => [r.index, r.source, r.error?.code]).sort()).toEqual([
      [0, '<stream>', 'ABORTED'],
      [1, image, 'ABORTED'],
    ]);

    const c = stalled();
    const ac3 = new AbortController();
    const e = d.embed(c.stream, { signal: ac3.signal });
    await c.reading;
    ac3.abort();
    expect((await e).error?.code).toBe('ABORTED');
    for (const s of [a, b, c]) s.stream.destroy();
  });

  it('dispose() does not wait for it: the call ends DISPOSED, other work in flight finishes', async () => {
    const own = await Detector.create({ model: modelPath, faces: 'none', warmup: false });
    const s = stalled();
    const stuck = own.detect(s.stream);
    const fine = own.detect(image);
    await s.reading;
    await own.dispose();
    expect(await stuck).toMatchObject({ source: '<stream>', error: { code: 'DISPOSED' } });
    expect((await fine).error).toBeUndefined();
    s.stream.destroy();
  });
});

describe('prepare (the pipeline up to the model, for training crops)', () => {
  it('gives the faces and the exact CLIP rows detect scores; bad inputs reject', async () => {
    const p = await d.prepare(image);
    const size = d.metadata.input.size;
    expect(p).toMatchObject({ kind: 'image', frames: [{ index: 0, timestampSec: 0 }], partial: false });
    expect(p.faces).toEqual([{ face: { box: { x: 0, y: 0, width: 64, height: 48 }, score: 1 }, frame: 0 }]);
    expect(p.tensor.shape).toEqual([1, 3, size, size]);
    // The same tensor row through the model gives detect's score.
    await using model = await Model.load(modelPath, { dtype: 'auto' }); // the detector's precision (its default)
    const out = expectTensor(await model.run('forward', [{ data: p.tensor.data, shape: p.tensor.shape, dtype: 'float32' }]));
    expect(softmaxFake(out.data as Float32Array)).toBe((await d.detect(image)).pFake);
    await expect(d.prepare(path.join(dir, 'missing.png'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(d.prepare(dir)).rejects.toMatchObject({ code: 'BAD_INPUT' });
  });
});
