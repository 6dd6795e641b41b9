/**
 * Benchmark part "serve": `dfdet serve` (createServer, in this process) driven over loopback HTTP
 * by a bounded loop of node:http clients (keep-alive), against Detector.detect on the same bytes
 * in the same run:
 * - throughput of 1-face images through HTTP vs direct Detector.detect calls at the same
 *   concurrency (target ratio >= 0.9);
 * - p50/p99 latency of 1-face requests while 24-face requests run (reference: the median 24-face
 *   request; with FIFO scheduling a small request would wait for a big one's faces);
 * - RSS under overload (many clients, a small queue): peak RSS against RSS when idle.
 */
import * as http from 'node:http';

import sharp from 'sharp';

import { Detector } from '../detector';
import { createServer, type DfdetServer } from '../serve/server';
import { type BenchContext, type BenchResult, cachedDetector, median, now, procStatus } from './common';
import { findPhoto } from './media';

/** Settings of {@link benchServe}; defaults depend on `ctx.quick`. */
export interface ServeBenchOptions {
  /** Detector size (default 'vit-b-16'; quick: 'tiny'). */
  arch?: 'tiny' | 'vit-b-16' | 'vit-l-14';
  /** Seconds of each load phase (default 10; quick: 1.5). */
  seconds?: number;
  /** Concurrent clients of the throughput phase (default 4). */
  clients?: number;
}

interface Shot {
  status: number;
  ms: number;
}

/** POSTs `body` and reads the answer whole. */
function post(agent: http.Agent, url: URL, body: Buffer, type: string): Promise<Shot> {
  const t0 = now();
  return new Promise((resolve, reject) => {
    const req = http.request({ agent, host: url.hostname, port: url.port, path: '/v1/detect', method: 'POST', headers: { 'content-type': type, 'content-length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, ms: (now() - t0) * 1000 }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** `clients` loops, each calling `fn` until `seconds` are over; every result with its client. */
async function load<T>(clients: number, seconds: number, fn: (client: number) => Promise<T>): Promise<{ results: { client: number; value: T }[]; seconds: number }> {
  const t0 = now();
  const results: { client: number; value: T }[] = [];
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      while (now() - t0 < seconds) results.push({ client, value: await fn(client) });
    }),
  );
  return { results, seconds: now() - t0 };
}

function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? Number.NaN;
}

/** A JPEG `cols x rows` grid of one photo, each copy `cell` px wide: one face per copy. */
export async function photoGrid(photo: string, cols = 6, rows = 4, cell = 200): Promise<Buffer> {
  const img = await sharp(photo).resize(cell).toBuffer();
  const h = (await sharp(img).metadata()).height!;
  const composite = [];
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) composite.push({ input: img, left: c * cell, top: r * h });
  return sharp({ create: { width: cols * cell, height: rows * h, channels: 3, background: '#808080' } }).composite(composite).jpeg().toBuffer();
}

/** Runs the serve benchmark. */
export async function benchServe(ctx: BenchContext, opts: ServeBenchOptions = {}): Promise<BenchResult[]> {
  const photo = findPhoto();
  if (!photo) throw new Error('serve: no photo with a face (install python-matplotlib-data or set DFDET_BENCH_PHOTO)');
  const arch = opts.arch ?? (ctx.quick ? 'tiny' : 'vit-b-16');
  const seconds = opts.seconds ?? (ctx.quick ? 1.5 : 10);
  const clients = opts.clients ?? 4;
  const model = await cachedDetector(ctx, arch);
  const one = await sharp(photo).resize(400).jpeg().toBuffer();
  const many = await photoGrid(photo, 6, 4);
  const detector = await Detector.create({ model, concurrency: clients });
  const out: BenchResult[] = [];
  const servers: DfdetServer[] = [];
  const start = async (o: Parameters<typeof createServer>[0]): Promise<URL> => {
    const s = createServer({ ...o, logger: false, warmup: { data: one, name: 'warmup' } });
    servers.push(s);
    return new URL(await s.listen({ port: 0 }));
  };
  try {
    const faces = [(await detector.detect({ data: one, name: '1' })).faces.length, (await detector.detect({ data: many, name: '24' })).faces.length];
    ctx.log(`serve: ${arch}, faces per image ${faces.join(' / ')}, ${clients} clients, ${seconds} s per phase`);

    // 1. Throughput: the same 1-face bytes, the same concurrency, direct calls then HTTP.
    const url = await start({ detector, maxRunning: clients, maxQueue: clients });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    // Alternating short rounds, so a change of machine load hits both sides alike.
    const rounds = ctx.quick ? 2 : 4;
    let directCalls = 0;
    let directSec = 0;
    let ok = 0;
    let requests = 0;
    let httpSec = 0;
    for (let r = 0; r < rounds; r++) {
      const direct = await load(clients, seconds / rounds, () => detector.detect({ data: one, name: 'x' }));
      directCalls += direct.results.length;
      directSec += direct.seconds;
      const viaHttp = await load(clients, seconds / rounds, () => post(agent, url, one, 'image/jpeg'));
      ok += viaHttp.results.filter((x) => x.value.status === 200).length;
      requests += viaHttp.results.length;
      httpSec += viaHttp.seconds;
    }
    const directRate = directCalls / directSec;
    const httpRate = ok / httpSec;
    out.push({
      part: 'serve',
      name: `HTTP POST /v1/detect, 1-face image, ${clients} clients (${arch})`,
      value: httpRate,
      unit: 'img/s',
      reference: { name: 'Detector.detect, same bytes and concurrency', value: directRate },
      ratio: httpRate / directRate,
      ratioLabel: 'http/direct',
      target: 'ratio >= 0.9',
      details: { requests, ok, directCalls, rounds },
    });

    // 2. Fairness: a 1-face client while two 24-face clients keep the detector busy.
    const mixed = await load(3, seconds, (c) => post(agent, url, c === 0 ? one : many, 'image/jpeg'));
    const small = mixed.results.filter((r) => r.client === 0 && r.value.status === 200).map((r) => r.value.ms);
    const big = mixed.results.filter((r) => r.client > 0 && r.value.status === 200).map((r) => r.value.ms);
    const bigMedian = median(big.length ? big : [Number.NaN]);
    for (const [q, label] of [
      [0.5, 'p50'],
      [0.99, 'p99'],
    ] as const) {
      out.push({
        part: 'serve',
        name: `1-face request ${label} while two 24-face clients run`,
        value: quantile(small, q),
        unit: 'ms',
        reference: { name: 'median 24-face request', value: bigMedian },
        ratio: quantile(small, q) / bigMedian,
        ratioLabel: 'small/big',
        target: 'ratio < 1 (no wait for every face of a big request)',
        details: { small: small.length, big: big.length },
      });
    }

    // 3. Overload: 32 clients sending 24-face images to a queue of 4; RSS sampled while it lasts.
    const idle = procStatus().rss ?? process.memoryUsage().rss;
    const tight = await start({ detector, maxRunning: 2, maxQueue: 4, maxBody: 4 * 2 ** 20, maxQueueBytes: 16 * 2 ** 20 });
    const tightServer = servers.at(-1)!;
    let peak = idle;
    const sampler = setInterval(() => (peak = Math.max(peak, procStatus().rss ?? process.memoryUsage().rss)), 50);
    const over = await load(32, seconds, () => post(agent, tight, many, 'image/jpeg'));
    clearInterval(sampler);
    const statuses: Record<string, number> = {};
    for (const r of over.results) statuses[r.value.status] = (statuses[r.value.status] ?? 0) + 1;
    agent.destroy();
    out.push({
      part: 'serve',
      name: 'peak RSS, 32 clients vs --max-queue 4 (24-face images)',
      value: peak / 2 ** 20,
      unit: 'MB',
      reference: { name: 'RSS idle (warmed up)', value: idle / 2 ** 20 },
      ratio: peak / idle,
      ratioLabel: 'peak/idle',
      target: 'bounded: only 200/429, held bodies <= --max-queue-bytes',
      details: { statuses, admissionPeak: tightServer.controller.admission.peak, requests: over.results.length },
    });
  } finally {
    for (const s of servers) await s.close(1000);
    await detector.dispose();
  }
  return out;
}
