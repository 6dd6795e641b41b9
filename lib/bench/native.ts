/**
 * Benchmark part "native": model-only forward throughput of a CLIP ViT detector (ViT-L/14 size,
 * random weights) in the addon from Node, against the same file in PyTorch (same libtorch, same
 * input, same thread count), and the addon with `optimize: true` (freeze + optimize_for_inference).
 *
 * The engines take turns run by run (addon, addon optimized, PyTorch, addon, ...), so load from
 * other processes falls on all of them alike; each is warmed up first (TorchScript's profiling
 * executor optimizes the graph during the first runs).
 *
 * Caveat measured on this machine: PyTorch from Python (default TensorExpr fuser on) needed ~8 runs
 * of a new input shape before its times settled (BlazeFace: 250-1400 ms, then 8-17 ms per run;
 * steady from the first run with `torch._C._jit_set_texpr_fuser_enabled(False)`), while the addon
 * settled after 2. One warm-up per batch size cannot cover that for ViT-L/14 without minutes of
 * extra runs, so PyTorch's first batch sizes may read slow: the raw times are in the JSON.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { ArchName } from '../detector-model/arch';
import { ARCHS } from '../detector-model/arch';
import { expectTensor, Model } from '../model';
import { native } from '../native';
import {
  type BenchContext,
  type BenchResult,
  cachedDetector,
  loadAverage,
  median,
  now,
  PyForwardServer,
  pythonUnavailable,
  ratioOf,
  syntheticInput,
} from './common';

/** Settings of {@link benchNative}; defaults depend on `ctx.quick`. */
export interface NativeBenchOptions {
  /** Detector size (default 'vit-l-14'; quick: 'tiny'). */
  arch?: ArchName;
  /** Batch sizes (default [1, 4, 8]). */
  batches?: number[];
  /** Untimed runs per engine and batch size (default 1), after 2 batch-1 runs at the start. */
  warmup?: number;
  /** Timed runs per engine and batch size (default 2; quick: 5). */
  iters?: number;
  /** Also measure the addon with optimize=true (default true). */
  optimize?: boolean;
}

/** One engine: runs a batch of the first `b` items; returns its output and its own run time (s). */
interface Engine {
  name: string;
  run(b: number): Promise<{ out: ArrayLike<number>; s: number }>;
  times: Map<number, number[]>;
  output: Map<number, ArrayLike<number>>;
}

/** Runs the native part; returns one result per batch size and engine. */
export async function benchNative(ctx: BenchContext, opts: NativeBenchOptions = {}): Promise<BenchResult[]> {
  const o: Required<NativeBenchOptions> = {
    arch: opts.arch ?? (ctx.quick ? 'tiny' : 'vit-l-14'),
    batches: opts.batches ?? [1, 4, 8],
    warmup: opts.warmup ?? 1,
    iters: opts.iters ?? (ctx.quick ? 5 : 2),
    optimize: opts.optimize ?? true,
  };
  const arch = ARCHS[o.arch];
  const file = await cachedDetector(ctx, o.arch);
  const threads = native().runtimeInfo().threads;
  const item = [3, arch.imageSize, arch.imageSize];
  const per = item.reduce((a, b) => a * b, 1);
  const input = syntheticInput(Math.max(...o.batches) * per);
  const inputFile = path.join(ctx.tmpDir, 'native-input.f32');
  fs.writeFileSync(inputFile, input);
  const label = `${o.arch} ${threads} thr`;
  const loadAvgStart = loadAverage();

  const models: Model[] = [];
  const engines: Engine[] = [];
  const loadS: Record<string, number> = {};
  let py: PyForwardServer | undefined;
  try {
    for (const optimize of o.optimize ? [false, true] : [false]) {
      const name = optimize ? 'addon-opt' : 'addon';
      ctx.log(`native: loading ${label} (optimize=${optimize})`);
      const t0 = now();
      const model = await Model.load(file, { optimize });
      loadS[name] = now() - t0;
      models.push(model);
      engines.push({
        name,
        run: async (b) => {
          const t = now();
          const v = await model.run('forward', [{ data: input.subarray(0, b * per), shape: [b, ...item], dtype: 'float32' }]);
          return { s: now() - t, out: expectTensor(v).data as Float32Array };
        },
        times: new Map(),
        output: new Map(),
      });
    }
    const why = await pythonUnavailable(ctx);
    if (why) ctx.log(`native: PyTorch reference skipped: ${why}`);
    else {
      ctx.log(`native: starting PyTorch on the same file (${threads} threads)`);
      const server = (py = await PyForwardServer.start(ctx, file, inputFile, item, threads));
      loadS.torch = server.info.load_s;
      engines.push({
        name: 'torch',
        run: async (b) => {
          // PyTorch's own timing: the pipe round trip is not counted.
          const r = await server.run(b, 0, 1);
          return { s: r.times[0]!, out: r.output };
        },
        times: new Map(),
        output: new Map(),
      });
    }

    ctx.log(`native: warm-up (${engines.map((e) => e.name).join(', ')})`);
    for (const e of engines) for (let i = 0; i < 2; i++) await e.run(1);
    for (const b of o.batches) {
      ctx.log(`native: batch ${b}: ${o.warmup} warm-up + ${o.iters} timed runs per engine, taking turns`);
      for (const e of engines) for (let i = 0; i < o.warmup; i++) await e.run(b);
      for (let i = 0; i < o.iters; i++) {
        for (const e of engines) {
          const { out, s } = await e.run(b);
          (e.times.get(b) ?? e.times.set(b, []).get(b)!).push(s);
          e.output.set(b, out);
        }
      }
    }
  } finally {
    for (const m of models) await m.dispose();
    await py?.close();
  }
  return report(o, label, threads, engines, loadS, { start: loadAvgStart, end: loadAverage() });
}

function report(
  o: Required<NativeBenchOptions>,
  label: string,
  threads: number,
  engines: Engine[],
  loadS: Record<string, number>,
  loadAvg: { start: number; end: number },
): BenchResult[] {
  const get = (name: string) => engines.find((e) => e.name === name);
  const plain = get('addon')!;
  const opt = get('addon-opt');
  const torch = get('torch');
  const ips = (e: Engine | undefined, b: number) => (e?.times.get(b) ? b / median(e.times.get(b)!) : undefined);
  const results: BenchResult[] = [];
  for (const b of o.batches) {
    const a = ips(plain, b)!;
    const p = ips(torch, b);
    let maxDiff: number | undefined;
    const ao = plain.output.get(b);
    const po = torch?.output.get(b);
    if (ao && po) {
      maxDiff = 0;
      for (let i = 0; i < po.length && i < ao.length; i++) maxDiff = Math.max(maxDiff, Math.abs(po[i]! - ao[i]!));
    }
    results.push({
      part: 'native',
      name: `forward ${label} b=${b}`,
      value: a,
      unit: 'img/s',
      ...(p !== undefined ? { reference: { name: 'torch', value: p } } : {}),
      ratio: ratioOf(a, p),
      ratioLabel: 'dfdet/torch',
      target: '>= 1.0 (aim 1.1)',
      details: {
        arch: o.arch,
        threads,
        batch: b,
        warmup: o.warmup,
        addonTimesS: plain.times.get(b),
        torchTimesS: torch?.times.get(b),
        maxAbsOutputDiff: maxDiff,
        loadS,
        loadAverage: loadAvg,
      },
    });
  }
  if (opt) {
    for (const b of o.batches) {
      const v = ips(opt, b)!;
      const base = ips(plain, b)!;
      results.push({
        part: 'native',
        name: `forward ${label} b=${b} optimize`,
        value: v,
        unit: 'img/s',
        reference: { name: 'optimize=false', value: base },
        ratio: ratioOf(v, base),
        ratioLabel: 'opt/plain',
        details: { arch: o.arch, threads, batch: b, timesS: opt.times.get(b), loadS },
      });
    }
  }
  return results;
}
