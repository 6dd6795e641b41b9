/**
 * Benchmark part "models": load time and peak resident memory of a detector file (ViT-L/14 size,
 * 1.2 GB fp32) in a fresh process — dfdet's {@link Model.load} in Node against `torch.jit.load`
 * in Python. Each measurement is its own process, alternating, so neither inherits the other's
 * memory; the file is read once beforehand so both load from the page cache.
 */
import * as fs from 'node:fs';

import type { ArchName } from '../detector-model/arch';
import {
  type BenchContext,
  type BenchResult,
  cachedDetector,
  lastJson,
  median,
  nodeEntry,
  pythonUnavailable,
  ratioOf,
  runPython,
  runProcess,
} from './common';

/** Settings of {@link benchModels}; defaults depend on `ctx.quick`. */
export interface ModelsBenchOptions {
  /** Detector size (default 'vit-l-14'; quick: 'tiny'). */
  arch?: ArchName;
  /** Fresh processes per side (default 3; quick: 1); the median time and the largest peak are reported. */
  rounds?: number;
}

interface LoadSample {
  loadS: number;
  baselineRss: number;
  rss: number;
  hwm: number;
  parameterBytes: number;
}

interface PyLoad {
  torch: string;
  load_s: number;
  baseline_rss: number;
  rss: number;
  hwm: number;
  parameter_bytes: number;
}

const MB = 1e6;

async function warmPageCache(file: string): Promise<void> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(16 << 20);
    while ((await fh.read(buf, 0, buf.length, null)).bytesRead > 0);
  } finally {
    await fh.close();
  }
}

/** Runs the models part. */
export async function benchModels(ctx: BenchContext, opts: ModelsBenchOptions = {}): Promise<BenchResult[]> {
  const arch = opts.arch ?? (ctx.quick ? 'tiny' : 'vit-l-14');
  const rounds = opts.rounds ?? (ctx.quick ? 1 : 3);
  const file = await cachedDetector(ctx, arch);
  const fileBytes = fs.statSync(file).size;
  await warmPageCache(file);
  const why = await pythonUnavailable(ctx);
  if (why) ctx.log(`models: Python reference skipped: ${why}`);

  const entry = nodeEntry('load-child');
  const dfdet: LoadSample[] = [];
  const torch: PyLoad[] = [];
  for (let i = 0; i < rounds; i++) {
    ctx.log(`models: load ${arch} round ${i + 1}/${rounds}`);
    dfdet.push(lastJson<LoadSample>(await runProcess(entry.cmd, [...entry.args, file]), 'load-child'));
    if (!why) torch.push(await runPython<PyLoad>(ctx, 'load.py', { model: file }));
  }

  const weights = dfdet[0]!.parameterBytes;
  const loadS = median(dfdet.map((s) => s.loadS));
  const pyLoadS = torch.length ? median(torch.map((s) => s.load_s)) : undefined;
  const hwm = Math.max(...dfdet.map((s) => s.hwm));
  const growth = Math.max(...dfdet.map((s) => s.hwm - s.baselineRss));
  const pyHwm = torch.length ? Math.max(...torch.map((s) => s.hwm)) : undefined;
  const pyGrowth = torch.length ? Math.max(...torch.map((s) => s.hwm - s.baseline_rss)) : undefined;
  const details = { arch, file, fileBytes, parameterBytes: weights, rounds, dfdet, torch };
  const weightsRef = { name: 'weights', value: weights / MB };

  const results: BenchResult[] = [
    {
      part: 'models',
      name: `load ${arch} (fresh process)`,
      value: loadS,
      unit: 's',
      ...(pyLoadS !== undefined ? { reference: { name: 'torch.jit.load', value: pyLoadS } } : {}),
      ratio: ratioOf(loadS, pyLoadS),
      ratioLabel: 'dfdet/torch',
      target: '<= 1.5',
      details,
    },
    {
      part: 'models',
      name: `peak RSS after load ${arch} (dfdet)`,
      value: hwm / MB,
      unit: 'MB',
      reference: weightsRef,
      ratio: hwm / weights,
      ratioLabel: 'peak/weights',
      target: '<= 1.3',
    },
    {
      part: 'models',
      name: `peak RSS growth in load (dfdet)`,
      value: growth / MB,
      unit: 'MB',
      reference: weightsRef,
      ratio: growth / weights,
      ratioLabel: 'growth/weights',
      target: 'baseline (addon loaded) excluded',
    },
  ];
  if (pyHwm !== undefined && pyGrowth !== undefined) {
    results.push(
      {
        part: 'models',
        name: `peak RSS after load ${arch} (torch)`,
        value: pyHwm / MB,
        unit: 'MB',
        reference: weightsRef,
        ratio: pyHwm / weights,
        ratioLabel: 'peak/weights',
        target: `dfdet/torch peak ${(hwm / pyHwm).toFixed(2)}`,
      },
      {
        part: 'models',
        name: `peak RSS growth in load (torch)`,
        value: pyGrowth / MB,
        unit: 'MB',
        reference: weightsRef,
        ratio: pyGrowth / weights,
        ratioLabel: 'growth/weights',
        target: 'baseline (torch imported) excluded',
      },
    );
  }
  return results;
}
