/**
 * `dfdet worker` and `dfdet submit` as users run them (built CLI, child processes) against a real
 * redis-server started here: a worker SIGKILLed mid-job and a Redis restarted mid-run must still
 * give every input exactly once, with the pFake of a local Detector.detect.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Job, Queue } from 'bullmq';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Detector, type DetectResult } from '../lib/detector';
import { initModel } from '../lib/detector-model/init';
import { redisOptions } from '../lib/queue/redis';
import { CLI, debianPhoto, dfdet, ensureBuilt, ndjson } from './helpers/cli';
import { skipWithoutRedis, startRedis, type TestRedis } from './helpers/redis';
import { call, metric } from './helpers/serve';

const noRedis = skipWithoutRedis();
const grace = debianPhoto('grace_hopper.jpg');
const astronaut = debianPhoto('astronaut.png');
const ready = !noRedis && grace !== null && astronaut !== null;

let dir: string;
let media: string;
let model: string;
let files: string[];
const local = new Map<string, DetectResult>();
const children: ChildProcess[] = [];

beforeAll(async () => {
  if (!ready) return;
  await ensureBuilt();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-queue-cli-'));
  media = path.join(dir, 'media');
  fs.mkdirSync(path.join(media, 'sub'), { recursive: true });
  model = path.join(dir, 'tiny.pt');
  await initModel({ arch: 'tiny', seed: 11, output: model });
  fs.copyFileSync(grace!, path.join(media, 'grace.jpg'));
  fs.copyFileSync(astronaut!, path.join(media, 'sub', 'astronaut.png'));
  await sharp(grace!).resize(300).jpeg().toFile(path.join(media, 'grace-small.jpg'));
  await sharp(astronaut!).flop().png().toFile(path.join(media, 'sub', 'astronaut-flop.png'));
  await sharp(grace!).extract({ left: 0, top: 0, width: 400, height: 400 }).png().toFile(path.join(media, 'grace-crop.png'));
  execFileSync('ffmpeg', [
    '-v', 'error', '-y', '-loop', '1', '-i', grace!, '-t', '2', '-r', '10',
    '-vf', "scale=640:-2,zoompan=z='1+0.003*on':d=1:s=320x400:fps=10,format=yuv420p", '-c:v', 'libx264', path.join(media, 'sub', 'clip.mp4'),
  ]);
  // A longer video (outside the submitted folder) that keeps a worker busy for a while.
  execFileSync('ffmpeg', [
    '-v', 'error', '-y', '-loop', '1', '-i', grace!, '-t', '20', '-r', '10',
    '-vf', "scale=640:-2,zoompan=z='1+0.001*on':d=1:s=320x400:fps=10,format=yuv420p", '-c:v', 'libx264', path.join(dir, 'long.mp4'),
  ]);
  fs.writeFileSync(path.join(media, 'empty.jpg'), Buffer.alloc(0));
  fs.writeFileSync(path.join(media, 'sub', 'truncated.png'), fs.readFileSync(astronaut!).subarray(0, 3000));
  files = [
    'empty.jpg', 'grace-crop.png', 'grace-small.jpg', 'grace.jpg', 'sub/astronaut-flop.png', 'sub/astronaut.png', 'sub/clip.mp4', 'sub/truncated.png',
  ].map((f) => path.join(media, f));
  // The reference: the same model and options in this process.
  const detector = await Detector.create({ model, frames: 8 });
  try {
    for (const r of await detector.detect(files)) local.set(r.source, r);
  } finally {
    await detector.dispose();
  }
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** A `dfdet worker` child process; `lines` gathers its stderr, `waitFor` resolves on a matching line. */
function startWorker(url: string, queue: string, extra: string[] = []) {
  const child = spawn(
    process.execPath,
    [CLI, 'worker', '--redis', url, '--queue', queue, '--model', model, '--frames', '8', '--concurrency', '1',
      '--lock-ms', '1500', '--stalled-interval-ms', '300', '--log-jobs', '--log-interval-s', '1', ...extra],
    { env: { ...process.env, OMP_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  let text = '';
  const waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    text += d;
    for (const w of [...waiters]) {
      const m = text.match(w.re);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    exited,
    get log() {
      return text;
    },
    waitFor(re: RegExp): Promise<RegExpMatchArray> {
      const m = text.match(re);
      return m ? Promise.resolve(m) : new Promise((resolve) => waiters.push({ re, resolve }));
    },
  };
}

/** Checks the submit rows: every input once, in place, with the local pFake and error code. */
function expectAllOnce(stdout: string): void {
  const rows = ndjson<DetectResult>(stdout);
  expect(rows.map((r) => r.index).sort((a, b) => a - b)).toEqual(files.map((_, i) => i));
  expect(new Set(rows.map((r) => r.source))).toEqual(new Set(files));
  for (const r of rows) {
    const want = local.get(r.source)!;
    expect(r.index).toBe(files.indexOf(r.source));
    expect(r.error?.code, r.source).toBe(want.error?.code);
    if (want.pFake === null) expect(r.pFake, r.source).toBeNull();
    else expect(r.pFake!, r.source).toBeCloseTo(want.pFake, 5);
  }
  expect(rows.filter((r) => r.error).map((r) => path.basename(r.source)).sort()).toEqual(['empty.jpg', 'truncated.png']);
}

describe.skipIf(!ready)('dfdet worker + submit', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('recovers the job of a worker SIGKILLed mid-job: every input once, as a local detect; SIGTERM exits 0', async () => {
    const a = startWorker(redis.url, 'kill');
    const b = startWorker(redis.url, 'kill', ['--metrics-port', '0']);
    await Promise.all([a.waitFor(/: ready/), b.waitFor(/: ready/)]);
    const killed = a.waitFor(/job (\S+) started/).then((m) => {
      a.child.kill('SIGKILL');
      return m[1]!;
    });
    const run = await dfdet(['submit', '--redis', redis.url, '--queue', 'kill', '--wait', '--json', '--reconcile-ms', '500', media], { timeoutMs: 120_000 });
    expect(run.code, run.stderr).toBe(1); // two broken inputs, as detect
    expectAllOnce(run.stdout);
    expect(run.stderr).toMatch(/8 inputs: 8 jobs on queue kill \(0 were there already\)/);
    expect(await a.exited).toBeNull();

    // The killed worker's job was taken over by the other one after its lock expired.
    const q = new Queue('kill', { connection: redisOptions(redis.url) });
    try {
      const job = (await Job.fromId(q, await killed))!;
      expect(job.attemptsStarted).toBeGreaterThanOrEqual(2);
      expect(job.processedBy).toMatch(new RegExp(`:${b.child.pid}$`));
      expect(await job.getState()).toBe('completed');
    } finally {
      await q.close();
    }

    // Resubmitting adds no work and prints the stored results.
    const again = await dfdet(['submit', '--redis', redis.url, '--queue', 'kill', '--wait', '--csv', media]);
    expect(again.stderr).toMatch(/8 jobs on queue kill \(8 were there already\)/);
    expect(again.stdout.trim().split('\n')).toHaveLength(9);
    const stats = await dfdet(['queue', 'stats', '--redis', redis.url, '--queue', 'kill', '--json']);
    expect(JSON.parse(stats.stdout)).toMatchObject({ completed: 8, failed: 0, waiting: 0, active: 0, workers: 1 });

    // The surviving worker ran every job; its Prometheus listener says so.
    const metricsUrl = (await b.waitFor(/metrics at (\S+)/))[1]!;
    const m = (await call(metricsUrl)).text;
    expect(metric(m, 'dfdet_jobs_total', 'outcome="scored"')).toBe(6);
    expect(metric(m, 'dfdet_jobs_total', 'outcome="input_error"')).toBe(2);

    b.child.kill('SIGTERM');
    expect(await b.exited).toBe(0);
    expect(b.log).toMatch(/jobs\/s/);
    expect(b.log).toMatch(/closed after \d+ jobs/);
  });

  it('carries on when Redis restarts mid-run (persistence off: lost jobs are added again)', async () => {
    const w = startWorker(redis.url, 'restart');
    await w.waitFor(/: ready/);
    void w.waitFor(/job \S+ done/).then(async () => {
      await redis.kill();
      await new Promise((r) => setTimeout(r, 300));
      await redis.start();
    });
    const run = await dfdet(['submit', '--redis', redis.url, '--queue', 'restart', '--wait', '--json', '--reconcile-ms', '500', media], { timeoutMs: 120_000 });
    expect(run.code, run.stderr).toBe(1);
    expectAllOnce(run.stdout);
    expect(run.stderr).toMatch(/missing from Redis/);
    expect(w.log).toMatch(/reconnected to Redis/);
    w.child.kill('SIGTERM');
    expect(await w.exited).toBe(0);
  });

  it('SIGTERM hands the active job back when the grace time is over, and exits 0', async () => {
    const w = startWorker(redis.url, 'term', ['--frames', '100', '--grace-ms', '0']);
    await w.waitFor(/: ready/);
    const sent = await dfdet(['submit', '--redis', redis.url, '--queue', 'term', '--json', path.join(dir, 'long.mp4')]);
    expect(sent.code, sent.stderr).toBe(0);
    const [{ jobId }] = ndjson<{ jobId: string }>(sent.stdout) as [{ jobId: string }];
    await w.waitFor(/job \S+ started/);
    w.child.kill('SIGTERM');
    expect(await w.exited).toBe(0);
    expect(w.log).toMatch(/closed after 0 jobs \(1 handed back\)/);
    const q = new Queue('term', { connection: redisOptions(redis.url) });
    try {
      const job = (await Job.fromId(q, jobId))!;
      expect(await job.getState()).toBe('waiting');
      expect(job.attemptsMade).toBe(0);
    } finally {
      await q.close();
    }
    // Another worker finishes it.
    const v = startWorker(redis.url, 'term');
    const run = await dfdet(['submit', '--redis', redis.url, '--queue', 'term', '--wait', '--json', path.join(dir, 'long.mp4')], { timeoutMs: 120_000 });
    expect(run.code, run.stderr).toBe(0);
    const [row] = ndjson<DetectResult>(run.stdout);
    expect(row!.kind).toBe('video');
    expect(row!.error).toBeUndefined();
    v.child.kill('SIGTERM');
    expect(await v.exited).toBe(0);
  });
});

describe.skipIf(!ready)('dfdet worker / submit / queue: errors', () => {
  it('bad URLs and queue names exit 2; an unreachable Redis times out with exit 1', async () => {
    const bad = await dfdet(['worker', '--redis', 'http://x', '--queue', 'q', '--model', model]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/BAD_INPUT: Expected a redis:\/\/ or rediss:\/\/ URL/);
    const name = await dfdet(['submit', '--redis', 'redis://127.0.0.1:1', '--queue', 'a:b', media]);
    expect(name.code).toBe(2);
    expect(name.stderr).toMatch(/queue name/);
    const none = await dfdet(['submit', '--redis', 'redis://127.0.0.1:1', '--queue', 'q']);
    expect(none.code).toBe(2);
    // Port 1 on loopback: nothing listens there.
    const down = await dfdet(['queue', 'stats', '--redis', 'redis://127.0.0.1:1', '--queue', 'q', '--connect-timeout-ms', '300']);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/TIMEOUT: Redis at redis:\/\/127\.0\.0\.1:1 did not answer within 300 ms/);
  });
});
