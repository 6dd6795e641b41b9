/**
 * Seeded random detectors (for tests, benchmarks, and as a starting point for fine-tuning),
 * built through the same builder as converted models.
 */

import { invalidParameter } from '../errors';
import { ArchName, expectedShapes, HeadKind, resolveArch, VitArch } from './arch';
import { buildDetector, CanonicalWeights } from './builder';
import { makeMetadata } from './metadata';

/** A small deterministic PRNG (mulberry32) with Gaussian samples (Box–Muller). */
export class SeededRandom {
  private state: number;
  private spare: number | undefined;
  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }
  /** Uniform in [0, 1). */
  uniform(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Standard normal. */
  normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  /** Fill `out` with N(0, std²). */
  fillNormal(out: Float32Array, std: number): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = this.normal() * std;
    return out;
  }
}

/** Check a seed: a non-negative safe integer. */
export function checkSeed(seed: unknown, name = 'seed'): number {
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0) invalidParameter(name, 'a non-negative integer', seed);
  return seed as number;
}

/**
 * CLIP-like random weights: every matrix and embedding N(0, 0.02²), biases 0, LayerNorm weight 1 and bias 0.
 * Deterministic in `seed` (weights are drawn in {@link expectedShapes} order).
 */
export function randomWeights(arch: VitArch, seed: number, only?: (key: string) => boolean): CanonicalWeights {
  const rng = new SeededRandom(seed);
  const out: CanonicalWeights = new Map();
  for (const [key, shape] of expectedShapes(arch)) {
    if (only && !only(key)) continue;
    const a = new Float32Array(shape.reduce((x, y) => x * y, 1));
    const isNorm = /(layer_norm\d|layrnorm|layernorm)\./.test(key);
    if (isNorm) {
      if (key.endsWith('.weight')) a.fill(1);
    } else if (key.endsWith('.bias')) {
      // zeros
    } else {
      rng.fillNormal(a, 0.02);
    }
    out.set(key, a);
  }
  return out;
}

/** Options of {@link initModel}. */
export interface InitModelOptions {
  /** Preset name or custom architecture (default 'vit-l-14'). */
  arch?: ArchName | Partial<VitArch>;
  /** PRNG seed (default 0). */
  seed?: number;
  /** Head variant (default 'LinearNorm', the paper's: linear layer on the L2-normalised feature). */
  head?: HeadKind;
  /** Output path of the TorchScript file. */
  output: string;
}

/** Result of {@link initModel}. */
export interface InitModelResult {
  output: string;
  arch: VitArch;
  head: HeadKind;
  seed: number;
  parameterCount: number;
}

/** Write a seeded random detector (e.g. `initModel({arch: 'tiny', seed: 1, output: 'tiny.pt'})`). */
export async function initModel(options: InitModelOptions): Promise<InitModelResult> {
  if (typeof options !== 'object' || options === null) invalidParameter('options', 'an object', options);
  if (typeof options.output !== 'string' || options.output === '') invalidParameter('output', 'a file path', options.output);
  const seed = checkSeed(options.seed ?? 0);
  const head = options.head ?? 'LinearNorm';
  if (head !== 'linear' && head !== 'LinearNorm') invalidParameter('head', "'linear' or 'LinearNorm'", head);
  const arch = resolveArch(options.arch);
  const weights = randomWeights(arch, seed);
  let parameterCount = 0;
  for (const w of weights.values()) parameterCount += w.length;
  await buildDetector(options.output, arch, head, weights, makeMetadata(arch, head, { kind: 'init', file: '', sha256: '', seed }));
  return { output: options.output, arch, head, seed, parameterCount };
}
