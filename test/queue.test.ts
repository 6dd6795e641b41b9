/**
 * The queue library against a real redis-server (started here on a free loopback port): a
 * QueueWorker in this process runs jobs through a real Detector (tiny seeded model), on real
 * photos and broken files; results are compared with a local Detector.detect.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Job } from 'bullmq';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Detector } from '../lib/detector';
import { initModel } from '../lib/detector-model/init';
import { isDfdetError } from '../lib/errors';
import { bytesJobId, fileJobId, isTransient, prepareJob } from '../lib/queue/jobs';
import { Producer, type JobOutcome } from '../lib/queue/producer';
import { redisOptions } from '../lib/queue/redis';
import { QueueWorker } from '../lib/queue/worker';
import { debianPhoto } from './helpers/cli';
import { skipWithoutRedis, startRedis, type TestRedis } from './helpers/redis';
import { call, metric } from './helpers/serve';

const noRedis = skipWithoutRedis();
const grace = debianPhoto('grace_hopper.jpg');
const astronaut = debianPhoto('astronaut.png');
const ready = !noRedis && grace !== null && astronaut !== null;

let dir: string;
let redis: TestRedis;
let detector: Detector;
const logs: string[] = [];
const log = (line: string): void => void logs.push(line);

beforeAll(async () => {
  if (!ready) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-queue-'));
  const model = path.join(dir, 'tiny.pt');
  await initModel({ arch: 'tiny', seed: 3, output: model });
  detector = await Detector.create({ model, concurrency: 2 });
  fs.copyFileSync(grace!, path.join(dir, 'grace.jpg'));
  await sharp(astronaut!).resize(256).png().toFile(path.join(dir, 'astronaut-small.png'));
  fs.writeFileSync(path.join(dir, 'empty.jpg'), Buffer.alloc(0));
  fs.writeFileSync(path.join(dir, 'truncated.png'), fs.readFileSync(astronaut!).subarray(0, 3000));
  redis = await startRedis();
});

afterAll(async () => {
  await detector?.dispose();
  await redis?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function collect(producer: Producer, ids: Iterable<string>): Promise<Map<string, JobOutcome>> {
  const out = new Map<string, JobOutcome>();
  for await (const o of producer.results(ids)) {
    expect(out.has(o.jobId), `${o.jobId} came back twice`).toBe(false);
    out.set(o.jobId, o);
  }
  return out;
}

describe.skipIf(!ready)('job ids and payloads', () => {
  it('are deterministic, change with the file, and bound inline bytes', async () => {
    const f = path.join(dir, 'grace.jpg');
    const a = await prepareJob(f);
    const b = await prepareJob(path.relative(process.cwd(), f));
    expect(b.jobId).toBe(a.jobId);
    expect(a.data.path).toBe(f);
    const st = fs.statSync(f);
    expect(a.jobId).toBe(fileJobId(f, st));
    expect(fileJobId(f, { size: st.size, mtimeMs: st.mtimeMs + 1 })).not.toBe(a.jobId);
    const bytes = fs.readFileSync(f);
    expect((await prepareJob({ data: bytes, name: 'x' })).jobId).toBe(bytesJobId(bytes));
    await expect(prepareJob({ data: bytes }, bytes.length - 1)).rejects.toMatchObject({ code: 'BAD_INPUT', message: expect.stringMatching(/at most/) });
    await expect(prepareJob(dir)).rejects.toMatchObject({ code: 'BAD_INPUT', message: expect.stringMatching(/folder/) });
    expect(() => redisOptions('http://x')).toThrow(/redis:\/\//);
    expect(redisOptions('redis://:pw@h:7000/3')).toMatchObject({ host: 'h', port: 7000, db: 3, password: 'pw', maxRetriesPerRequest: null });
    expect(['DECODE_FAILED', 'NOT_FOUND', 'BAD_INPUT'].filter((c) => isTransient(c as never))).toEqual([]);
    expect(['OUT_OF_MEMORY', 'RUNTIME_ERROR'].every((c) => isTransient(c as never))).toBe(true);
  });
});

describe.skipIf(!ready)('Producer + QueueWorker', () => {
  it('scores paths and inline bytes like a local detect; bad inputs complete with their error, once', async () => {
    const producer = await Producer.open({ redis: redis.url, queue: 'lib', attempts: 3, backoffMs: 50, log });
    const worker = await QueueWorker.start({ redis: redis.url, queue: 'lib', detector, concurrency: 2, logIntervalMs: 0, log, metricsPort: 0 });
    try {
      const files = ['grace.jpg', 'astronaut-small.png', 'empty.jpg', 'truncated.png', 'missing.jpg'].map((f) => path.join(dir, f));
      const inline = fs.readFileSync(path.join(dir, 'astronaut-small.png'));
      const enq = await producer.enqueue([...files, { data: inline, name: 'inline.png' }]);
      expect(enq.map((e) => e.existed)).toEqual([false, false, false, false, false, false]);
      const got = await collect(producer, enq.map((e) => e.jobId));
      expect(got.size).toBe(6);
      const local = await detector.detect(files);
      for (let i = 0; i < files.length; i++) {
        const o = got.get(enq[i]!.jobId)!;
        const want = local[i]!;
        expect(o.state).toBe('completed');
        expect(o.result.source).toBe(files[i]);
        expect(o.result.error?.code).toBe(want.error?.code);
        if (want.pFake === null) expect(o.result.pFake).toBeNull();
        else expect(o.result.pFake!).toBeCloseTo(want.pFake, 5);
        // Input errors are final: one attempt, completed, never retried.
        const job = (await Job.fromId(producer.queue, enq[i]!.jobId))!;
        expect(job.attemptsMade).toBe(1);
        expect(await job.getState()).toBe('completed');
      }
      expect(got.get(enq[2]!.jobId)!.result.error?.code).toBe('DECODE_FAILED');
      expect(got.get(enq[4]!.jobId)!.result.error?.code).toBe('NOT_FOUND');
      const viaBytes = got.get(enq[5]!.jobId)!.result;
      expect(viaBytes.source).toBe('inline.png');
      expect(viaBytes.pFake!).toBeCloseTo(local[1]!.pFake!, 5);

      // Resubmitting adds no work: the stored results come back.
      const again = await producer.enqueue(files);
      expect(again.every((e) => e.existed)).toBe(true);
      const counts = await producer.counts();
      expect(counts).toMatchObject({ completed: 6, waiting: 0, active: 0, failed: 0 });
      const stored = await collect(producer, again.map((e) => e.jobId));
      expect(stored.get(enq[0]!.jobId)!.result.pFake).toBe(got.get(enq[0]!.jobId)!.result.pFake);
      expect(worker.stats).toMatchObject({ scored: 3, inputErrors: 3, transientErrors: 0 });

      // The same counts over real HTTP from the metrics listener, with the detector's metrics.
      expect(worker.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const m = await call(worker.metricsUrl!);
      expect(m.status).toBe(200);
      expect(m.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(metric(m.text, 'dfdet_jobs_total', 'outcome="scored"')).toBe(3);
      expect(metric(m.text, 'dfdet_jobs_total', 'outcome="input_error"')).toBe(3);
      expect(metric(m.text, 'dfdet_job_duration_seconds_count', 'outcome="scored"')).toBe(3);
      expect(metric(m.text, 'dfdet_jobs_active')).toBe(0);
      expect(metric(m.text, 'dfdet_faces_scored_total')).toBe(detector.stats.items);
      expect(metric(m.text, 'dfdet_process_resident_memory_bytes')).toBeGreaterThan(0);
      expect((await call(worker.metricsUrl!.replace(/metrics$/, 'other'))).status).toBe(404);
    } finally {
      await worker.close();
      await producer.close();
    }
  });

  it('retries transient errors with exponential backoff, then fails the job with the reason', async () => {
    // A worker whose detector is gone: every attempt ends in DISPOSED, a transient error.
    const dead = await Detector.create({ model: path.join(dir, 'tiny.pt'), faces: 'none' });
    await dead.dispose();
    const producer = await Producer.open({ redis: redis.url, queue: 'transient', attempts: 3, backoffMs: 100, log });
    const worker = await QueueWorker.start({ redis: redis.url, queue: 'transient', detector: dead, logIntervalMs: 0, log });
    try {
      const [e] = await producer.enqueue(path.join(dir, 'grace.jpg'));
      const got = await collect(producer, [e!.jobId]);
      const o = got.get(e!.jobId)!;
      expect(o.state).toBe('failed');
      expect(o.result.error).toEqual({ code: 'DISPOSED', message: 'the detector was disposed' });
      expect(o.result.pFake).toBeNull();
      const job = (await Job.fromId(producer.queue, e!.jobId))!;
      expect(job.attemptsMade).toBe(3);
      expect(job.opts.backoff).toEqual({ type: 'exponential', delay: 100 });
      expect(job.failedReason).toBe('DISPOSED: the detector was disposed');
      expect(worker.stats.transientErrors).toBe(3);

      // Submitting it again adds nothing; retryFailed puts it back with fresh attempts.
      expect((await producer.enqueue(path.join(dir, 'grace.jpg')))[0]!.existed).toBe(true);
      expect(await job.getState()).toBe('failed');
      await producer.enqueue(path.join(dir, 'grace.jpg'), { retryFailed: true });
      expect((await collect(producer, [e!.jobId])).get(e!.jobId)!.state).toBe('failed');
      expect((await Job.fromId(producer.queue, e!.jobId))!.attemptsMade).toBe(3);
      expect(worker.stats.transientErrors).toBe(6);
      expect(metric((await worker.metrics()).body, 'dfdet_jobs_total', 'outcome="transient_error"')).toBe(6);
      expect(worker.metricsUrl).toBeUndefined();
    } finally {
      await worker.close();
      await producer.close();
    }
  });

  it('fails malformed job data at once (not a dfdet job), without retries', async () => {
    const producer = await Producer.open({ redis: redis.url, queue: 'junk', attempts: 3, backoffMs: 50, log });
    const worker = await QueueWorker.start({ redis: redis.url, queue: 'junk', detector, logIntervalMs: 0, log });
    try {
      await producer.queue.add('detect', { v: 1, name: 'x', path: 'relative/file.jpg' } as never, { jobId: 'junk-1' });
      const o = (await collect(producer, ['junk-1'])).get('junk-1')!;
      expect(o.state).toBe('failed');
      expect(o.result.error?.code).toBe('BAD_INPUT');
      expect(o.result.error?.message).toMatch(/absolute path/);
      expect((await Job.fromId(producer.queue, 'junk-1'))!.attemptsMade).toBe(1);
    } finally {
      await worker.close();
      await producer.close();
    }
  });
});

describe.skipIf(!ready)('errors', () => {
  it('rejects bad options with typed errors', async () => {
    await expect(Producer.open({ redis: 'nope', queue: 'q' })).rejects.toSatisfy((e: unknown) => isDfdetError(e, 'BAD_INPUT'));
    await expect(Producer.open({ redis: redis.url, queue: 'a:b' })).rejects.toSatisfy((e: unknown) => isDfdetError(e, 'BAD_INPUT'));
    await expect(Producer.open({ redis: redis.url, queue: 'q', attempts: 0 })).rejects.toSatisfy((e: unknown) => isDfdetError(e, 'BAD_INPUT'));
    await expect(QueueWorker.start({ redis: redis.url, queue: 'q', detector, concurrency: 0 })).rejects.toThrow(/Expected an integer between 1 and 10000 for concurrency/);
    await expect(QueueWorker.start({ redis: 'redis://h:1/x', queue: 'q', detector })).rejects.toSatisfy((e: unknown) => isDfdetError(e, 'BAD_INPUT'));
    await expect(QueueWorker.start({ redis: redis.url, queue: 'q', detector, metricsPort: 70_000 })).rejects.toThrow(/Expected an integer between 0 and 65535 for metricsPort/);
    // A port already taken: a clear error, and the worker it started is closed again.
    const first = await QueueWorker.start({ redis: redis.url, queue: 'q', detector, metricsPort: 0, logIntervalMs: 0, log });
    try {
      const port = Number(new URL(first.metricsUrl!).port);
      await expect(QueueWorker.start({ redis: redis.url, queue: 'q', detector, metricsPort: port, logIntervalMs: 0, log })).rejects.toMatchObject({ code: 'BAD_INPUT', message: expect.stringMatching(/EADDRINUSE/) });
    } finally {
      await first.close();
    }
  });
});
