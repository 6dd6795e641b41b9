/**
 * Runs the benchmark parts and collects their numbers (the CLI is lib/bench/main.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { native } from '../native';
import { type BenchContext, type BenchResult, defaultBenchCacheDir, loadAverage, now } from './common';
import { benchMedia } from './media';
import { benchModels } from './models';
import { benchNative } from './native';
import { chooseDType } from '../model';
import { cpuFeatures } from '../runtime/cpu';
import type { ArchName } from '../detector-model/arch';
import { benchServe } from './serve';
import { benchThroughput } from './throughput';
import { benchTrain } from './train';

/** Benchmark parts, in the order they run. */
export const PARTS = ['native', 'models', 'media', 'throughput', 'serve', 'train'] as const;
/** A benchmark part name. */
export type BenchPart = (typeof PARTS)[number];

/** Options of {@link runBench}. */
export interface RunBenchOptions {
  /** Parts to run (default all, in {@link PARTS} order). */
  only?: BenchPart[];
  /** Smoke-run sizes (tiny models, short loops; < 1 min in all). Default false. */
  quick?: boolean;
  /** Detector of the throughput part (default 'vit-l-14', the paper's size; quick: 'tiny'). */
  throughputArch?: ArchName;
  /** Folder for built models kept between runs (default $DFDET_BENCH_CACHE or <tmp>/dfdet-bench-cache). */
  cacheDir?: string;
  /** Python with torch for the references (default $DFDET_PYTHON or /usr/bin/python3). */
  python?: string;
  /** Progress output (default: to stderr). */
  log?: (msg: string) => void;
}

/** Everything a run measured, as written by `--json`. */
export interface BenchReport {
  startedAt: string;
  quick: boolean;
  parts: BenchPart[];
  environment: Record<string, unknown>;
  results: BenchResult[];
  /** Parts that threw, with the message (the other parts still ran). */
  errors: { part: BenchPart; message: string }[];
  /** Wall time of each part in seconds. */
  partSeconds: Partial<Record<BenchPart, number>>;
  /** 1-minute load average before and after each part (other processes skew timings). */
  partLoadAverage: Partial<Record<BenchPart, { start: number; end: number }>>;
}

/** Runs the selected benchmark parts and returns every number. */
export async function runBench(options: RunBenchOptions = {}): Promise<BenchReport> {
  const parts = PARTS.filter((p) => !options.only || options.only.includes(p));
  const started = now();
  const log = options.log ?? ((m: string) => process.stderr.write(`[${(now() - started).toFixed(1).padStart(6)} s] ${m}\n`));
  const quick = options.quick ?? false;
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-bench-'));
  const ctx: BenchContext = {
    quick,
    cacheDir: options.cacheDir ?? defaultBenchCacheDir(),
    tmpDir,
    python: options.python ?? process.env.DFDET_PYTHON ?? '/usr/bin/python3',
    log,
  };
  const info = native().runtimeInfo();
  const report: BenchReport = {
    startedAt: new Date().toISOString(),
    quick,
    parts,
    environment: {
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      cpu: os.cpus()[0]?.model,
      cores: os.cpus().length,
      memoryBytes: os.totalmem(),
      torch: info.torchVersion,
      threads: info.threads,
      blas: info.blasLibraries,
      cpuFlags: cpuFeatures().flags,
      autoDType: chooseDType('auto', 'cpu'),
      python: ctx.python,
    },
    results: [],
    errors: [],
    partSeconds: {},
    partLoadAverage: {},
  };
  const run: Record<BenchPart, (c: BenchContext) => Promise<BenchResult[]>> = { native: benchNative, models: benchModels, media: benchMedia, throughput: (c) => benchThroughput(c, { arch: options.throughputArch }), serve: benchServe, train: benchTrain };
  try {
    for (const part of parts) {
      const t0 = now();
      const load0 = loadAverage();
      if (load0 > os.cpus().length * 0.5) log(`${part}: note: load average ${load0} on ${os.cpus().length} cores; other processes will skew the timings`);
      try {
        report.results.push(...(await run[part](ctx)));
      } catch (e) {
        const message = (e as Error)?.stack ?? String(e);
        log(`${part}: FAILED: ${message}`);
        report.errors.push({ part, message: (e as Error)?.message ?? String(e) });
      }
      report.partSeconds[part] = now() - t0;
      report.partLoadAverage[part] = { start: load0, end: loadAverage() };
      log(`${part}: done in ${report.partSeconds[part]!.toFixed(1)} s`);
    }
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
  return report;
}

