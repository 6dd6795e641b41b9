/**
 * The model registry: published weights dfdet knows how to download and convert
 * (`models/registry.json`, shipped with the package).
 */
import fs from 'node:fs';
import path from 'node:path';
import { DfdetError, invalidParameter } from './errors';

/** How downloaded files become a dfdet model (the converter itself is supplied by the caller of pull). */
export type Converter = 'lightning-ckpt' | 'gend-safetensors' | 'hf-clip-safetensors' | 'torchscript';

/** Known converters. */
export const CONVERTERS: readonly Converter[] = ['lightning-ckpt', 'gend-safetensors', 'hf-clip-safetensors', 'torchscript'];

/** One file of a model. */
export interface RegistryFile {
  /** File name (relative path inside the model's cache folder, `/` separated, no `..`). */
  name: string;
  /** http(s) URL. Hugging Face form: `https://huggingface.co/<repo>/resolve/main/<file>`. */
  url: string;
  /** Size in bytes, when known. Checked after download. */
  size?: number;
  /** Lower-case hex sha256, when known. Without it the hub's `X-Linked-Etag` is used at download time. */
  sha256?: string;
}

/** One model of the registry. */
export interface RegistryEntry {
  /** Unique name, e.g. `yermandy/deepfake-detection` (`owner/repo[:variant]`). */
  name: string;
  /** One-paragraph description. */
  description: string;
  /** Hugging Face hub repository, when the files come from one. */
  repo?: string;
  /** Files to download (at least one). */
  files: RegistryFile[];
  /** Licence of the weights as far as known. */
  licence: string;
  /** How to convert the files. */
  converter: Converter;
  /** Paper URL. */
  paper?: string;
  /** Other links (model card, code). */
  links?: string[];
}

/** The registry file. */
export interface Registry {
  /** Format version (1). */
  version: 1;
  /** Name of the default model. */
  default: string;
  /** Models, in display order. */
  models: RegistryEntry[];
}

const SHA256_RE = /^[0-9a-f]{64}$/;

function bad(source: string, msg: string): never {
  throw new DfdetError('BAD_FORMAT', `Invalid model registry ${source}: ${msg}`, { details: { source } });
}

/** Check a file name from a registry: relative, `/`-separated, no `.`/`..` parts. */
export function isSafeRelativeName(name: string): boolean {
  if (typeof name !== 'string' || name === '' || name.startsWith('/') || name.includes('\\') || name.includes('\0')) return false;
  return name.split('/').every((p) => p !== '' && p !== '.' && p !== '..');
}

/** Validate one entry (used for the registry file and for entries passed directly to pull). */
export function validateEntry(e: unknown, source = 'entry'): RegistryEntry {
  if (!e || typeof e !== 'object') bad(source, 'entry is not an object');
  const o = e as Record<string, unknown>;
  const where = typeof o.name === 'string' ? `${source}: ${o.name}` : source;
  if (typeof o.name !== 'string' || o.name.trim() === '') bad(where, 'name must be a non-empty string');
  if (typeof o.description !== 'string') bad(where, 'description must be a string');
  if (typeof o.licence !== 'string') bad(where, 'licence must be a string');
  if (typeof o.converter !== 'string' || !CONVERTERS.includes(o.converter as Converter)) {
    bad(where, `converter must be one of ${CONVERTERS.join(', ')}`);
  }
  if (o.repo !== undefined && typeof o.repo !== 'string') bad(where, 'repo must be a string');
  if (o.paper !== undefined && typeof o.paper !== 'string') bad(where, 'paper must be a string');
  if (o.links !== undefined && (!Array.isArray(o.links) || o.links.some((l) => typeof l !== 'string'))) bad(where, 'links must be strings');
  if (!Array.isArray(o.files) || o.files.length === 0) bad(where, 'files must be a non-empty array');
  const names = new Set<string>();
  for (const f of o.files as unknown[]) {
    if (!f || typeof f !== 'object') bad(where, 'file is not an object');
    const file = f as Record<string, unknown>;
    if (typeof file.name !== 'string' || !isSafeRelativeName(file.name)) bad(where, `file name ${JSON.stringify(file.name)} is not a safe relative path`);
    if (names.has(file.name)) bad(where, `file ${file.name} listed twice`);
    names.add(file.name);
    let url: URL | null = null;
    try {
      url = typeof file.url === 'string' ? new URL(file.url) : null;
    } catch {
      url = null;
    }
    if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) bad(where, `file ${file.name}: url must be an http(s) URL`);
    if (file.size !== undefined && !(Number.isSafeInteger(file.size) && (file.size as number) >= 0)) bad(where, `file ${file.name}: size must be a non-negative integer`);
    if (file.sha256 !== undefined && (typeof file.sha256 !== 'string' || !SHA256_RE.test(file.sha256))) {
      bad(where, `file ${file.name}: sha256 must be 64 lower-case hex digits`);
    }
  }
  return o as unknown as RegistryEntry;
}

/** Validate parsed registry JSON. @throws DfdetError BAD_FORMAT naming the problem. */
export function validateRegistry(json: unknown, source = 'registry'): Registry {
  if (!json || typeof json !== 'object') bad(source, 'not a JSON object');
  const r = json as Record<string, unknown>;
  if (r.version !== 1) bad(source, `unsupported version ${JSON.stringify(r.version)} (expected 1)`);
  if (!Array.isArray(r.models)) bad(source, 'models must be an array');
  const seen = new Set<string>();
  for (const m of r.models) {
    const e = validateEntry(m, source);
    if (seen.has(e.name)) bad(source, `model ${e.name} listed twice`);
    seen.add(e.name);
  }
  if (typeof r.default !== 'string' || !seen.has(r.default)) bad(source, `default ${JSON.stringify(r.default)} is not a listed model`);
  return r as unknown as Registry;
}

/** Path of the shipped `models/registry.json` (found from this file upwards: works from lib/ and dist/lib/). */
export function registryPath(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    const p = path.join(dir, 'models', 'registry.json');
    if (fs.existsSync(p)) return p;
    dir = path.dirname(dir);
  }
  throw new DfdetError('NOT_FOUND', `models/registry.json not found above ${__dirname}`);
}

let cached: Registry | null = null;

/**
 * Load and validate a registry file. Default: the shipped one (read once, then cached).
 * @throws DfdetError NOT_FOUND (missing file), BAD_FORMAT (invalid JSON or schema).
 */
export function loadRegistry(file?: string): Registry {
  if (file === undefined && cached) return cached;
  if (file !== undefined && (typeof file !== 'string' || file === '')) invalidParameter('file', 'a registry file path', file);
  const p = file ?? registryPath();
  let text: string;
  try {
    text = fs.readFileSync(p, 'utf8');
  } catch (e) {
    throw new DfdetError('NOT_FOUND', `Cannot read model registry ${p}`, { cause: e, details: { path: p } });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new DfdetError('BAD_FORMAT', `Model registry ${p} is not valid JSON: ${(e as Error).message}`, { cause: e, details: { path: p } });
  }
  const reg = validateRegistry(json, p);
  if (file === undefined) cached = reg;
  return reg;
}

/** All models of a registry (default: the shipped one). */
export function listModels(registry: Registry = loadRegistry()): RegistryEntry[] {
  return registry.models.slice();
}

/** The registry's default model. */
export function defaultModel(registry: Registry = loadRegistry()): RegistryEntry {
  return getModel(registry.default, registry);
}

/**
 * Find a model by name. Exact names win; otherwise a case-insensitive match of the whole name or of
 * the part after `owner/` is accepted when it is unique (`GenD_CLIP_L_14`).
 * @throws DfdetError NOT_FOUND listing the known names.
 */
export function getModel(name: string, registry: Registry = loadRegistry()): RegistryEntry {
  if (typeof name !== 'string' || name === '') invalidParameter('name', 'a model name', name);
  const exact = registry.models.find((m) => m.name === name);
  if (exact) return exact;
  const n = name.toLowerCase();
  const loose = registry.models.filter((m) => m.name.toLowerCase() === n || m.name.toLowerCase().split('/').slice(1).join('/') === n);
  if (loose.length === 1) return loose[0]!;
  const known = registry.models.map((m) => m.name).join(', ');
  throw new DfdetError('NOT_FOUND', loose.length > 1 ? `Model name ${name} is ambiguous: ${loose.map((m) => m.name).join(', ')}` : `Unknown model ${name}. Known models: ${known}`, {
    details: { name, known: registry.models.map((m) => m.name) },
  });
}
