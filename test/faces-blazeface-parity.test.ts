/**
 * Our TorchScript BlazeFace (models/blazeface/blazeface_back.pt) against the original ONNX model
 * run by OpenCV's DNN module, on the same letterboxed real photos: raw outputs and decoded outputs.
 */
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import type { NativeTensor } from '../binding';
import { BLAZEFACE_ANCHORS, BLAZEFACE_MODEL_PATH, letterboxGeometry, letterboxInput, letterboxResize } from '../lib/faces/blazeface';
import { ASTRONAUT, BLAZEFACE_REF, GRACE_HOPPER, blazefaceOnnx, loadBlazeFace, loadRgb, requireOrSkip } from './faces-helpers';
import { runPythonRaw, skipWithoutPython } from './helpers/python';

const FILE = 'test/faces-blazeface-parity.test.ts';
const haveCv = !skipWithoutPython('cv2', 'numpy'); // python3-opencv
const onnx = haveCv ? blazefaceOnnx() : { path: null, reason: 'no OpenCV' };
const haveConverter = !skipWithoutPython('torch', 'onnx'); // python3-torch, python3-onnx
const haveOnnx = requireOrSkip(onnx.path !== null, `the original ONNX model (${onnx.reason ?? ''})`, FILE);

/** Tolerances, from measured maxima (logits up to ~1300 in magnitude differ by < 1e-3). */
const RAW_ATOL = 3e-3;
const RAW_RTOL = 1e-4;
const SCORE_ATOL = 1e-4;
const GEOM_ATOL = 2e-5; // normalised to the 256 input: 0.005 input pixels

describe.skipIf(!haveOnnx)('BlazeFace TorchScript vs ONNX (OpenCV DNN)', () => {
  let dir: string;
  let input: Float32Array;
  let onnxRaw: Float32Array;
  let onnxDec: Float32Array;
  const B = 3;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-bf-parity-'));
    const astro = await loadRgb(ASTRONAUT);
    const grace = await loadRgb(GRACE_HOPPER);
    // a wide, darker frame: the photo placed off-centre in 1280x480
    const wideBuf = await sharp({ create: { width: 1280, height: 480, channels: 3, background: { r: 40, g: 60, b: 80 } } })
      .composite([{ input: await sharp(GRACE_HOPPER).resize(360, 420).toBuffer(), left: 800, top: 30 }])
      .png()
      .toBuffer();
    const wide = await loadRgb(wideBuf);
    const per = 3 * 256 * 256;
    input = new Float32Array(B * per);
    // the same preprocessing as detectFaces
    const small = await Promise.all([astro, grace, wide].map((im) => letterboxResize(im)));
    small.forEach((im, i) => letterboxInput(im, input, i * per, letterboxGeometry([astro, grace, wide][i].width, [astro, grace, wide][i].height)));
    fs.writeFileSync(path.join(dir, 'in.f32'), input);
    runPythonRaw(BLAZEFACE_REF, ['onnx', onnx.path!, path.join(dir, 'in.f32'), String(B), path.join(dir, 'onnx')]);
    onnxRaw = new Float32Array(fs.readFileSync(path.join(dir, 'onnx.raw.f32')).buffer.slice(0));
    onnxDec = new Float32Array(fs.readFileSync(path.join(dir, 'onnx.dec.f32')).buffer.slice(0));
  });

  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!haveConverter)('scripts/blazeface/convert.sh rebuilds the committed model byte for byte', () => {
    const out = path.join(dir, 'blazeface_back.pt');
    const r = spawnSync('bash', [path.join(__dirname, '..', 'scripts', 'blazeface', 'convert.sh'), out], { encoding: 'utf8', timeout: 180_000 });
    expect(r.status, r.stderr).toBe(0);
    const sha = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
    expect(sha(out)).toBe(sha(BLAZEFACE_MODEL_PATH));
  });

  it('raw outputs (logits, pixel offsets) match the ONNX model', async () => {
    const loaded = await loadBlazeFace({ optimize: false, dtype: 'float32' });
    expect(loaded, 'no way to run TorchScript (lib/model.ts or python torch)').not.toBeNull();
    const { runner } = loaded!;
    try {
      const out = (await runner.run('raw', [{ data: input, shape: [B, 3, 256, 256], dtype: 'float32' }])) as NativeTensor[];
      expect(out.map((t) => t.shape)).toEqual([[B, 512, 1], [B, 384, 1], [B, 512, 16], [B, 384, 16]]);
      let worst = 0;
      for (let b = 0; b < B; b++) {
        for (let a = 0; a < BLAZEFACE_ANCHORS; a++) {
          const big = a >= 512;
          const ai = big ? a - 512 : a;
          const n = big ? 384 : 512;
          const s = (out[big ? 1 : 0].data as Float32Array)[b * n + ai];
          const reg = (out[big ? 3 : 2].data as Float32Array).subarray((b * n + ai) * 16, (b * n + ai) * 16 + 16);
          const ref = onnxRaw.subarray((b * BLAZEFACE_ANCHORS + a) * 17, (b * BLAZEFACE_ANCHORS + a) * 17 + 17);
          const vals = [s, ...reg];
          for (let k = 0; k < 17; k++) {
            const d = Math.abs(vals[k] - ref[k]);
            worst = Math.max(worst, d);
            if (d > RAW_ATOL + RAW_RTOL * Math.abs(ref[k])) throw new Error(`raw mismatch image ${b} anchor ${a} field ${k}: ${vals[k]} vs ${ref[k]}`);
          }
        }
      }
      console.log(`BlazeFace raw parity vs OpenCV/ONNX: max abs diff ${worst.toExponential(2)}`);
    } finally {
      await runner.dispose();
    }
  });

  it.each([false, true])('decoded scores and geometry match a numpy decoding of the ONNX outputs (optimize: %s)', async (optimize) => {
    const loaded = await loadBlazeFace({ optimize, dtype: 'float32' });
    const { runner, via } = loaded!;
    try {
      const out = (await runner.run('forward', [{ data: input, shape: [B, 3, 256, 256], dtype: 'float32' }])) as NativeTensor[];
      expect(out[0].shape).toEqual([B, BLAZEFACE_ANCHORS]);
      expect(out[1].shape).toEqual([B, BLAZEFACE_ANCHORS, 16]);
      const scores = out[0].data as Float32Array;
      const boxes = out[1].data as Float32Array;
      let ws = 0;
      let wg = 0;
      let confident = 0;
      for (let i = 0; i < B * BLAZEFACE_ANCHORS; i++) {
        ws = Math.max(ws, Math.abs(scores[i] - onnxDec[i * 17]));
        if (onnxDec[i * 17] > 0.5) confident++;
        for (let k = 0; k < 16; k++) wg = Math.max(wg, Math.abs(boxes[i * 16 + k] - onnxDec[i * 17 + 1 + k]));
      }
      console.log(`BlazeFace decoded parity (${via}): max |score diff| ${ws.toExponential(2)}, max |geometry diff| ${wg.toExponential(2)} (normalised)`);
      expect(ws).toBeLessThanOrEqual(SCORE_ATOL);
      expect(wg).toBeLessThanOrEqual(GEOM_ATOL);
      // the photos have faces: the comparison covered confident anchors, not only background
      expect(confident).toBeGreaterThanOrEqual(B);
    } finally {
      await runner.dispose();
    }
  });
});
