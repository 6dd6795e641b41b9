/**
 * One file's download into the cache: redirects (the hub sends LFS files to a CDN), resume of
 * `.part` files with Range requests, sha256 verification, bounded retries, atomic rename. The model
 * level (which files, the manifest, the convert step) is {@link pull} in ./pull.
 *
 * Resuming never splices two versions of a file: the validators of the response that started a
 * `.part` (ETag, Last-Modified, the hub's X-Linked-Etag) are kept next to it in `<file>.part.json`;
 * a resume sends `If-Range`, and keeps the server's 206 only when the server still shows the same
 * version, or when the result is checked against a sha256 anyway. Otherwise it starts from zero.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DfdetError, isDfdetError } from './errors';
import type { CachedFile } from './cache';
import type { RegistryFile } from './registry';
import { sha256File } from './sha256';

/** Progress of one file. */
export interface PullProgress {
  /** Registry file name. */
  file: string;
  /** 0-based index of the file in the entry. */
  fileIndex: number;
  /** Number of files of the entry. */
  fileCount: number;
  /** Bytes of this file on disk so far (resumed bytes included). */
  bytes: number;
  /** Total size of this file, or null when the server did not say. */
  total: number | null;
  /** True when the file was already in the cache and nothing was downloaded. */
  cached: boolean;
}

/** ETag value as a sha256 when it is one: strips `W/` and quotes; null otherwise. */
export function sha256FromEtag(value: string | null | undefined): string | null {
  if (!value) return null;
  const v = value.trim().replace(/^W\//i, '').replace(/^"(.*)"$/, '$1').toLowerCase();
  return /^[0-9a-f]{64}$/.test(v) ? v : null;
}

export function abortedError(cause?: unknown): DfdetError {
  return new DfdetError('ABORTED', 'Download aborted', { cause });
}

/** An error worth retrying (network drop, stall, truncated body, 5xx). */
class RetryableError extends Error {}

/** The `.part` was discarded (another version of the file): download again from zero, no retry counted. */
class RestartFromZero extends Error {}

/** What identified the version of the file whose bytes a `.part` holds (`<file>.part.json`). */
interface PartInfo {
  /** URL requested. */
  url: string;
  /** Strong ETag of the response that started the `.part`. */
  etag: string | null;
  /** Its Last-Modified. */
  lastModified: string | null;
  /** The hub's X-Linked-Etag on the redirect. */
  linkedEtag: string | null;
  /** sha256 the server announced (X-Linked-Etag / ETag), if any. */
  sha256: string | null;
}

function partInfoPath(part: string): string {
  return `${part}.json`;
}

/** The stored validators of a `.part`, or null when missing/unreadable (a `.part` from an older dfdet). */
async function readPartInfo(part: string): Promise<PartInfo | null> {
  try {
    const v = JSON.parse(await fs.promises.readFile(partInfoPath(part), 'utf8')) as Partial<PartInfo>;
    const str = (x: unknown): string | null => (typeof x === 'string' && x !== '' ? x : null);
    if (!v || typeof v !== 'object' || typeof v.url !== 'string') return null;
    return { url: v.url, etag: str(v.etag), lastModified: str(v.lastModified), linkedEtag: str(v.linkedEtag), sha256: str(v.sha256) };
  } catch {
    return null;
  }
}

/** Remove a `.part` and its validators. */
export async function removePart(part: string): Promise<void> {
  await fs.promises.rm(part, { force: true });
  await fs.promises.rm(partInfoPath(part), { force: true });
}

/** A strong ETag (weak ones must not be used in If-Range, RFC 9110 13.1.5), else null. */
function strongEtag(v: string | null): string | null {
  return v && !/^W\//i.test(v.trim()) ? v.trim() : null;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortedError(signal.reason));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(abortedError(signal?.reason));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** What one file download needs from its pull. */
export interface DownloadContext {
  fetchImpl: typeof fetch;
  signal?: AbortSignal;
  retries: number;
  retryDelayMs: number;
  stallTimeoutMs: number;
  onProgress?: (p: PullProgress) => void;
  fileIndex: number;
  fileCount: number;
}

/**
 * GET with manual redirects so that the hub's `X-Linked-Etag` on the 302 is seen.
 * Returns the final response and the sha256 announced by any hop.
 */
async function request(
  url: string,
  headers: Record<string, string>,
  ctx: DownloadContext,
  signal: AbortSignal,
): Promise<{ res: Response; etagSha: string | null; linkedEtag: string | null; finalUrl: string }> {
  let current = url;
  let etagSha: string | null = null;
  let linkedEtag: string | null = null;
  for (let hop = 0; hop <= 10; hop++) {
    let res: Response;
    try {
      res = await ctx.fetchImpl(current, { headers, redirect: 'manual', signal });
    } catch (e) {
      if (ctx.signal?.aborted) throw abortedError(e);
      throw new RetryableError(`request to ${current} failed: ${(e as Error).message}`, { cause: e });
    }
    linkedEtag = linkedEtag ?? res.headers.get('x-linked-etag');
    etagSha = etagSha ?? sha256FromEtag(res.headers.get('x-linked-etag'));
    if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
      await res.body?.cancel().catch(() => undefined);
      current = new URL(res.headers.get('location')!, current).toString();
      continue;
    }
    etagSha = etagSha ?? sha256FromEtag(res.headers.get('etag'));
    return { res, etagSha, linkedEtag, finalUrl: current };
  }
  throw new DfdetError('DOWNLOAD_FAILED', `Too many redirects for ${url}`, { details: { url } });
}

/** Parse `Content-Range: bytes start-end/total`. */
function parseContentRange(v: string | null): { start: number; total: number | null } | null {
  const m = v && /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(v.trim());
  if (!m) return null;
  return { start: Number(m[1]), total: m[3] === '*' ? null : Number(m[3]) };
}

export async function fileSize(p: string): Promise<number> {
  const st = await fs.promises.stat(p).catch(() => null);
  return st && st.isFile() ? st.size : 0;
}

/**
 * One attempt: request from the current .part size and append. Resolves when the body is complete.
 * @returns the sha256 announced by the server (or null).
 */
async function attempt(url: string, part: string, file: RegistryFile, ctx: DownloadContext): Promise<string | null> {
  let offset = await fileSize(part);
  const stored = offset > 0 ? await readPartInfo(part) : null;
  if (stored && (stored.url !== url || (!stored.etag && !stored.lastModified && !stored.sha256 && !file.sha256))) {
    // Nothing could tell whether the server still has the same version: do not splice blindly.
    await removePart(part);
    offset = 0;
  }
  const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': 'dfdet' };
  if (offset > 0) {
    headers.range = `bytes=${offset}-`;
    // A server whose file changed answers 200 with the whole new file instead of the range.
    const ifRange = stored?.etag ?? stored?.lastModified;
    if (ifRange) headers['if-range'] = ifRange;
  }
  const ctrl = new AbortController();
  const onAbort = (): void => ctrl.abort(ctx.signal?.reason);
  ctx.signal?.addEventListener('abort', onAbort, { once: true });
  let stalled = false;
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stalled = true;
      ctrl.abort(new Error('stalled'));
    }, ctx.stallTimeoutMs);
  };
  try {
    arm();
    const { res, etagSha, linkedEtag } = await request(url, headers, ctx, ctrl.signal);
    const etag = strongEtag(res.headers.get('etag'));
    const lastModified = res.headers.get('last-modified');
    let start: number;
    let total: number | null;
    const length = res.headers.get('content-length');
    if (res.status === 206 && offset > 0) {
      const cr = parseContentRange(res.headers.get('content-range'));
      if (!cr || cr.start !== offset) {
        // A range we did not ask for: start over rather than splice wrong bytes.
        await res.body?.cancel().catch(() => undefined);
        await removePart(part);
        throw new RetryableError(`server answered range ${res.headers.get('content-range')} for offset ${offset}`);
      }
      if (!sameVersion(stored, { etag, lastModified, linkedEtag }, file.sha256 ?? etagSha)) {
        // The server ignored If-Range (or there was nothing to send) and nothing proves that the
        // rest belongs to the bytes we have: start over.
        await res.body?.cancel().catch(() => undefined);
        await removePart(part);
        throw new RestartFromZero(`${file.name} may have changed on the server since the .part was started`);
      }
      start = offset;
      total = cr.total ?? (length !== null ? offset + Number(length) : null);
    } else if (res.status === 200 || (res.status === 206 && offset === 0)) {
      // 200 to a Range request: the server ignored it, so the body is the whole file.
      start = 0;
      total = res.status === 206 ? parseContentRange(res.headers.get('content-range'))?.total ?? null : length !== null ? Number(length) : null;
    } else if (res.status === 416 && offset > 0) {
      // The .part is not a prefix we can extend (e.g. larger than the file): restart.
      await res.body?.cancel().catch(() => undefined);
      await removePart(part);
      throw new RetryableError(`range ${offset}- not satisfiable`);
    } else {
      await res.body?.cancel().catch(() => undefined);
      const msg = `HTTP ${res.status} ${res.statusText} for ${url}`;
      if (res.status >= 500 || res.status === 429 || res.status === 408) throw new RetryableError(msg);
      throw new DfdetError('DOWNLOAD_FAILED', `Download of ${file.name} failed: ${msg}`, { details: { status: res.status, url } });
    }
    if (total !== null && file.size !== undefined && total !== file.size) {
      await res.body?.cancel().catch(() => undefined);
      throw new DfdetError('DOWNLOAD_FAILED', `Server reports ${total} bytes for ${file.name} but the registry says ${file.size}`, {
        details: { url, total, expected: file.size },
      });
    }
    if (!res.body) throw new RetryableError(`empty body from ${url}`);
    if (start === 0) {
      // Before the first byte: an interrupted download must find the validators of its bytes.
      const info: PartInfo = { url, etag, lastModified, linkedEtag, sha256: etagSha };
      await fs.promises.writeFile(partInfoPath(part), JSON.stringify(info));
    }
    const fh = await fs.promises.open(part, start === 0 ? 'w' : 'a');
    let bytes = start;
    try {
      const reader = res.body.getReader();
      ctx.onProgress?.({ file: file.name, fileIndex: ctx.fileIndex, fileCount: ctx.fileCount, bytes, total, cached: false });
      for (;;) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (e) {
          if (ctx.signal?.aborted) throw abortedError(e);
          throw new RetryableError(stalled ? `no data for ${ctx.stallTimeoutMs} ms` : `connection dropped: ${(e as Error).message}`, { cause: e });
        }
        if (chunk.done) break;
        arm();
        await fh.write(chunk.value);
        bytes += chunk.value.length;
        ctx.onProgress?.({ file: file.name, fileIndex: ctx.fileIndex, fileCount: ctx.fileCount, bytes, total, cached: false });
        if (ctx.signal?.aborted) {
          await reader.cancel().catch(() => undefined);
          throw abortedError(ctx.signal.reason);
        }
      }
    } finally {
      await fh.close();
    }
    if (total !== null && bytes !== total) throw new RetryableError(`body ended at ${bytes} of ${total} bytes`);
    return etagSha;
  } catch (e) {
    if (ctx.signal?.aborted && !isDfdetError(e, 'ABORTED')) throw abortedError(e);
    if (stalled && !(e instanceof RetryableError) && !isDfdetError(e)) throw new RetryableError(`no data for ${ctx.stallTimeoutMs} ms`, { cause: e });
    throw e;
  } finally {
    clearTimeout(timer);
    ctx.signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * Whether a 206 continues the bytes of the `.part`: no validator the server sends contradicts the
 * stored ones, and either the result will be checked against a sha256 or one validator matches.
 */
function sameVersion(
  stored: PartInfo | null,
  now: { etag: string | null; lastModified: string | null; linkedEtag: string | null },
  sha256: string | null,
): boolean {
  const pairs: [string | null | undefined, string | null][] = [
    [stored?.etag, now.etag],
    [stored?.linkedEtag, now.linkedEtag],
    [stored?.lastModified, now.lastModified],
  ];
  if (pairs.some(([a, b]) => a && b && a !== b)) return false;
  return sha256 !== null || pairs.some(([a, b]) => a && a === b);
}

/** Download one file to `dest` (via `dest.part`, validators in `dest.part.json`), verified. */
export async function downloadFile(url: string, dest: string, file: RegistryFile, ctx: DownloadContext): Promise<CachedFile> {
  const part = `${dest}.part`;
  await fs.promises.mkdir(path.dirname(dest), { recursive: true });
  let failures = 0;
  let restartedAfterMismatch = false;
  for (;;) {
    const resumed = (await fileSize(part)) > 0;
    let etagSha: string | null;
    try {
      etagSha = await attempt(url, part, file, ctx);
    } catch (e) {
      if (e instanceof RestartFromZero) continue; // the .part is gone: the next attempt has no Range
      if (!(e instanceof RetryableError)) throw e;
      failures++;
      if (failures > ctx.retries) {
        throw new DfdetError('DOWNLOAD_FAILED', `Download of ${file.name} from ${url} failed after ${failures} attempts: ${e.message}`, {
          cause: e,
          details: { url, attempts: failures },
        });
      }
      await sleep(ctx.retryDelayMs * 2 ** (failures - 1), ctx.signal);
      continue;
    }
    const expected = file.sha256 ?? etagSha;
    const size = await fileSize(part);
    const actual = await sha256File(part);
    const badSize = file.size !== undefined && size !== file.size;
    if ((expected && actual !== expected) || badSize) {
      await removePart(part);
      // Bytes resumed from an older .part may come from another version of the file: retry once from zero.
      if (resumed && !restartedAfterMismatch) {
        restartedAfterMismatch = true;
        continue;
      }
      throw new DfdetError(
        'CHECKSUM_MISMATCH',
        badSize
          ? `Downloaded ${file.name} has ${size} bytes, expected ${file.size} (${url}); the file was deleted`
          : `sha256 of downloaded ${file.name} is ${actual}, expected ${expected} (${url}); the file was deleted`,
        { details: { url, expected, actual, size } },
      );
    }
    await fs.promises.rename(part, dest);
    await fs.promises.rm(partInfoPath(part), { force: true });
    return {
      name: file.name,
      url,
      path: dest,
      size,
      sha256: actual,
      verifiedBy: file.sha256 ? 'registry' : etagSha ? 'etag' : 'none',
    };
  }
}
