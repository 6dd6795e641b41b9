/**
 * `dfdet worker --redis URL --queue NAME [detector options]`: a queue worker running each job
 * through the shared Detector. SIGTERM/SIGINT: finish the active jobs (hand them back after
 * --grace-ms, or at once on a second signal), then exit 0.
 */
import type { Command } from 'commander';

import { QueueWorker } from '../../queue/worker';
import { addDetectorOptions, type DetectorFlags, detectorOptions, EXIT, intOption, randomWeightsWarning } from '../options';

interface WorkerFlags extends DetectorFlags {
  redis: string;
  queue: string;
  lockMs: number;
  stalledIntervalMs: number;
  maxStalled: number;
  logIntervalS: number;
  graceMs: number;
  logJobs?: boolean;
  metricsPort?: number;
  metricsHost: string;
}

/** Adds `--redis` and `--queue` (shared by worker, submit and queue); `connectTimeout` adds --connect-timeout-ms too. */
export function addQueueOptions(cmd: Command, connectTimeout = false): Command {
  if (connectTimeout) cmd.option('--connect-timeout-ms <ms>', 'give up when Redis does not answer at start-up within this time', intOption('--connect-timeout-ms', 1, 86_400_000), 30_000);
  return cmd
    .requiredOption('--redis <url>', 'Redis URL (redis://[user:password@]host:port[/db]; rediss:// for TLS)', process.env.DFDET_REDIS)
    .requiredOption('--queue <name>', 'queue name: one queue per detector setup (model and options)', process.env.DFDET_QUEUE ?? 'dfdet');
}

/** Registers `worker`. */
export function registerWorker(program: Command): void {
  const cmd = program.command('worker').description('take detect jobs from a Redis queue (BullMQ) and run them through the detector');
  addQueueOptions(cmd)
    .option('--lock-ms <ms>', "job lock duration: a dead worker's job is taken over after it", intOption('--lock-ms', 100, 3_600_000), 30_000)
    .option('--stalled-interval-ms <ms>', 'how often to look for jobs of dead workers', intOption('--stalled-interval-ms', 100, 3_600_000), 30_000)
    .option('--max-stalled <n>', 'times a job may lose its worker before it fails', intOption('--max-stalled', 0, 1000), 2)
    .option('--log-interval-s <s>', 'throughput log period on stderr (0: none)', intOption('--log-interval-s', 0, 86_400), 10)
    .option('--log-jobs', 'log a line when each job starts and ends')
    .option('--grace-ms <ms>', 'on SIGTERM, time the active jobs get to finish before they are handed back', intOption('--grace-ms', 0, 3_600_000), 25_000)
    .option('--metrics-port <port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port; default: none)', intOption('--metrics-port', 0, 65_535))
    .option('--metrics-host <host>', 'address the metrics listener binds', '127.0.0.1');
  addDetectorOptions(cmd, { faces: 'detect' });
  cmd.addHelpText(
    'after',
    `
--concurrency is the number of jobs this worker runs at once. Every worker must see the input
files at the same absolute paths as the submitter (shared storage: NFS, a bucket mount, a volume).
Jobs whose input is bad (not found, cannot be decoded) complete with the error result and are not
retried; transient errors (out of memory, libtorch/device errors) are retried with backoff.

Examples:
  dfdet worker --redis redis://queue-host:6379 --queue faces --model model.pt --concurrency 2
  dfdet worker --redis redis://queue-host:6379 --queue faces-gpu --device cuda:0 --batch-size 32`,
  );
  cmd.action(async (flags: WorkerFlags) => {
    process.exitCode = await runWorker(flags);
  });
}

async function runWorker(flags: WorkerFlags): Promise<number> {
  const options = detectorOptions(flags);
  const worker = await QueueWorker.start({
    redis: flags.redis,
    queue: flags.queue,
    detector: options,
    concurrency: flags.concurrency,
    lockDurationMs: flags.lockMs,
    stalledIntervalMs: flags.stalledIntervalMs,
    maxStalledCount: flags.maxStalled,
    logIntervalMs: flags.logIntervalS * 1000,
    logJobs: flags.logJobs,
    metricsPort: flags.metricsPort,
    metricsHost: flags.metricsHost,
  });
  if (worker.detector.identity.sourceKind === 'init') process.stderr.write(`${randomWeightsWarning(worker.detector.identity.name)}\n`);
  process.stderr.write(`worker ${worker.name}: ready\n`);
  await new Promise<void>((resolve) => {
    let signals = 0;
    let grace: NodeJS.Timeout | undefined;
    const onSignal = (name: string): void => {
      signals++;
      if (signals === 1) {
        process.stderr.write(`worker ${worker.name}: ${name}: finishing ${worker.active} active jobs (again to hand them back now)\n`);
        grace = setTimeout(() => void worker.close({ handBack: true }), flags.graceMs);
        void worker.close().then(() => {
          clearTimeout(grace);
          resolve();
        });
      } else if (signals === 2) {
        process.stderr.write(`worker ${worker.name}: ${name}: handing the active jobs back (again to quit at once)\n`);
        void worker.close({ handBack: true });
      } else process.exit(EXIT.INTERRUPTED);
    };
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));
  });
  return EXIT.OK;
}
