/**
 * Shared pieces of the benchmarks: result records, timing statistics, the results table, the
 * Python reference runner and child processes. Benchmarks print numbers and ratios against a
 * reference measured in the same run; nothing here asserts on time.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';

import { native } from '../native';
import { initModel } from '../detector-model/init';
import type { ArchName } from '../detector-model/arch';

/** One measured number, optionally with the reference it is compared to. */
export interface BenchResult {
  /** Benchmark part: 'native', 'models' or 'media'. */
  part: string;
  /** What was measured, e.g. 'forward b=8 (addon)'. */
  name: string;
  /** The measured value. */
  value: number;
  /** Unit of `value` and of the reference, e.g. 'img/s', 's', 'MB', 'ms/frame'. */
  unit: string;
  /** The reference measured in the same run (or a fixed target), when there is one. */
  reference?: { name: string; value: number };
  /** `value / reference.value` (or the ratio named in `ratioLabel`). */
  ratio?: number;
  /** What the ratio means, e.g. 'dfdet/python' or 'peak/weights'. */
  ratioLabel?: string;
  /** The goal, in words, e.g. 'ratio >= 1.0'. */
  target?: string;
  /** Raw samples (seconds or as `unit`) and anything else worth keeping in the JSON. */
  details?: Record<string, unknown>;
}

/** Settings every part receives. */
export interface BenchContext {
  /** Smaller sizes and fewer iterations: a smoke run (< 1 min in all). */
  quick: boolean;
  /** Where built models are kept between runs. */
  cacheDir: string;
  /** A temporary folder for this run (removed at the end). */
  tmpDir: string;
  /** Python interpreter with torch (default /usr/bin/python3, or $DFDET_PYTHON). */
  python: string;
  /** Progress messages (stderr). */
  log: (msg: string) => void;
}

/** Median of a non-empty list. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Seconds since an arbitrary origin (monotonic). */
export function now(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

/** Runs `fn` `warmup` times untimed, then `iters` times timed; returns the timed durations in seconds. */
export async function timeRuns(fn: () => Promise<unknown> | unknown, warmup: number, iters: number): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = now();
    await fn();
    times.push(now() - t0);
  }
  return times;
}

/** Runs `fn` repeatedly for at least `seconds` (and at least `minIters` times); returns calls per second. */
export async function rate(fn: () => Promise<unknown> | unknown, seconds: number, minIters = 3): Promise<{ perSec: number; iters: number; seconds: number }> {
  const t0 = now();
  let n = 0;
  while (n < minIters || now() - t0 < seconds) {
    await fn();
    n++;
  }
  const dt = now() - t0;
  return { perSec: n / dt, iters: n, seconds: dt };
}

/** `a / b`, or undefined when either is missing or b is 0. */
export function ratioOf(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined && b !== 0 && Number.isFinite(a) && Number.isFinite(b) ? a / b : undefined;
}

function fmt(v: number | undefined, digits = 3): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  if (a >= 100) return v.toFixed(1);
  return v.toPrecision(digits);
}

/** The results as an aligned plain-text table. */
export function formatTable(results: readonly BenchResult[]): string {
  const header = ['part', 'measure', 'dfdet', 'unit', 'reference', 'ratio', 'target'];
  const rows = results.map((r) => [
    r.part,
    r.name,
    fmt(r.value),
    r.unit,
    r.reference ? `${fmt(r.reference.value)} (${r.reference.name})` : '-',
    r.ratio !== undefined ? `${fmt(r.ratio)}${r.ratioLabel ? ` ${r.ratioLabel}` : ''}` : '-',
    r.target ?? '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 2 || i === 5 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Path of a file shipped under lib/bench/python (found from lib/bench and from dist/lib/bench). */
export function pythonScript(name: string): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    for (const p of [path.join(dir, 'python', name), path.join(dir, 'lib', 'bench', 'python', name)]) {
      if (fs.existsSync(p)) return p;
    }
    dir = path.dirname(dir);
  }
  throw new Error(`benchmark script lib/bench/python/${name} not found above ${__dirname}`);
}

/** Output of a finished child process. */
export interface ChildOutput {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, collecting its output (stdin closed). */
export function runProcess(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<ChildOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The last line of stdout parsed as JSON; throws with stderr when the process failed. */
export function lastJson<T>(out: ChildOutput, what: string): T {
  const lines = out.stdout.trim().split('\n');
  const last = lines[lines.length - 1];
  if (out.code !== 0 || !last) throw new Error(`${what} failed (exit ${out.code}): ${lastLines(out.stderr)}`);
  return JSON.parse(last) as T;
}

/** Runs a benchmark Python script with a JSON argument; returns its JSON answer. */
export async function runPython<T>(ctx: BenchContext, script: string, arg: unknown): Promise<T> {
  const out = await runProcess(ctx.python, [pythonScript(script), JSON.stringify(arg)]);
  return lastJson<T>(out, `${ctx.python} ${script}`);
}

/** What the forward server answers for one batch size. */
export interface PyForwardRun {
  batch: number;
  /** Seconds per timed run. */
  times: number[];
  /** First values of the first output of the last run (parity check). */
  output: number[];
}

/**
 * PyTorch running a model file in its own process (lib/bench/python/forward.py), driven one
 * request at a time so its runs can be interleaved with the addon's on the same input.
 */
export class PyForwardServer {
  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    private readonly lines: AsyncIterator<string>,
    private readonly stderr: { tail: string },
    /** torch version, thread count and load time the server reported. */
    readonly info: { torch: string; threads: number; load_s: number },
  ) {}

  /**
   * Starts the server on `model` with the raw float32 `input` file of items of `itemShape`;
   * `optimize` freezes + optimizes the module as `Model.load({optimize: true})` does.
   */
  static async start(ctx: BenchContext, model: string, input: string, itemShape: number[], threads: number, optimize = false): Promise<PyForwardServer> {
    const args = { model, input, item_shape: itemShape, threads, optimize, jit_profiling: native().runtimeInfo().jitProfiling };
    const child = spawn(ctx.python, [pythonScript('forward.py'), JSON.stringify(args)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const stderr = { tail: '' };
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr.tail = (stderr.tail + d).slice(-4000)));
    const spawned = new Promise<void>((resolve, reject) => child.once('spawn', resolve).once('error', reject));
    await spawned;
    const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const first = await lines.next();
    if (first.done) throw new Error(`${ctx.python} forward.py exited: ${lastLines(stderr.tail)}`);
    return new PyForwardServer(child, lines, stderr, JSON.parse(first.value));
  }

  /** `warmup` untimed then `iters` timed forwards of the first `batch` items. */
  async run(batch: number, warmup: number, iters: number): Promise<PyForwardRun> {
    this.child.stdin.write(`${JSON.stringify({ batch, warmup, iters })}\n`);
    const r = await this.lines.next();
    if (r.done) throw new Error(`forward.py exited: ${lastLines(this.stderr.tail)}`);
    return JSON.parse(r.value) as PyForwardRun;
  }

  /** Ends the server (closes its stdin) and waits for it to exit. */
  close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      this.child.once('close', () => resolve());
      this.child.stdin.end();
    });
  }
}

function lastLines(text: string, n = 5): string {
  return text.trim().split('\n').slice(-n).join('\n');
}

let pythonOk: Promise<string | undefined> | undefined;

/** Why the Python reference cannot run (undefined when `python -c 'import torch'` works). */
export function pythonUnavailable(ctx: BenchContext): Promise<string | undefined> {
  pythonOk ??= runProcess(ctx.python, ['-c', 'import torch; print(torch.__version__)']).then(
    (o) => (o.code === 0 ? undefined : `${ctx.python} cannot import torch: ${o.stderr.trim().split('\n').pop()}`),
    (e: Error) => `${ctx.python} cannot be run: ${e.message}`,
  );
  return pythonOk;
}

/**
 * Command that runs another benchmark entry (`name` without extension) in a fresh Node process:
 * the compiled `.js` next to this file, or through vite-node when running from TypeScript sources.
 */
export function nodeEntry(name: string): { cmd: string; args: string[] } {
  const js = path.join(__dirname, `${name}.js`);
  if (fs.existsSync(js)) return { cmd: process.execPath, args: [js] };
  const ts = path.join(__dirname, `${name}.ts`);
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    const bin = path.join(dir, 'node_modules', '.bin', 'vite-node');
    if (fs.existsSync(bin)) return { cmd: bin, args: [ts] };
    dir = path.dirname(dir);
  }
  throw new Error(`cannot run ${name}: no ${js} (run \`npx tsc -p tsconfig.build.json\`) and no vite-node`);
}

/** Resident-set numbers from /proc/self/status, in bytes (Linux; undefined elsewhere). */
export function procStatus(): { rss?: number; hwm?: number } {
  try {
    const text = fs.readFileSync('/proc/self/status', 'utf8');
    const kb = (key: string) => {
      const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
      return m ? Number(m[1]) * 1024 : undefined;
    };
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return {};
  }
}

function templateHash(): string {
  // Rebuild cached detectors when the TorchScript templates change.
  const h = crypto.createHash('sha256');
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const t = path.join(dir, 'models', 'clip_vit');
    if (fs.existsSync(t)) {
      for (const f of fs.readdirSync(t).sort()) h.update(f).update(fs.readFileSync(path.join(t, f)));
      break;
    }
    dir = path.dirname(dir);
  }
  return h.digest('hex').slice(0, 12);
}

/**
 * A seeded random detector of `arch` (seed 0) in the cache folder, built once through
 * {@link initModel} (a ViT-L/14 file is 1.2 GB and takes a while to make).
 */
export async function cachedDetector(ctx: BenchContext, arch: ArchName): Promise<string> {
  const file = path.join(ctx.cacheDir, `${arch}-seed0-${templateHash()}.pt`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(ctx.cacheDir, { recursive: true });
  ctx.log(`building a random ${arch} detector into ${file} (once; later runs reuse it)`);
  const t0 = now();
  await initModel({ arch, seed: 0, output: file });
  ctx.log(`  built in ${(now() - t0).toFixed(1)} s`);
  return file;
}

/** Default folder for cached benchmark models: $DFDET_BENCH_CACHE, else <tmp>/dfdet-bench-cache. */
export function defaultBenchCacheDir(): string {
  return process.env.DFDET_BENCH_CACHE ? path.resolve(process.env.DFDET_BENCH_CACHE) : path.join(os.tmpdir(), 'dfdet-bench-cache');
}

/** The 1-minute load average (other processes skew timings on a small machine; reported with the numbers). */
export function loadAverage(): number {
  return Math.round(os.loadavg()[0]! * 100) / 100;
}

/** Deterministic pseudo-random float32 values in [-1, 1) (an LCG: fast and the same everywhere). */
export function syntheticInput(n: number, seed = 1): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2147483648 - 1;
  }
  return a;
}
