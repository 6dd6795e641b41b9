/**
 * Media and HTTP helpers of the serve tests: real photos composed by sharp (a 24-face grid), a
 * video made by ffmpeg, and requests over real HTTP on 127.0.0.1 (fetch, or node:http for bodies
 * sent in pieces).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';

import { photoGrid as gridBytes } from '../../lib/bench/serve';

/** A `cols x rows` grid of one photo (each copy `cell` px wide) written to `file`: one face per copy. */
export async function photoGrid(photo: string, file: string, cols = 6, rows = 4, cell = 200): Promise<string> {
  fs.writeFileSync(file, await gridBytes(photo, cols, rows, cell));
  return file;
}

/** A 2 s, 10 fps zoom over a photo (H.264). */
export function photoVideo(photo: string, file: string): string {
  execFileSync('ffmpeg', [
    '-v', 'error', '-y', '-loop', '1', '-i', photo, '-t', '2', '-r', '10',
    '-vf', "scale=640:-2,zoompan=z='1+0.003*on':d=1:s=320x400:fps=10,format=yuv420p", '-c:v', 'libx264', file,
  ]);
  return file;
}

/** Deterministic noise bytes. */
export function noise(n: number, seed = 12345): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) b[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
  return b;
}

/** A fetch answer read whole. */
export interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
  text: string;
}

/** Sends a request with fetch and reads the answer (JSON when it is JSON). */
export async function call(url: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON (metrics)
  }
  return { status: res.status, headers: res.headers, body, text };
}

/** POSTs a file's bytes as the raw body. */
export function postFile(url: string, file: string, type = 'image/jpeg', headers: Record<string, string> = {}): Promise<Answer> {
  return call(url, { method: 'POST', body: fs.readFileSync(file), headers: { 'content-type': type, ...headers } });
}

/** POSTs files as multipart/form-data (field `file`), in order. */
export function postFiles(url: string, files: { name: string; data: Buffer; type?: string }[], headers: Record<string, string> = {}): Promise<Answer> {
  const form = new FormData();
  for (const f of files) form.append('file', new Blob([f.data], { type: f.type ?? 'application/octet-stream' }), f.name);
  return call(url, { method: 'POST', body: form, headers });
}

/**
 * Starts a POST whose body is sent later (chunked unless `length` is given): the server admits it
 * from its headers. `finish(rest)` sends the rest and resolves with the status and JSON body.
 */
export function openUpload(url: string, type: string, length?: number): { finish(rest?: Buffer): Promise<{ status: number; body: Record<string, unknown> }>; destroy(): void } {
  const u = new URL(url);
  const headers: Record<string, string | number> = { 'content-type': type };
  if (length !== undefined) headers['content-length'] = length;
  const req = http.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: 'POST', headers });
  const answer = new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }));
    });
    req.on('error', reject);
  });
  req.flushHeaders();
  return {
    finish(rest) {
      if (rest) req.end(rest);
      else req.end();
      return answer;
    },
    destroy() {
      answer.catch(() => undefined);
      req.destroy();
    },
  };
}

/** Waits until `cond()` holds, checking every 20 ms (a bounded wait for a state, never a timing check). */
export async function until(cond: () => boolean | Promise<boolean>, what: string, maxMs = 30_000): Promise<void> {
  const end = Date.now() + maxMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A value of a Prometheus text exposition line (`name{labels} value`), or undefined. */
export function metric(text: string, name: string, labels = ''): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    const key = line.slice(0, sp);
    if (key === (labels ? `${name}{${labels}}` : name)) return Number(line.slice(sp + 1));
  }
  return undefined;
}

