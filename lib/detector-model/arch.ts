/**
 * Architecture of the CLIP ViT vision tower dfdet builds: presets, validation, the expected
 * tensor shapes, and inference of the architecture from the shapes of a checkpoint.
 */

import { DfdetError, invalidParameter } from '../errors';

/** Hyperparameters of a CLIP ViT vision tower (HF CLIPVisionModel semantics). */
export interface VitArch {
  /** Input side in pixels (square). */
  imageSize: number;
  /** Patch side in pixels; must divide imageSize. */
  patchSize: number;
  /** Hidden size (feature dimension D). */
  width: number;
  /** Transformer blocks. */
  layers: number;
  /** Attention heads; must divide width. */
  heads: number;
  /** MLP hidden size = width × mlpRatio (4 for all CLIP models). */
  mlpRatio: number;
}

/** Named presets. 'tiny' is a test-size model that still takes 224-px CLIP input. */
export type ArchName = 'tiny' | 'vit-b-16' | 'vit-b-32' | 'vit-l-14' | 'vit-l-14-336';

/**
 * Preset architectures (openai/clip-vit-*). `tiny`: 224 px, patch 32, width 64, 2 layers, 4 heads —
 * fast enough for tests while running the real 224-px preprocessing.
 */
export const ARCHS: Readonly<Record<ArchName, Readonly<VitArch>>> = {
  tiny: { imageSize: 224, patchSize: 32, width: 64, layers: 2, heads: 4, mlpRatio: 4 },
  'vit-b-16': { imageSize: 224, patchSize: 16, width: 768, layers: 12, heads: 12, mlpRatio: 4 },
  'vit-b-32': { imageSize: 224, patchSize: 32, width: 768, layers: 12, heads: 12, mlpRatio: 4 },
  'vit-l-14': { imageSize: 224, patchSize: 14, width: 1024, layers: 24, heads: 16, mlpRatio: 4 },
  'vit-l-14-336': { imageSize: 336, patchSize: 14, width: 1024, layers: 24, heads: 16, mlpRatio: 4 },
};

/** The classification head variant (GenD's names). */
export type HeadKind = 'linear' | 'LinearNorm';

/** LayerNorm epsilon of CLIP. */
export const LAYER_NORM_EPS = 1e-5;

/** Head counts of known CLIP vision widths (ViT-H/bigG use 80/104-dim heads); 64 is dfdet's 'tiny'. */
const HEADS_BY_WIDTH: Readonly<Record<number, number>> = { 64: 4, 768: 12, 1024: 16, 1280: 16, 1664: 16 };

/** Head count for a width: the table of known CLIP widths, else 64-dimensional heads. */
export function headsForWidth(width: number): number {
  return HEADS_BY_WIDTH[width] ?? Math.max(1, Math.round(width / 64));
}

/** Name of the preset equal to `a`, if any. */
export function presetName(a: VitArch): ArchName | undefined {
  return (Object.keys(ARCHS) as ArchName[]).find((k) => {
    const p = ARCHS[k];
    return p.imageSize === a.imageSize && p.patchSize === a.patchSize && p.width === a.width && p.layers === a.layers && p.heads === a.heads && p.mlpRatio === a.mlpRatio;
  });
}

/**
 * Resolve a preset name or a full/partial custom architecture (missing fields from `vit-l-14`,
 * heads from the width) and validate it. Throws BAD_INPUT.
 */
export function resolveArch(arch: ArchName | Partial<VitArch> | undefined): VitArch {
  if (arch === undefined) return { ...ARCHS['vit-l-14'] };
  if (typeof arch === 'string') {
    if (!Object.hasOwn(ARCHS, arch)) invalidParameter('arch', `one of ${Object.keys(ARCHS).join(', ')} or an object`, arch);
    return { ...ARCHS[arch] };
  }
  if (typeof arch !== 'object' || arch === null) invalidParameter('arch', 'a preset name or an object', arch);
  const base = ARCHS['vit-l-14'];
  const width = arch.width ?? base.width;
  const a: VitArch = {
    imageSize: arch.imageSize ?? base.imageSize,
    patchSize: arch.patchSize ?? base.patchSize,
    width,
    layers: arch.layers ?? base.layers,
    heads: arch.heads ?? (arch.width !== undefined ? headsForWidth(width) : base.heads),
    mlpRatio: arch.mlpRatio ?? base.mlpRatio,
  };
  validateArch(a);
  return a;
}

/** Throw BAD_INPUT unless `a` is a consistent architecture. */
export function validateArch(a: VitArch): void {
  const posInt = (name: keyof VitArch, max: number): void => {
    const v = a[name];
    if (!Number.isInteger(v) || v < 1 || v > max) invalidParameter(`arch.${name}`, `an integer between 1 and ${max}`, v);
  };
  posInt('imageSize', 4096);
  posInt('patchSize', 1024);
  posInt('width', 16384);
  posInt('layers', 256);
  posInt('heads', 1024);
  if (a.imageSize % a.patchSize !== 0) invalidParameter('arch.patchSize', `a divisor of imageSize ${a.imageSize}`, a.patchSize);
  if (a.width % a.heads !== 0) invalidParameter('arch.heads', `a divisor of width ${a.width}`, a.heads);
  if (typeof a.mlpRatio !== 'number' || !(a.mlpRatio > 0) || !Number.isInteger(a.width * a.mlpRatio)) {
    invalidParameter('arch.mlpRatio', 'a positive number with width × mlpRatio an integer', a.mlpRatio);
  }
}

/** Number of tokens (patches + CLS). */
export function tokenCount(a: VitArch): number {
  return (a.imageSize / a.patchSize) ** 2 + 1;
}

/**
 * Expected shapes of every canonical weight: HF `CLIPVisionModel` names without the
 * `vision_model.` prefix, plus `head.weight` [2, D] and `head.bias` [2].
 */
export function expectedShapes(a: VitArch): Map<string, number[]> {
  const w = a.width;
  const m = w * a.mlpRatio;
  const s = new Map<string, number[]>();
  s.set('embeddings.class_embedding', [w]);
  s.set('embeddings.patch_embedding.weight', [w, 3, a.patchSize, a.patchSize]);
  s.set('embeddings.position_embedding.weight', [tokenCount(a), w]);
  s.set('pre_layrnorm.weight', [w]);
  s.set('pre_layrnorm.bias', [w]);
  for (let i = 0; i < a.layers; i++) {
    const p = `encoder.layers.${i}.`;
    for (const proj of ['q', 'k', 'v', 'out']) {
      s.set(`${p}self_attn.${proj}_proj.weight`, [w, w]);
      s.set(`${p}self_attn.${proj}_proj.bias`, [w]);
    }
    s.set(`${p}layer_norm1.weight`, [w]);
    s.set(`${p}layer_norm1.bias`, [w]);
    s.set(`${p}mlp.fc1.weight`, [m, w]);
    s.set(`${p}mlp.fc1.bias`, [m]);
    s.set(`${p}mlp.fc2.weight`, [w, m]);
    s.set(`${p}mlp.fc2.bias`, [w]);
    s.set(`${p}layer_norm2.weight`, [w]);
    s.set(`${p}layer_norm2.bias`, [w]);
  }
  s.set('post_layernorm.weight', [w]);
  s.set('post_layernorm.bias', [w]);
  s.set('head.weight', [2, w]);
  s.set('head.bias', [2]);
  return s;
}

/**
 * Infer the architecture from canonical tensor shapes: width from the class embedding, patch from
 * the patch conv, image size from the position embedding count, layers from the highest block
 * index, heads = width / 64 unless `heads` is given. Throws BAD_WEIGHTS naming the key that is
 * missing or inconsistent.
 */
export function inferArch(shapes: Map<string, number[]>, heads?: number): VitArch {
  const get = (key: string): number[] => {
    const s = shapes.get(key);
    if (!s) throw new DfdetError('BAD_WEIGHTS', `Missing weight ${key}: cannot infer the architecture`, { details: { key } });
    return s;
  };
  const patch = get('embeddings.patch_embedding.weight');
  if (patch.length !== 4 || patch[1] !== 3 || patch[2] !== patch[3]) {
    throw new DfdetError('BAD_WEIGHTS', `Weight embeddings.patch_embedding.weight has shape [${patch}], expected [D, 3, P, P]`, {
      details: { key: 'embeddings.patch_embedding.weight' },
    });
  }
  const width = patch[0]!;
  const pos = get('embeddings.position_embedding.weight');
  const grid = Math.round(Math.sqrt((pos[0] ?? 0) - 1));
  if (pos.length !== 2 || grid * grid + 1 !== pos[0]) {
    throw new DfdetError('BAD_WEIGHTS', `Weight embeddings.position_embedding.weight has shape [${pos}], expected [grid² + 1, D]`, {
      details: { key: 'embeddings.position_embedding.weight' },
    });
  }
  let layers = 0;
  for (const k of shapes.keys()) {
    const m = /^encoder\.layers\.(\d+)\./.exec(k);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  const fc1 = get('encoder.layers.0.mlp.fc1.weight');
  const a: VitArch = {
    imageSize: grid * patch[2]!,
    patchSize: patch[2]!,
    width,
    layers,
    heads: heads ?? headsForWidth(width),
    mlpRatio: (fc1[0] ?? 0) / width,
  };
  try {
    validateArch(a);
  } catch (e) {
    throw new DfdetError('BAD_WEIGHTS', `Weights imply an invalid architecture ${JSON.stringify(a)}: ${(e as Error).message}`, { cause: e });
  }
  return a;
}
