/**
 * The HTTP service in process (createServer over a real Detector with a tiny model made by
 * `initModel`), driven over real HTTP on 127.0.0.1: results, every error path, auth, metrics,
 * OpenAPI, admission bounds under overload, and timeouts that cancel the work.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import fastify from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Detector, type DetectResult } from '../lib/detector';
import { initModel } from '../lib/detector-model/init';
import { readApiKeyFile } from '../lib/serve/auth';
import { dfdetPlugin } from '../lib/serve/plugin';
import { createServer, type DfdetServer } from '../lib/serve/server';
import { debianPhoto } from './helpers/cli';
import { call, metric, noise, openUpload, photoGrid, photoVideo, postFile, postFiles, until } from './helpers/serve';
import { haveFfmpeg } from './helpers/ffmpeg';

const grace = debianPhoto('grace_hopper.jpg');
const astronaut = debianPhoto('astronaut.png');
if (!haveFfmpeg) {
  if (process.env.CI) throw new Error('ffmpeg missing (scripts/setup-system.sh --test)');
  console.warn('SKIPPED: ffmpeg missing: the video request is skipped');
}
const itPhotos = grace && astronaut ? it : it.skip;

let dir: string;
let modelPath: string;
let detector: Detector;
let grid: string;
let blank: string;
let clip: string | undefined;
const servers: DfdetServer[] = [];

/** A server on a free port of 127.0.0.1, ready; closed after the tests. */
async function start(options: Partial<Parameters<typeof createServer>[0]> = {}): Promise<{ server: DfdetServer; url: string }> {
  const server = createServer({ detector, logger: false, ...options });
  servers.push(server);
  const url = await server.listen({ port: 0 });
  return { server, url };
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-serve-'));
  modelPath = path.join(dir, 'tiny.pt');
  await initModel({ arch: 'tiny', seed: 7, output: modelPath });
  detector = await Detector.create({ model: modelPath, frames: 8 });
  blank = path.join(dir, 'blank.png');
  await sharp({ create: { width: 320, height: 240, channels: 3, background: '#5a78c8' } }).png().toFile(blank);
  if (grace) grid = await photoGrid(grace, path.join(dir, 'grid.jpg'));
  if (grace && haveFfmpeg) clip = photoVideo(grace, path.join(dir, 'clip.mp4'));
}, 120_000);

afterAll(async () => {
  for (const s of servers) await s.close(0);
  await detector?.dispose();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function expectError(a: { status: number; body: Record<string, unknown>; headers: Headers }, status: number, code: string): void {
  expect(a.status, JSON.stringify(a.body)).toBe(status);
  expect(a.body).toMatchObject({ error: { code, message: expect.any(String) }, requestId: expect.any(String) });
  expect(a.headers.get('content-type')).toMatch(/application\/json/);
}

describe('dfdet serve: results over HTTP', () => {
  let url: string;
  beforeAll(async () => {
    ({ url } = await start({ maxBody: 4 * 2 ** 20, maxFiles: 4 }));
  });

  it('binds 127.0.0.1 and answers the probes', async () => {
    expect(new URL(url).hostname).toBe('127.0.0.1');
    const h = await call(`${url}/healthz`);
    expect(h.status).toBe(200);
    expect(h.body).toEqual({ status: 'ok' });
    expect(h.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect((await call(`${url}/readyz`)).status).toBe(200);
    // CORS is off unless asked.
    const o = await call(`${url}/healthz`, { headers: { origin: 'https://evil.example' } });
    expect(o.headers.get('access-control-allow-origin')).toBeNull();
  });

  itPhotos('scores a raw image exactly as Detector.detect does; source is the request id, no server path', async () => {
    const a = await postFile(`${url}/v1/detect`, grace!);
    expect(a.status, a.text).toBe(200);
    const r = a.body as unknown as DetectResult;
    const direct = await detector.detect(grace!);
    expect(r.faces.length).toBe(direct.faces.length);
    expect(r.faces.length).toBeGreaterThan(0);
    expect(r.pFake).toBeCloseTo(direct.pFake!, 6);
    r.faces.forEach((f, i) => expect(f.pFake).toBeCloseTo(direct.faces[i]!.pFake, 6));
    expect(r.source).toBe(a.headers.get('x-request-id'));
    expect(r.model.name).toBe('tiny.pt');
    expect(a.text).not.toContain(dir);
  });

  itPhotos('multipart: one result per file, in order, named by the upload; a bad file carries its error', async () => {
    const files = [
      { name: 'a/../grace.jpg', data: fs.readFileSync(grace!), type: 'image/jpeg' },
      { name: 'blank.png', data: fs.readFileSync(blank), type: 'image/png' },
      { name: 'noise.jpg', data: noise(5000), type: 'image/jpeg' },
      { name: 'astronaut.png', data: fs.readFileSync(astronaut!), type: 'image/png' },
    ];
    const a = await postFiles(`${url}/v1/detect`, files);
    expect(a.status, a.text).toBe(200);
    const results = a.body.results as DetectResult[];
    expect(results.map((r) => r.source)).toEqual(['grace.jpg', 'blank.png', 'noise.jpg', 'astronaut.png']);
    expect(results.map((r) => r.index)).toEqual([0, 1, 2, 3]);
    expect(results[0]!.pFake).toBeCloseTo((await detector.detect(grace!)).pFake!, 6);
    expect(results[1]).toMatchObject({ noFace: true, pFake: null });
    expect(results[2]!.error?.code).toBe('DECODE_FAILED');
    expect(results[3]!.pFake).toBeCloseTo((await detector.detect(astronaut!)).pFake!, 6);
    expect(a.body.requestId).toBe(a.headers.get('x-request-id'));
  });

  it('scores a raw video', async ({ skip }) => {
    if (!clip) skip();
    const a = await postFile(`${url}/v1/detect`, clip!, 'video/mp4');
    expect(a.status, a.text).toBe(200);
    const direct = await detector.detect(clip!);
    expect(a.body).toMatchObject({ kind: 'video', aggregate: direct.aggregate });
    expect(a.body.pFake as number).toBeCloseTo(direct.pFake!, 6);
    expect(a.text).not.toContain(os.tmpdir() + path.sep);
  });

  it('passes per-request options (threshold, frames, allFaces) to the detector call', async ({ skip }) => {
    if (!clip) skip();
    const a = await postFile(`${url}/v1/detect?threshold=0.25&frames=4&allFaces=true`, clip!, 'video/mp4');
    expect(a.status, a.text).toBe(200);
    const direct = await detector.detect(clip!, { threshold: 0.25, frames: 4, allFaces: true });
    expect(a.body).toMatchObject({ threshold: 0.25, aggregate: 'max-track-mean', label: direct.label });
    expect(a.body.frames as unknown[]).toHaveLength(4);
    expect(a.body.pFake as number).toBeCloseTo(direct.pFake!, 6);
    const b = await postFile(`${url}/v1/detect?threshold=1`, blank, 'image/png');
    expect(b.body.threshold).toBe(1);
  });

  it('answers every bad input with a 4xx JSON error carrying the dfdet code, never a 500', async () => {
    const d = `${url}/v1/detect`;
    expectError(await call(d, { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } }), 415, 'UNSUPPORTED');
    expectError(await call(d, { method: 'POST', body: '{"url":"http://169.254.169.254/"}', headers: { 'content-type': 'application/json' } }), 415, 'UNSUPPORTED');
    expectError(await call(d, { method: 'POST', body: noise(5 * 2 ** 20), headers: { 'content-type': 'image/jpeg' } }), 413, 'BAD_INPUT');
    expectError(await call(d, { method: 'POST', body: noise(4000), headers: { 'content-type': 'image/jpeg' } }), 422, 'DECODE_FAILED');
    expectError(await call(d, { method: 'POST', body: noise(4000) }), 415, 'UNSUPPORTED');
    expect((await call(d, { method: 'POST', body: fs.readFileSync(blank), headers: { 'content-type': 'Image/PNG; charset=binary' } })).status).toBe(200);
    expect((await call(d, { method: 'POST', body: fs.readFileSync(blank), headers: { 'content-type': 'application/octet-stream' } })).status).toBe(200);
    if (astronaut) expectError(await call(d, { method: 'POST', body: fs.readFileSync(astronaut).subarray(0, 4000), headers: { 'content-type': 'image/png' } }), 422, 'DECODE_FAILED');
    expectError(await call(d, { method: 'POST', body: Buffer.alloc(0), headers: { 'content-type': 'image/png' } }), 400, 'BAD_INPUT');
    const bad = '--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\nabc';
    expectError(await call(d, { method: 'POST', body: bad, headers: { 'content-type': 'multipart/form-data; boundary=XYZ' } }), 400, 'BAD_INPUT');
    expectError(await call(d, { method: 'POST', body: 'abc', headers: { 'content-type': 'multipart/form-data' } }), 400, 'BAD_INPUT');
    const onlyField = new FormData();
    onlyField.append('note', 'no file here');
    expectError(await call(d, { method: 'POST', body: onlyField }), 400, 'BAD_INPUT');
    expectError(await postFiles(d, Array.from({ length: 5 }, (_, i) => ({ name: `${i}.png`, data: fs.readFileSync(blank) }))), 413, 'BAD_INPUT');
    expectError(await postFiles(d, [{ name: 'big.jpg', data: noise(5 * 2 ** 20) }]), 413, 'BAD_INPUT');
    expectError(await postFiles(d, [{ name: 'a.jpg', data: noise(3 * 2 ** 20) }, { name: 'b.jpg', data: noise(3 * 2 ** 20) }]), 413, 'BAD_INPUT');
    expectError(await postFiles(d, [{ name: 'x.jpg', data: noise(3000) }]), 422, 'DECODE_FAILED');
    expectError(await postFile(`${d}?threshold=2`, blank, 'image/png'), 400, 'BAD_INPUT');
    expectError(await postFile(`${d}?frames=abc`, blank, 'image/png'), 400, 'BAD_INPUT');
    expectError(await postFile(`${d}?url=http://example.com/a.jpg`, blank, 'image/png'), 400, 'BAD_INPUT');
    expectError(await call(`${url}/v1/nothing`), 404, 'NOT_FOUND');
    expectError(await call(d), 404, 'NOT_FOUND');
    // A chunked body (no Content-Length) over the limit is cut at the limit.
    const up = openUpload(d, 'image/jpeg');
    const chunked = await up.finish(noise(5 * 2 ** 20));
    expect(chunked.status).toBe(413);
    expect(chunked.body).toMatchObject({ error: { code: 'BAD_INPUT' } });
    // The service is still fine.
    expect((await postFile(d, blank, 'image/png')).status).toBe(200);
  });

  it('random bodies, content types and broken multipart never get a 5xx', async () => {
    const types = ['image/jpeg', 'image/png', 'video/mp4', 'application/octet-stream', 'multipart/form-data; boundary=b', 'multipart/form-data; boundary=', 'text/html', 'image/', 'video/x;;', 'application/x-www-form-urlencoded'];
    let seed = 7;
    const rnd = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
    const png = fs.readFileSync(blank);
    for (let i = 0; i < 40; i++) {
      const type = types[rnd(types.length)]!;
      const kind = rnd(4);
      const body =
        kind === 0 ? noise(1 + rnd(20_000), i)
        : kind === 1 ? png.subarray(0, rnd(png.length))
        : kind === 2 ? Buffer.from(`--b\r\nContent-Disposition: form-data; name="file"; filename="${'x'.repeat(rnd(300))}"\r\n\r\n`).subarray(0, 20 + rnd(300))
        : Buffer.concat([Buffer.from('--b\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'), png.subarray(0, rnd(png.length)), Buffer.from(rnd(2) ? '\r\n--b--\r\n' : '')]);
      const a = await call(`${url}/v1/detect`, { method: 'POST', body, headers: { 'content-type': type } });
      expect(a.status < 500, `${type} kind ${kind}: ${a.status} ${a.text}`).toBe(true);
      if (a.status >= 400) expect(a.body).toMatchObject({ error: { code: expect.any(String) } });
    }
  });

  it('describes the model without a server path', async () => {
    const a = await call(`${url}/v1/models`);
    expect(a.status).toBe(200);
    const [m] = a.body.models as Record<string, unknown>[];
    expect(m).toMatchObject({ name: 'tiny.pt', randomWeights: true, labels: ['real', 'fake'], architecture: { width: 64 } });
    expect(a.text).not.toContain(dir);
  });

  it('serves an OpenAPI document generated from the route schemas', async () => {
    const a = await call(`${url}/openapi.json`);
    expect(a.status).toBe(200);
    const paths = a.body.paths as Record<string, Record<string, { requestBody?: { content: object }; responses: object; parameters?: { name: string }[] }>>;
    expect(Object.keys(paths).sort()).toEqual(['/healthz', '/metrics', '/openapi.json', '/readyz', '/v1/detect', '/v1/models']);
    const post = paths['/v1/detect']!.post!;
    expect(Object.keys(post.requestBody!.content)).toEqual(['image/*', 'video/*', 'application/octet-stream', 'multipart/form-data']);
    expect(Object.keys(post.responses)).toEqual(expect.arrayContaining(['200', '400', '413', '415', '422', '429', '503', '504', '401']));
    expect(post.parameters!.map((p) => p.name)).toEqual(['threshold', 'frames', 'allFaces']);
  });

  itPhotos('exports Prometheus metrics: requests, latency, queue, batches, faces, model load, process', async () => {
    expect((await postFile(`${url}/v1/detect`, grid, 'image/jpeg')).status).toBe(200);
    const a = await call(`${url}/metrics`);
    expect(a.status).toBe(200);
    expect(a.headers.get('content-type')).toMatch(/text\/plain/);
    const t = a.text;
    expect(metric(t, 'dfdet_http_requests_total', 'route="/v1/detect",method="POST",status="200"')).toBeGreaterThanOrEqual(1);
    expect(metric(t, 'dfdet_http_requests_total', 'route="/v1/detect",method="POST",status="415"')).toBeGreaterThanOrEqual(3);
    expect(metric(t, 'dfdet_http_request_duration_seconds_count', 'route="/v1/detect",method="POST"')).toBeGreaterThan(1);
    expect(metric(t, 'dfdet_queue_depth')).toBe(0);
    expect(metric(t, 'dfdet_requests_in_flight')).toBe(0);
    const stats = detector.stats;
    expect(metric(t, 'dfdet_batch_size_count')).toBe(stats.batches);
    expect(metric(t, 'dfdet_batch_size_sum')).toBe(stats.items);
    expect(metric(t, 'dfdet_faces_scored_total')).toBe(stats.items);
    expect(metric(t, 'dfdet_faces_per_second')).toBeGreaterThanOrEqual(0);
    expect(metric(t, 'dfdet_inputs_total', 'outcome="DECODE_FAILED"')).toBeGreaterThanOrEqual(1);
    expect(metric(t, 'dfdet_ready')).toBe(1);
    expect(t).toMatch(/^dfdet_model_load_seconds /m);
    expect(metric(t, 'dfdet_process_resident_memory_bytes')).toBeGreaterThan(0);
  });
});

describe('dfdet serve: API keys', () => {
  const keys = ['k1-0123456789abcdef', 'k2-fedcba9876543210'];

  it('reads key files: one per line, comments and blanks skipped; refuses empty files and short keys', () => {
    const f = path.join(dir, 'keys.txt');
    fs.writeFileSync(f, `# service keys\n${keys[0]}\n\n  ${keys[1]}  \n`);
    expect(readApiKeyFile(f)).toEqual(keys);
    fs.writeFileSync(f, '# none\n\n');
    expect(() => readApiKeyFile(f)).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
    fs.writeFileSync(f, 'short\n');
    expect(() => readApiKeyFile(f)).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
    expect(() => readApiKeyFile(path.join(dir, 'missing.txt'))).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
  });

  it('401 without a key or with a wrong one; any listed key works; probes stay open unless asked', async () => {
    const { url } = await start({ apiKeys: keys });
    const d = `${url}/v1/detect`;
    for (const auth of [undefined, 'Bearer nope', `Bearer ${keys[0]}x`, `Basic ${keys[0]}`, `Bearer ${keys[0]!.slice(0, -1)}`]) {
      const a = await postFile(d, blank, 'image/png', auth ? { authorization: auth } : {});
      expectError(a, 401, 'UNAUTHORIZED');
      expect(a.headers.get('www-authenticate')).toBe('Bearer');
    }
    expectError(await call(`${url}/v1/models`), 401, 'UNAUTHORIZED');
    for (const k of keys) expect((await postFile(d, blank, 'image/png', { authorization: `Bearer ${k}` })).status).toBe(200);
    for (const p of ['/healthz', '/readyz', '/metrics', '/openapi.json']) expect((await call(`${url}${p}`)).status, p).toBe(200);

    const locked = (await start({ apiKeys: keys, authProbes: true })).url;
    for (const p of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
      expectError(await call(`${locked}${p}`), 401, 'UNAUTHORIZED');
      expect((await call(`${locked}${p}`, { headers: { authorization: `Bearer ${keys[1]}` } })).status, p).toBe(200);
    }
  });

  it('CORS only for the origins given', async () => {
    const { url } = await start({ corsOrigins: ['https://app.example'] });
    const ok = await call(`${url}/healthz`, { headers: { origin: 'https://app.example' } });
    expect(ok.headers.get('access-control-allow-origin')).toBe('https://app.example');
    const pre = await call(`${url}/v1/detect`, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-methods')).toMatch(/POST/);
    const other = await call(`${url}/healthz`, { headers: { origin: 'https://other.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('dfdet serve: admission, overload, timeouts', () => {
  it('503 with Retry-After until warmed up', async () => {
    const server = createServer({ detector, logger: false });
    servers.push(server);
    const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
    expect((await call(`${url}/healthz`)).status).toBe(200);
    const r = await call(`${url}/readyz`);
    expectError(r, 503, 'UNAVAILABLE');
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const d = await postFile(`${url}/v1/detect`, blank, 'image/png');
    expectError(d, 503, 'UNAVAILABLE');
    expect(d.headers.get('retry-after')).not.toBeNull();
    await server.controller.warmup();
    expect((await call(`${url}/readyz`)).status).toBe(200);
    expect((await postFile(`${url}/v1/detect`, blank, 'image/png')).status).toBe(200);
  });

  it('429 with Retry-After past --max-queue requests, and past the queued-bytes bound', async () => {
    const { url, server } = await start({ maxRunning: 1, maxQueue: 1, maxBody: 2 ** 20, maxQueueBytes: 2 ** 20 + 1000 });
    const d = `${url}/v1/detect`;
    const png = fs.readFileSync(blank);
    // Two uploads admitted from their headers (bodies not sent yet) fill running + queue.
    const a = openUpload(d, 'image/png', png.length);
    await until(() => server.controller.admission.queued === 1, 'the first upload admitted');
    const b = openUpload(d, 'image/png', png.length);
    await until(() => server.controller.admission.queued === 2, 'the second upload admitted');
    const full = await postFile(d, blank, 'image/png');
    expectError(full, 429, 'OVERLOADED');
    expect(Number(full.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect([(await a.finish(png)).status, (await b.finish(png)).status]).toEqual([200, 200]);
    // A chunked upload reserves --max-body bytes: nothing else fits until it is done.
    const c = openUpload(d, 'image/png');
    await until(() => server.controller.admission.bytes === 2 ** 20, 'the chunked upload admitted');
    const bytes = await postFile(d, blank, 'image/png');
    expectError(bytes, 429, 'OVERLOADED');
    expect((bytes.body.error as { message: string }).message).toMatch(/bytes/);
    expect((await c.finish(png)).status).toBe(200);
    expect(server.controller.admission).toMatchObject({ queued: 0, running: 0, bytes: 0 });
    const m = (await call(`${url}/metrics`)).text;
    expect(metric(m, 'dfdet_requests_refused_total', 'reason="queue"')).toBe(1);
    expect(metric(m, 'dfdet_requests_refused_total', 'reason="bytes"')).toBe(1);
  });

  itPhotos('overload: 40 concurrent clients against a small queue get only 200 or 429, nothing hangs, memory held stays bounded', async () => {
    const { url, server } = await start({ maxRunning: 1, maxQueue: 3, maxBody: 2 ** 20, maxQueueBytes: 2 ** 21 });
    const body = fs.readFileSync(grid);
    const rss0 = process.memoryUsage().rss;
    const answers = await Promise.all(Array.from({ length: 40 }, () => call(`${url}/v1/detect`, { method: 'POST', body, headers: { 'content-type': 'image/jpeg' } })));
    const statuses = answers.map((a) => a.status);
    expect(statuses.every((s) => s === 200 || s === 429), statuses.join(',')).toBe(true);
    expect(statuses).toContain(200);
    expect(statuses).toContain(429);
    for (const a of answers.filter((x) => x.status === 429)) expect(a.headers.get('retry-after')).not.toBeNull();
    const adm = server.controller.admission;
    expect(adm.peak.admitted).toBeLessThanOrEqual(4);
    expect(adm.peak.bytes).toBeLessThanOrEqual(2 ** 21);
    expect(adm).toMatchObject({ queued: 0, running: 0, bytes: 0 });
    // Held bodies are bounded by the queue; RSS may not grow with the 40 clients (a loose sanity bound).
    expect(process.memoryUsage().rss - rss0).toBeLessThan(512 * 2 ** 20);
    expect((await call(`${url}/readyz`)).status).toBe(200);
  }, 120_000);

  itPhotos('a request over --request-timeout gets 504 and its detector work is cancelled', async () => {
    // Calibrate on this machine: the timeout fires well inside the work.
    const direct = await detector.detect(grid);
    expect(direct.faces.length).toBe(24);
    const timeout = Math.max(1, Math.floor(direct.timings.totalMs / 4));
    const { url, server } = await start({ requestTimeoutMs: timeout });
    const before = detector.stats;
    const a = await postFile(`${url}/v1/detect`, grid, 'image/jpeg');
    expectError(a, 504, 'TIMEOUT');
    await until(() => server.controller.admission.running === 0 && server.controller.admission.bytes === 0, 'the cancelled work to end');
    const after = detector.stats;
    // The input ended as ABORTED, and not all of its 24 faces reached the model.
    expect(after.failed - before.failed).toBe(1);
    expect(after.items - before.items).toBeLessThan(24);
    const m = (await call(`${url}/metrics`)).text;
    expect(metric(m, 'dfdet_inputs_total', 'outcome="ABORTED"')).toBe(1);
  }, 60_000);

  itPhotos('close(deadline): a request still running at the deadline gets 503 and its work is cancelled', async () => {
    const { url, server } = await start();
    const body = fs.readFileSync(grid);
    const before = detector.stats;
    const slow = postFiles(`${url}/v1/detect`, [0, 1, 2, 3].map((i) => ({ name: `g${i}.jpg`, data: body, type: 'image/jpeg' })));
    await until(() => server.controller.admission.running === 1, 'the request to run');
    await server.close(1);
    const a = await slow;
    expectError(a, 503, 'UNAVAILABLE');
    await until(() => server.controller.admission.running === 0, 'the cancelled work to end');
    // Not all 4 x 24 faces were scored.
    expect(detector.stats.items - before.items).toBeLessThan(96);
  }, 60_000);

  it('close() drains: 503 for new work, then the detector may be disposed by its owner', async () => {
    const { url, server } = await start();
    expect((await postFile(`${url}/v1/detect`, blank, 'image/png')).status).toBe(200);
    await server.close(1000);
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    expect(detector.disposed).toBe(false);
  });

  it('embeds as a fastify plugin under a prefix, next to the app\'s own routes', async () => {
    const app = fastify({ logger: false });
    app.get('/mine', async () => ({ mine: true }));
    await app.register(dfdetPlugin, { detector, prefix: '/dfdet', apiKeys: ['embedded-key-0123456789'] });
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      expect((await call(`${url}/mine`)).body).toEqual({ mine: true });
      expect((await call(`${url}/dfdet/readyz`)).status).toBe(200);
      expectError(await postFile(`${url}/dfdet/v1/detect`, blank, 'image/png'), 401, 'UNAUTHORIZED');
      const a = await postFile(`${url}/dfdet/v1/detect`, blank, 'image/png', { authorization: 'Bearer embedded-key-0123456789' });
      expect(a.status, a.text).toBe(200);
      expect(a.body).toMatchObject({ noFace: true, source: a.headers.get('x-request-id') });
      expect(Object.keys((await call(`${url}/dfdet/openapi.json`)).body.paths as object)).toContain('/dfdet/v1/detect');
    } finally {
      await app.close();
    }
  });
});
