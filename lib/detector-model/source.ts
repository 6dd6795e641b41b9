/**
 * TorchScript source of the detector, generated from the templates in `models/clip_vit/`
 * (one definition for every size: numbers are substituted, the layer loop is unrolled).
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { DfdetError } from '../errors';
import { type HeadKind, LAYER_NORM_EPS, type VitArch } from './arch';

let templateDir: string | undefined;

/** Find `models/clip_vit` by walking up from this file (works from lib/ and from dist/lib/). */
function findTemplates(): string {
  if (templateDir) return templateDir;
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const candidate = path.join(dir, 'models', 'clip_vit');
    if (fs.existsSync(path.join(candidate, 'vision.torchscript'))) return (templateDir = candidate);
    dir = path.dirname(dir);
  }
  throw new DfdetError('NOT_FOUND', `Cannot find models/clip_vit/*.torchscript above ${__dirname}`);
}

function template(name: string): string {
  const text = fs.readFileSync(path.join(findTemplates(), name), 'utf8');
  // Drop full-line comments: they document the template, not the module.
  return text
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n');
}

/** A float literal TorchScript parses as float (never an int, never exponent-less ambiguity). */
function floatLiteral(v: number): string {
  const s = String(v);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

function fill(text: string, values: Record<string, string>): string {
  const out = text.replace(/\{\{(\w+)\}\}/g, (m, key: string) => {
    if (!Object.hasOwn(values, key)) throw new Error(`unfilled template field ${m}`);
    return values[key]!;
  });
  return out;
}

/** Source of one transformer block module (`layerI`). */
export function blockSource(a: VitArch): string {
  const headDim = a.width / a.heads;
  return fill(template('block.torchscript'), {
    WIDTH: String(a.width),
    HEADS: String(a.heads),
    HEAD_DIM: String(headDim),
    SCALE: floatLiteral(headDim ** -0.5),
    EPS: floatLiteral(LAYER_NORM_EPS),
  });
}

/** Source of the root module: `pooled`, `features`, `head`, `forward`. */
export function visionSource(a: VitArch, head: HeadKind): string {
  const layers = Array.from({ length: a.layers }, (_, i) => `    h = self.layer${i}.forward(h)`).join('\n');
  return fill(template('vision.torchscript'), {
    IMAGE: String(a.imageSize),
    PATCH: String(a.patchSize),
    WIDTH: String(a.width),
    EPS: floatLiteral(LAYER_NORM_EPS),
    HEAD_NORMALIZE: head === 'LinearNorm' ? 'True' : 'False',
    LAYERS: layers,
  });
}
