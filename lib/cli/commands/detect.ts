/**
 * `dfdet detect <paths...>`: score images and videos, streaming one row per input as it finishes.
 */
import * as fs from 'node:fs';
import * as readline from 'node:readline';

import { type Command, Option } from 'commander';

import { Detector, type DetectResult } from '../../detector';
import { listMediaFiles } from '../../inputs';
import { expandGlob, hasGlob, noMatchMessage } from '../glob';
import { CSV_COLUMNS, type OutputFormat, Progress, ResultRows } from '../output';
import {
  addDetectorOptions,
  type DetectorFlags,
  detectorOptions,
  EXIT_HELP,
  interruptSignal,
  randomWeightsWarning,
  UsageError,
} from '../options';

interface DetectFlags extends DetectorFlags {
  json?: boolean;
  csv?: boolean;
  table?: boolean;
  stdin?: boolean;
  failOnFake?: boolean;
  progress?: boolean;
}

/**
 * Expands the path arguments: folders to their media files (recursively, sorted), quoted globs to
 * the files they match. Unmatched globs and missing paths are kept, so they are reported as failed
 * inputs (see {@link explainUnmatched}). `-` is dropped (it means stdin).
 */
export async function expandArguments(args: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const a of args) {
    if (a === '-') continue;
    const st = await fs.promises.stat(a).catch(() => null);
    if (st?.isDirectory()) out.push(...(await listMediaFiles(a)));
    else if (!st && hasGlob(a)) {
      const files = await expandGlob(a);
      out.push(...(files.length ? files : [a]));
    } else out.push(a);
  }
  return out;
}

/** A failed result of a pattern kept by {@link expandArguments}: its error says the pattern matched nothing. */
function explainUnmatched(r: DetectResult): DetectResult {
  if (r.error?.code !== 'NOT_FOUND' || !hasGlob(r.source) || fs.existsSync(r.source)) return r;
  return { ...r, error: { code: r.error.code, message: noMatchMessage(r.source) } };
}

/** Paths read from stdin, one per line (blank lines skipped; folders and globs expanded). */
async function* stdinPaths(signal: AbortSignal): AsyncGenerator<string> {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  // An interrupt must not wait for the next line.
  const close = (): void => rl.close();
  signal.addEventListener('abort', close, { once: true });
  try {
    for await (const line of rl) {
      const p = line.trim();
      if (p === '') continue;
      yield* await expandArguments([p]);
    }
  } finally {
    signal.removeEventListener('abort', close);
    rl.close();
  }
}

async function* allInputs(files: readonly string[], fromStdin: boolean, signal: AbortSignal): AsyncGenerator<string> {
  for (const f of files) {
    if (signal.aborted) return;
    yield f;
  }
  if (fromStdin && !signal.aborted) yield* stdinPaths(signal);
}

/** The output format chosen by --json, --csv or --table (a table on a terminal, else NDJSON). */
export function outputFormat(f: { json?: boolean; csv?: boolean; table?: boolean }): OutputFormat {
  const chosen = [f.json && 'json', f.csv && 'csv', f.table && 'table'].filter(Boolean) as OutputFormat[];
  if (chosen.length > 1) throw new UsageError(`choose one of --json, --csv and --table (got ${chosen.map((c) => `--${c}`).join(', ')})`);
  return chosen[0] ?? (process.stdout.isTTY ? 'table' : 'json');
}

/** Registers `detect`. */
export function registerDetect(program: Command): void {
  const cmd = program
    .command('detect')
    .description('score images and videos (files, folders, quoted globs, or paths on stdin) for deepfaked faces')
    .argument('[paths...]', "files, folders (recursive; symlinked folders inside are not followed), quoted globs ('data/**/*.jpg'; same), or - to read paths from stdin")
    .option('--stdin', 'read paths from stdin, one per line (same as -)')
    .option('--json', 'NDJSON: one JSON object per input, as each finishes (default when stdout is not a terminal)')
    .option('--csv', `CSV: a header, then one row per input as each finishes (columns: ${CSV_COLUMNS.join(', ')})`)
    .option('--table', 'a readable table (default when stdout is a terminal)')
    .option('--fail-on-fake', 'exit with code 3 when any input is judged fake')
    .addOption(new Option('--no-progress', 'no progress line on stderr (shown only when stderr is a terminal)'));
  addDetectorOptions(cmd, { faces: 'detect' });
  cmd.addHelpText(
    'after',
    `
Rows come in the order inputs finish; "index" is the input's position. A summary goes to stderr
(to stdout after a table). No face found is not a failure: such inputs have pFake null, noFace true.

Examples:
  dfdet detect photo.jpg clip.mp4
  dfdet detect --json 'faces/**/*.png' > scores.ndjson
  find data -name '*.mp4' | dfdet detect --csv - > scores.csv
  dfdet detect --model model.pt --fail-on-fake --threshold 0.7 upload.jpg

${EXIT_HELP}`,
  );
  cmd.action(async (paths: string[], flags: DetectFlags) => {
    process.exitCode = await runDetect(paths, flags);
  });
}

async function runDetect(paths: string[], flags: DetectFlags): Promise<number> {
  const format = outputFormat(flags);
  const fromStdin = Boolean(flags.stdin) || paths.includes('-');
  if (paths.filter((p) => p !== '-').length === 0 && !fromStdin) throw new UsageError('no inputs: give files, folders or globs, or - to read paths from stdin');
  if (fromStdin && process.stdin.isTTY) process.stderr.write('reading paths from stdin (one per line, Ctrl-D to end)\n');
  const options = detectorOptions(flags);
  const files = await expandArguments(paths);

  const detector = await Detector.create(options);
  const interrupt = interruptSignal();
  const rows = new ResultRows(format, new Progress(process.stderr, flags.progress !== false && Boolean(process.stderr.isTTY), fromStdin ? null : files.length));
  try {
    if (detector.identity.sourceKind === 'init') process.stderr.write(`${randomWeightsWarning(detector.identity.name)}\n`);
    await rows.begin();
    for await (const r of detector.detectStream(allInputs(files, fromStdin, interrupt.signal), { signal: interrupt.signal })) {
      if (interrupt.interrupted) break;
      await rows.write(explainUnmatched(r));
    }
  } finally {
    rows.clear();
    interrupt.dispose();
    await detector.dispose();
  }
  return rows.finish({ interrupted: interrupt.interrupted, failOnFake: flags.failOnFake });
}
