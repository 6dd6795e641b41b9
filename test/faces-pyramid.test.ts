/**
 * Multi-scale dense face detection (lib/faces/pyramid.ts): the plan covers every face size it
 * promises to, maps back exactly, the model's `dense` method equals `forward` on a 256x256 input,
 * and on 1280x720 frames made from real photos it finds small faces that the whole-frame pass
 * misses, with few false positives.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NativeTensor } from '../binding';
import { denseAnchors, detectFaces, letterboxInput, letterboxResize, type TensorRunner } from '../lib/faces/blazeface';
import { DENSE_STRIDE, LETTERBOX_SIZE, levelToSource, MAX_MODEL_FACE, MIN_MODEL_FACE, planPyramid, writeInput } from '../lib/faces/pyramid';
import { isDfdetError } from '../lib/errors';
import { ASTRONAUT, GRACE_HOPPER, loadBlazeFace, loadRgb, presentOrSkip, requireOrSkip } from './faces-helpers';
import { makeFrame, score } from './faces-frames';

const FILE = 'test/faces-pyramid.test.ts';
const RUNNER = 'a TorchScript runner (lib/model.ts or /usr/bin/python3 with torch)';
/** As the Detector loads it (bfloat16 where the CPU has it), and in float32 for the exact checks. */
let runner: (TensorRunner & { dispose(): unknown }) | null = null;
let runner32: (TensorRunner & { dispose(): unknown }) | null = null;

beforeAll(async () => {
  const l = await loadBlazeFace();
  if (requireOrSkip(l !== null, RUNNER, FILE)) runner = l!.runner;
  runner32 = (await loadBlazeFace({ dtype: 'float32' }))?.runner ?? null;
});

afterAll(async () => {
  await runner?.dispose();
  await runner32?.dispose();
});

describe('planPyramid', () => {
  it('1280x720 at the default 24 px: one dense 910x512 level (928x512 input), then the whole frame dense at 256x144', () => {
    const plan = planPyramid(1280, 720, 24);
    expect(plan.levels.map((l) => [l.width, l.height, l.inputWidth, l.inputHeight, l.dense, l.left, l.top])).toEqual([
      [910, 512, 928, 512, true, 0, 0],
      [256, 144, 256, 160, true, 0, 0],
    ]);
    expect(planPyramid(1920, 1080, 24).levels.map((l) => [l.width, l.height])).toEqual([[1365, 768], [340, 191]]);
  });

  it(`one input, the whole-frame letterbox (forward), where it already shows a minFaceSize face at ${MIN_MODEL_FACE} model px`, () => {
    const one = (w: number, h: number, mf: number) => {
      const { levels } = planPyramid(w, h, mf);
      return levels.length === 1 && !levels[0]!.dense && levels[0]!.inputWidth === LETTERBOX_SIZE;
    };
    expect(one(361, 300, 24)).toBe(true);
    expect(one(1280, 720, Infinity)).toBe(true);
    expect(one(1, 1, 24)).toBe(true);
    expect(one(1280, 720, 1280 * MIN_MODEL_FACE / 256)).toBe(true);
    expect(one(362, 300, 24)).toBe(false);
    expect(planPyramid(361, 300, 24).levels[0]).toMatchObject({ left: 0, top: 21, width: 256, height: 213, minFace: 0, maxFace: Infinity });
  });

  it('every face size from minFaceSize up is answered for by exactly one level, which sees it at 16..96 model px (the last: from 16 up)', () => {
    for (const [w, h, mf] of [[1280, 720, 24], [1920, 1080, 24], [640, 480, 24], [3840, 2160, 24], [1080, 1920, 30], [700, 300, 10], [5000, 400, 24], [1280, 720, 40], [400, 300, 24]]) {
      const { levels } = planPyramid(w!, h!, mf!);
      expect(levels[0]!.minFace).toBe(0);
      expect(levels[levels.length - 1]!.maxFace).toBe(Infinity);
      for (let i = 1; i < levels.length; i++) expect(levels[i]!.minFace).toBe(levels[i - 1]!.maxFace);
      for (const lv of levels) {
        if (lv.dense) expect([lv.inputWidth % DENSE_STRIDE, lv.inputHeight % DENSE_STRIDE, lv.inputWidth - lv.width, lv.inputHeight - lv.height].map((v) => v < DENSE_STRIDE && v >= 0)).toEqual([true, true, true, true]);
        const scale = Math.max(lv.scaleX, lv.scaleY);
        const lo = Math.max(lv.minFace, mf!, MIN_MODEL_FACE);
        // 1%: the level's size is rounded to whole pixels
        if (lo < lv.maxFace) expect(lo / scale, `${w}x${h} minFaceSize ${mf}`).toBeGreaterThanOrEqual(0.99 * MIN_MODEL_FACE);
        if (lv.maxFace < Infinity) expect(lv.maxFace / scale).toBeLessThanOrEqual(MAX_MODEL_FACE + 1e-9);
      }
    }
  });

  it('maps detections back to source pixels and drops those out of the level\'s size range', () => {
    const [fine, whole] = planPyramid(1280, 720, 24).levels;
    const d = { score: 0.9, x1: 10, y1: 20, x2: 30, y2: 40, keypoints: [15, 25] };
    const m = levelToSource(d, fine!)!;
    const want = [10 * fine!.scaleX, 20 * fine!.scaleY, 30 * fine!.scaleX, 40 * fine!.scaleY, 15 * fine!.scaleX, 25 * fine!.scaleY];
    [m.x1, m.y1, m.x2, m.y2, ...m.keypoints].forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 9));
    expect(m.score).toBe(0.9);
    // larger than the fine level answers for (120 source px): dropped there, kept by the whole frame
    expect(levelToSource({ ...d, x2: 10 + 120 / fine!.scaleX + 1 }, fine!)).toBeNull();
    expect(levelToSource({ ...d, x1: 10, x2: 40, y1: 20, y2: 50 }, whole!)).toMatchObject({ x1: 50, y1: 100, x2: 200, y2: 250 });
    expect(levelToSource({ ...d, x1: 10, x2: 33, y1: 20, y2: 43 }, whole!)).toBeNull();
    // the letterbox: its centring undone
    const box = planPyramid(1280, 720, Infinity).levels[0]!;
    expect(levelToSource({ ...d, x1: 10, x2: 30, y1: 56, y2: 76 }, box)).toMatchObject({ x1: 50, y1: 0, x2: 150, y2: 100 });
  });

  it('writes an image into a larger input at its place, black (-1) elsewhere', () => {
    const img = { data: new Uint8Array([0, 127.5, 255, 255, 0, 51]), width: 2, height: 1 };
    const out = new Float32Array(3 * 32 * 64).fill(7);
    writeInput(img, { inputWidth: 64, inputHeight: 32, left: 3, top: 1 }, out, 0);
    const at = (c: number, y: number, x: number) => out[c * 32 * 64 + y * 64 + x];
    expect([at(0, 1, 3), at(1, 1, 3), at(2, 1, 3), at(0, 1, 4), at(1, 1, 4), at(2, 1, 4)]).toEqual([-1, 127 / 127.5 - 1, 1, 1, -1, 51 / 127.5 - 1].map(Math.fround));
    expect(out.filter((v) => v === -1).length).toBe(3 * 32 * 64 - 4);
  });
});

describe('the model\'s dense method', () => {
  it('equals forward on 256x256 inputs in float32 (scores exactly, boxes x 256 exactly) and has anchors for any multiple of 32', async (ctx) => {
    const model = presentOrSkip(runner32, ctx, RUNNER, FILE);
    const photos = await Promise.all([ASTRONAUT, GRACE_HOPPER].map(loadRgb));
    const per = 3 * 256 * 256;
    const input = new Float32Array(2 * per);
    const small = await Promise.all(photos.map((im) => letterboxResize(im)));
    small.forEach((im, i) => letterboxInput(im, input, i * per));
    const x = [{ data: input, shape: [2, 3, 256, 256], dtype: 'float32' as const }];
    const f = (await model.run('forward', x)) as NativeTensor[];
    const d = (await model.run('dense', x)) as NativeTensor[];
    expect(d.map((t) => t.shape)).toEqual(f.map((t) => t.shape));
    const [fs, fb, ds, db] = [...f, ...d].map((t) => t.data as Float32Array);
    let worst = 0;
    fs!.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - ds![i]!))));
    fb!.forEach((v, i) => (worst = Math.max(worst, Math.abs(v * 256 - db![i]!) / 256)));
    expect(worst, 'max |dense - forward| (boxes normalised)').toBeLessThanOrEqual(1e-6);
    expect(Math.max(...fs!)).toBeGreaterThan(0.8); // faces were there
    const [ws, wb] = (await model.run('dense', [{ data: new Float32Array(3 * 96 * 160), shape: [1, 3, 96, 160], dtype: 'float32' }])) as NativeTensor[];
    expect([ws!.shape, wb!.shape]).toEqual([[1, denseAnchors(160, 96)], [1, denseAnchors(160, 96), 16]]);
  });

  it('finds a face where it is in a larger input: the letterboxed photo placed at (320, 64) of a 768x448 input', async (ctx) => {
    const model = presentOrSkip(runner, ctx, RUNNER, FILE);
    const grace = await letterboxResize(await loadRgb(GRACE_HOPPER));
    const one = new Float32Array(3 * 256 * 256);
    writeInput(grace, { inputWidth: 256, inputHeight: 256, left: 0, top: 0 }, one, 0);
    const big = new Float32Array(3 * 448 * 768);
    writeInput(grace, { inputWidth: 768, inputHeight: 448, left: 320, top: 64 }, big, 0);
    const best = (out: NativeTensor[]) => {
      const s = out[0]!.data as Float32Array;
      const i = s.indexOf(Math.max(...s));
      return { score: s[i]!, box: Array.from((out[1]!.data as Float32Array).subarray(i * 16, i * 16 + 4)) };
    };
    const a = best((await model.run('dense', [{ data: one, shape: [1, 3, 256, 256], dtype: 'float32' }])) as NativeTensor[]);
    const b = best((await model.run('dense', [{ data: big, shape: [1, 3, 448, 768], dtype: 'float32' }])) as NativeTensor[]);
    expect(b.score).toBeGreaterThan(0.8);
    // same box shifted by the offset (within 2 input px: a different context beyond the photo)
    [320, 64, 0, 0].forEach((off, k) => expect(Math.abs(b.box[k]! - (a.box[k]! + off))).toBeLessThan(2));
  });

  it('refuses sizes that are not multiples of 32 (a RUNTIME_ERROR of the run)', async (ctx) => {
    const model = presentOrSkip(runner, ctx, RUNNER, FILE);
    await expect(model.run('dense', [{ data: new Float32Array(3 * 100 * 96), shape: [1, 3, 100, 96], dtype: 'float32' }])).rejects.toThrow(/multiples of 32/);
  });
});

/** Face widths: 160 px lies above the 1280x720 plan's hand-off from its fine level to the whole frame (120 px). */
const WIDTHS = [160, 64, 40, 28, 24];
const FRAMES_PER_WIDTH = 4;

describe('small faces in 1280x720 frames made from real photos', () => {
  it('the pyramid lifts recall at 40, 28 and 24 px far above the whole-frame pass, with bounded false positives', async (ctx) => {
    const model = presentOrSkip(runner, ctx, RUNNER, FILE);
    const rows: string[] = [];
    const result: Record<number, { before: number; after: number }> = {};
    let fpBefore = 0;
    let fpAfter = 0;
    let frames = 0;
    for (const w of WIDTHS) {
      const made = await Promise.all(Array.from({ length: FRAMES_PER_WIDTH }, (_, i) => makeFrame(w, 1000 * w + i)));
      const images = made.map((m) => m.frame);
      const before = await detectFaces(model, images, { tiling: false });
      const after = await detectFaces(model, images);
      let n = 0;
      const tally = { before: { hits: 0, fp: 0 }, after: { hits: 0, fp: 0 } };
      made.forEach((m, i) => {
        n += m.truth.length;
        for (const [k, found] of [['before', before[i]!], ['after', after[i]!]] as const) {
          const s = score(found, m.truth);
          tally[k].hits += s.hits;
          tally[k].fp += s.fp;
        }
      });
      result[w] = { before: tally.before.hits / n, after: tally.after.hits / n };
      fpBefore += tally.before.fp;
      fpAfter += tally.after.fp;
      frames += images.length;
      rows.push(`| ${w} px | ${n} | ${result[w].before.toFixed(2)} | ${result[w].after.toFixed(2)} | ${(tally.before.fp / images.length).toFixed(2)} | ${(tally.after.fp / images.length).toFixed(2)} |`);
    }
    console.log(['| face width | faces | recall whole frame | recall pyramid | FP/frame whole | FP/frame pyramid |', '| --- | --- | --- | --- | --- | --- |', ...rows].join('\n'));
    expect(result[24]!.after, 'recall at 24 px (0.76 measured, float32 and bfloat16; the tiles had 0.72)').toBeGreaterThanOrEqual(0.7);
    for (const w of [40, 28]) {
      expect(result[w]!.after, `recall at ${w} px`).toBeGreaterThanOrEqual(0.85);
      expect(result[w]!.after - result[w]!.before, `recall gain at ${w} px`).toBeGreaterThanOrEqual(0.3);
    }
    for (const w of [160, 64]) expect(result[w]!.after, `recall at ${w} px`).toBeGreaterThanOrEqual(Math.max(0.9, result[w]!.before - 0.05));
    expect(fpAfter / frames, 'false positives per frame, pyramid').toBeLessThanOrEqual(0.5);
    expect(fpAfter / frames).toBeLessThanOrEqual(fpBefore / frames + 0.5);
  }, 300_000);

  it('several frames in one call: same-size inputs share runs (within the pixel cap), faces as one call per frame', async (ctx) => {
    const model = presentOrSkip(runner, ctx, RUNNER, FILE);
    const made = await Promise.all([0, 1].map((i) => makeFrame(40, 7000 + i)));
    const odd = (await makeFrame(40, 7002)).frame;
    const small = await letterboxResize(odd, { width: 1000, height: 600 });
    const images = [made[0]!.frame, small, made[1]!.frame];
    const runs: string[] = [];
    const spy: TensorRunner = {
      run: (method, inputs) => {
        runs.push(`${method} ${inputs[0]!.shape.join('x')}`);
        return model.run(method, inputs);
      },
    };
    const together = await detectFaces(spy, images);
    // 928x512 (1280x720) and 736x448 (1000x600) each alone (over 4x256x256 pixels); the three whole frames, all 256x160, together
    expect(runs.sort()).toEqual(['dense 1x3x448x736', 'dense 1x3x512x928', 'dense 1x3x512x928', 'dense 3x3x160x256']);
    const alone = await Promise.all(images.map(async (im) => (await detectFaces(model, [im]))[0]!));
    expect(together.map((f) => f.length)).toEqual(alone.map((f) => f.length));
    expect(together[0]!.length).toBeGreaterThan(10);
    together.forEach((faces, i) =>
      faces.forEach((f, j) => {
        const g = alone[i]![j]!;
        [f.box.x - g.box.x, f.box.y - g.box.y, f.box.width - g.box.width, f.score - g.score].forEach((d) => expect(Math.abs(d)).toBeLessThan(0.05));
      }),
    );
  }, 120_000);

  it('refuses a non-boolean tiling option', async (ctx) => {
    const model = presentOrSkip(runner, ctx, RUNNER, FILE);
    const img = { data: new Uint8Array(12), width: 2, height: 2 };
    await expect(detectFaces(model, [img], { tiling: 'yes' as unknown as boolean })).rejects.toSatisfy((e) => isDfdetError(e, 'BAD_INPUT'));
  });
});
