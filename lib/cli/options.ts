/**
 * What the commands share: exit codes, option parsers (usage errors exit 2), the detector options
 * of `detect` and `eval`, the random-weights warning, SIGINT handling and error printing.
 */
import { type Command, InvalidArgumentError } from 'commander';

import type { DetectorOptions } from '../detector';
import { DfdetError, isDfdetError } from '../errors';
import type { ModelDType } from '../model';

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
  dtype?: ModelDType;
  batchSize?: number;
  concurrency?: number;
  threads?: number;
  cacheDir?: string;
  maxFrameSide?: number;
}

/** Adds the detector flags shared by `detect` and `eval`. */
export function addDetectorOptions(cmd: Command, defaults: { faces: 'detect' | 'none' }): Command {
  return cmd
    .option('-m, --model <file|name>', 'detector model: a file (dfdet convert / model init / pull) or a pulled registry name (default: the registry default, if pulled)')
    .option('-t, --threshold <p>', 'pFake at or above which an input is fake', numberOption('--threshold', 0, 1), 0.5)
    .option('--frames <n>', 'videos: frames sampled uniformly (default 32, the paper\'s)', intOption('--frames', 1, 100_000))
    .option('--fps <rate>', 'videos: sample at this many frames per second instead of --frames', numberOption('--fps', 0.001, 1000))
    .option('--faces <mode>', "'detect' finds faces; 'none' scores whole images as already-cropped faces", choiceOption('--faces', ['detect', 'none'] as const), defaults.faces)
    .option('--all-faces', 'videos: score every face track, not only the main subject (score = highest track)')
    .option('--crop <mode>', "face crop: 'align' (eye-landmark alignment, the paper's) or 'box'", choiceOption('--crop', ['align', 'box'] as const), 'align')
    .option('--device <device>', "'cpu', 'cuda' or 'cuda:N'", 'cpu')
    .option('--dtype <dtype>', 'float32, float16 or bfloat16', choiceOption('--dtype', ['float32', 'float16', 'bfloat16'] as const), 'float32')
    .option('--batch-size <n>', 'largest model batch (faces)', intOption('--batch-size', 1, 1024), 8)
    .option('--concurrency <n>', 'inputs decoded at once', intOption('--concurrency', 1, 256), 4)
    .option('--threads <n>', 'libtorch threads (default: number of cores)', intOption('--threads', 1, 1024))
    .option('--max-frame-side <px>', 'videos: scale larger frames down to this side before detection (bounds memory)', intOption('--max-frame-side', 16, 1_000_000), 1920)
    .option('--cache-dir <dir>', 'model cache (default $DFDET_CACHE, else $XDG_CACHE_HOME/dfdet, else ~/.cache/dfdet)');
}

/** Turns the flags into {@link DetectorOptions}. */
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
