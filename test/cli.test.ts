/**
 * The built `dfdet` CLI end to end, in child processes, on media made here: real photos (Debian's
 * grace_hopper.jpg and astronaut.png), a blank image, a video made with ffmpeg, broken files; a
 * tiny random model made with `dfdet model init`; a local HTTP server standing in for the hub.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';

import { ARCHS, expectedShapes } from '../lib/detector-model/arch';
import { parseCsv } from '../lib/eval/dataset';
import { cpuFeatures } from '../lib/runtime/cpu';
import { debianPhoto, dfdet, ensureBuilt, ndjson } from './helpers/cli';

interface Row {
  index: number;
  source: string;
  kind: string;
  pFake: number | null;
  label: string | null;
  noFace: boolean;
  faces: unknown[];
  frames?: unknown[];
  error?: { code: string; message: string };
  model: { sourceKind: string };
}

const grace = debianPhoto('grace_hopper.jpg');
const astronaut = debianPhoto('astronaut.png');
const photos = grace !== null && astronaut !== null;

let tmp: string;
let model: string;
let mix: string;
const broken = ['empty.jpg', 'random.mp4', 'truncated.png'];
const good = ['grace.jpg', 'astronaut.png', 'blank.png', 'clip.mp4'];

beforeAll(async () => {
  await ensureBuilt();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-cli-'));
  model = path.join(tmp, 'tiny.pt');
  if (!photos) return;
  mix = path.join(tmp, 'mix');
  fs.mkdirSync(path.join(mix, 'sub'), { recursive: true });
  fs.copyFileSync(grace!, path.join(mix, 'grace.jpg'));
  fs.copyFileSync(astronaut!, path.join(mix, 'sub', 'astronaut.png'));
  await sharp({ create: { width: 320, height: 240, channels: 3, background: '#7f7f7f' } }).png().toFile(path.join(mix, 'blank.png'));
  // A 2 s zoom over the photo (20 frames).
  execFileSync('ffmpeg', [
    '-v', 'error', '-y', '-loop', '1', '-i', grace!, '-t', '2', '-r', '10',
    '-vf', "scale=640:-2,zoompan=z='1+0.003*on':d=1:s=320x400:fps=10,format=yuv420p", '-c:v', 'libx264', path.join(mix, 'sub', 'clip.mp4'),
  ]);
  fs.writeFileSync(path.join(mix, 'empty.jpg'), Buffer.alloc(0));
  let x = 12345;
  const noise = Buffer.alloc(6000);
  for (let i = 0; i < noise.length; i++) noise[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
  fs.writeFileSync(path.join(mix, 'sub', 'random.mp4'), noise);
  fs.writeFileSync(path.join(mix, 'truncated.png'), fs.readFileSync(astronaut!).subarray(0, 4000));
}, 300_000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('dfdet model init / info', () => {
  it('makes a tiny random model and says the weights are random', async () => {
    const r = await dfdet(['model', 'init', '--arch', 'tiny', '--seed', '1', '--head', 'linear', '-o', model, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { parameterCount: number; arch: { width: number }; randomWeights: boolean };
    expect(out.arch.width).toBe(64);
    expect(out.randomWeights).toBe(true);
    expect(r.stderr).toMatch(/RANDOM/);
    expect(fs.statSync(model).size).toBeGreaterThan(out.parameterCount * 4);

    const info = await dfdet(['info', model, '--json']);
    expect(info.code, info.stderr).toBe(0);
    const meta = JSON.parse(info.stdout) as {
      metadata: { arch: { width: number; layers: number; head: string }; input: { size: number; mean: number[] }; labels: string[]; source: { kind: string; seed: number } };
      methods: string[];
      parameterCount: number;
      randomWeights: boolean;
      dtype: string;
    };
    expect(meta.metadata.arch).toMatchObject({ width: 64, layers: 2, head: 'linear' });
    expect(meta.metadata.input.size).toBe(224);
    expect(meta.metadata.labels).toEqual(['real', 'fake']);
    expect(meta.metadata.source).toMatchObject({ kind: 'init', seed: 1 });
    expect(meta.methods).toContain('forward');
    expect(meta.parameterCount).toBe(out.parameterCount);
    expect(meta.randomWeights).toBe(true);
    // info loads as detect does: dtype 'auto' (bf16 on CPUs with native bf16).
    expect(meta.dtype).toBe(cpuFeatures().bf16 ? 'bfloat16' : 'float32');
    expect((await dfdet(['info', model, '--json', '--dtype', 'float32'])).stdout).toMatch(/"dtype": "float32"/);

    const text = await dfdet(['info', model]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/width 64, 2 layers/);
    expect(text.stdout).toMatch(/RANDOM weights/);
  });
});

describe.skipIf(!photos)('dfdet detect', () => {
  it('reports every input of a mixed folder, JSON and CSV agreeing; broken files exit 1', async () => {
    const [j, c] = await Promise.all([
      dfdet(['detect', '--model', model, '--json', '--frames', '4', mix]),
      dfdet(['detect', '--model', model, '--csv', '--frames', '4', '--concurrency', '2', mix]),
    ]);
    expect(j.code, j.stderr).toBe(1);
    expect(c.code, c.stderr).toBe(1);
    // The random-weights warning and the summary go to stderr.
    for (const r of [j, c]) {
      expect(r.stderr).toMatch(/RANDOM weights/);
      expect(r.stderr).toMatch(/7 inputs: 3 scored \(\d+ fake, \d+ real\), 1 no face, 3 failed/);
      expect(r.stderr).toMatch(/img\/s/);
    }

    const rows = ndjson<Row>(j.stdout);
    expect(rows.length).toBe(7);
    expect(rows.map((r) => r.index).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    const by = new Map(rows.map((r) => [path.basename(r.source), r]));
    expect([...by.keys()].sort()).toEqual([...good, ...broken].map((f) => (f === 'grace.jpg' ? f : f)).sort());
    for (const f of broken) {
      const r = by.get(f)!;
      expect(r.error?.code, f).toBe('DECODE_FAILED');
      expect(r.error?.message.length).toBeGreaterThan(5);
      expect(r.pFake).toBeNull();
    }
    const blank = by.get('blank.png')!;
    expect(blank.error).toBeUndefined();
    expect(blank.noFace).toBe(true);
    expect(blank.pFake).toBeNull();
    for (const f of ['grace.jpg', 'astronaut.png']) {
      const r = by.get(f)!;
      expect(r.error, f).toBeUndefined();
      expect(r.faces.length).toBeGreaterThanOrEqual(1);
      expect(r.pFake).toBeGreaterThan(0);
      expect(r.pFake).toBeLessThan(1);
      expect(r.label).toBe(r.pFake! >= 0.5 ? 'fake' : 'real');
      expect(r.model.sourceKind).toBe('init');
    }
    const clip = by.get('clip.mp4')!;
    expect(clip.kind).toBe('video');
    expect(clip.frames?.length).toBe(4);
    expect(clip.pFake).toBeGreaterThan(0);

    // CSV: header + the same 7 inputs with the same numbers.
    const csv = parseCsv(c.stdout).map((r) => r.fields);
    const header = csv[0]!;
    expect(header.slice(0, 5)).toEqual(['index', 'source', 'kind', 'pFake', 'label']);
    const col = (name: string): number => header.indexOf(name);
    expect(csv.length).toBe(8);
    for (const f of csv.slice(1)) {
      const r = by.get(path.basename(f[col('source')]!))!;
      expect(r).toBeDefined();
      expect(Number(f[col('index')])).toBe(r.index);
      expect(f[col('kind')]).toBe(r.kind);
      if (r.pFake === null) expect(f[col('pFake')]).toBe('');
      else expect(Number(f[col('pFake')])).toBeCloseTo(r.pFake, 6);
      expect(f[col('label')]).toBe(r.label ?? '');
      expect(f[col('noFace')]).toBe(String(r.noFace));
      expect(f[col('errorCode')]).toBe(r.error?.code ?? '');
      expect(Number(f[col('faces')])).toBe(r.faces.length);
    }
  });

  it('--fail-on-fake exits 3 only when something is fake; table output; stdin and globs', async () => {
    const img = path.join(mix, 'grace.jpg');
    // --faces none: these runs check the CLI's plumbing, not face detection.
    const [fake, real, table] = await Promise.all([
      dfdet(['detect', '--model', model, '--faces', 'none', '--fail-on-fake', '--threshold', '0', '--json', img]),
      dfdet(['detect', '--model', model, '--faces', 'none', '--fail-on-fake', '--threshold', '1', '--json', img]),
      dfdet(['detect', '--model', model, '--table', img, path.join(mix, 'blank.png')]),
    ]);
    expect(fake.code, fake.stderr).toBe(3);
    expect(ndjson<Row>(fake.stdout)[0]!.label).toBe('fake');
    expect(real.code).toBe(0);
    expect(ndjson<Row>(real.stdout)[0]!.label).toBe('real');
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/#\s+pFake\s+label\s+kind/);
    expect(table.stdout).toMatch(/no face\s+image/);
    expect(table.stdout).toMatch(/2 inputs: 1 scored/);

    // Paths from stdin, and a quoted glob expanded by dfdet.
    const listed = [path.join(mix, 'grace.jpg'), '', path.join(mix, 'sub', 'astronaut.png')].join('\n');
    const [stdin, glob, noMatch] = await Promise.all([
      dfdet(['detect', '--model', model, '--faces', 'none', '--json', '-'], { input: `${listed}\n` }),
      dfdet(['detect', '--model', model, '--faces', 'none', '--json', `${mix}/**/*.png`]),
      dfdet(['detect', '--model', model, '--faces', 'none', '--json', `${mix}/*.gif`]),
    ]);
    // A pattern that matches nothing is a failed input that says so, and a run that scored
    // nothing reports no speed.
    expect(noMatch.code).toBe(1);
    const [unmatched] = ndjson<Row>(noMatch.stdout);
    expect(unmatched!.error).toEqual({ code: 'NOT_FOUND', message: `the pattern ${mix}/*.gif matched no files` });
    expect(noMatch.stderr).toMatch(/1 failed\n.* s, nothing scored/);
    expect(noMatch.stderr).not.toMatch(/img\/s/);
    expect(stdin.code, stdin.stderr).toBe(0);
    expect(ndjson<Row>(stdin.stdout).map((r) => path.basename(r.source)).sort()).toEqual(['astronaut.png', 'grace.jpg']);
    expect(glob.code).toBe(1); // truncated.png is matched too
    expect(ndjson<Row>(glob.stdout).map((r) => path.basename(r.source)).sort()).toEqual(['astronaut.png', 'blank.png', 'truncated.png']);
  });

  it('usage and model errors exit 2 with a message', async () => {
    const img = path.join(mix, 'grace.jpg');
    const cases: string[][] = [
      ['detect', '--model', model, '--threshold', '2', img],
      ['detect', '--model', model, '--frames', 'abc', img],
      ['detect', '--model', model, '--faces', 'maybe', img],
      ['detect', '--model', model],
      ['detect', '--model', model, '--json', '--csv', img],
      ['detect', '--model', model, '--frames', '4', '--fps', '2', img],
      ['detect', '--bogus', img],
      ['detect', '--model', path.join(tmp, 'missing.pt'), img],
      ['detect', '--model', path.join(mix, 'blank.png'), img],
      ['nonsense'],
      ['model', 'init', '--arch', 'huge', '-o', path.join(tmp, 'x.pt')],
      ['info', path.join(tmp, 'missing.pt')],
    ];
    const runs = await Promise.all(cases.map((a) => dfdet(a)));
    runs.forEach((r, i) => {
      expect(r.code, `${cases[i]!.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr.length, cases[i]!.join(' ')).toBeGreaterThan(10);
      expect(r.stdout).toBe('');
    });
    expect(runs[0]!.stderr).toMatch(/--threshold must be a number between 0 and 1/);
    expect(runs[7]!.stderr).toMatch(/NOT_FOUND/);
    const help = await dfdet(['detect', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Exit codes:[\s\S]*130/);
  });

  it('SIGINT stops a run cleanly with exit 130', async () => {
    const clips = Array.from({ length: 6 }, () => path.join(mix, 'sub', 'clip.mp4'));
    let sent = false;
    const r = await dfdet(['detect', '--model', model, '--json', '--frames', '20', '--concurrency', '1', ...clips], {
      onStderr: (chunk, child) => {
        // The warning is printed once the models are loaded and the interrupt handler is installed.
        if (!sent && /RANDOM weights/.test(chunk)) {
          sent = true;
          child.kill('SIGINT');
        }
      },
    });
    expect(sent).toBe(true);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/interrupted/);
    expect(ndjson<Row>(r.stdout).length).toBeLessThan(6);
  });
});

/** Writes a float32 safetensors file (the format's spec: u64 header length, JSON header, data). */
function writeSafetensors(file: string, tensors: Record<string, { shape: number[]; data: Float32Array }>): void {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [k, t] of Object.entries(tensors)) {
    header[k] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json), ...Object.values(tensors).map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))]));
}

describe('dfdet convert', () => {
  it('converts an HF CLIP safetensors file with a head file; the head fixes pFake exactly', async () => {
    // A tiny HF-CLIP-layout vision tower (arbitrary weights) plus text-tower keys that must be ignored.
    let x = 7;
    const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.1);
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [k, shape] of expectedShapes(ARCHS.tiny)) {
      if (k.startsWith('head.')) continue;
      tensors[`vision_model.${k}`] = { shape, data: rand(shape.reduce((a, b) => a * b, 1)) };
    }
    tensors['text_model.embeddings.token_embedding.weight'] = { shape: [4, 8], data: rand(32) };
    tensors.logit_scale = { shape: [], data: Float32Array.of(4.6) };
    const input = path.join(tmp, 'clip-tiny.safetensors');
    writeSafetensors(input, tensors);
    // Head: zero weights, so the logits are the bias whatever the image: pFake = sigmoid(b1 - b0).
    const bias = Float32Array.of(0.3, 1.1);
    const head = path.join(tmp, 'head.safetensors');
    writeSafetensors(head, { 'linear.weight': { shape: [2, 64], data: new Float32Array(128) }, 'linear.bias': { shape: [2], data: bias } });
    const output = path.join(tmp, 'converted.pt');

    const r = await dfdet(['convert', input, '-o', output, '--head', head, '--head-kind', 'linear']);
    expect(r.code, r.stderr).toBe(0);
    const sha = (await import('node:crypto')).createHash('sha256').update(fs.readFileSync(input)).digest('hex');
    expect(r.stdout).toMatch(/\(hf-clip\)/);
    expect(r.stdout).toMatch(/width 64, 2 layers, 4 heads/);
    expect(r.stdout).toMatch(/head:\s+linear \(weights from .*head\.safetensors\)/);
    expect(r.stdout).toContain(`sha256 ${sha}`);
    expect(r.stdout).toMatch(/2 input tensors not used/);
    expect(r.stdout).toContain(output);

    const info = JSON.parse((await dfdet(['info', output, '--json'])).stdout) as { metadata: { source: { kind: string; sha256: string } }; randomWeights: boolean };
    expect(info.metadata.source).toMatchObject({ kind: 'hf-clip', sha256: sha });
    expect(info.randomWeights).toBe(false);

    const img = path.join(tmp, 'plain.png');
    await sharp({ create: { width: 64, height: 48, channels: 3, background: '#406080' } }).png().toFile(img);
    const d = await dfdet(['detect', '--model', output, '--faces', 'none', '--json', img]);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stderr).not.toMatch(/RANDOM/);
    expect(ndjson<Row>(d.stdout)[0]!.pFake).toBeCloseTo(1 / (1 + Math.exp(bias[0]! - bias[1]!)), 6);

    // A head of the wrong width is refused, naming the tensor.
    const bad = path.join(tmp, 'bad-head.safetensors');
    writeSafetensors(bad, { 'linear.weight': { shape: [2, 32], data: new Float32Array(64) }, 'linear.bias': { shape: [2], data: bias } });
    const e = await dfdet(['convert', input, '-o', path.join(tmp, 'bad.pt'), '--head', bad]);
    expect(e.code).toBe(2);
    expect(e.stderr).toMatch(/BAD_WEIGHTS.*linear\.weight/);
  });
});

describe('dfdet doctor', () => {
  it('--json parses and its exit code follows its problems', async () => {
    const cache = fs.mkdtempSync(path.join(tmp, 'cache-'));
    const r = await dfdet(['doctor', '--json', '--cache-dir', cache]);
    const rep = JSON.parse(r.stdout) as {
      ok: boolean;
      problems: { what: string; fix: string }[];
      torch: { version: string; flavour: string; blas: string } | null;
      ffmpeg: { version: string | null };
      sharp: { version: string | null; libvips: string | null };
      node: { version: string };
      cache: { dir: string; models: unknown[] };
    };
    expect(r.code).toBe(rep.ok ? 0 : 1);
    expect(rep.problems.length === 0).toBe(rep.ok);
    expect(rep.torch?.version).toMatch(/^\d+\.\d+/);
    expect(rep.torch?.flavour).toMatch(/^(CPU|CUDA)/);
    expect(rep.ffmpeg.version).toBeTruthy();
    expect(rep.sharp.version).toBe((await import('sharp')).default.versions.sharp);
    expect(rep.node.version).toBe(process.version);
    expect(rep.cache).toEqual({ dir: cache, models: [] });
    for (const p of rep.problems) expect(p.fix.length).toBeGreaterThan(0);
    const text = await dfdet(['doctor', '--cache-dir', cache]);
    expect(text.code).toBe(r.code);
    expect(text.stdout).toMatch(/libtorch:\s+\d/);
  });
});

describe('dfdet pull', () => {
  let server: http.Server;
  let base: string;
  const requests: string[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      requests.push(req.url ?? '');
      // The hub's layout: /<owner>/<repo>/resolve/main/<file>.
      if (req.url === '/yermandy/deepfake-detection/resolve/main/model.torchscript' && fs.existsSync(model)) {
        const data = fs.readFileSync(model);
        res.writeHead(200, { 'content-length': data.length });
        res.end(data);
        return;
      }
      res.writeHead(404);
      res.end('Entry not found');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('downloads from a stand-in hub into the cache, lists it, and detect uses it by name', async () => {
    const cache = fs.mkdtempSync(path.join(tmp, 'cache-'));
    const name = 'yermandy/deepfake-detection:torchscript';
    const before = await dfdet(['pull', '--list', '--json', '--cache-dir', cache]);
    expect(before.code).toBe(0);
    const listed = JSON.parse(before.stdout) as { name: string; cached: string; licence: string; files: unknown[] }[];
    expect(listed.find((m) => m.name === name)?.cached).toBe('no');

    const r = await dfdet(['pull', name, '--cache-dir', cache, '--json'], { env: { DFDET_HUB_URL: base } });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { converted: string; downloaded: string[] };
    expect(out.downloaded).toEqual(['model.torchscript']);
    expect(fs.readFileSync(out.converted).equals(fs.readFileSync(model))).toBe(true);
    expect(requests).toContain('/yermandy/deepfake-detection/resolve/main/model.torchscript');

    // Again with --base-url: nothing downloaded.
    const again = await dfdet(['pull', name, '--cache-dir', cache, '--base-url', base]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/already cached/);

    const after = await dfdet(['pull', '--list', '--cache-dir', cache]);
    expect(after.stdout).toMatch(/yermandy\/deepfake-detection:torchscript\s.*\syes/);

    const info = await dfdet(['info', name, '--cache-dir', cache, '--json']);
    expect(info.code, info.stderr).toBe(0);
    expect((JSON.parse(info.stdout) as { name: string }).name).toBe(name);

    // Unknown names and hub errors.
    const unknown = await dfdet(['pull', 'nobody/nothing', '--cache-dir', cache, '--base-url', base]);
    expect(unknown.code).toBe(2);
    const missing = await dfdet(['pull', 'yermandy/GenD_CLIP_L_14', '--cache-dir', cache, '--base-url', base]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/DOWNLOAD_FAILED/);

    if (photos) {
      const d = await dfdet(['detect', '--model', name, '--cache-dir', cache, '--json', path.join(mix, 'grace.jpg')]);
      expect(d.code, d.stderr).toBe(0);
      expect(ndjson<Row>(d.stdout)[0]!.pFake).toBeGreaterThan(0);
    }
  });
});
