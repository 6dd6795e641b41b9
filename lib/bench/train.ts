/**
 * Benchmark part "train": training throughput (img/s) of one LN-tuning step in the addon
 * (NativeTrainer: pooled → slerp → head → cross-entropy → backward → clip → AdamW) against the
 * same step in PyTorch on the same file, batch and thread count; plus bfloat16 autocast where
 * the CPU has native bf16 matmuls.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { ArchName } from '../detector-model/arch';
import { ARCHS } from '../detector-model/arch';
import { native } from '../native';
import { createTrainer, TRAINABLE } from '../train/model';
import { cpuFeatures } from '../runtime/cpu';
import { resolveTrainOptions } from '../train/options';
import { type BenchContext, type BenchResult, cachedDetector, median, now, pythonUnavailable, ratioOf, runPython, syntheticInput } from './common';

/** Settings of {@link benchTrain}; defaults depend on `ctx.quick`. */
export interface TrainBenchOptions {
  /** Detector size (default 'vit-b-16'; quick: 'tiny'). */
  arch?: ArchName;
  /** Images per step (default 8). */
  batch?: number;
  /** Untimed and timed steps per engine (default 1 and 3; quick: 2 and 5). */
  warmup?: number;
  iters?: number;
}

/** Runs the train part: dfdet float32 (and bfloat16) against PyTorch float32 (and bfloat16). */
export async function benchTrain(ctx: BenchContext, opts: TrainBenchOptions = {}): Promise<BenchResult[]> {
  const arch = opts.arch ?? (ctx.quick ? 'tiny' : 'vit-b-16');
  const batch = opts.batch ?? 8;
  const warmup = opts.warmup ?? (ctx.quick ? 2 : 1);
  const iters = opts.iters ?? (ctx.quick ? 5 : 3);
  const size = ARCHS[arch].imageSize;
  const file = await cachedDetector(ctx, arch);
  const threads = native().runtimeInfo().threads;
  const input = syntheticInput(batch * 3 * size * size);
  const inputFile = path.join(ctx.tmpDir, 'train-input.f32');
  fs.writeFileSync(inputFile, input);
  const labels = Int32Array.from({ length: batch }, (_, i) => i % 2);
  const partner = Int32Array.from({ length: batch }, (_, i) => (i + 2) % batch);
  const dtypes: ('float32' | 'bfloat16')[] = cpuFeatures().bf16 ? ['float32', 'bfloat16'] : ['float32'];
  const results: BenchResult[] = [];
  for (const dtype of dtypes) {
    ctx.log(`train: ${arch} batch ${batch} ${dtype}: dfdet`);
    const trainer = await createTrainer(resolveTrainOptions({ model: file, data: ctx.tmpDir, out: path.join(ctx.tmpDir, 'x.pt'), dtype }));
    const times: number[] = [];
    try {
      for (let s = 0; s < warmup + iters; s++) {
        const weight = Float32Array.from({ length: batch }, (_, i) => ((s * 7 + i * 3) % 10) / 10);
        const t0 = now();
        await trainer.step({ data: input, shape: [batch, 3, size, size], dtype: 'float32' }, { data: labels, shape: [batch], dtype: 'int32' }, {
          lr: 1e-4,
          slerpPartner: { data: partner, shape: [batch], dtype: 'int32' },
          slerpWeight: { data: weight, shape: [batch], dtype: 'float32' },
        });
        if (s >= warmup) times.push(now() - t0);
      }
    } finally {
      await trainer.dispose();
    }
    const dfdet = batch / median(times);
    let py: number | undefined;
    let pyTimes: number[] | undefined;
    const why = await pythonUnavailable(ctx);
    if (why) ctx.log(`train: no PyTorch reference (${why})`);
    else {
      ctx.log(`train: ${arch} batch ${batch} ${dtype}: PyTorch`);
      const r = await runPython<{ times: number[] }>(ctx, 'train_step.py', {
        model: file, input: inputFile, batch, size, warmup, iters, threads, bf16: dtype === 'bfloat16', trainable: TRAINABLE.source,
      });
      pyTimes = r.times;
      py = batch / median(r.times);
    }
    results.push({
      part: 'train',
      name: `LN-tuning step ${arch} b=${batch} ${dtype} ${threads} thr (addon)`,
      value: dfdet,
      unit: 'img/s',
      reference: py === undefined ? undefined : { name: `PyTorch ${dtype === 'bfloat16' ? 'bf16 autocast' : 'float32'}`, value: py },
      ratio: ratioOf(dfdet, py),
      ratioLabel: 'dfdet/python',
      target: 'ratio >= 1.0',
      details: { stepSeconds: times, pythonStepSeconds: pyTimes },
    });
  }
  return results;
}
