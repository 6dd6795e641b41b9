/**
 * dfdet benchmarks (`npm run bench -- [--only native,models,media,serve] [--quick] [--json FILE]`).
 *
 * Prints a table of measured numbers, each with the reference measured in the same run
 * (PyTorch on the same file and input, a plain ffmpeg decode, or a fixed target) and their ratio.
 * Benchmarks report; they never fail on a slow number (the exit code is 1 only when a part threw).
 */
import * as fs from 'node:fs';
import { Command } from 'commander';

import { ARCHS, type ArchName } from '../detector-model/arch';
import { formatTable } from './common';
import { type BenchPart, PARTS, runBench } from './run';

function parseParts(value: string): BenchPart[] {
  const names = value.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = names.filter((n) => !(PARTS as readonly string[]).includes(n));
  if (bad.length || names.length === 0) throw new Error(`Expected a comma-separated list of ${PARTS.join(', ')} for --only but received ${JSON.stringify(value)}`);
  return names as BenchPart[];
}

function parseArch(value: string): ArchName {
  if (!(value in ARCHS)) throw new Error(`Expected one of ${Object.keys(ARCHS).join(', ')} for --throughput-arch but received ${JSON.stringify(value)}`);
  return value as ArchName;
}

/** The CLI entry. */
export async function main(argv: string[] = process.argv): Promise<number> {
  const program = new Command()
    .name('dfdet-bench')
    .description('dfdet benchmarks: addon vs PyTorch forward, model load time and memory, media pipeline speed, HTTP service')
    .option('--only <parts>', `comma-separated parts to run (${PARTS.join(',')})`, parseParts)
    .option('--quick', 'smoke run: small models and short loops (< 1 min)', false)
    .option('--json <file>', 'write every number (and raw samples) to this JSON file')
    .option('--cache-dir <dir>', 'where built benchmark models are kept between runs')
    .option('--python <exe>', 'Python with torch for the references')
    .option('--throughput-arch <arch>', `detector of the throughput part (${Object.keys(ARCHS).join(', ')}; default vit-l-14, the paper's size; quick: tiny)`, parseArch);
  program.parse(argv);
  const o = program.opts<{ only?: BenchPart[]; quick: boolean; json?: string; cacheDir?: string; python?: string; throughputArch?: ArchName }>();
  const report = await runBench({ only: o.only, quick: o.quick, cacheDir: o.cacheDir, python: o.python, throughputArch: o.throughputArch });
  const env = report.environment;
  process.stdout.write(
    `\ndfdet benchmarks${report.quick ? ' (quick)' : ''}: ${env.cpu} x${env.cores}, libtorch ${env.torch}, ${env.threads} threads, Node ${env.node}\n` +
      `CPU flags: ${(env.cpuFlags as string[]).join(' ') || 'none found'}; dtype 'auto' on cpu = ${String(env.autoDType)}\n\n`,
  );
  process.stdout.write(`${formatTable(report.results)}\n`);
  const cores = typeof env.cores === 'number' ? env.cores : 1;
  for (const [part, l] of Object.entries(report.partLoadAverage)) {
    if (l && Math.max(l.start, l.end) > cores * 0.5) {
      process.stdout.write(`\nnote: load average ${l.start} -> ${l.end} on ${cores} cores during ${part}: other processes skewed these timings.\n`);
    }
  }
  for (const e of report.errors) process.stdout.write(`\n${e.part} FAILED: ${e.message}\n`);
  if (o.json) {
    fs.writeFileSync(o.json, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(`\nwrote ${o.json}\n`);
  }
  return report.errors.length ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`${(e as Error)?.message ?? String(e)}\n`);
    process.exitCode = 2;
  },
);
