/**
 * Build a detector TorchScript file from canonical weights: the one path every model dfdet makes
 * (random init, HF CLIP, GenD, Lightning) goes through.
 */

import type { NativeModuleSpec, NativeTensor } from '../../binding';
import { DfdetError } from '../errors';
import { buildModule } from '../model';
import { expectedShapes, type HeadKind, type VitArch, validateArch } from './arch';
import { type DetectorMetadata, METADATA_FILE } from './metadata';
import { blockSource, visionSource } from './source';

/** Canonical weights: HF CLIPVisionModel names without `vision_model.`, plus `head.weight`/`head.bias`. */
export type CanonicalWeights = Map<string, Float32Array>;

/** Check every expected weight is present with the right element count; throws BAD_WEIGHTS naming the key. */
export function checkWeights(arch: VitArch, weights: CanonicalWeights): void {
  const shapes = expectedShapes(arch);
  for (const [key, shape] of shapes) {
    const w = weights.get(key);
    if (!w) throw new DfdetError('BAD_WEIGHTS', `Missing weight ${key} (expected shape [${shape.join(', ')}])`, { details: { key } });
    const n = shape.reduce((a, b) => a * b, 1);
    if (w.length !== n) {
      throw new DfdetError('BAD_WEIGHTS', `Weight ${key} has ${w.length} elements, expected shape [${shape.join(', ')}]`, { details: { key } });
    }
  }
  for (const key of weights.keys()) {
    if (!shapes.has(key)) throw new DfdetError('BAD_WEIGHTS', `Unexpected weight ${key} for this architecture`, { details: { key } });
  }
}

/** The module spec (source + tensors) of a detector; weights are wrapped, not copied. */
export function detectorSpec(arch: VitArch, head: HeadKind, weights: CanonicalWeights): NativeModuleSpec {
  validateArch(arch);
  checkWeights(arch, weights);
  const shapes = expectedShapes(arch);
  const t = (key: string): NativeTensor => ({ data: weights.get(key)!, shape: shapes.get(key)!, dtype: 'float32' });
  const block = blockSource(arch);
  const submodules: Record<string, NativeModuleSpec> = {};
  for (let i = 0; i < arch.layers; i++) {
    const p = `encoder.layers.${i}.`;
    submodules[`layer${i}`] = {
      className: `ClipVitBlock${i}`,
      source: block,
      parameters: {
        ln1_weight: t(`${p}layer_norm1.weight`),
        ln1_bias: t(`${p}layer_norm1.bias`),
        q_weight: t(`${p}self_attn.q_proj.weight`),
        q_bias: t(`${p}self_attn.q_proj.bias`),
        k_weight: t(`${p}self_attn.k_proj.weight`),
        k_bias: t(`${p}self_attn.k_proj.bias`),
        v_weight: t(`${p}self_attn.v_proj.weight`),
        v_bias: t(`${p}self_attn.v_proj.bias`),
        out_weight: t(`${p}self_attn.out_proj.weight`),
        out_bias: t(`${p}self_attn.out_proj.bias`),
        ln2_weight: t(`${p}layer_norm2.weight`),
        ln2_bias: t(`${p}layer_norm2.bias`),
        fc1_weight: t(`${p}mlp.fc1.weight`),
        fc1_bias: t(`${p}mlp.fc1.bias`),
        fc2_weight: t(`${p}mlp.fc2.weight`),
        fc2_bias: t(`${p}mlp.fc2.bias`),
      },
    };
  }
  return {
    className: 'ClipVitDetector',
    source: visionSource(arch, head),
    parameters: {
      class_embedding: t('embeddings.class_embedding'),
      patch_weight: t('embeddings.patch_embedding.weight'),
      position_embedding: t('embeddings.position_embedding.weight'),
      pre_ln_weight: t('pre_layrnorm.weight'),
      pre_ln_bias: t('pre_layrnorm.bias'),
      post_ln_weight: t('post_layernorm.weight'),
      post_ln_bias: t('post_layernorm.bias'),
      head_weight: t('head.weight'),
      head_bias: t('head.bias'),
    },
    attributes: {
      image_size: arch.imageSize,
      patch_size: arch.patchSize,
      width: arch.width,
      layers: arch.layers,
      heads: arch.heads,
      head_kind: head,
    },
    submodules,
  };
}

/** Build the detector and save it with `dfdet.json` to `output`. */
export async function buildDetector(
  output: string,
  arch: VitArch,
  head: HeadKind,
  weights: CanonicalWeights,
  metadata: DetectorMetadata,
): Promise<void> {
  const spec = detectorSpec(arch, head, weights);
  await buildModule(spec, output, { extraFiles: { [METADATA_FILE]: JSON.stringify(metadata, null, 2) } });
}
