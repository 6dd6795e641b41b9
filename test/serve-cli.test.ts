/**
 * The built `dfdet serve` in a child process: scores equal `dfdet detect`'s for the same file, JSON
 * logs carry request ids, and SIGTERM drains the request in flight, disposes and exits 0.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CLI, debianPhoto, dfdet, ensureBuilt, ndjson } from './helpers/cli';
import { call, metric, photoGrid, postFile, postFiles, until } from './helpers/serve';

const grace = debianPhoto('grace_hopper.jpg');
const itPhotos = grace ? it : it.skip;

let tmp: string;
let model: string;
let keyFile: string;
const KEY = 'serve-cli-test-key-0123456789';

interface Served {
  child: ChildProcess;
  url: string;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `dfdet serve --port 0 ...args` and resolves once it says it is ready. */
async function serve(args: string[]): Promise<Served> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--model', model, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  const killer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  void exited.then(() => clearTimeout(killer));
  await until(() => /ready on (http:\/\/\S+)/.test(stderr) || child.exitCode !== null, 'dfdet serve to be ready', 60_000);
  const m = /ready on (http:\/\/\S+)/.exec(stderr);
  if (!m) throw new Error(`dfdet serve did not start: ${stderr}`);
  return { child, url: m[1]!, stdout: () => stdout, stderr: () => stderr, exited };
}

beforeAll(async () => {
  await ensureBuilt();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-serve-cli-'));
  model = path.join(tmp, 'tiny.pt');
  const init = await dfdet(['model', 'init', '--arch', 'tiny', '--seed', '5', '-o', model]);
  expect(init.code, init.stderr).toBe(0);
  keyFile = path.join(tmp, 'keys.txt');
  fs.writeFileSync(keyFile, `# test\n${KEY}\n`);
}, 300_000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('dfdet serve (built CLI)', () => {
  itPhotos('scores equal dfdet detect for the same file; logs are JSON lines with request ids; SIGTERM drains the request in flight and exits 0', async () => {
    const grid = await photoGrid(grace!, path.join(tmp, 'grid.jpg'));
    const s = await serve(['--api-key-file', keyFile, '--warmup-input', grace!, '--drain-timeout', '60000']);
    const auth = { authorization: `Bearer ${KEY}` };
    try {
      expect(new URL(s.url).hostname).toBe('127.0.0.1');
      expect((await postFile(`${s.url}/v1/detect`, grace!)).status).toBe(401);
      const served = await postFile(`${s.url}/v1/detect`, grace!, 'image/jpeg', auth);
      expect(served.status, served.text).toBe(200);
      const cli = await dfdet(['detect', '--json', '--model', model, grace!]);
      expect(cli.code, cli.stderr).toBe(0);
      const [row] = ndjson<{ pFake: number; faces: { pFake: number }[] }>(cli.stdout);
      expect(served.body.pFake as number).toBeCloseTo(row!.pFake, 6);
      expect((served.body.faces as { pFake: number }[]).map((f) => f.pFake.toFixed(6))).toEqual(row!.faces.map((f) => f.pFake.toFixed(6)));

      // A slow request (three 24-face images), then SIGTERM while it runs.
      const body = fs.readFileSync(grid);
      const slow = postFiles(`${s.url}/v1/detect`, [0, 1, 2].map((i) => ({ name: `grid${i}.jpg`, data: body, type: 'image/jpeg' })), auth);
      await until(async () => metric((await call(`${s.url}/metrics`)).text, 'dfdet_requests_in_flight') === 1, 'the slow request to run');
      s.child.kill('SIGTERM');
      const answer = await slow;
      expect(answer.status, answer.text).toBe(200);
      // Answered while draining: the connection closes with it, so no idle keep-alive socket holds
      // the close up until the drain deadline.
      expect(answer.headers.get('connection')).toBe('close');
      expect((answer.body.results as { faces: unknown[] }[]).map((r) => r.faces.length)).toEqual([24, 24, 24]);
      const exit = await s.exited;
      expect(exit).toEqual({ code: 0, signal: null });
      expect(s.stderr()).toMatch(/SIGTERM: draining/);
      expect(s.stderr()).toMatch(/stopped/);
      expect(s.stdout()).not.toMatch(/drain deadline passed/);
      // pino JSON logs, each request's lines tagged with its id (the x-request-id answered).
      const logs = ndjson<{ reqId?: string; msg: string; res?: { statusCode: number } }>(s.stdout());
      const id = served.headers.get('x-request-id');
      expect(logs.filter((l) => l.reqId === id).map((l) => l.msg)).toEqual(['incoming request', 'request completed']);
      expect(s.stdout()).not.toContain(KEY);
    } finally {
      s.child.kill('SIGKILL');
    }
  }, 180_000);

  it('refuses to start with an empty key file (exit 2); --max-pixels bounds decoding; a draining server exits 0 at once when idle', async () => {
    const empty = path.join(tmp, 'empty-keys.txt');
    fs.writeFileSync(empty, '\n');
    const r = await dfdet(['serve', '--port', '0', '--model', model, '--api-key-file', empty]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/BAD_INPUT.*API key file/);
    const s = await serve(['--log-level', 'silent', '--max-pixels', '10000']);
    expect((await call(`${s.url}/readyz`)).status).toBe(200);
    // --max-pixels reaches the detector: a 512x600 photo is too large to decode here.
    if (grace) expect((await postFile(`${s.url}/v1/detect`, grace)).body).toMatchObject({ error: { code: 'DECODE_FAILED', message: expect.stringMatching(/pixel/i) } });
    s.child.kill('SIGINT');
    expect(await s.exited).toEqual({ code: 0, signal: null });
    expect(s.stdout()).toBe('');
  }, 120_000);
});
