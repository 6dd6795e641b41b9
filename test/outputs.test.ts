/**
 * Where dfdet writes (issue 15): writers never rename over a device, FIFO, socket or directory (as
 * root, `-o /dev/full` replaced the device), and output that cannot be written (a full disk) ends
 * the CLI with one line and exit 1, never a stack trace. Real files in a temp folder; the only /dev
 * file touched is /dev/full as a redirect target, and /dev/null only through a symlink that is read.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { convertModel } from '../lib/convert';
import { initModel } from '../lib/detector-model/init';
import { evaluate } from '../lib/eval/evaluate';
import { writeReport } from '../lib/eval/report';
import { encodeSafetensors } from '../lib/formats/safetensors';
import { buildModule, tensor } from '../lib/model';
import { native } from '../lib/native';
import { checkOutputPath } from '../lib/output-path';
import { CLI, dfdet, ensureBuilt } from './helpers/cli';
import { expectDfdetError } from './helpers/errors';

let dir: string;
let fifo: string;
let devLink: string;
let sub: string;
let tiny: string;
const spec = { className: 'Out', source: 'def forward(self, x):\n    return x * self.w\n', parameters: { w: tensor(new Float32Array([2]), [1]) } };

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-outputs-'));
  fifo = path.join(dir, 'fifo.pt');
  execFileSync('mkfifo', [fifo]);
  devLink = path.join(dir, 'null.pt');
  fs.symlinkSync('/dev/null', devLink);
  sub = path.join(dir, 'folder.pt');
  fs.mkdirSync(sub);
  tiny = path.join(dir, 'tiny.pt');
  await initModel({ arch: 'tiny', seed: 1, output: tiny });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The three special files are still what they were. */
function untouched(): void {
  expect(fs.lstatSync(fifo).isFIFO()).toBe(true);
  expect(fs.lstatSync(devLink).isSymbolicLink()).toBe(true);
  expect(fs.readlinkSync(devLink)).toBe('/dev/null');
  expect(fs.statSync(devLink).isCharacterDevice()).toBe(true);
  expect(fs.lstatSync(sub).isDirectory()).toBe(true);
}

describe('output paths', () => {
  it('checkOutputPath refuses FIFOs, symlinks to devices and folders; accepts new paths, files and links to files', async () => {
    await expectDfdetError(checkOutputPath(fifo), 'BAD_INPUT', /fifo\.pt is a FIFO/);
    await expectDfdetError(checkOutputPath(devLink, '--output'), 'BAD_INPUT', /for --output but .*null\.pt is a symlink to \/dev\/null, a character device/);
    await expectDfdetError(checkOutputPath(sub), 'BAD_INPUT', /is a directory/);
    await expectDfdetError(checkOutputPath(''), 'BAD_INPUT', /Expected a file path for output/);
    const file = path.join(dir, 'regular.pt');
    fs.writeFileSync(file, 'old');
    const link = path.join(dir, 'link-to-regular.pt');
    fs.symlinkSync(file, link);
    const dangling = path.join(dir, 'dangling.pt');
    fs.symlinkSync(path.join(dir, 'nowhere'), dangling);
    for (const ok of [path.join(dir, 'new.pt'), file, link, dangling]) await checkOutputPath(ok);
    untouched();
  });

  it('model init, convert and buildModule refuse them with BAD_INPUT and leave them alone', async () => {
    const input = path.join(dir, 'weights.safetensors');
    fs.writeFileSync(input, encodeSafetensors({ w: { dtype: 'float32', shape: [1], data: new Float32Array([1]) } }));
    for (const out of [fifo, devLink, sub]) {
      await expectDfdetError(initModel({ arch: 'tiny', output: out }), 'BAD_INPUT', /Expected a regular file or a new path for output/);
      await expectDfdetError(convertModel(input, out), 'BAD_INPUT', /Expected a regular file or a new path for output/);
      await expectDfdetError(buildModule(spec, out), 'BAD_INPUT', /for outPath/);
    }
    untouched();
  });

  it('the addon itself refuses to save over a FIFO or a symlink to a device (callers that skip the TS check)', async () => {
    for (const out of [fifo, devLink]) {
      let err: unknown;
      await native().buildModule(spec, out).catch((e: unknown) => (err = e));
      expect(err).toMatchObject({ code: 'BAD_INPUT', message: /is a device, FIFO, socket or directory/ });
    }
    untouched();
  });

  it('a regular file, or a symlink to one, is still replaced', async () => {
    const file = path.join(dir, 'replace.pt');
    fs.writeFileSync(file, 'old');
    await buildModule(spec, file);
    expect(fs.readFileSync(file).subarray(0, 2).toString('latin1')).toBe('PK');
  });

  it('eval reports refuse a report file that is a symlink to a device', async () => {
    const out = path.join(dir, 'report');
    fs.mkdirSync(out);
    fs.symlinkSync('/dev/null', path.join(out, 'predictions.csv'));
    const preds = ([0, 1, 0, 1] as const).map((label, i) => ({ path: `/d/${i}.png`, dataset: 'd', source: label ? 'fake' : 'real', video: `v${i}`, label, pFake: 0.2 + 0.5 * label }));
    await expectDfdetError(writeReport(evaluate(preds), out, { png: false, model: { name: 'tiny.pt', sourceKind: 'init', sourceSha256: '' } }), 'BAD_INPUT', /predictions\.csv is a symlink to \/dev\/null/);
    expect(fs.readlinkSync(path.join(out, 'predictions.csv'))).toBe('/dev/null');
  });

  it('`dfdet model init -o` and `dfdet convert -o` exit 2 on them with one line', async () => {
    await ensureBuilt();
    for (const args of [
      ['model', 'init', '--arch', 'tiny', '-o', devLink],
      ['model', 'init', '--arch', 'tiny', '-o', fifo],
      ['convert', tiny, '-o', devLink],
    ]) {
      const r = await dfdet(args);
      expect(r.signal).toBeNull();
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/BAD_INPUT|Expected a regular file or a new path/);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
    untouched();
  });
});

/** Runs the built CLI with stdout and/or stderr redirected to /dev/full; the other streams are captured. */
function toFull(args: string[], which: 'stdout' | 'stderr' | 'both'): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  const full = fs.openSync('/dev/full', 'w');
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ['ignore', which === 'stderr' ? 'pipe' : full, which === 'stdout' ? 'pipe' : full],
  });
  fs.closeSync(full);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

describe.skipIf(!fs.existsSync('/dev/full'))('a full disk', () => {
  it('stdout on a full disk: one line with ENOSPC and exit 1 (table and --json)', async () => {
    await ensureBuilt();
    for (const args of [['info', tiny], ['info', tiny, '--json']]) {
      const r = await toFull(args, 'stdout');
      expect(r.signal).toBeNull();
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^dfdet: cannot write the output to stdout: ENOSPC/)]);
    }
  });

  it('`dfdet detect ... --json > /dev/full`: one line with ENOSPC and exit 1', async () => {
    // A real (synthetic) photo: the run must get as far as writing a result row.
    const img = path.join(dir, 'photo.png');
    const px = Buffer.alloc(64 * 64 * 3);
    for (let i = 0; i < px.length; i++) px[i] = (i * 37) % 251;
    await sharp(px, { raw: { width: 64, height: 64, channels: 3 } }).png().toFile(img);
    for (const format of ['--json', '--table']) {
      const r = await toFull(['detect', '--model', tiny, '--faces', 'none', format, img], 'stdout');
      expect(r.signal).toBeNull();
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^dfdet: cannot write the output to stdout: ENOSPC/m);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
  });

  it('a failing stderr does not crash the run; both failing still exits 1 by code, not a signal', async () => {
    const out = path.join(dir, 'stderr-full.pt');
    const r = await toFull(['model', 'init', '--arch', 'tiny', '-o', out], 'stderr');
    expect(r.signal).toBeNull();
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/wrote .*stderr-full\.pt/);
    const both = await toFull(['info', tiny], 'both');
    expect(both.signal).toBeNull();
    expect(both.code).toBe(1);
  });
});
