/**
 * Output of the CLI: result rows as a table, NDJSON or CSV (all streamed, one row per finished
 * input), the end-of-run summary, and a progress line on stderr. Nothing here computes a score.
 */
import type { DetectResult } from '../detector';
import { csvField } from '../eval/report';
import { EXIT, writeOut } from './options';

/** Where rows go. `table` is for people, `json` (NDJSON) and `csv` for programs. */
export type OutputFormat = 'table' | 'json' | 'csv';

/** Columns of `--csv`, in order. */
export const CSV_COLUMNS = [
  'index',
  'source',
  'kind',
  'pFake',
  'label',
  'noFace',
  'faces',
  'frames',
  'partial',
  'aggregate',
  'totalMs',
  'errorCode',
  'errorMessage',
] as const;

/** One CSV row (no newline) of a result, in {@link CSV_COLUMNS} order. */
export function csvRow(r: DetectResult): string {
  const values: unknown[] = [
    r.index,
    r.source,
    r.kind,
    r.pFake === null ? '' : r.pFake,
    r.label ?? '',
    r.noFace,
    r.faces.length,
    r.frames ? r.frames.length : '',
    r.partial ?? '',
    r.aggregate,
    Math.round(r.timings.totalMs),
    r.error?.code ?? '',
    r.error?.message ?? '',
  ];
  return values.map(csvField).join(',');
}

/** One NDJSON line (no newline): the whole result (JSON has no NaN: such values become null). */
export function jsonLine(r: DetectResult): string {
  return JSON.stringify(r);
}

/** Widths of the table's fixed columns, in order: #, pFake, label, kind, faces, frames, ms. */
const COLUMN_WIDTHS = [5, 6, 7, 5, 5, 6, 7] as const;
/** Characters before the source column (the fixed columns and their two-space gaps). */
const SOURCE_OFFSET = COLUMN_WIDTHS.reduce((a, w) => a + w + 2, 0);
/** The source column never shrinks below this, however narrow the terminal. */
const MIN_SOURCE_WIDTH = 16;

/** Header of the streamed table. */
export function tableHeader(): string {
  const [n, p, l, k, f, fr, ms] = COLUMN_WIDTHS;
  return `${'#'.padStart(n)}  ${'pFake'.padStart(p)}  ${'label'.padEnd(l)}  ${'kind'.padEnd(k)}  ${'faces'.padStart(f)}  ${'frames'.padStart(fr)}  ${'ms'.padStart(ms)}  source`;
}

/** `s` cut to `max` characters by replacing its middle with '…' (a path keeps its root and, above all, its file name). */
export function middleEllipsis(s: string, max: number): string {
  const chars = [...s];
  if (chars.length <= max) return s;
  if (max <= 1) return '…'.slice(0, max);
  const keep = max - 1;
  const head = Math.floor(keep / 3); // the end (a file name) says more than the start
  return `${chars.slice(0, head).join('')}…${chars.slice(chars.length - (keep - head)).join('')}`;
}

/**
 * One table row of a result; errors show their code and message on a second line. Faces are
 * the faces found (distinct tracks for a video); frames are a video's sampled frames ('-' for
 * images). With `columns` (the terminal width) long sources are shortened in the middle so a
 * row never wraps; without it (output to a file) they are written whole.
 */
export function tableRow(r: DetectResult, columns?: number): string {
  const [n, pw, l, k, f, fr, ms] = COLUMN_WIDTHS;
  const p = r.pFake === null ? '-' : r.pFake.toFixed(4);
  const label = r.error ? 'FAILED' : r.noFace ? 'no face' : (r.label ?? '-');
  const video = r.kind === 'video';
  const faces = video ? (r.tracks ? String(r.tracks.length) : '-') : String(r.faces.length);
  const frames = video && r.frames ? String(r.frames.length) : '-';
  const partial = r.partial ? '  (partial: decoding stopped early)' : '';
  const room = columns === undefined ? Infinity : Math.max(MIN_SOURCE_WIDTH, columns - SOURCE_OFFSET - partial.length - 1);
  let line =
    `${String(r.index).padStart(n)}  ${p.padStart(pw)}  ${label.padEnd(l)}  ${r.kind.padEnd(k)}  ${faces.padStart(f)}  ` +
    `${frames.padStart(fr)}  ${String(Math.round(r.timings.totalMs)).padStart(ms)}  ${middleEllipsis(r.source, room)}${partial}`;
  if (r.error) {
    const message = `${''.padStart(7)}${r.error.code}: ${r.error.message.split('\n')[0]}`;
    line += `\n${columns === undefined ? message : middleEllipsis(message, Math.max(MIN_SOURCE_WIDTH, columns - 1))}`;
  }
  return line;
}

/** A duration for people: '45s', '3m05s', '2h07m'. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Running counts of a detect run. */
export class Tally {
  inputs = 0;
  scored = 0;
  fake = 0;
  real = 0;
  noFace = 0;
  failed = 0;
  faces = 0;
  readonly #clock: () => number;
  readonly started: number;

  /** @param clock - milliseconds, monotonic (default performance.now; tests pass their own). */
  constructor(clock: () => number = () => performance.now()) {
    this.#clock = clock;
    this.started = clock();
  }

  /** Counts one result. */
  add(r: DetectResult): void {
    this.inputs++;
    if (r.error) this.failed++;
    else if (r.noFace || r.pFake === null) this.noFace++;
    else {
      this.scored++;
      if (r.label === 'fake') this.fake++;
      else this.real++;
    }
    this.faces += r.faces.length;
  }

  /** Seconds since the tally was created. */
  get seconds(): number {
    return (this.#clock() - this.started) / 1000;
  }

  /** Estimated seconds left for `total` inputs at the pace so far; null before the first result. */
  eta(total: number): number | null {
    if (this.inputs === 0 || this.seconds <= 0) return null;
    return Math.max(0, total - this.inputs) * (this.seconds / this.inputs);
  }

  /** The summary line(s) printed at the end; no rate when nothing was scored (failing fast is no speed). */
  summary(): string {
    const s = this.seconds;
    const rate = (n: number): string => (s > 0 ? (n / s).toFixed(2) : '-');
    const pace = this.scored > 0 ? `, ${rate(this.inputs)} img/s, ${rate(this.faces)} faces/s` : ', nothing scored';
    return `${this.inputs} inputs: ${this.scored} scored (${this.fake} fake, ${this.real} real), ${this.noFace} no face, ${this.failed} failed\n${s.toFixed(1)} s${pace}`;
  }
}

/**
 * A one-line progress display on a TTY stream (stderr). Rows written to another stream that
 * shares the terminal must go through {@link Progress.print} so the line is cleared first.
 */
export class Progress {
  readonly #stream: NodeJS.WriteStream;
  readonly #enabled: boolean;
  #total: number | null;
  #last = 0;
  #shown = false;
  #text = '';

  constructor(stream: NodeJS.WriteStream, enabled: boolean, total: number | null = null) {
    this.#stream = stream;
    this.#enabled = enabled;
    this.#total = total;
  }

  /** Sets the number of inputs when it becomes known. */
  set total(n: number | null) {
    this.#total = n;
  }

  /** Redraws (at most 10 times a second unless `force`). */
  update(t: Tally, force = false): void {
    if (!this.#enabled) return;
    const now = performance.now();
    if (!force && now - this.#last < 100) return;
    this.#last = now;
    const width = Math.max(10, Math.min(30, (this.#stream.columns ?? 80) - 60));
    const done = t.inputs;
    let bar = '';
    if (this.#total) {
      const f = Math.min(1, done / this.#total);
      const n = Math.round(f * width);
      bar = `[${'#'.repeat(n)}${'.'.repeat(width - n)}] ${done}/${this.#total} `;
    } else bar = `${done} done `;
    const rate = t.scored > 0 && t.seconds > 0 ? `  ${(done / t.seconds).toFixed(1)} img/s` : '';
    const left = this.#total ? t.eta(this.#total) : null;
    const eta = left === null || done >= (this.#total ?? 0) ? '' : `  ETA ${formatDuration(left)}`;
    // One terminal line at most: a wrapped line would not be cleared by the next redraw.
    const text = `${bar}fake ${t.fake} real ${t.real} no-face ${t.noFace} failed ${t.failed}${rate}${eta}`;
    this.#text = text.slice(0, Math.max(10, (this.#stream.columns ?? 80) - 1));
    this.#stream.write(`\r\x1b[K${this.#text}`);
    this.#shown = true;
  }

  /** Writes a line to `out`, keeping the progress line intact below it. */
  print(out: NodeJS.WritableStream, line: string): void {
    if (this.#shown) this.#stream.write('\r\x1b[K');
    out.write(`${line}\n`);
    if (this.#shown) this.#stream.write(this.#text);
  }

  /** Removes the progress line. */
  clear(): void {
    if (this.#shown) this.#stream.write('\r\x1b[K');
    this.#shown = false;
  }
}

/** Formats a metric for tables: 4 decimals, '-' for NaN. */
export function fmt(x: number | null | undefined, digits = 4): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

/** A plain left/right aligned text table (numbers right-aligned). */
export function textTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => /^-?[\d.]+%?$|^-$/.test(r[i] ?? '')));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Human-readable byte count. */
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '?';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/**
 * The rows of a run that streams results (`detect`, `submit --wait`): the header, one row per
 * result in the chosen format with the tally and progress line kept up to date, then the summary
 * and detect's exit code.
 */
export class ResultRows {
  readonly tally = new Tally();
  readonly #format: OutputFormat;
  readonly #progress: Progress;

  constructor(format: OutputFormat, progress: Progress) {
    this.#format = format;
    this.#progress = progress;
  }

  /** Writes the CSV or table header and shows the progress line. */
  async begin(): Promise<void> {
    if (this.#format === 'csv') await writeOut(`${CSV_COLUMNS.join(',')}\n`);
    if (this.#format === 'table') this.#progress.print(process.stdout, tableHeader());
    this.#progress.update(this.tally, true);
  }

  /** Counts and writes one result. */
  async write(r: DetectResult): Promise<void> {
    this.tally.add(r);
    if (this.#format === 'json') await writeOut(`${jsonLine(r)}\n`);
    else if (this.#format === 'csv') await writeOut(`${csvRow(r)}\n`);
    else this.#progress.print(process.stdout, tableRow(r, process.stdout.isTTY ? process.stdout.columns : undefined));
    this.#progress.update(this.tally);
  }

  /** Removes the progress line (also on the way out after an error). */
  clear(): void {
    this.#progress.clear();
  }

  /** Clears the progress line and prints the summary (stdout after a table, else stderr); returns the exit code. */
  finish(o: { interrupted: boolean; failOnFake?: boolean }): number {
    this.#progress.clear();
    const summary = this.tally.summary();
    if (this.#format === 'table') process.stdout.write(`\n${summary}\n`);
    else process.stderr.write(`${summary}\n`);
    if (o.interrupted) return EXIT.INTERRUPTED;
    if (o.failOnFake && this.tally.fake > 0) return EXIT.FAKE;
    return this.tally.failed > 0 ? EXIT.FAILED : EXIT.OK;
  }
}
