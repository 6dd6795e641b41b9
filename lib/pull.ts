/**
 * Pull a registry model into the cache: each file downloaded and verified (./download), skipping
 * files the manifest already records, then the caller's convert step and a manifest entry.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DfdetError, invalidParameter } from './errors';
import { type CachedFile, type CacheManifest, defaultCacheDir, modelCacheDir, readManifest, writeManifest } from './cache';
import { abortedError, type DownloadContext, downloadFile, fileSize, type PullProgress, removePart } from './download';
import { getModel, type RegistryEntry, validateEntry } from './registry';

export { sha256FromEtag, type PullProgress } from './download';

/** Options of {@link pull}. */
export interface PullOptions {
  /** Cache folder. Default {@link defaultCacheDir} (`$DFDET_CACHE` > `$XDG_CACHE_HOME/dfdet` > `~/.cache/dfdet`). */
  cacheDir?: string;
  /** Called after every received chunk (and once per cached file). */
  onProgress?: (progress: PullProgress) => void;
  /** Abort: rejects with ABORTED; the `.part` file is kept for a later resume. */
  signal?: AbortSignal;
  /** fetch implementation. Default: global fetch (Node's undici). */
  fetchImpl?: typeof fetch;
  /** Replace the scheme, host and port of every file URL (tests, mirrors), e.g. `http://127.0.0.1:8080`. */
  baseUrl?: string;
  /** Attempts after the first for dropped connections, stalls and 5xx/429 answers, per file. Default 3. */
  retries?: number;
  /** First retry delay in ms, doubled per retry. Default 500. */
  retryDelayMs?: number;
  /** A request that receives no bytes for this long is dropped and retried. Default 60000 ms. */
  stallTimeoutMs?: number;
  /** Download again even when the cache has the files (and convert again). Default false. */
  force?: boolean;
  /** Convert the downloaded files; returns the path of the converted model, recorded in the manifest. */
  convert?: (files: CachedFile[], entry: RegistryEntry) => Promise<string>;
}

/** What {@link pull} did. */
export interface PullResult {
  /** The registry entry pulled. */
  entry: RegistryEntry;
  /** The model's cache folder. */
  dir: string;
  /** The files, in registry order. */
  files: CachedFile[];
  /** Names of the files actually downloaded in this call (others were already cached). */
  downloaded: string[];
  /** Converted model path (from this call or a previous one), or null. */
  converted: string | null;
  /** Path of the manifest written. */
  manifest: string;
}

/** Rewrite a URL's origin to baseUrl (keeping path and query). */
function rebase(url: string, baseUrl?: string): string {
  if (!baseUrl) return url;
  const u = new URL(url);
  const b = new URL(baseUrl);
  const prefix = b.pathname.replace(/\/$/, '');
  return new URL(`${prefix}${u.pathname}${u.search}`, b.origin).toString();
}

function checkOptions(o: PullOptions): void {
  if (!o || typeof o !== 'object') invalidParameter('options', 'an object', o);
  if (o.cacheDir !== undefined && (typeof o.cacheDir !== 'string' || o.cacheDir === '')) invalidParameter('cacheDir', 'a folder path', o.cacheDir);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') invalidParameter('onProgress', 'a function', o.onProgress);
  if (o.convert !== undefined && typeof o.convert !== 'function') invalidParameter('convert', 'a function', o.convert);
  if (o.fetchImpl !== undefined && typeof o.fetchImpl !== 'function') invalidParameter('fetchImpl', 'a fetch function', o.fetchImpl);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) invalidParameter('signal', 'an AbortSignal', o.signal);
  for (const k of ['retries', 'retryDelayMs'] as const) {
    const v = o[k];
    if (v !== undefined && !(Number.isInteger(v) && v >= 0 && v <= 1e7)) invalidParameter(k, 'a non-negative integer', v);
  }
  if (o.stallTimeoutMs !== undefined && !(Number.isInteger(o.stallTimeoutMs) && o.stallTimeoutMs > 0)) {
    invalidParameter('stallTimeoutMs', 'a positive integer', o.stallTimeoutMs);
  }
  if (o.baseUrl !== undefined) {
    let ok = false;
    try {
      ok = typeof o.baseUrl === 'string' && /^https?:$/.test(new URL(o.baseUrl).protocol);
    } catch {
      ok = false;
    }
    if (!ok) invalidParameter('baseUrl', 'an http(s) URL', o.baseUrl);
  }
}

/**
 * Download a model's files into the cache (skipping files the manifest already records with the
 * same size on disk, unless `force`), then run `convert` (only when there is no recorded converted
 * output that still exists, or with `force`) and write the manifest.
 *
 * @param model A registry name (see {@link getModel}) or an entry object (validated).
 * @throws DfdetError NOT_FOUND (unknown name), BAD_FORMAT (invalid entry), BAD_INPUT (options),
 *   DOWNLOAD_FAILED (HTTP error with status and URL, or retries exhausted), CHECKSUM_MISMATCH
 *   (corrupt download, deleted), ABORTED (signal; `.part` kept), or whatever `convert` throws.
 */
export async function pull(model: string | RegistryEntry, options: PullOptions = {}): Promise<PullResult> {
  checkOptions(options);
  const entry = typeof model === 'string' ? getModel(model) : validateEntry(model, 'pull entry');
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const dir = modelCacheDir(entry.name, cacheDir);
  const fetchImpl = options.fetchImpl ?? globalThis.fetch;
  if (typeof fetchImpl !== 'function') throw new DfdetError('UNSUPPORTED', 'No fetch implementation (Node >= 18 required)');
  if (options.signal?.aborted) throw abortedError(options.signal.reason);
  await fs.promises.mkdir(dir, { recursive: true });

  const previous = options.force ? null : await readManifest(entry.name, cacheDir).catch(() => null);
  const files: CachedFile[] = [];
  const downloaded: string[] = [];
  for (let i = 0; i < entry.files.length; i++) {
    const f = entry.files[i]!;
    const dest = path.join(dir, ...f.name.split('/'));
    const url = rebase(f.url, options.baseUrl);
    const known = previous?.files.find((p) => p.name === f.name && p.path === dest);
    const onDisk = known ? await fileSize(dest) : -1;
    if (known && onDisk === known.size && (!f.sha256 || f.sha256 === known.sha256) && (f.size === undefined || f.size === known.size)) {
      files.push(known);
      options.onProgress?.({ file: f.name, fileIndex: i, fileCount: entry.files.length, bytes: known.size, total: known.size, cached: true });
      continue;
    }
    if (options.force) await removePart(`${dest}.part`);
    const ctx: DownloadContext = {
      fetchImpl,
      signal: options.signal,
      retries: options.retries ?? 3,
      retryDelayMs: options.retryDelayMs ?? 500,
      stallTimeoutMs: options.stallTimeoutMs ?? 60_000,
      onProgress: options.onProgress,
      fileIndex: i,
      fileCount: entry.files.length,
    };
    files.push(await downloadFile(url, dest, f, ctx));
    downloaded.push(f.name);
  }

  let converted: string | null = previous?.converted ?? null;
  if (converted && (downloaded.length > 0 || !fs.existsSync(converted))) converted = null;
  const manifest: CacheManifest = {
    version: 1,
    name: entry.name,
    converter: entry.converter,
    pulledAt: new Date().toISOString(),
    files,
    converted,
  };
  // Record the downloads before converting: a failed conversion must not cost a new download.
  let manifestFile = await writeManifest(manifest, cacheDir);
  if (options.convert && !converted) {
    if (options.signal?.aborted) throw abortedError(options.signal.reason);
    const out = await options.convert(files, entry);
    if (typeof out !== 'string' || out === '') invalidParameter('convert() result', 'a path string', out);
    manifest.converted = path.resolve(out);
    manifestFile = await writeManifest(manifest, cacheDir);
  }
  return { entry, dir, files, downloaded, converted: manifest.converted, manifest: manifestFile };
}
