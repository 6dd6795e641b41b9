/** The training loop's pure pieces: schedule, batch order, slerp pairs, options, bf16 detection. */
import { describe, it, expect } from 'vitest';
import { isDfdetError } from '../lib/errors';
import { parseCpuInfo } from '../lib/runtime/cpu';
import { resolveTrainOptions, warmupSteps } from '../lib/train/options';
import { epochBatches, epochRandom, learningRate, permutation, slerpPairs } from '../lib/train/schedule';
import { TRAINABLE, WEIGHT_DECAY } from '../lib/train/model';

describe('learning-rate schedule', () => {
  const s = { lr: 1, minLr: 0.1, warmupSteps: 4, totalSteps: 14 };
  it('warms up linearly, then decays along a cosine to minLr', () => {
    expect([0, 1, 2, 3].map((i) => learningRate(i, s))).toEqual([0.25, 0.5, 0.75, 1]);
    expect(learningRate(4, s)).toBe(1);
    expect(learningRate(9, s)).toBeCloseTo(0.55, 12); // half-way: (1 + 0.1) / 2
    expect(learningRate(14, s)).toBeCloseTo(0.1, 12);
    for (let i = 5; i < 14; i++) expect(learningRate(i, s)).toBeLessThan(learningRate(i - 1, s));
  });
  it('no warm-up starts at lr; warm-up as a fraction of all steps', () => {
    expect(learningRate(0, { ...s, warmupSteps: 0 })).toBe(1);
    expect(warmupSteps(0.1, 95)).toBe(10);
    expect(warmupSteps(3, 95)).toBe(3);
  });
});

describe('batches and slerp pairs', () => {
  it('an epoch visits every row once, in a seeded order; another epoch or seed is another order', () => {
    const a = epochBatches(50, 16, epochRandom(3, 0));
    expect(a.map((b) => b.length)).toEqual([16, 16, 16, 2]);
    expect(a.flat().sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(epochBatches(50, 16, epochRandom(3, 0))).toEqual(a);
    expect(epochBatches(50, 16, epochRandom(3, 1))).not.toEqual(a);
    expect(epochBatches(50, 16, epochRandom(4, 0))).not.toEqual(a);
    // A one-image tail is dropped (a batch of one has no pairs and a noisy gradient).
    expect(epochBatches(33, 16, epochRandom(0, 0)).map((b) => b.length)).toEqual([16, 16]);
  });
  it('partners are same-class rows (a permutation within each class), weights in the range', () => {
    const labels = [0, 1, 1, 0, 1, 0, 0, 1];
    for (let seed = 0; seed < 20; seed++) {
      const { partner, weight } = slerpPairs(labels, epochRandom(seed, 0), [0.2, 0.6]);
      for (let i = 0; i < labels.length; i++) {
        expect(labels[partner[i]!]).toBe(labels[i]);
        expect(weight[i]).toBeGreaterThanOrEqual(0.2);
        expect(weight[i]).toBeLessThanOrEqual(0.6);
      }
      for (const c of [0, 1]) {
        const rows = labels.flatMap((l, i) => (l === c ? [i] : []));
        expect(rows.map((r) => partner[r]).sort()).toEqual(rows);
      }
    }
    // A class with one row in the batch has no partner.
    expect([...slerpPairs([0, 1, 1], epochRandom(0, 0)).partner][0]).toBe(-1);
    expect(permutation(5, epochRandom(1, 1)).sort()).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('options', () => {
  it('defaults, checks, and the trained-tensor patterns', () => {
    const o = resolveTrainOptions({ model: 'm.pt', data: 'd', out: 'o.pt' });
    expect(o).toMatchObject({ epochs: 1, lr: 3e-4, minLr: 1e-6, batchSize: 32, faces: 'detect', dtype: 'float32', slerp: true, gradClip: 1 });
    expect(o.checkpoint).toMatch(/o\.pt\.ckpt$/);
    for (const bad of [{ epochs: 0 }, { lr: -1 }, { batchSize: 1 }, { faces: 'all' }, { dtype: 'float16' }, { slerpRange: [0.8, 0.2] }, { seed: -1 }]) {
      let err: unknown;
      try {
        resolveTrainOptions({ model: 'm.pt', data: 'd', out: 'o.pt', ...(bad as object) });
      } catch (e) {
        err = e;
      }
      expect(isDfdetError(err, 'BAD_INPUT'), JSON.stringify(bad)).toBe(true);
    }
    const names = ['pre_ln_weight', 'layer3.ln1_bias', 'layer3.ln2_weight', 'post_ln_bias', 'head_weight', 'head_bias', 'layer3.q_weight', 'patch_weight', 'class_embedding', 'layer0.fc1_bias'];
    expect(names.filter((n) => TRAINABLE.test(n))).toEqual(names.slice(0, 6));
    expect(names.filter((n) => WEIGHT_DECAY.test(n))).toEqual(['head_weight']);
  });
  it('bf16 support is read from the CPU flags', () => {
    expect(parseCpuInfo('processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16\n').bf16).toBe(true);
    expect(parseCpuInfo('flags : fpu sse avx2 amx_bf16 amx_tile\n').bf16).toBe(true);
    expect(parseCpuInfo('flags : fpu sse avx2 avx512f\n').bf16).toBe(false);
  });
});
