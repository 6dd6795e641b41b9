/**
 * `dfdet submit --redis URL --queue NAME [--wait] inputs...`: enqueue files, folders and globs as
 * detect jobs (deterministic ids: resubmitting adds no work); with --wait, stream each result as
 * it completes in detect's formats, with detect's exit codes.
 */
import * as fs from 'node:fs';

import { type Command, Option } from 'commander';

import { DfdetError, isDfdetError } from '../../errors';
import { csvField } from '../../eval/report';
import { DEFAULT_MAX_INLINE_BYTES, failedReasonOf, failedResult, MAX_INLINE_BYTES_LIMIT, type PreparedJob } from '../../queue/jobs';
import { Producer } from '../../queue/producer';
import { CSV_COLUMNS, Progress, ResultRows } from '../output';
import { EXIT, EXIT_HELP, intOption, interruptSignal, UsageError, writeOut } from '../options';
import { expandArguments, outputFormat } from './detect';
import { addQueueOptions } from './worker';

interface SubmitFlags {
  redis: string;
  queue: string;
  wait?: boolean;
  json?: boolean;
  csv?: boolean;
  table?: boolean;
  failOnFake?: boolean;
  progress?: boolean;
  inline?: boolean;
  maxInlineBytes: number;
  attempts: number;
  backoffMs: number;
  retryFailed?: boolean;
  reconcileMs: number;
  connectTimeoutMs: number;
}

/** One input of the command line and where it went. */
interface Item {
  index: number;
  source: string;
  jobId?: string;
  /** Set when the input could not become a job (reported like a failed detect input). */
  error?: string;
}

const CHUNK = 500;

/** Registers `submit`. */
export function registerSubmit(program: Command): void {
  const cmd = program
    .command('submit')
    .description('enqueue images and videos as detect jobs for `dfdet worker`s; --wait streams the results')
    .argument('<paths...>', "files, folders (recursive) or quoted globs ('data/**/*.mp4'), on storage the workers see at the same paths");
  addQueueOptions(cmd, true)
    .option('--wait', 'wait for the results and stream them as they complete')
    .option('--json', 'NDJSON: one object per input (default when stdout is not a terminal)')
    .option('--csv', `CSV: a header, then one row per input (with --wait: ${CSV_COLUMNS.join(', ')})`)
    .option('--table', 'a readable table (default when stdout is a terminal)')
    .option('--fail-on-fake', 'with --wait: exit with code 3 when any input is judged fake')
    .addOption(new Option('--no-progress', 'no progress line on stderr (shown only when stderr is a terminal)'))
    .option('--inline', 'send the file bytes in the job instead of the path (workers without shared storage; small files only)')
    .option('--max-inline-bytes <n>', 'largest file sent with --inline', intOption('--max-inline-bytes', 1, MAX_INLINE_BYTES_LIMIT), DEFAULT_MAX_INLINE_BYTES)
    .option('--attempts <n>', 'attempts per job on transient errors (input errors are never retried)', intOption('--attempts', 1, 100), 3)
    .option('--backoff-ms <ms>', 'first retry delay, doubled each attempt', intOption('--backoff-ms', 0, 3_600_000), 1000)
    .option('--retry-failed', 'put jobs that failed for good (attempts used up) back in the queue')
    .option('--reconcile-ms <ms>', 'with --wait: check the jobs directly after this long without a result', intOption('--reconcile-ms', 10, 3_600_000), 15_000);
  cmd.addHelpText(
    'after',
    `
The job id of a file is the sha256 of its absolute path, size and mtime (of the bytes with
--inline): submitting the same unchanged files again adds no work, and --wait prints the stored
results. Rows come in the order jobs complete; "index" is the input's position.

Examples:
  dfdet submit --redis redis://queue-host:6379 --queue faces /shared/uploads
  dfdet submit --redis redis://queue-host:6379 --queue faces --wait --csv '/shared/clips/**/*.mp4' > scores.csv

${EXIT_HELP}`,
  );
  cmd.action(async (paths: string[], flags: SubmitFlags) => {
    process.exitCode = await runSubmit(paths, flags);
  });
}

/** A job for one file: its path, or its bytes with --inline. */
async function prepare(producer: Producer, file: string, flags: SubmitFlags): Promise<PreparedJob> {
  if (!flags.inline) return producer.prepare(file);
  const st = await fs.promises.stat(file).catch(() => null);
  if (!st) throw new DfdetError('NOT_FOUND', `no such file: ${file}`);
  if (st.size > flags.maxInlineBytes)
    throw new DfdetError('BAD_INPUT', `Expected at most ${flags.maxInlineBytes} bytes for an inline input but received ${st.size} bytes (${file}): drop --inline and use shared storage`);
  return producer.prepare({ data: await fs.promises.readFile(file), name: file });
}

async function runSubmit(paths: string[], flags: SubmitFlags): Promise<number> {
  const format = outputFormat(flags);
  if (paths.includes('-')) throw new UsageError('submit takes files, folders and globs (not - for stdin)');
  const files = await expandArguments(paths);
  const producer = await Producer.open({ redis: flags.redis, queue: flags.queue, attempts: flags.attempts, backoffMs: flags.backoffMs, maxInlineBytes: flags.maxInlineBytes, reconcileMs: flags.reconcileMs, connectTimeoutMs: flags.connectTimeoutMs });
  const interrupt = interruptSignal();
  try {
    const items: Item[] = [];
    let existed = 0;
    for (let i = 0; i < files.length && !interrupt.interrupted; i += CHUNK) {
      const chunk = files.slice(i, i + CHUNK).map((source, k): Item => ({ index: i + k, source }));
      const jobs: PreparedJob[] = [];
      for (const item of chunk) {
        try {
          const job = await prepare(producer, item.source, flags);
          item.jobId = job.jobId;
          jobs.push(job);
        } catch (e) {
          if (!isDfdetError(e)) throw e;
          item.error = failedReasonOf(e);
        }
      }
      existed += (await producer.add(jobs, { retryFailed: flags.retryFailed })).filter((j) => j.existed).length;
      items.push(...chunk);
    }
    const jobIds = new Set(items.flatMap((it) => (it.jobId ? [it.jobId] : [])));
    process.stderr.write(`${items.length} inputs: ${jobIds.size} jobs on queue ${flags.queue} (${existed} were there already)\n`);
    if (interrupt.interrupted) return EXIT.INTERRUPTED;
    if (!flags.wait) return await printJobs(items, format);
    return await waitForResults(producer, items, jobIds, flags, format, interrupt);
  } finally {
    interrupt.dispose();
    await producer.close();
  }
}

/** Without --wait: one row per input with its job id. */
async function printJobs(items: readonly Item[], format: 'json' | 'csv' | 'table'): Promise<number> {
  if (format === 'csv') await writeOut('index,source,jobId,errorMessage\n');
  for (const it of items) {
    if (format === 'json') await writeOut(`${JSON.stringify({ index: it.index, source: it.source, jobId: it.jobId ?? null, error: it.error ?? null })}\n`);
    else if (format === 'csv') await writeOut(`${[it.index, it.source, it.jobId ?? '', it.error ?? ''].map(csvField).join(',')}\n`);
    else await writeOut(`${String(it.index).padStart(5)}  ${(it.jobId ?? it.error ?? '').padEnd(71)}  ${it.source}\n`);
  }
  return items.some((it) => it.error) ? EXIT.FAILED : EXIT.OK;
}

/** With --wait: one row per input as its job finishes, in detect's formats. */
async function waitForResults(
  producer: Producer,
  items: readonly Item[],
  jobIds: ReadonlySet<string>,
  flags: SubmitFlags,
  format: 'json' | 'csv' | 'table',
  interrupt: ReturnType<typeof interruptSignal>,
): Promise<number> {
  const rows = new ResultRows(format, new Progress(process.stderr, flags.progress !== false && Boolean(process.stderr.isTTY), items.length));
  const byJob = new Map<string, Item[]>();
  for (const it of items) if (it.jobId) byJob.set(it.jobId, [...(byJob.get(it.jobId) ?? []), it]);
  try {
    await rows.begin();
    for (const it of items) if (it.error) await rows.write(failedResult(it.index, it.source, it.error));
    for await (const outcome of producer.results(jobIds, { signal: interrupt.signal })) {
      // The row is the input's: its position and name here (one job may serve several inputs).
      for (const it of byJob.get(outcome.jobId) ?? []) await rows.write({ ...outcome.result, index: it.index, source: it.source });
    }
  } finally {
    rows.clear();
  }
  return rows.finish({ interrupted: interrupt.interrupted, failOnFake: flags.failOnFake });
}
