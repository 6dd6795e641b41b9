import { describe, it, expect, beforeAll, afterAll, beforeEach } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { pull, sha256FromEtag, type PullProgress } from '../lib/pull';
import { cacheList, cacheRemove, defaultCacheDir, modelCacheDir, readManifest } from '../lib/cache';
import { getModel, listModels, loadRegistry, type RegistryEntry, validateRegistry, defaultModel } from '../lib/registry';
import { isDfdetError } from '../lib/errors';
import { expectDfdetError } from './helpers/errors';

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

// Deterministic pseudo-random content.
function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

const FILES: Record<string, Buffer> = {
  'model.ckpt': bytes(600_000, 1),
  'config.json': Buffer.from(JSON.stringify({ hidden_size: 1024 })),
  'corrupt.bin': bytes(200_000, 2),
  'drop.bin': bytes(400_000, 3),
  'slow.bin': bytes(500_000, 4),
  'stale.bin': bytes(300_000, 5),
};

interface Logged {
  url: string;
  range: string | undefined;
  ifRange?: string;
  status: number;
}
let log: Logged[] = [];
/** Two versions of a file of the same size (a splice of them has the right size too). */
const MUTABLE = {
  A: { data: bytes(300_000, 7), etag: '"v1"', lastModified: 'Mon, 01 Jan 2024 00:00:00 GMT' },
  B: { data: bytes(300_000, 8), etag: '"v2"', lastModified: 'Tue, 02 Jan 2024 00:00:00 GMT' },
};
const mutableCount = new Map<string, number>();
const firstSeen = new Set<string>();
let server: http.Server;
let base: string;
let tmp: string;

function sendFile(req: http.IncomingMessage, res: http.ServerResponse, data: Buffer, honourRange: boolean, extra: Record<string, string> = {}): number {
  const range = req.headers.range;
  const m = honourRange && range ? /^bytes=(\d+)-$/.exec(range) : null;
  if (m) {
    const start = Number(m[1]);
    if (start >= data.length) {
      res.writeHead(416, { 'content-range': `bytes */${data.length}` });
      res.end();
      return 416;
    }
    res.writeHead(206, { 'content-length': data.length - start, 'content-range': `bytes ${start}-${data.length - 1}/${data.length}`, ...extra });
    res.end(data.subarray(start));
    return 206;
  }
  res.writeHead(200, { 'content-length': data.length, ...extra });
  res.end(data);
  return 200;
}

function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = req.url ?? '';
  const entry: Logged = { url, range: req.headers.range, status: 0 };
  if (req.headers['if-range'] !== undefined) entry.ifRange = String(req.headers['if-range']);
  log.push(entry);
  // Hub: /<owner>/<repo>/resolve/main/<file> → 302 to the CDN with X-Linked-Etag (LFS files).
  let m = /^\/[^/]+\/[^/]+\/resolve\/main\/(.+)$/.exec(url);
  if (m) {
    const name = m[1]!;
    const data = FILES[name.replace(/^(norange|nolfs)\//, '')];
    if (!data) {
      res.writeHead(404);
      res.end('Entry not found');
      entry.status = 404;
      return;
    }
    const headers: Record<string, string> = { location: `/cdn/${name}` };
    if (!name.startsWith('nolfs/')) headers['x-linked-etag'] = `"${sha(data)}"`;
    res.writeHead(302, headers);
    res.end();
    entry.status = 302;
    return;
  }
  m = /^\/cdn\/(.+)$/.exec(url);
  if (m) {
    let name = m[1]!;
    const seen = firstSeen.has(name);
    firstSeen.add(name);
    if (name.startsWith('norange/')) {
      entry.status = sendFile(req, res, FILES[name.slice(8)]!, false);
      return;
    }
    if (name.startsWith('nolfs/')) {
      // Small non-LFS files: the hub sends a (weak) ETag with the sha256 on the final response.
      name = name.slice(6);
      entry.status = sendFile(req, res, FILES[name]!, true, { etag: `W/"${sha(FILES[name]!)}"` });
      return;
    }
    const data = FILES[name]!;
    if (name === 'corrupt.bin') {
      const bad = Buffer.from(data);
      bad[1234] = bad[1234]! ^ 0xff;
      entry.status = sendFile(req, res, bad, true);
      return;
    }
    if (name === 'drop.bin' && !seen) {
      res.writeHead(200, { 'content-length': data.length });
      res.write(data.subarray(0, 150_000), () => setTimeout(() => res.socket?.destroy(), 20));
      entry.status = -200;
      return;
    }
    if (name === 'slow.bin' && !seen) {
      res.writeHead(200, { 'content-length': data.length });
      res.write(data.subarray(0, 100_000));
      entry.status = -200; // never finishes; the client aborts
      return;
    }
    entry.status = sendFile(req, res, data, true);
    return;
  }
  // A file that may change between requests: /mutable/<flags>/<name>, flags comma-separated:
  // drop (the first answer stops after 150 kB), change (version B after the first request, else A),
  // etag / lastmod (send these validators), ifrange (honour If-Range; otherwise Range is always served).
  m = /^\/mutable\/([^/]+)\/(.+)$/.exec(url);
  if (m) {
    const flags = new Set(m[1]!.split(','));
    const key = url;
    const count = mutableCount.get(key) ?? 0;
    mutableCount.set(key, count + 1);
    const v = flags.has('change') && count > 0 ? MUTABLE.B : MUTABLE.A;
    const validators: Record<string, string> = {};
    if (flags.has('etag')) validators.etag = v.etag;
    if (flags.has('lastmod')) validators['last-modified'] = v.lastModified;
    if (flags.has('drop') && count === 0) {
      res.writeHead(200, { 'content-length': v.data.length, ...validators });
      res.write(v.data.subarray(0, 150_000), () => setTimeout(() => res.socket?.destroy(), 20));
      entry.status = -200;
      return;
    }
    const ifRange = req.headers['if-range'];
    const rangeOk = !flags.has('ifrange') || ifRange === undefined || ifRange === validators.etag || ifRange === validators['last-modified'];
    entry.status = sendFile(req, res, v.data, rangeOk, validators);
    return;
  }
  if (url === '/err500') {
    res.writeHead(500);
    res.end('boom');
    entry.status = 500;
    return;
  }
  res.writeHead(404);
  res.end();
  entry.status = 404;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-pull-'));
  server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  fs.rmSync(tmp, { recursive: true, force: true });
});

beforeEach(() => {
  log = [];
});

function entry(name: string, files: string[], extra: Partial<RegistryEntry['files'][number]>[] = []): RegistryEntry {
  return {
    name,
    description: 'test',
    licence: 'test',
    converter: 'torchscript',
    files: files.map((f, i) => ({ name: path.posix.basename(f), url: `${base}/owner/${name.split('/').pop()}/resolve/main/${f}`, ...(extra[i] ?? {}) })),
  };
}

const fast = { retryDelayMs: 5 };

describe('pull', () => {
  it('follows the hub redirect, verifies X-Linked-Etag / ETag, records a manifest, converts once', async () => {
    const cacheDir = path.join(tmp, 'c1');
    const e = entry('owner/basic', ['model.ckpt', 'nolfs/config.json']);
    const progress: PullProgress[] = [];
    let converts = 0;
    const convert = async (files: { path: string }[]) => {
      converts++;
      const out = path.join(cacheDir, 'converted.pt');
      fs.writeFileSync(out, `from ${files.length} files`);
      return out;
    };
    const r = await pull(e, { cacheDir, onProgress: (p) => progress.push(p), convert, ...fast });
    expect(r.downloaded).toEqual(['model.ckpt', 'config.json']);
    expect(fs.readFileSync(path.join(r.dir, 'model.ckpt')).equals(FILES['model.ckpt']!)).toBe(true);
    expect(fs.readFileSync(path.join(r.dir, 'config.json')).equals(FILES['config.json']!)).toBe(true);
    expect(r.files.map((f) => [f.name, f.size, f.sha256, f.verifiedBy])).toEqual([
      ['model.ckpt', 600_000, sha(FILES['model.ckpt']!), 'etag'],
      ['config.json', FILES['config.json']!.length, sha(FILES['config.json']!), 'etag'],
    ]);
    expect(log.map((l) => [l.url, l.status])).toEqual([
      ['/owner/basic/resolve/main/model.ckpt', 302],
      ['/cdn/model.ckpt', 200],
      ['/owner/basic/resolve/main/nolfs/config.json', 302],
      ['/cdn/nolfs/config.json', 200],
    ]);
    const last = progress.filter((p) => p.file === 'model.ckpt').pop()!;
    expect([last.bytes, last.total, last.fileIndex, last.fileCount, last.cached]).toEqual([600_000, 600_000, 0, 2, false]);
    expect(fs.readdirSync(r.dir).sort()).toEqual(['config.json', 'manifest.json', 'model.ckpt']);
    expect(converts).toBe(1);
    expect(r.converted).toBe(path.join(cacheDir, 'converted.pt'));
    const man = await readManifest('owner/basic', cacheDir);
    expect(man?.converted).toBe(r.converted);
    const list = await cacheList({ cacheDir });
    expect(list.map((x) => [x.name, x.complete, x.missing, x.partial])).toEqual([['owner/basic', true, [], []]]);

    // Second pull: nothing downloaded, nothing converted.
    log = [];
    progress.length = 0;
    const r2 = await pull(e, { cacheDir, onProgress: (p) => progress.push(p), convert, ...fast });
    expect(r2.downloaded).toEqual([]);
    expect(log).toEqual([]);
    expect(converts).toBe(1);
    expect(progress.every((p) => p.cached)).toBe(true);

    // A deleted file is noticed by cacheList and fetched again by pull.
    fs.rmSync(path.join(r.dir, 'model.ckpt'));
    expect((await cacheList({ cacheDir }))[0]!.missing).toEqual(['model.ckpt']);
    const r3 = await pull(e, { cacheDir, convert, ...fast });
    expect(r3.downloaded).toEqual(['model.ckpt']);
    expect(converts).toBe(2);
    expect(await cacheRemove('owner/basic', { cacheDir })).toBe(true);
    expect(await cacheList({ cacheDir })).toEqual([]);
  });

  it('resumes a .part with a Range request (206)', async () => {
    const cacheDir = path.join(tmp, 'c2');
    const e = entry('owner/resume', ['model.ckpt']);
    const dir = modelCacheDir(e.name, cacheDir);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'model.ckpt.part'), FILES['model.ckpt']!.subarray(0, 250_000));
    const progress: PullProgress[] = [];
    const r = await pull(e, { cacheDir, onProgress: (p) => progress.push(p), ...fast });
    expect(log.map((l) => [l.url, l.range, l.status])).toEqual([
      ['/owner/resume/resolve/main/model.ckpt', 'bytes=250000-', 302],
      ['/cdn/model.ckpt', 'bytes=250000-', 206],
    ]);
    expect(progress[0]!.bytes).toBe(250_000);
    expect(fs.readFileSync(r.files[0]!.path).equals(FILES['model.ckpt']!)).toBe(true);
    expect(fs.existsSync(path.join(dir, 'model.ckpt.part'))).toBe(false);
  });

  it('restarts from zero when the server ignores Range (200)', async () => {
    const cacheDir = path.join(tmp, 'c3');
    const e = entry('owner/norange', ['norange/model.ckpt']);
    const dir = modelCacheDir(e.name, cacheDir);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'model.ckpt.part'), FILES['model.ckpt']!.subarray(0, 100_000));
    const r = await pull(e, { cacheDir, ...fast });
    expect(log.map((l) => [l.range, l.status])).toEqual([
      ['bytes=100000-', 302],
      ['bytes=100000-', 200],
    ]);
    expect(fs.readFileSync(r.files[0]!.path).equals(FILES['model.ckpt']!)).toBe(true);
  });

  it('corrupted bytes → CHECKSUM_MISMATCH, nothing left on disk', async () => {
    const cacheDir = path.join(tmp, 'c4');
    const e = entry('owner/corrupt', ['corrupt.bin']);
    const err = await expectDfdetError(pull(e, { cacheDir, ...fast }), 'CHECKSUM_MISMATCH');
    expect(err.message).toContain(sha(FILES['corrupt.bin']!));
    const dir = modelCacheDir(e.name, cacheDir);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('a stale .part that fails the checksum is discarded and downloaded again from zero', async () => {
    const cacheDir = path.join(tmp, 'c4b');
    const e = entry('owner/stale', ['stale.bin']);
    const dir = modelCacheDir(e.name, cacheDir);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'stale.bin.part'), bytes(100_000, 99)); // wrong prefix
    const r = await pull(e, { cacheDir, ...fast });
    expect(log.filter((l) => l.url.startsWith('/cdn/')).map((l) => [l.range, l.status])).toEqual([
      ['bytes=100000-', 206],
      [undefined, 200],
    ]);
    expect(fs.readFileSync(r.files[0]!.path).equals(FILES['stale.bin']!)).toBe(true);
  });

  it('registry sha256 wins over the server ETag', async () => {
    const cacheDir = path.join(tmp, 'c5');
    const e = entry('owner/regsha', ['model.ckpt'], [{ sha256: 'a'.repeat(64) }]);
    await expectDfdetError(pull(e, { cacheDir, ...fast }), 'CHECKSUM_MISMATCH');
    const ok = entry('owner/regsha2', ['model.ckpt'], [{ sha256: sha(FILES['model.ckpt']!), size: 600_000 }]);
    const r = await pull(ok, { cacheDir, ...fast });
    expect(r.files[0]!.verifiedBy).toBe('registry');
    const wrongSize = entry('owner/regsize', ['model.ckpt'], [{ size: 5 }]);
    const err = await expectDfdetError(pull(wrongSize, { cacheDir, ...fast }), 'DOWNLOAD_FAILED');
    expect(err.message).toMatch(/600000 bytes.*registry says 5/);
  });

  it('a dropped connection is retried with Range and the file is correct', async () => {
    const cacheDir = path.join(tmp, 'c6');
    const e = entry('owner/drop', ['drop.bin']);
    const r = await pull(e, { cacheDir, ...fast });
    const cdn = log.filter((l) => l.url.startsWith('/cdn/'));
    expect(cdn.length).toBe(2);
    expect(cdn[0]!.range).toBeUndefined();
    expect(cdn[1]!.range).toMatch(/^bytes=\d+-$/);
    const resumedAt = Number(/(\d+)/.exec(cdn[1]!.range!)![1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(150_000);
    expect(cdn[1]!.status).toBe(206);
    expect(fs.readFileSync(r.files[0]!.path).equals(FILES['drop.bin']!)).toBe(true);
  });

  it('abort via signal → ABORTED, .part kept, next pull resumes', async () => {
    const cacheDir = path.join(tmp, 'c7');
    const e = entry('owner/slow', ['slow.bin']);
    const ac = new AbortController();
    const p = pull(e, {
      cacheDir,
      signal: ac.signal,
      onProgress: (x) => {
        if (x.bytes > 0) ac.abort();
      },
      ...fast,
    });
    await expectDfdetError(p, 'ABORTED');
    const part = path.join(modelCacheDir(e.name, cacheDir), 'slow.bin.part');
    const kept = fs.statSync(part).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(100_000);
    log = [];
    const r = await pull(e, { cacheDir, ...fast });
    expect(log.find((l) => l.url === '/cdn/slow.bin')?.range).toBe(`bytes=${kept}-`);
    expect(fs.readFileSync(r.files[0]!.path).equals(FILES['slow.bin']!)).toBe(true);
    // An already-aborted signal never touches the network.
    log = [];
    await expectDfdetError(pull(e, { cacheDir, signal: AbortSignal.abort(), force: true }), 'ABORTED');
    expect(log).toEqual([]);
  });

  it('a stalled connection is dropped after stallTimeoutMs and retried', async () => {
    const cacheDir = path.join(tmp, 'c7b');
    firstSeen.delete('slow.bin');
    const e = entry('owner/stall', ['slow.bin']);
    const r = await pull(e, { cacheDir, stallTimeoutMs: 300, ...fast });
    const cdn = log.filter((l) => l.url === '/cdn/slow.bin');
    expect(cdn.length).toBe(2);
    expect(cdn[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(fs.readFileSync(r.files[0]!.path).equals(FILES['slow.bin']!)).toBe(true);
  });

  it('HTTP 404 → DOWNLOAD_FAILED with status and URL, no retry', async () => {
    const cacheDir = path.join(tmp, 'c8');
    const e = entry('owner/missing', ['nope.bin']);
    const err = await expectDfdetError(pull(e, { cacheDir, ...fast }), 'DOWNLOAD_FAILED');
    expect(err.message).toMatch(/HTTP 404/);
    expect(err.message).toContain(`${base}/owner/missing/resolve/main/nope.bin`);
    expect(err.details?.status).toBe(404);
    expect(log.length).toBe(1);
  });

  it('HTTP 500 is retried a bounded number of times', async () => {
    const cacheDir = path.join(tmp, 'c9');
    const e: RegistryEntry = { ...entry('owner/e500', ['x']), files: [{ name: 'x', url: `${base}/err500` }] };
    const err = await expectDfdetError(pull(e, { cacheDir, retries: 2, retryDelayMs: 1 }), 'DOWNLOAD_FAILED');
    expect(err.message).toMatch(/3 attempts.*HTTP 500/);
    expect(log.length).toBe(3);
  });

  it('baseUrl rewrites hub URLs to a mirror (here the local server)', async () => {
    const cacheDir = path.join(tmp, 'c10');
    const e: RegistryEntry = {
      ...entry('owner/mirror', ['model.ckpt']),
      files: [{ name: 'model.ckpt', url: 'https://huggingface.co/owner/mirror/resolve/main/model.ckpt' }],
    };
    const r = await pull(e, { cacheDir, baseUrl: base, ...fast });
    expect(log[0]!.url).toBe('/owner/mirror/resolve/main/model.ckpt');
    expect(r.files[0]!.url).toBe(`${base}/owner/mirror/resolve/main/model.ckpt`);
  });

  describe('a resume never splices two versions of a file', () => {
    /** Entry of one file on the mutable route, with no sha256 anywhere (verifiedBy 'none'). */
    const mutable = (name: string, flags: string): RegistryEntry => ({
      ...entry(name, ['x']),
      files: [{ name: 'mut.bin', url: `${base}/mutable/${flags}/mut.bin` }],
    });
    const requests = () => log.map((l) => [l.range === undefined ? 'full' : 'range', l.ifRange ?? null, l.status]);
    const resumedAt = () => Number(/(\d+)/.exec(log[1]!.range!)![1]);

    it('changed file, server honours If-Range: the new file, whole', async () => {
      const cacheDir = path.join(tmp, 'm1');
      const r = await pull(mutable('owner/m1', 'drop,change,etag,lastmod,ifrange'), { cacheDir, ...fast });
      expect(requests()).toEqual([
        ['full', null, -200],
        ['range', '"v1"', 200],
      ]);
      expect(resumedAt()).toBeGreaterThan(0);
      expect(fs.readFileSync(r.files[0]!.path).equals(MUTABLE.B.data)).toBe(true);
      expect(r.files[0]!.verifiedBy).toBe('none');
      expect(fs.readdirSync(r.dir).sort()).toEqual(['manifest.json', 'mut.bin']);
    });

    it('changed file, server ignores If-Range: the 206 is dropped and the new file downloaded from zero', async () => {
      const cacheDir = path.join(tmp, 'm2');
      const r = await pull(mutable('owner/m2', 'drop,change,etag'), { cacheDir, ...fast });
      expect(requests()).toEqual([
        ['full', null, -200],
        ['range', '"v1"', 206],
        ['full', null, 200],
      ]);
      expect(fs.readFileSync(r.files[0]!.path).equals(MUTABLE.B.data)).toBe(true);
    });

    it('changed file, only Last-Modified, server ignores If-Range: restarted from zero', async () => {
      const cacheDir = path.join(tmp, 'm3');
      const r = await pull(mutable('owner/m3', 'drop,change,lastmod'), { cacheDir, ...fast });
      expect(requests()).toEqual([
        ['full', null, -200],
        ['range', MUTABLE.A.lastModified, 206],
        ['full', null, 200],
      ]);
      expect(fs.readFileSync(r.files[0]!.path).equals(MUTABLE.B.data)).toBe(true);
    });

    it('no validator and no sha256: never resumed, downloaded again from zero', async () => {
      const cacheDir = path.join(tmp, 'm4');
      const r = await pull(mutable('owner/m4', 'drop,change'), { cacheDir, ...fast });
      expect(requests()).toEqual([
        ['full', null, -200],
        ['full', null, 200],
      ]);
      expect(fs.readFileSync(r.files[0]!.path).equals(MUTABLE.B.data)).toBe(true);
    });

    it('a .part without stored validators (older dfdet) and no sha256 is not spliced', async () => {
      const cacheDir = path.join(tmp, 'm5');
      const e = mutable('owner/m5', 'change');
      mutableCount.set(new URL(e.files[0]!.url).pathname, 1); // the server already has version B
      const dir = modelCacheDir(e.name, cacheDir);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'mut.bin.part'), MUTABLE.A.data.subarray(0, 100_000));
      const r = await pull(e, { cacheDir, ...fast });
      expect(requests()).toEqual([
        ['range', null, 206],
        ['full', null, 200],
      ]);
      expect(fs.readFileSync(r.files[0]!.path).equals(MUTABLE.B.data)).toBe(true);
    });

    it('unchanged file: resumed with If-Range (ETag or Last-Modified) and a 206', async () => {
      for (const [i, flags, validator] of [
        [6, 'drop,etag,ifrange', MUTABLE.A.etag],
        [7, 'drop,lastmod,ifrange', MUTABLE.A.lastModified],
      ] as const) {
        log = [];
        const cacheDir = path.join(tmp, `m${i}`);
        const r = await pull(mutable(`owner/m${i}`, flags), { cacheDir, ...fast });
        expect(requests()).toEqual([
          ['full', null, -200],
          ['range', validator, 206],
        ]);
        expect(fs.readFileSync(r.files[0]!.path).equals(MUTABLE.A.data)).toBe(true);
      }
    });
  });

  it('validates options and names', async () => {
    await expectDfdetError(pull('no-such-model', { cacheDir: tmp }), 'NOT_FOUND');
    await expectDfdetError(pull(entry('owner/x', ['a']), { cacheDir: tmp, retries: -1 }), 'BAD_INPUT');
    await expectDfdetError(pull(entry('owner/x', ['a']), { cacheDir: tmp, baseUrl: 'ftp://x' }), 'BAD_INPUT');
    const unsafe = { ...entry('owner/x', ['a']), files: [{ name: '../evil', url: `${base}/x` }] };
    await expectDfdetError(pull(unsafe, { cacheDir: tmp }), 'BAD_FORMAT');
  });
});

describe('sha256FromEtag', () => {
  it('accepts quoted, weak and bare sha256 values only', () => {
    const h = 'ab'.repeat(32);
    expect(sha256FromEtag(`"${h}"`)).toBe(h);
    expect(sha256FromEtag(`W/"${h.toUpperCase()}"`)).toBe(h);
    expect(sha256FromEtag(h)).toBe(h);
    expect(sha256FromEtag('"abc-123"')).toBeNull();
    expect(sha256FromEtag(null)).toBeNull();
  });
});

describe('cache dir', () => {
  it('DFDET_CACHE > XDG_CACHE_HOME/dfdet > ~/.cache/dfdet', () => {
    expect(defaultCacheDir({ DFDET_CACHE: '/a/b', XDG_CACHE_HOME: '/x' })).toBe('/a/b');
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/x' })).toBe('/x/dfdet');
    expect(defaultCacheDir({ XDG_CACHE_HOME: 'relative' })).toBe(path.join(os.homedir(), '.cache', 'dfdet'));
    expect(defaultCacheDir({})).toBe(path.join(os.homedir(), '.cache', 'dfdet'));
    expect(path.basename(modelCacheDir('yermandy/deepfake-detection:torchscript', '/c'))).toBe('yermandy--deepfake-detection@torchscript');
  });
});

describe('registry', () => {
  it('ships the authors’ published weights with hub URLs and no invented checksums', () => {
    const reg = loadRegistry();
    const dd = getModel('yermandy/deepfake-detection');
    expect(dd.converter).toBe('lightning-ckpt');
    expect(dd.files).toEqual([{ name: 'model.ckpt', url: 'https://huggingface.co/yermandy/deepfake-detection/resolve/main/model.ckpt' }]);
    const gend = getModel('gend_clip_l_14');
    expect(gend.name).toBe('yermandy/GenD_CLIP_L_14');
    expect(gend.converter).toBe('gend-safetensors');
    expect(gend.files.map((f) => f.name)).toEqual(['model.safetensors', 'config.json']);
    for (const m of listModels(reg)) {
      for (const f of m.files) {
        expect(f.url).toBe(`https://huggingface.co/${m.repo}/resolve/main/${f.name}`);
        expect(f.sha256).toBeUndefined();
      }
    }
    expect(defaultModel(reg).name).toBe(reg.default);
  });

  it('unknown and ambiguous names → NOT_FOUND listing known models', () => {
    expect(() => getModel('nope')).toThrow(/Known models: .*yermandy\/deepfake-detection/);
    expect(() => getModel('deepfake-detection:torchscript')).not.toThrow();
  });

  it('rejects malformed registries with BAD_FORMAT', () => {
    /** The fields this test breaks, typed loosely so that any value can be put in. */
    interface RawRegistry {
      version: unknown;
      default: unknown;
      models: { converter: unknown; files: { name: unknown; url: unknown; sha256: unknown }[] }[];
    }
    const good = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'models', 'registry.json'), 'utf8'));
    const mutate = (f: (r: RawRegistry) => void) => {
      const r = structuredClone(good);
      f(r);
      try {
        validateRegistry(r, 'test');
      } catch (e) {
        return isDfdetError(e, 'BAD_FORMAT') ? (e as Error).message : `wrong error ${String(e)}`;
      }
      return 'accepted';
    };
    expect(mutate(() => undefined)).toBe('accepted');
    expect(mutate((r) => (r.version = 2))).toMatch(/version/);
    expect(mutate((r) => (r.models[0].files[0].sha256 = 'xyz'))).toMatch(/sha256/);
    expect(mutate((r) => (r.models[0].files[0].name = '/etc/passwd'))).toMatch(/safe relative/);
    expect(mutate((r) => (r.models[0].files[0].url = 'file:///etc/passwd'))).toMatch(/http/);
    expect(mutate((r) => (r.models[0].converter = 'magic'))).toMatch(/converter/);
    expect(mutate((r) => r.models.push(r.models[0]))).toMatch(/twice/);
    expect(mutate((r) => (r.default = 'nope'))).toMatch(/default/);
  });
});
