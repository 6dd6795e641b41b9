/**
 * One (and a second) optimisation step of dfdet's native trainer against the same steps in plain
 * PyTorch (test/python/train_ref.py) on the same tiny detector and batch; only LayerNorm and head
 * tensors change; bad input ends in typed errors.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { NativeTrainer } from '../binding';
import { initModel } from '../lib/detector-model/init';
import { buildModule, expectTensor, Model } from '../lib/model';
import { isDfdetError } from '../lib/errors';
import { wrapNativeError } from '../lib/native';
import { createTrainer, TRAINABLE, WEIGHT_DECAY } from '../lib/train/model';
import { cpuFeatures } from '../lib/runtime/cpu';
import { checkDtypeSupported, resolveTrainOptions } from '../lib/train/options';
import { slerpPairs, epochRandom } from '../lib/train/schedule';
import { runPython, skipWithoutPython } from './helpers/python';
import { rng } from './helpers/random';

interface RefResult {
  steps: { loss: number; ce: number; alignment: number; uniformity: number; gradNorm: number }[];
  params: Record<string, { trainable: boolean; refVsDfdet: number; refVsBase: number; dfdetVsBase: number }>;
}

let dir: string;
let base: string;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-train-step-'));
  base = path.join(dir, 'tiny.pt');
  await initModel({ arch: 'tiny', seed: 3, output: base });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const B = 6;
function batch(): { images: Float32Array; labels: Int32Array } {
  const r = rng(11);
  const images = Float32Array.from({ length: B * 3 * 224 * 224 }, () => (r() - 0.5) * 4);
  return { images, labels: Int32Array.from([0, 1, 0, 1, 1, 0]) };
}

const skip = skipWithoutPython('torch', 'numpy');

describe.skipIf(skip)('training step vs PyTorch', () => {
  for (const variant of [
    { name: 'cross-entropy + slerp', slerp: true, labelSmoothing: 0, alignment: 0, uniformity: 0, gradClip: 0 },
    { name: 'all losses, label smoothing, clipping', slerp: true, labelSmoothing: 0.1, alignment: 0.5, uniformity: 0.3, gradClip: 0.005 },
  ]) {
    it(`${variant.name}: two AdamW steps match to 1e-5; only LayerNorm and head tensors change`, async () => {
      const out = path.join(dir, `trained-${variant.gradClip}.pt`);
      const o = resolveTrainOptions({ model: base, data: dir, out, weightDecay: 0.05, ...variant });
      const trainer = await createTrainer(o);
      const { images, labels } = batch();
      const pairs = slerpPairs(labels, epochRandom(5, 0));
      const lrs = [0.01, 0.004];
      const got = [];
      try {
        for (const lr of lrs) {
          got.push(
            await trainer.step({ data: images, shape: [B, 3, 224, 224], dtype: 'float32' }, { data: labels, shape: [B], dtype: 'int32' }, {
              lr,
              slerpPartner: { data: pairs.partner, shape: [B], dtype: 'int32' },
              slerpWeight: { data: pairs.weight, shape: [B], dtype: 'float32' },
            }),
          );
        }
        await trainer.saveModel(out);
      } finally {
        await trainer.dispose();
      }
      const imagesFile = path.join(dir, 'images.f32');
      fs.writeFileSync(imagesFile, images);
      const ref = runPython<RefResult>('train_ref.py', [], {
        base,
        trained: out,
        images: imagesFile,
        shape: [B, 3, 224, 224],
        labels: [...labels],
        partner: [...pairs.partner],
        weight: [...pairs.weight],
        lrs,
        trainable: TRAINABLE.source,
        decay: WEIGHT_DECAY.source,
        weightDecay: 0.05,
        ...variant,
      });
      for (let s = 0; s < lrs.length; s++) {
        for (const k of ['loss', 'ce', 'alignment', 'uniformity', 'gradNorm'] as const) {
          const want = variant.alignment === 0 && (k === 'alignment' || k === 'uniformity') ? 0 : ref.steps[s]![k];
          expect(Math.abs(got[s]![k] - want), `step ${s + 1} ${k}`).toBeLessThan(1e-5);
        }
      }
      // Clipping really clipped in the second variant (else the test would not test it).
      if (variant.gradClip > 0) expect(got[0]!.gradNorm).toBeGreaterThan(variant.gradClip);
      const names = Object.keys(ref.params);
      const trainable = names.filter((n) => ref.params[n]!.trainable);
      // 2 blocks × 2 LayerNorms + pre + post = 6 LayerNorms (weight, bias) + head weight and bias.
      expect(trainable.sort()).toEqual(
        ['head_bias', 'head_weight', 'post_ln_bias', 'post_ln_weight', 'pre_ln_bias', 'pre_ln_weight', ...[0, 1].flatMap((i) => ['ln1', 'ln2'].flatMap((l) => [`layer${i}.${l}_bias`, `layer${i}.${l}_weight`]))].sort(),
      );
      for (const n of names) {
        const p = ref.params[n]!;
        expect(p.refVsDfdet, `${n} dfdet vs PyTorch`).toBeLessThan(1e-5);
        if (p.trainable) expect(p.dfdetVsBase, `${n} changed`).toBeGreaterThan(1e-4);
        else expect(p.dfdetVsBase, `${n} frozen`).toBe(0);
      }
    });
  }
});

describe('bfloat16 autocast', () => {
  it('trains with bf16 matmuls close to float32 where the CPU has native bf16, else is UNSUPPORTED', async () => {
    const o32 = resolveTrainOptions({ model: base, data: dir, out: path.join(dir, 'f32.pt') });
    const o16 = resolveTrainOptions({ model: base, data: dir, out: path.join(dir, 'bf16.pt'), dtype: 'bfloat16' });
    if (!cpuFeatures().bf16) {
      expect(() => checkDtypeSupported(o16)).toThrow(expect.objectContaining({ code: 'UNSUPPORTED' }));
      return;
    }
    const { images, labels } = batch();
    const losses: number[][] = [];
    for (const o of [o32, o16]) {
      const trainer = await createTrainer(o);
      expect(trainer.info().dtype).toBe(o.dtype);
      const ls: number[] = [];
      for (let s = 0; s < 3; s++)
        ls.push((await trainer.step({ data: images, shape: [B, 3, 224, 224], dtype: 'float32' }, { data: labels, shape: [B], dtype: 'int32' }, { lr: 0.01 })).loss);
      await trainer.saveModel(o.out);
      await trainer.dispose();
      losses.push(ls);
    }
    // bf16 has an 8-bit mantissa: close to float32, and not identical (autocast really ran).
    losses[1]!.forEach((l, i) => expect(Math.abs(l - losses[0]![i]!)).toBeLessThan(2e-2));
    expect(losses[1]).not.toEqual(losses[0]);
    // The saved model is a plain detector: it loads and scores.
    const m = await Model.load(o16.out);
    const out = expectTensor(await m.run('forward', [{ data: images.subarray(0, 3 * 224 * 224), shape: [1, 3, 224, 224], dtype: 'float32' }]));
    expect(out.shape).toEqual([1, 2]);
    expect([...out.data].every((v) => Number.isFinite(Number(v)))).toBe(true);
    await m.dispose();
  });
});

describe('trainer errors', () => {
  it('bad labels, NaN images and a disposed trainer give typed errors', async () => {
    const o = resolveTrainOptions({ model: base, data: dir, out: path.join(dir, 'x.pt') });
    const trainer: NativeTrainer = await createTrainer(o);
    const images = new Float32Array(2 * 3 * 224 * 224);
    const call = (labels: Int32Array, im = images) =>
      Promise.resolve()
        .then(() => trainer.step({ data: im, shape: [2, 3, 224, 224], dtype: 'float32' }, { data: labels, shape: [labels.length], dtype: 'int32' }, { lr: 0.1 }))
        .then(
        () => null,
        (e: unknown) => wrapNativeError(e),
      );
    expect((await call(Int32Array.from([0, 2])))?.code).toBe('BAD_INPUT');
    expect((await call(Int32Array.from([0])))?.code).toBe('BAD_INPUT');
    const nan = images.slice();
    nan[5] = Number.NaN;
    expect((await call(Int32Array.from([0, 1]), nan))?.code).toBe('BAD_INPUT');
    // The wrong image size reaches the model's own check: a typed error, the trainer still works.
    const small = await Promise.resolve()
      .then(() => trainer.step({ data: new Float32Array(2 * 3 * 64 * 64), shape: [2, 3, 64, 64], dtype: 'float32' }, { data: Int32Array.from([0, 1]), shape: [2], dtype: 'int32' }, { lr: 0.1 }))
      .then(() => null, (e: unknown) => wrapNativeError(e));
    expect(small?.code).toBe('RUNTIME_ERROR');
    const slerpBad = await Promise.resolve()
      .then(() =>
        trainer.step({ data: images, shape: [2, 3, 224, 224], dtype: 'float32' }, { data: Int32Array.from([0, 1]), shape: [2], dtype: 'int32' }, {
          lr: 0.1,
          slerpPartner: { data: Int32Array.from([5, 0]), shape: [2], dtype: 'int32' },
          slerpWeight: { data: new Float32Array(2), shape: [2], dtype: 'float32' },
        }),
      )
      .then(() => null, (e: unknown) => wrapNativeError(e));
    expect(slerpBad?.code).toBe('BAD_INPUT');
    await expect(Promise.resolve().then(() => trainer.step({ data: images, shape: [2, 3, 224, 224], dtype: 'float32' }, { data: Int32Array.from([0, 1]), shape: [2], dtype: 'int32' }, { lr: Number.NaN }))).rejects.toMatchObject({ code: 'BAD_INPUT' });
    expect(await call(Int32Array.from([0, 1]))).toBeNull();
    await expect(trainer.loadCheckpoint(path.join(dir, 'missing.ckpt'))).rejects.toMatchObject({ code: 'RUNTIME_ERROR' });
    await trainer.dispose();
    const e = await call(Int32Array.from([0, 1]));
    expect(isDfdetError(e, 'DISPOSED')).toBe(true);
  });

  it('a file that is not a dfdet detector is UNSUPPORTED or MODEL_LOAD_FAILED', async () => {
    const bad = path.join(dir, 'bad.pt');
    fs.writeFileSync(bad, 'not a model');
    await expect(createTrainer(resolveTrainOptions({ model: bad, data: dir, out: path.join(dir, 'y.pt') }))).rejects.toMatchObject({ code: 'MODEL_LOAD_FAILED' });
    // A TorchScript module without the detector's pooled/head methods cannot be LN-tuned.
    const plain = path.join(dir, 'plain.pt');
    await buildModule({ className: 'Plain', source: 'def forward(self, x: Tensor) -> Tensor:\n    return x * self.ln_weight\n', parameters: { ln_weight: { data: new Float32Array(2), shape: [2], dtype: 'float32' } } }, plain);
    await expect(createTrainer(resolveTrainOptions({ model: plain, data: dir, out: path.join(dir, 'z.pt') }))).rejects.toMatchObject({ code: 'UNSUPPORTED', message: expect.stringMatching(/no 'pooled' method/) });
  });
});
