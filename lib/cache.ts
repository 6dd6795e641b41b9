/**
 * The download cache: where pulled model files live and what was pulled (per-model manifests).
 *
 * Layout: `<cacheDir>/models/<safe name>/<files...>` plus `manifest.json` in each model folder
 * (one manifest per model, so concurrent pulls of different models never write the same file).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DfdetError, invalidParameter } from './errors';
import type { Converter } from './registry';

/**
 * The cache folder: `$DFDET_CACHE` > `$XDG_CACHE_HOME/dfdet` > `~/.cache/dfdet`.
 * Relative `XDG_CACHE_HOME` values are ignored, as the XDG spec says.
 */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DFDET_CACHE) return path.resolve(env.DFDET_CACHE);
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'dfdet');
  return path.join(os.homedir(), '.cache', 'dfdet');
}

/**
 * One part of a readable name: letters, digits, `.`, `_`, `+` and single inner hyphens. Parts never
 * start or end with `-` nor hold `--`, so the `--` that stands for `/` can be read back unambiguously.
 */
const READABLE_PART = /^[A-Za-z0-9._+]+(?:-[A-Za-z0-9._+]+)*$/;

/**
 * Folder name of a model, distinct for distinct names. Registry-style names (`owner/repo[:variant]`
 * made of {@link READABLE_PART}s) stay readable, like the hub's cache: `/` → `--`, `:` → `@`. Any
 * other name (one holding `--`, `@`, spaces, ...) gets the same readable rewrite, unsafe characters
 * → `_`, plus `~` and 16 hex digits of the sha256 of the exact name, so `a/b` and `a--b` (or `a:b`
 * and `a@b`) can never share a folder. Readable names never contain `~`.
 */
export function safeModelDirName(name: string): string {
  if (typeof name !== 'string' || name.trim() === '') invalidParameter('name', 'a model name', name);
  const colon = name.indexOf(':');
  const parts = (colon < 0 ? name : name.slice(0, colon)).split('/');
  if (colon >= 0) parts.push(name.slice(colon + 1));
  const readable = parts.every((p) => READABLE_PART.test(p) && p !== '.' && p !== '..');
  const s = name.replace(/\//g, '--').replace(/:/g, '@').replace(/[^A-Za-z0-9._@+-]/g, '_');
  if (readable) return s;
  return `${s}~${createHash('sha256').update(name, 'utf8').digest('hex').slice(0, 16)}`;
}

/** Folder of one model in the cache. */
export function modelCacheDir(name: string, cacheDir: string = defaultCacheDir()): string {
  return path.join(cacheDir, 'models', safeModelDirName(name));
}

/** One downloaded file as recorded in the manifest. */
export interface CachedFile {
  /** Registry file name. */
  name: string;
  /** URL it was downloaded from (before redirects). */
  url: string;
  /** Absolute path in the cache. */
  path: string;
  /** Size in bytes. */
  size: number;
  /** sha256 of the bytes (lower-case hex). */
  sha256: string;
  /** What the sha256 was checked against: the registry, the server's ETag, or nothing. */
  verifiedBy: 'registry' | 'etag' | 'none';
}

/** What `manifest.json` of a model records. */
export interface CacheManifest {
  /** Manifest format version (1). */
  version: 1;
  /** Model name. */
  name: string;
  /** Converter named by the registry entry. */
  converter: Converter;
  /** ISO time of the last successful pull. */
  pulledAt: string;
  /** Downloaded files. */
  files: CachedFile[];
  /** Path returned by the convert step, or null when not converted. */
  converted: string | null;
}

/** One model found in the cache, for `dfdet doctor` / listings. */
export interface CacheListEntry extends CacheManifest {
  /** The model's cache folder. */
  dir: string;
  /** All files present with their recorded sizes (and the converted file, when recorded). */
  complete: boolean;
  /** Recorded files (or converted output) missing or of the wrong size. */
  missing: string[];
  /** Interrupted downloads (`*.part`) in the folder, resumable by the next pull. */
  partial: string[];
  /** Bytes used by the folder's regular files (recursively). */
  bytes: number;
}

/** Path of a model's manifest. */
export function manifestPath(name: string, cacheDir: string = defaultCacheDir()): string {
  return path.join(modelCacheDir(name, cacheDir), 'manifest.json');
}

function parseManifest(text: string, file: string): CacheManifest {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new DfdetError('BAD_FORMAT', `Cache manifest ${file} is not valid JSON`, { cause: e, details: { path: file } });
  }
  const o = m as Partial<CacheManifest> | null;
  if (!o || typeof o !== 'object' || o.version !== 1 || typeof o.name !== 'string' || !Array.isArray(o.files)) {
    throw new DfdetError('BAD_FORMAT', `Cache manifest ${file} has an unknown format`, { details: { path: file } });
  }
  return o as CacheManifest;
}

/** Read a model's manifest; null when the model was never pulled. @throws BAD_FORMAT if corrupt. */
export async function readManifest(name: string, cacheDir: string = defaultCacheDir()): Promise<CacheManifest | null> {
  const file = manifestPath(name, cacheDir);
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  return parseManifest(text, file);
}

/** Write a model's manifest atomically (temp file + rename). */
export async function writeManifest(manifest: CacheManifest, cacheDir: string = defaultCacheDir()): Promise<string> {
  const file = manifestPath(manifest.name, cacheDir);
  await fs.promises.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  await fs.promises.writeFile(tmp, JSON.stringify(manifest, null, 2) + '\n');
  await fs.promises.rename(tmp, file);
  return file;
}

async function folderInfo(dir: string): Promise<{ bytes: number; partial: string[] }> {
  let bytes = 0;
  const partial: string[] = [];
  const stack = [dir];
  while (stack.length) {
    const d = stack.pop()!;
    const entries = await fs.promises.readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.isFile()) {
        bytes += (await fs.promises.stat(p).catch(() => ({ size: 0 }))).size;
        if (e.name.endsWith('.part')) partial.push(path.relative(dir, p).split(path.sep).join('/'));
      }
    }
  }
  return { bytes, partial: partial.sort() };
}

/** Options of {@link cacheList} and {@link cacheRemove}. */
export interface CacheOptions {
  /** Cache folder. Default {@link defaultCacheDir}. */
  cacheDir?: string;
}

/**
 * Models in the cache with their state (complete, missing files, partial downloads, size on disk).
 * Folders without a readable manifest are skipped; a missing cache folder gives [].
 */
export async function cacheList(options: CacheOptions = {}): Promise<CacheListEntry[]> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const root = path.join(cacheDir, 'models');
  const dirs = await fs.promises.readdir(root, { withFileTypes: true }).catch(() => []);
  const out: CacheListEntry[] = [];
  for (const d of dirs) {
    if (!d.isDirectory()) continue;
    const dir = path.join(root, d.name);
    const file = path.join(dir, 'manifest.json');
    let manifest: CacheManifest;
    try {
      manifest = parseManifest(await fs.promises.readFile(file, 'utf8'), file);
    } catch {
      continue;
    }
    const missing: string[] = [];
    for (const f of manifest.files) {
      const st = await fs.promises.stat(f.path).catch(() => null);
      if (!st || !st.isFile() || st.size !== f.size) missing.push(f.name);
    }
    if (manifest.converted && !fs.existsSync(manifest.converted)) missing.push(manifest.converted);
    const info = await folderInfo(dir);
    out.push({ ...manifest, dir, complete: missing.length === 0, missing, partial: info.partial, bytes: info.bytes });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Delete a model's cache folder (files, partial downloads, manifest). Returns whether it existed. */
export async function cacheRemove(name: string, options: CacheOptions = {}): Promise<boolean> {
  const dir = modelCacheDir(name, options.cacheDir ?? defaultCacheDir());
  const existed = fs.existsSync(dir);
  await fs.promises.rm(dir, { recursive: true, force: true });
  return existed;
}
