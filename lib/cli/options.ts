/**
 * What the commands share: exit codes, option parsers (usage errors exit 2), the detector options
 * of `detect` and `eval`, the random-weights warning, SIGINT handling and error printing.
 */
import { type Command, InvalidArgumentError } from 'commander';

import { DETECTOR_DEFAULTS, DETECTOR_RULES, type DetectorOptions, type Rule } from '../options';
import { DfdetError, isDfdetError } from '../errors';
import type { DTypeOption } from '../model';

/** Exit codes of every command. */
export const EXIT = {
  /** Done (every input scored or reported as no face). */
  OK: 0,
  /** Some inputs failed (each one reported), or (doctor) problems were found. */
  FAILED: 1,
  /** Usage error, or the model could not be found/loaded. */
  USAGE: 2,
  /** Something was judged fake (only with --fail-on-fake). */
  FAKE: 3,
  /** Interrupted (SIGINT). */
  INTERRUPTED: 130,
} as const;

/** The exit code table for `--help` epilogues. */
export const EXIT_HELP = `Exit codes:
  0    done
  1    some inputs failed (each is reported; the run goes on)
  2    usage error, or the model could not be found or loaded
  3    something was judged fake (only with --fail-on-fake; wins over 1)
  130  interrupted (Ctrl-C)`;

/** Parser of an integer option in [min, max]. */
export function intOption(name: string, min: number, max: number): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!/^\s*-?\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer between ${min} and ${max}.`);
    return n;
  };
}

/** Parser of a number option in [min, max]. */
export function numberOption(name: string, min: number, max: number): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number between ${min} and ${max}.`);
    return n;
  };
}

/** Parser of an option with a fixed set of values. */
export function choiceOption<T extends string>(name: string, choices: readonly T[]): (v: string) => T {
  return (v: string) => {
    if (!(choices as readonly string[]).includes(v)) throw new InvalidArgumentError(`${name} must be one of ${choices.join(', ')}.`);
    return v as T;
  };
}

/**
 * A flag parser from a rule of the options schema: the flag's text becomes a number (`numeric`) or
 * stays a string, then the schema's rule checks it (usage error, exit 2, "--flag must be X.").
 */
export function schemaOption<T>(flag: string, rule: Rule<T>, numeric = true): (v: string) => T {
  return (v: string) => {
    const x = numeric ? (v.trim() === '' ? Number.NaN : Number(v)) : v;
    try {
      return rule.check(x, flag);
    } catch {
      throw new InvalidArgumentError(`${flag} must be ${rule.expected}.`);
    }
  };
}

/** Options parsed from the shared detector flags. */
export interface DetectorFlags {
  model?: string;
  threshold?: number;
  frames?: number;
  fps?: number;
  faces?: 'detect' | 'none';
  allFaces?: boolean;
  crop?: 'align' | 'box';
  device?: string;
  dtype?: DTypeOption;
  batchSize?: number;
  concurrency?: number;
  threads?: number;
  cacheDir?: string;
  maxFrameSide?: number;
  /** false with --no-warmup. */
  warmup?: boolean;
}

/**
 * Adds the detector flags shared by `detect`, `eval`, `serve`, `worker` and `train`. Defaults and
 * checks come from the options schema (lib/options); `defaults` overrides schema defaults for
 * this command (e.g. `faces: 'none'` for a command fed with crops).
 */
export function addDetectorOptions(cmd: Command, defaults: Partial<typeof DETECTOR_DEFAULTS> = {}): Command {
  const d = { ...DETECTOR_DEFAULTS, ...defaults };
  const r = DETECTOR_RULES;
  return cmd
    .option('-m, --model <file|name>', 'detector model: a file (dfdet convert / model init / pull) or a pulled registry name (default: the registry default, if pulled)')
    .option('-t, --threshold <p>', 'pFake at or above which an input is fake', schemaOption('--threshold', r.threshold), d.threshold)
    .option('--frames <n>', `videos: frames sampled uniformly (default ${d.frames}, the paper's)`, schemaOption('--frames', r.frameCount))
    .option('--fps <rate>', 'videos: sample at this many frames per second instead of --frames', schemaOption('--fps', r.fps))
    .option('--faces <mode>', "'detect' finds faces; 'none' scores whole images as already-cropped faces", schemaOption('--faces', r.faces, false), d.faces)
    .option('--all-faces', 'videos: score every face track, not only the main subject (score = highest track)')
    .option('--crop <mode>', "face crop: 'align' (eye-landmark alignment, the paper's) or 'box'", schemaOption('--crop', r.crop, false), d.crop)
    .option('--device <device>', "'cpu', 'cuda' or 'cuda:N'", d.device)
    .option('--dtype <dtype>', "'auto' (bf16 where the CPU/GPU has it, else float32), float32, float16 or bfloat16", schemaOption('--dtype', r.dtype, false), d.dtype)
    .option('--batch-size <n>', 'largest model batch (faces)', schemaOption('--batch-size', r.batchSize), d.batchSize)
    .option('--concurrency <n>', 'inputs decoded at once', schemaOption('--concurrency', r.concurrency), d.concurrency)
    .option('--threads <n>', 'libtorch threads (default: number of cores)', schemaOption('--threads', r.threads))
    .option('--max-frame-side <px>', 'videos: scale larger frames down to this side before detection (bounds memory; Infinity: full size)', schemaOption('--max-frame-side', r.maxFrameSide), d.maxFrameSide)
    .option('--no-warmup', 'skip the warm-up run at start (the first input is then slower)')
    .option('--cache-dir <dir>', 'model cache (default $DFDET_CACHE, else $XDG_CACHE_HOME/dfdet, else ~/.cache/dfdet)');
}

/** Turns the flags into {@link DetectorOptions} (checked later by `Detector.create`, through the same schema). */
export function detectorOptions(f: DetectorFlags): DetectorOptions {
  if (f.frames !== undefined && f.fps !== undefined) throw new UsageError('--frames and --fps cannot be used together');
  const o: DetectorOptions = {
    model: f.model,
    threshold: f.threshold,
    faces: f.faces,
    allFaces: Boolean(f.allFaces),
    crop: f.crop,
    device: f.device,
    dtype: f.dtype,
    batchSize: f.batchSize,
    concurrency: f.concurrency,
    threads: f.threads,
    cacheDir: f.cacheDir,
    maxFrameSide: f.maxFrameSide,
    warmup: f.warmup !== false,
  };
  if (f.fps !== undefined) o.frames = { kind: 'fps', fps: f.fps };
  else if (f.frames !== undefined) o.frames = f.frames;
  return o;
}

/** The warning printed when a model's weights are random (`dfdet model init`). */
export function randomWeightsWarning(name: string): string {
  return (
    `warning: ${name} has RANDOM weights (made by \`dfdet model init\`): its scores mean nothing.\n` +
    'warning: get the authors\' trained detector with `dfdet pull`, then run without --model (or --model yermandy/deepfake-detection).'
  );
}


/**
 * An AbortController aborted by the first SIGINT (and SIGTERM); a second one exits at once.
 * `interrupted` tells whether it fired. Call `dispose()` when the command is done.
 */
export function interruptSignal(): { signal: AbortSignal; readonly interrupted: boolean; dispose(): void } {
  const ac = new AbortController();
  let interrupted = false;
  const onSignal = (): void => {
    if (interrupted) process.exit(EXIT.INTERRUPTED);
    interrupted = true;
    process.stderr.write('\ninterrupted: stopping (press Ctrl-C again to quit at once)\n');
    ac.abort(new DfdetError('ABORTED', 'interrupted'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: ac.signal,
    get interrupted() {
      return interrupted;
    },
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** The error line printed for a failed command (code + message, first lines only). */
export function errorMessage(e: unknown): string {
  if (isDfdetError(e)) return `dfdet: ${e.code}: ${e.message}`;
  if (e instanceof Error) return `dfdet: ${e.message}`;
  return `dfdet: ${String(e)}`;
}

/** A usage error (exit 2) raised by a command after parsing. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Exit code for an error that ended a command: 2 for usage/model/option errors, 1 otherwise. */
export function exitCodeOf(e: unknown): number {
  if (e instanceof UsageError) return EXIT.USAGE;
  if (isDfdetError(e)) {
    if (e.code === 'ABORTED') return EXIT.INTERRUPTED;
    return ['BAD_INPUT', 'NOT_FOUND', 'MODEL_LOAD_FAILED', 'NATIVE_LOAD_FAILED', 'UNSUPPORTED', 'BAD_WEIGHTS', 'BAD_FORMAT'].includes(e.code) ? EXIT.USAGE : EXIT.FAILED;
  }
  return EXIT.FAILED;
}

/** Writes to stdout, resolving when flushed enough (back-pressure for large streamed outputs). */
export function writeOut(s: string): Promise<void> | void {
  if (!process.stdout.write(s)) return new Promise((resolve) => process.stdout.once('drain', () => resolve()));
}
