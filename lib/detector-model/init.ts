/**
 * Seeded random detectors (for tests, benchmarks, and as a starting point for fine-tuning),
 * built through the same builder as converted models.
 */

import { invalidParameter } from '../errors';
import { checkOutputPath } from '../output-path';
import { type ArchName, expectedShapes, type HeadKind, resolveArch, type VitArch } from './arch';
import { buildDetector, type CanonicalWeights } from './builder';
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
  /**
   * Fill `out` with approximately N(0, std²) values: inverse-CDF table lookup with linear
   * interpolation (one 32-bit draw per value, tails cut at ±3.7σ, variance 0.997) — fast enough
   * for ViT-L/14's 303 M weights in a couple of seconds, and plenty for random initialisation.
   */
  fillNormal(out: Float32Array, std: number): Float32Array {
    const table = normalTable();
    let st = this.state;
    for (let i = 0; i < out.length; i++) {
      let t = (st = (st + 0x6d2b79f5) >>> 0);
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      t = (t ^ (t >>> 14)) >>> 0;
      const k = t >>> 20;
      const a = table[k]!;
      out[i] = (a + (table[k + 1]! - a) * ((t & 0xfffff) / 1048576)) * std;
    }
    this.state = st;
    return out;
  }
}

let normalQuantiles: Float64Array | undefined;
/** Φ⁻¹((k + 0.5) / 4097) for k = 0..4096. */
function normalTable(): Float64Array {
  if (!normalQuantiles) {
    normalQuantiles = new Float64Array(4097);
    for (let k = 0; k <= 4096; k++) normalQuantiles[k] = inverseNormalCdf((k + 0.5) / 4097);
  }
  return normalQuantiles;
}

/** Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9). */
function inverseNormalCdf(p: number): number {
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  if (p > 1 - lo) return -inverseNormalCdf(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) /
    (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1)
  );
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
  await checkOutputPath(options.output);
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
