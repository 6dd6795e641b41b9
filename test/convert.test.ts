/**
 * Converters (HF CLIP, GenD, Lightning) against an independent plain-PyTorch reference
 * (test/python/vit_ref.py) on random weights written by test/python/ckpt_writers.py.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { convertModel } from '../lib/convert';
import { METADATA_FILE, readDetectorMetadata } from '../lib/detector-model/metadata';
import { encodeSafetensors, SafetensorsFile } from '../lib/formats/safetensors';
import { Model, expectTensor } from '../lib/model';
import { isDfdetError } from '../lib/errors';
import { runPython, skipWithoutPython } from './helpers/python';
import { maxAbsDiff } from './helpers/numeric';

type Ref = Record<string, { logits: number[][]; features: number[][] }>;

const TINY = { width: 64, layers: 2, heads: 4, patch: 32, image: 224, seed: 7, variants: ['hf', 'hf-f16', 'hf-bf16', 'gend', 'lightning'] };
/** fp32 tolerance (max abs difference vs the float64 reference). */
const TOL = 1e-4;

const skip = skipWithoutPython('torch');

describe.skipIf(skip)('convertModel', () => {
  let dir: string;
  let ref: Ref;
  let input: Float32Array;
  const x = () => ({ data: input, shape: [2, 3, 224, 224], dtype: 'float32' as const });

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-convert-'));
    ref = runPython<Ref>('ckpt_writers.py', [dir, JSON.stringify(TINY)]);
    const buf = fs.readFileSync(path.join(dir, 'input.f32'));
    input = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4).slice();
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function check(file: string, variant: string) {
    const m = await Model.load(file, { extraFiles: [METADATA_FILE] });
    try {
      const logits = expectTensor(await m.run('forward', [x()]));
      const feats = expectTensor(await m.run('features', [x()]));
      expect(logits.shape).toEqual([2, 2]);
      expect(feats.shape).toEqual([2, TINY.width]);
      const dl = maxAbsDiff(logits.data as Float32Array, ref[variant]!.logits);
      const df = maxAbsDiff(feats.data as Float32Array, ref[variant]!.features);
      console.log(`${variant}: max |Δlogits| ${dl.toExponential(2)}, max |Δfeatures| ${df.toExponential(2)}`);
      expect(dl).toBeLessThan(TOL);
      expect(df).toBeLessThan(TOL);
      // head(features) reproduces forward for the normalised head; head(pooled) for both variants.
      const pooled = expectTensor(await m.run('pooled', [x()]));
      const viaHead = expectTensor(await m.run('head', [{ ...pooled, dtype: 'float32' }]));
      expect(maxAbsDiff(viaHead.data as Float32Array, ref[variant]!.logits)).toBeLessThan(TOL);
      return m.info;
    } finally {
      await m.dispose();
    }
  }

  it('HF CLIP safetensors + head file: parity with the reference, metadata, ignored keys', async () => {
    const out = path.join(dir, 'hf.pt');
    const r = await convertModel(path.join(dir, 'hf.safetensors'), out, { head: path.join(dir, 'head.safetensors') });
    expect(r.format).toBe('hf-clip');
    expect(r.arch).toEqual({ imageSize: 224, patchSize: 32, width: 64, layers: 2, heads: 4, mlpRatio: 4 });
    expect(r.head).toBe('LinearNorm');
    expect(r.headSource).toBe('file');
    expect(r.ignoredKeys.sort()).toEqual(
      ['logit_scale', 'text_model.embeddings.token_embedding.weight', 'vision_model.embeddings.position_ids', 'visual_projection.weight'].sort(),
    );
    const info = await check(out, 'hf');
    const meta = readDetectorMetadata(info);
    const sha = createHash('sha256').update(fs.readFileSync(path.join(dir, 'hf.safetensors'))).digest('hex');
    expect(meta.source).toEqual({ kind: 'hf-clip', file: 'hf.safetensors', sha256: sha });
    expect(meta.arch.head).toBe('LinearNorm');
    expect(meta.input.size).toBe(224);
    expect(info.attributes.head_kind).toBe('LinearNorm');
  });

  it('float16 and bfloat16 weights convert exactly to float32', async () => {
    for (const v of ['hf-f16', 'hf-bf16']) {
      const out = path.join(dir, `${v}.pt`);
      await convertModel(path.join(dir, `${v}.safetensors`), out, { head: path.join(dir, 'head.safetensors') });
      await check(out, v);
    }
  });

  it('GenD directory (config.json head "linear")', async () => {
    const out = path.join(dir, 'gend.pt');
    const r = await convertModel(path.join(dir, 'gend'), out);
    expect(r.format).toBe('gend');
    expect(r.head).toBe('linear');
    expect(r.headSource).toBe('input');
    expect(r.ignoredKeys).toContain('feature_extractor.visual_projection.weight');
    await check(out, 'gend');
  });

  it('Lightning checkpoint with PEFT LN-tuning keys, custom classes, shared and strided storages', async () => {
    const out = path.join(dir, 'lightning.pt');
    const r = await convertModel(path.join(dir, 'lightning.ckpt'), out);
    expect(r.format).toBe('lightning');
    expect(r.head).toBe('LinearNorm');
    expect(r.warnings).toEqual([]); // the head came from hyper_parameters (an AttributeDict placeholder), not the default
    expect(r.ignoredKeys.filter((k) => k.includes('.base_layer.')).length).toBe(2 * (2 * TINY.layers + 2));
    await check(out, 'lightning');
  });

  it('fresh heads are seeded', async () => {
    const a = await convertModel(path.join(dir, 'hf.safetensors'), path.join(dir, 'ra.pt'), { seed: 3 });
    await convertModel(path.join(dir, 'hf.safetensors'), path.join(dir, 'rb.pt'), { seed: 3 });
    await convertModel(path.join(dir, 'hf.safetensors'), path.join(dir, 'rc.pt'), { seed: 4 });
    expect(a.headSource).toBe('random');
    const run = async (f: string) => {
      const m = await Model.load(f);
      const y = expectTensor(await m.run('forward', [x()])).data as Float32Array;
      await m.dispose();
      return Array.from(y);
    };
    const [ya, yb, yc] = [await run(path.join(dir, 'ra.pt')), await run(path.join(dir, 'rb.pt')), await run(path.join(dir, 'rc.pt'))];
    expect(ya).toEqual(yb);
    expect(ya).not.toEqual(yc);
  });

  async function expectBadWeights(p: Promise<unknown>, key: RegExp) {
    const e = await p.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(isDfdetError(e, 'BAD_WEIGHTS'), String(e)).toBe(true);
    expect((e as Error).message).toMatch(key);
  }

  /** Copy hf.safetensors with one edit. */
  async function variantOf(name: string, edit: (t: Record<string, { dtype: 'float32'; shape: number[]; data: Float32Array }>) => void) {
    const st = await SafetensorsFile.open(path.join(dir, 'hf.safetensors'));
    const t: Record<string, { dtype: 'float32'; shape: number[]; data: Float32Array }> = {};
    for (const k of st.keys()) {
      const raw = await st.read(k);
      if (raw.dtype !== 'float32') continue;
      t[k] = { dtype: 'float32', shape: raw.shape, data: new Float32Array(raw.bytes.buffer.slice(raw.bytes.byteOffset, raw.bytes.byteOffset + raw.bytes.byteLength)) };
    }
    await st.close();
    edit(t);
    const f = path.join(dir, name);
    fs.writeFileSync(f, encodeSafetensors(t));
    return f;
  }

  it('rejects unknown, missing and mis-shaped keys and bad heads with BAD_WEIGHTS naming the key', async () => {
    const out = path.join(dir, 'bad.pt');
    const unknown = await variantOf('unknown.safetensors', (t) => {
      t['vision_model.encoder.layers.0.extra.weight'] = { dtype: 'float32', shape: [1], data: new Float32Array(1) };
    });
    await expectBadWeights(convertModel(unknown, out), /encoder\.layers\.0\.extra\.weight/);
    const stray = await variantOf('stray.safetensors', (t) => {
      t['something_else'] = { dtype: 'float32', shape: [1], data: new Float32Array(1) };
    });
    await expectBadWeights(convertModel(stray, out), /Unknown key something_else/);
    const missing = await variantOf('missing.safetensors', (t) => {
      delete t['vision_model.encoder.layers.1.mlp.fc2.bias'];
    });
    await expectBadWeights(convertModel(missing, out), /encoder\.layers\.1\.mlp\.fc2\.bias/);
    const shaped = await variantOf('shaped.safetensors', (t) => {
      t['vision_model.encoder.layers.0.self_attn.k_proj.bias'] = { dtype: 'float32', shape: [63], data: new Float32Array(63) };
    });
    await expectBadWeights(convertModel(shaped, out), /self_attn\.k_proj\.bias has shape \[63\]/);
    // A non-finite weight would make a model that never gives a meaningful score (and is refused at load).
    const nan = await variantOf('nan.safetensors', (t) => {
      t['vision_model.post_layernorm.bias']!.data[5] = Number.NaN;
    });
    await expectBadWeights(convertModel(nan, out), /vision_model\.post_layernorm\.bias holds NaN at element 5/);
    const head3 = path.join(dir, 'head3.safetensors');
    fs.writeFileSync(
      head3,
      encodeSafetensors({
        'linear.weight': { dtype: 'float32', shape: [3, 64], data: new Float32Array(192) },
        'linear.bias': { dtype: 'float32', shape: [3], data: new Float32Array(3) },
      }),
    );
    await expectBadWeights(convertModel(path.join(dir, 'hf.safetensors'), out, { head: head3 }), /linear\.weight has shape \[3, 64\]/);
    await expectBadWeights(convertModel(path.join(dir, 'hf.safetensors'), out, { arch: 'vit-b-16' }), /width 64 but arch option says 768/);
    expect(fs.existsSync(out)).toBe(false);
    // Stated fields that agree are accepted; heads come from the option.
    const ok = await convertModel(path.join(dir, 'hf.safetensors'), out, { arch: { width: 64, heads: 2 } });
    expect(ok.arch.heads).toBe(2);
  });

  it('rejects bad inputs and options with typed errors', async () => {
    const out = path.join(dir, 'x.pt');
    await expect(convertModel(path.join(dir, 'nope.safetensors'), out)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const junk = path.join(dir, 'junk.bin');
    fs.writeFileSync(junk, 'hello world, not a model');
    await expect(convertModel(junk, out)).rejects.toMatchObject({ code: 'BAD_FORMAT' });
    await expect(convertModel(path.join(dir, 'hf.safetensors'), out, { format: 'lightning' })).rejects.toMatchObject({ code: 'BAD_FORMAT' });
    await expect(convertModel(path.join(dir, 'hf.safetensors'), out, { headKind: 'mlp' as never })).rejects.toMatchObject({ code: 'BAD_INPUT' });
    await expect(convertModel(path.join(dir, 'hf.safetensors'), out, { seed: -1 })).rejects.toMatchObject({ code: 'BAD_INPUT' });
    // A GenD config naming an unknown head.
    const g2 = path.join(dir, 'gend2');
    fs.mkdirSync(g2);
    fs.copyFileSync(path.join(dir, 'gend', 'model.safetensors'), path.join(g2, 'model.safetensors'));
    fs.writeFileSync(path.join(g2, 'config.json'), JSON.stringify({ head: 'MLP' }));
    await expectBadWeights(convertModel(g2, out), /Unknown head "MLP"/);
  });
});
