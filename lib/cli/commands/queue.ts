/**
 * `dfdet queue stats --redis URL --queue NAME`: job counts of a queue and the workers connected.
 */
import type { Command } from 'commander';

import { queueCounts } from '../../queue/producer';
import { textTable } from '../output';
import { EXIT } from '../options';
import { addQueueOptions } from './worker';

interface StatsFlags {
  redis: string;
  queue: string;
  json?: boolean;
  connectTimeoutMs: number;
}

/** Registers `queue` (with `queue stats`). */
export function registerQueue(program: Command): void {
  const queue = program.command('queue').description('inspect a job queue of `dfdet worker`s');
  const stats = queue.command('stats').description('job counts (waiting, active, delayed, completed, failed) and connected workers');
  addQueueOptions(stats, true).option('--json', 'one JSON object');
  stats.action(async (flags: StatsFlags) => {
    const c = await queueCounts(flags.redis, flags.queue, { connectTimeoutMs: flags.connectTimeoutMs });
    if (flags.json) process.stdout.write(`${JSON.stringify({ queue: flags.queue, ...c })}\n`);
    else {
      const rows = Object.entries(c).map(([k, v]) => [k, String(v)]);
      process.stdout.write(`queue ${flags.queue}\n${textTable(['state', 'jobs'], rows)}\n`);
    }
    process.exitCode = EXIT.OK;
  });
}
