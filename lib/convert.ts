/**
 * Convert published detector/CLIP weights into dfdet's TorchScript detector format (with `dfdet.json`).
 *
 * Supported inputs (auto-detected):
 * - `hf-clip`: HF CLIP safetensors (`openai/clip-vit-*`: `vision_model.*`; text tower, projections and
 *   `logit_scale` ignored). Head from `options.head` (a safetensors with `linear.weight`/`linear.bias`)
 *   or freshly initialised from `options.seed`.
 * - `gend`: GenD HF safetensors (`yermandy/GenD_*`: `feature_extractor.vision_model.*`, `model.linear.*`)
 *   with `config.json` beside it (`head`: 'linear' or 'LinearNorm').
 * - `lightning`: the authors' Lightning `model.ckpt` (torch.save zip): `state_dict` with
 *   `feature_extractor.[base_model.model.]vision_model.*`, PEFT LN-tuning LayerNorms
 *   (`…ln_tuning_layers.default.*` overrides `…base_layer.*`), head `model.linear.*`,
 *   head variant from `hyper_parameters.head`.
 * Weights in float16/bfloat16/float64 are converted to float32 (exact for 16-bit); the output is float32
 * (load it with `dtype` to run in another precision).
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { type ArchName, expectedShapes, type HeadKind, inferArch, resolveArch, type VitArch } from './detector-model/arch';
import { buildDetector, type CanonicalWeights } from './detector-model/builder';
import { checkSeed, randomWeights } from './detector-model/init';
import { type DetectorSource, makeMetadata } from './detector-model/metadata';
import { DfdetError, invalidParameter } from './errors';
import { checkOutputPath } from './output-path';
import { sha256File } from './sha256';
import { checkRegularFile } from './formats/file';
import { SafetensorsFile } from './formats/safetensors';
import { checkFinite, type RawTensor, type TensorSource, toFloat32 } from './formats/tensor';
import { dictGet, TorchCheckpoint } from './formats/torchzip';

/** Input layouts {@link convertModel} understands. */
export type ConvertFormat = 'hf-clip' | 'gend' | 'lightning';

/** Options of {@link convertModel}. */
export interface ConvertOptions {
  /** Input layout (default 'auto': detected from the file's magic bytes and tensor names). */
  format?: 'auto' | ConvertFormat;
  /** hf-clip only: safetensors file with the head (`linear.weight` [2, D], `linear.bias` [2]). */
  head?: string;
  /** Head variant; default from the input's config (GenD `config.json`, Lightning `hyper_parameters.head`), else 'LinearNorm'. */
  headKind?: HeadKind;
  /** Expected architecture (preset or fields); converting fails with BAD_WEIGHTS when the weights disagree. Its `heads` is used (default width / 64). */
  arch?: ArchName | Partial<VitArch>;
  /** Seed of a freshly initialised head when the input has none (default 0). */
  seed?: number;
}

/** What {@link convertModel} did. */
export interface ConvertResult {
  output: string;
  format: ConvertFormat;
  arch: VitArch;
  head: HeadKind;
  /** Where the head came from. */
  headSource: 'input' | 'file' | 'random';
  source: DetectorSource;
  /** Input tensors deliberately not used (text tower, projections, PEFT base LayerNorms, ...). */
  ignoredKeys: string[];
  parameterCount: number;
  /** Notes such as defaults taken for missing configuration. */
  warnings: string[];
}

type KeyRole = { role: 'weight'; name: string; priority: number } | { role: 'ignore' } | { role: 'unknown' };

const IGNORED_CLIP = /^(text_model\.|text_projection\.|visual_projection\.|logit_scale$)/;

/** Map a vision-tower key (after the `vision_model.` prefix) to its canonical name, handling PEFT LN-tuning wrappers. */
function visionKey(rest: string): KeyRole {
  if (rest === 'embeddings.position_ids') return { role: 'ignore' };
  const tuned = /^(.*)\.ln_tuning_layers\.[^.]+\.(weight|bias)$/.exec(rest);
  if (tuned) return { role: 'weight', name: `${tuned[1]}.${tuned[2]}`, priority: 2 };
  const base = /^(.*)\.base_layer\.(weight|bias)$/.exec(rest);
  if (base) return { role: 'weight', name: `${base[1]}.${base[2]}`, priority: 1 };
  return { role: 'weight', name: rest, priority: 1 };
}

function classify(key: string, format: ConvertFormat): KeyRole {
  if (format === 'hf-clip') {
    if (key.startsWith('vision_model.')) return visionKey(key.slice('vision_model.'.length));
    return IGNORED_CLIP.test(key) ? { role: 'ignore' } : { role: 'unknown' };
  }
  if (key === 'model.linear.weight') return { role: 'weight', name: 'head.weight', priority: 1 };
  if (key === 'model.linear.bias') return { role: 'weight', name: 'head.bias', priority: 1 };
  if (!key.startsWith('feature_extractor.')) return { role: 'unknown' };
  let rest = key.slice('feature_extractor.'.length);
  if (format === 'lightning' && rest.startsWith('base_model.model.')) rest = rest.slice('base_model.model.'.length);
  if (rest.startsWith('vision_model.')) return visionKey(rest.slice('vision_model.'.length));
  return IGNORED_CLIP.test(rest) ? { role: 'ignore' } : { role: 'unknown' };
}

/** Sniff a file: 'zip', 'safetensors' or undefined. */
async function sniff(file: string): Promise<'zip' | 'safetensors' | undefined> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const b = Buffer.alloc(9);
    const { bytesRead } = await fh.read(b, 0, 9, 0);
    if (bytesRead >= 4 && b.readUInt32LE(0) === 0x04034b50) return 'zip';
    // Any header length: SafetensorsFile.open names the limit when it is too large.
    if (bytesRead === 9 && b[8] === 0x7b) return 'safetensors';
    return undefined;
  } finally {
    await fh.close();
  }
}

/** Resolve a directory input (HF snapshot) to its weights file. */
async function resolveInput(input: string): Promise<string> {
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(input);
  } catch (e) {
    throw new DfdetError('NOT_FOUND', `Input ${input} does not exist`, { cause: e, details: { file: input } });
  }
  if (!st.isDirectory()) {
    await checkRegularFile(input);
    return input;
  }
  for (const name of ['model.safetensors', 'model.ckpt']) {
    const p = path.join(input, name);
    if (fs.existsSync(p)) return p;
  }
  const candidates = (await fs.promises.readdir(input)).filter((n) => /\.(safetensors|ckpt)$/.test(n));
  if (candidates.length === 1) return path.join(input, candidates[0]!);
  throw new DfdetError('NOT_FOUND', `No single model.safetensors / *.ckpt in directory ${input} (found: ${candidates.join(', ') || 'none'})`, {
    details: { file: input },
  });
}

async function readJson(file: string): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new DfdetError('BAD_FORMAT', `${file} is not a JSON object`, { details: { file } });
}

function checkHeadKind(v: unknown, where: string): HeadKind {
  if (v === 'linear' || v === 'LinearNorm') return v;
  throw new DfdetError('BAD_WEIGHTS', `Unknown head ${JSON.stringify(v)} in ${where} (expected 'linear' or 'LinearNorm')`, { details: { key: 'head' } });
}

/**
 * Convert `input` (file, or directory holding `model.safetensors`/`model.ckpt`) into a dfdet detector at `output`.
 * Throws NOT_FOUND, BAD_FORMAT (corrupt file), BAD_WEIGHTS (unknown/missing key, wrong shape or head; names the key),
 * BAD_INPUT (options).
 */
export async function convertModel(input: string, output: string, options: ConvertOptions = {}): Promise<ConvertResult> {
  if (typeof input !== 'string' || input === '') invalidParameter('input', 'a file path', input);
  await checkOutputPath(output);
  if (typeof options !== 'object' || options === null) invalidParameter('options', 'an object', options);
  const fmtOpt = options.format ?? 'auto';
  if (!['auto', 'hf-clip', 'gend', 'lightning'].includes(fmtOpt)) invalidParameter('format', "'auto', 'hf-clip', 'gend' or 'lightning'", fmtOpt);
  if (options.headKind !== undefined && options.headKind !== 'linear' && options.headKind !== 'LinearNorm') {
    invalidParameter('headKind', "'linear' or 'LinearNorm'", options.headKind);
  }
  if (options.head !== undefined && (typeof options.head !== 'string' || options.head === '')) invalidParameter('head', 'a file path', options.head);
  const seed = checkSeed(options.seed ?? 0);
  // Only the fields the caller states are checked against the weights (a preset states all).
  let wanted: Partial<VitArch> | undefined;
  if (options.arch !== undefined) {
    const full = resolveArch(options.arch);
    wanted = typeof options.arch === 'string' ? full : Object.fromEntries(Object.keys(options.arch).map((k) => [k, full[k as keyof VitArch]]));
  }

  const file = await resolveInput(input);
  const kind = await sniff(file);
  const warnings: string[] = [];
  let source: TensorSource;
  let format: ConvertFormat;
  let headKind: HeadKind | undefined;
  if (kind === 'zip') {
    if (fmtOpt !== 'auto' && fmtOpt !== 'lightning') throw new DfdetError('BAD_FORMAT', `${file} is a zip (torch.save) file, not ${fmtOpt}`);
    const ckpt = await TorchCheckpoint.open(file);
    const sd = dictGet(ckpt.root, 'state_dict');
    if (sd === undefined) {
      await ckpt.close();
      throw new DfdetError('BAD_WEIGHTS', `${file} has no state_dict (not a Lightning checkpoint)`, { details: { key: 'state_dict' } });
    }
    source = ckpt.tensorSource(sd);
    format = 'lightning';
    const hp = dictGet(ckpt.root, 'hyper_parameters');
    const h = dictGet(hp, 'head');
    if (h !== undefined) headKind = checkHeadKind(h, `${file} hyper_parameters`);
    else warnings.push("checkpoint has no hyper_parameters.head; using 'LinearNorm' (the paper's L2-normalised head)");
  } else if (kind === 'safetensors') {
    source = await SafetensorsFile.open(file);
    const keys = source.keys();
    const isGend = keys.some((k) => k.startsWith('feature_extractor.'));
    format = fmtOpt === 'auto' ? (isGend ? 'gend' : 'hf-clip') : (fmtOpt as ConvertFormat);
    if (format === 'lightning') {
      await source.close();
      throw new DfdetError('BAD_FORMAT', `${file} is a safetensors file, not a Lightning checkpoint`);
    }
    if (format === 'gend') {
      const cfgPath = path.join(path.dirname(file), 'config.json');
      const cfg = await readJson(cfgPath);
      if (cfg && cfg.head !== undefined) headKind = checkHeadKind(cfg.head, cfgPath);
      else warnings.push(`no head in ${cfgPath}; using GenDConfig's default 'linear'`);
      headKind ??= 'linear';
    }
  } else {
    throw new DfdetError('BAD_FORMAT', `${file} is neither a safetensors file nor a torch.save zip`, { details: { file } });
  }

  try {
    // Pass 1: names and shapes only.
    const chosen = new Map<string, { key: string; priority: number }>();
    const ignoredKeys: string[] = [];
    for (const key of source.keys()) {
      const role = classify(key, format);
      if (role.role === 'ignore') {
        ignoredKeys.push(key);
        continue;
      }
      if (role.role === 'unknown') {
        throw new DfdetError('BAD_WEIGHTS', `Unknown key ${key} in ${file} (format ${format})`, { details: { key, file } });
      }
      const prev = chosen.get(role.name);
      if (prev && prev.priority === role.priority) {
        throw new DfdetError('BAD_WEIGHTS', `Keys ${prev.key} and ${key} both provide ${role.name}`, { details: { key } });
      }
      if (!prev || prev.priority < role.priority) {
        if (prev) ignoredKeys.push(prev.key);
        chosen.set(role.name, { key, priority: role.priority });
      } else ignoredKeys.push(key);
    }
    const shapes = new Map<string, number[]>();
    for (const [name, { key }] of chosen) {
      const meta = source.meta(key);
      if (!meta) throw new DfdetError('BAD_WEIGHTS', `Tensor ${key} has an unsupported storage type`, { details: { key } });
      shapes.set(name, meta.shape);
    }
    const arch = inferArch(shapes);
    if (wanted) {
      for (const f of ['width', 'layers', 'patchSize', 'imageSize', 'mlpRatio'] as const) {
        if (wanted[f] !== undefined && wanted[f] !== arch[f]) {
          throw new DfdetError('BAD_WEIGHTS', `Weights have ${f} ${arch[f]} but arch option says ${wanted[f]}`, { details: { key: f } });
        }
      }
    }
    if (wanted?.heads !== undefined) {
      if (arch.width % wanted.heads !== 0) invalidParameter('arch.heads', `a divisor of width ${arch.width}`, wanted.heads);
      arch.heads = wanted.heads;
    }
    const expected = expectedShapes(arch);
    for (const [name, { key }] of chosen) {
      const want = expected.get(name);
      if (!want) throw new DfdetError('BAD_WEIGHTS', `Unexpected key ${key} for a ${arch.layers}-layer model`, { details: { key } });
      const got = shapes.get(name)!;
      if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
        throw new DfdetError('BAD_WEIGHTS', `Tensor ${key} has shape [${got.join(', ')}], expected [${want.join(', ')}]`, { details: { key } });
      }
    }
    const hasHead = chosen.has('head.weight') || chosen.has('head.bias');
    for (const name of expected.keys()) {
      if (name.startsWith('head.') && (!hasHead || format === 'hf-clip')) continue;
      if (!chosen.has(name)) throw new DfdetError('BAD_WEIGHTS', `Missing weight for ${name} in ${file}`, { details: { key: name } });
    }

    // Pass 2: read tensors one at a time (each into its own buffer, converted to float32).
    const weights: CanonicalWeights = new Map();
    for (const [name, { key }] of chosen) {
      const raw: RawTensor = await source.read(key);
      weights.set(name, checkFinite(toFloat32(raw, key), key));
    }

    let headSource: ConvertResult['headSource'] = 'input';
    if (format === 'hf-clip' || !hasHead) {
      if (options.head !== undefined) {
        for (const [k, v] of await readHeadFile(options.head, arch)) weights.set(k, v);
        headSource = 'file';
      } else {
        for (const [k, v] of randomWeights(arch, seed, (k) => k.startsWith('head.'))) weights.set(k, v);
        headSource = 'random';
        warnings.push(`no head weights: head initialised randomly with seed ${seed}`);
      }
    }
    const head: HeadKind = options.headKind ?? headKind ?? 'LinearNorm';
    const src: DetectorSource = {
      kind: format,
      file: path.basename(file),
      sha256: await sha256File(file),
      ...(headSource === 'random' ? { seed } : {}),
    };
    await buildDetector(output, arch, head, weights, makeMetadata(arch, head, src));
    let parameterCount = 0;
    for (const w of weights.values()) parameterCount += w.length;
    return { output, format, arch, head, headSource, source: src, ignoredKeys, parameterCount, warnings };
  } finally {
    await source.close();
  }
}

/** Read a head file: `linear.weight`/`linear.bias` (also `model.linear.*`, `head.*` or bare `weight`/`bias`). */
async function readHeadFile(file: string, arch: VitArch): Promise<CanonicalWeights> {
  const st = await SafetensorsFile.open(file);
  try {
    const out: CanonicalWeights = new Map();
    const width = arch.width;
    for (const [leaf, shape] of [
      ['weight', [2, width]],
      ['bias', [2]],
    ] as const) {
      const key = [`linear.${leaf}`, `model.linear.${leaf}`, `head.${leaf}`, leaf].find((k) => st.meta(k));
      if (!key) throw new DfdetError('BAD_WEIGHTS', `Head file ${file} has no linear.${leaf}`, { details: { key: `linear.${leaf}`, file } });
      const meta = st.meta(key)!;
      if (meta.shape.length !== shape.length || meta.shape.some((d, i) => d !== shape[i])) {
        throw new DfdetError('BAD_WEIGHTS', `Head tensor ${key} has shape [${meta.shape.join(', ')}], expected [${shape.join(', ')}]`, {
          details: { key, file },
        });
      }
      out.set(`head.${leaf}`, checkFinite(toFloat32(await st.read(key), key), key));
    }
    return out;
  } finally {
    await st.close();
  }
}
