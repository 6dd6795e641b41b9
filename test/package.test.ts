/**
 * The release as users get it: `scripts/package.js` packs the tarballs (main package + the
 * prebuilt flavour of this machine) into a temp folder; fresh projects install them with npm
 * from the local cache (`--prefer-offline`), on a PATH that holds node, npm, ffmpeg and basic
 * tools only: no compiler, no cmake, no make. Then the installed CLI and both module systems run.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';

import { FLAVOURS, flavoursForHost } from '../lib/runtime/flavours';
import { debianPhoto, ROOT } from './helpers/cli';

const ADDON = path.join(ROOT, 'build', 'Release', 'dfdet.node');
const PREBUILT = flavoursForHost(FLAVOURS.filter((f) => f.published))[0];
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const TOOLS = ['node', 'npm', 'npx', 'sh', 'bash', 'env', 'ffmpeg', 'ffprobe', 'cat', 'ls', 'rm', 'mkdir', 'cp', 'mv', 'tar', 'gzip', 'grep', 'sed', 'uname'];
const COMPILERS = ['cc', 'c++', 'gcc', 'g++', 'clang', 'clang++', 'cmake', 'make', 'ninja', 'ld'];

let tmp: string;
let release: string;
let bin: string;

function which(name: string, pathEnv = process.env.PATH ?? ''): string | null {
  for (const dir of pathEnv.split(path.delimiter).filter(Boolean)) {
    const p = path.join(dir, name);
    if (fs.existsSync(p)) return p;
  }
  return null;
}

/** The environment of a user's shell on that PATH (no npm_* from the test runner, no dfdet overrides). */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(npm_|DFDET_|CXX$|CC$|LIBTORCH$|Torch_DIR$)/i.test(k)));
  return { ...env, PATH: bin, ...extra };
}

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs a command without blocking the test worker (vitest's RPC needs the event loop). */
function run(cmd: string, args: string[], cwd: string, env = userEnv(), timeout = 300_000): Promise<Ran> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, timeout });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr, seconds: (performance.now() - t0) / 1000 }));
  });
}

function freshProject(name: string): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `p-${name}`, version: '1.0.0', private: true }));
  return dir;
}

function npmInstall(dir: string, tarballs: string[], env = userEnv()): Promise<Ran> {
  return run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', ...tarballs], dir, env);
}

/** npm pack's name for a scoped package: @dfdet/x -> dfdet-x-<version>.tgz. */
function prebuiltTarball(): string {
  return `${PREBUILT!.package.slice(1).replace('/', '-')}-${VERSION}.tgz`;
}

function tarList(tgz: string): string[] {
  return spawnSync('tar', ['-tzf', tgz], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
}

function tarFile(tgz: string, file: string): string {
  return spawnSync('tar', ['-xzOf', tgz, file], { encoding: 'utf8', maxBuffer: 1 << 26 }).stdout;
}

async function pack(out: string): Promise<string[]> {
  const r = await run(process.execPath, [path.join(ROOT, 'scripts', 'package.js'), '--worktree', '--addon', ADDON, '--out', out], ROOT, process.env);
  expect(r.status, r.stderr + r.stdout).toBe(0);
  return fs.readFileSync(path.join(out, 'SHA256SUMS'), 'utf8').trim().split('\n');
}

beforeAll(() => {
  if (!fs.existsSync(ADDON)) throw new Error(`${ADDON} is missing: npm run build:native first`);
  if (!PREBUILT) throw new Error(`no published flavour fits ${process.platform}-${process.arch}: this test needs one`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-package-test-'));
  bin = path.join(tmp, 'bin');
  fs.mkdirSync(bin);
  for (const t of TOOLS) {
    const p = which(t);
    if (p) fs.symlinkSync(p, path.join(bin, t));
  }
  release = path.join(tmp, 'release');
}, 300_000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('npm run package', () => {
  let sums: string[];
  beforeAll(async () => {
    sums = await pack(release);
  }, 300_000);

  it('writes the main package and the prebuilt package, reproducibly', async () => {
    expect(sums.map((l) => l.split('  ')[1]).sort()).toEqual([prebuiltTarball(), `dfdet-${VERSION}.tgz`].sort());
    for (const l of sums) {
      const [hash, file] = l.split('  ');
      expect(crypto.createHash('sha256').update(fs.readFileSync(path.join(release, file!))).digest('hex')).toBe(hash);
    }
    expect(await pack(path.join(tmp, 'release-again'))).toEqual(sums);
  }, 300_000);

  it('ships what users run and nothing else', () => {
    const main = path.join(release, `dfdet-${VERSION}.tgz`);
    const files = tarList(main);
    expect(files).toContain('package/LICENSE');
    expect(files).toContain('package/esm/index.mjs');
    expect(files).toContain('package/dist/lib/index.d.ts');
    expect(files).toContain('package/scripts/install.js');
    expect(files.filter((f) => /\.map$|\/test\/|\/bench\/|\.tsbuildinfo$|^package\/lib\/|\.node$|^package\/build\//.test(f))).toEqual([]);
    expect(files.filter((f) => f.startsWith('package/scripts/')).sort()).toEqual(['package/scripts/install.js', 'package/scripts/setup-system.sh']);
    expect(tarFile(main, 'package/dist/lib/index.js')).not.toContain('sourceMappingURL');
    const pkg = JSON.parse(tarFile(main, 'package/package.json')) as Record<string, Record<string, unknown>>;
    expect(pkg.scripts).toEqual({ install: 'node scripts/install.js' });
    expect(pkg.optionalDependencies).toEqual({ [PREBUILT!.package]: VERSION });
    for (const build of ['cmake-js', 'node-addon-api', 'node-api-headers']) expect(pkg.dependencies).not.toHaveProperty(build);

    const prebuilt = path.join(release, prebuiltTarball());
    expect(tarList(prebuilt).sort()).toEqual(['package/LICENSE', 'package/README.md', 'package/dfdet.node', 'package/package.json']);
    const ppkg = JSON.parse(tarFile(prebuilt, 'package/package.json')) as Record<string, unknown>;
    expect(ppkg).toMatchObject({ name: PREBUILT!.package, version: VERSION, os: [PREBUILT!.os], cpu: [PREBUILT!.cpu], license: 'MIT' });
    if (PREBUILT!.libc) expect(ppkg.libc).toEqual([PREBUILT!.libc]);
  });
});

describe('installing the release on a machine without compilers', () => {
  let tarballs: string[];
  beforeAll(async () => {
    if (!fs.existsSync(path.join(release, 'SHA256SUMS'))) await pack(release);
    tarballs = fs.readdirSync(release).filter((f) => f.endsWith('.tgz')).map((f) => path.join(release, f));
  }, 300_000);

  it('has no compiler, cmake or make on the PATH it installs with', () => {
    for (const c of COMPILERS) expect(which(c, bin), c).toBeNull();
    for (const t of ['node', 'npm', 'ffmpeg']) expect(which(t, bin), t).not.toBeNull();
  });

  it('with the prebuilt: installs without building, and the CLI, require and import all work', async () => {
    const dir = freshProject('with-prebuilt');
    const install = await npmInstall(dir, tarballs);
    expect(install.status, install.stderr + install.stdout).toBe(0);
    console.log(`prebuilt install (npm install --prefer-offline of ${tarballs.length} tarballs + deps from the cache): ${install.seconds.toFixed(1)} s`);
    expect(install.stdout).toContain(`dfdet: using ${PREBUILT!.package}`);
    expect(install.stdout + install.stderr).not.toMatch(/cmake-js|building it from source/);
    expect(fs.existsSync(path.join(dir, 'node_modules', 'dfdet', 'build'))).toBe(false);

    const doctor = await run('npx', ['dfdet', 'doctor', '--json', '--cache-dir', path.join(tmp, 'cache')], dir);
    expect(doctor.status, doctor.stdout + doctor.stderr).toBe(0);
    const report = JSON.parse(doctor.stdout) as { ok: boolean; addon: { loaded: string; attempts: { name: string; outcome: string; reason: string | null }[] } };
    expect(report.ok).toBe(true);
    expect(report.addon.loaded).toBe(PREBUILT!.package);
    expect(report.addon.attempts.find((a) => a.name === 'source build')).toMatchObject({ outcome: 'skipped', reason: expect.stringContaining('build/Release') });

    const model = path.join(dir, 'tiny.pt');
    const init = await run('npx', ['dfdet', 'model', 'init', '--arch', 'tiny', '-o', model], dir);
    expect(init.status, init.stderr).toBe(0);
    const photo = debianPhoto('grace_hopper.jpg');
    const image = photo ?? path.join(dir, 'made.png');
    if (!photo) await sharp({ create: { width: 160, height: 120, channels: 3, background: { r: 180, g: 120, b: 60 } } }).png().toFile(image);
    const detect = await run('npx', ['dfdet', 'detect', '--json', '--model', model, ...(photo ? [] : ['--faces', 'none']), image], dir);
    expect(detect.status, detect.stderr).toBe(0);
    const row = JSON.parse(detect.stdout.trim().split('\n')[0]!) as { pFake: number; faces: unknown[] };
    expect(row.pFake).toBeGreaterThanOrEqual(0);
    expect(row.pFake).toBeLessThanOrEqual(1);
    expect(row.faces.length).toBeGreaterThan(0);

    fs.writeFileSync(path.join(dir, 'cjs.cjs'), "const d = require('dfdet'); console.log(typeof d.Detector, typeof d.runtimeInfo().torchVersion);\n");
    const cjs = await run('node', ['cjs.cjs'], dir);
    expect(cjs.stdout.trim(), cjs.stderr).toBe('function string');
    fs.writeFileSync(
      path.join(dir, 'esm.mjs'),
      [
        "import { Detector, runtimeInfo } from 'dfdet';",
        "import * as ns from 'dfdet';",
        "import { createRequire } from 'node:module';",
        "const cjs = createRequire(import.meta.url)('dfdet');",
        'const missing = Object.keys(cjs).filter((k) => !(k in ns));',
        "console.log(typeof Detector, Detector === cjs.Detector, missing.join(',') || 'none', typeof runtimeInfo().torchVersion);",
      ].join('\n'),
    );
    const esm = await run('node', ['esm.mjs'], dir);
    expect(esm.stdout.trim(), esm.stderr).toBe('function true none string');
    const deep = await run('node', ['-e', "require('dfdet/dist/lib/native')"], dir);
    expect(deep.stderr).toContain('ERR_PACKAGE_PATH_NOT_EXPORTED');

    // Types resolve from both module systems (TypeScript's node16 resolution follows `exports`).
    fs.writeFileSync(path.join(dir, 'a.mts'), "import { Detector, type DetectResult } from 'dfdet';\nexport const f = (r: DetectResult): number | null => r.pFake;\nexport const c: typeof Detector.create = Detector.create;\n");
    fs.writeFileSync(path.join(dir, 'b.cts'), "import dfdet = require('dfdet');\nexport const f = (r: dfdet.DetectResult): number | null => r.pFake;\nexport const c = dfdet.Detector.create;\n");
    fs.writeFileSync(path.join(dir, 'c.mts'), "import { Detector } from 'dfdet';\nexport const wrong: string = Detector;\n");
    // One tsc run: a.mts and b.cts must check clean, c.mts's misuse must be caught (the types are real).
    const tsconfig = { compilerOptions: { module: 'node16', moduleResolution: 'node16', strict: true, noEmit: true, types: ['node'], typeRoots: [path.join(ROOT, 'node_modules', '@types')] }, files: ['a.mts', 'b.cts', 'c.mts'] };
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));
    const tsc = await run('node', [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], dir);
    expect(tsc.stdout.trim().split('\n').filter((l) => /error TS/.test(l))).toEqual([expect.stringMatching(/^c\.mts\(2,14\): error TS2322/)]);
  }, 600_000);

  it('with the prebuilt and install scripts skipped (npm --ignore-scripts, allowScripts): the addon still loads', async () => {
    const dir = freshProject('no-scripts');
    const install = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', ...tarballs], dir);
    expect(install.status, install.stderr).toBe(0);
    const r = await run('node', ['-e', "const d = require('dfdet'); console.log(require('dfdet/package.json').name, d.runtimeInfo().torchVersion)"], dir);
    expect(r.stdout.trim(), r.stderr).toMatch(/^dfdet \d+\.\d+/);
  }, 300_000);

  it('without the prebuilt: the install fails loudly with the platform, the libtorch found and the fix', async () => {
    const dir = freshProject('main-only');
    const main = tarballs.find((t) => path.basename(t) === `dfdet-${VERSION}.tgz`)!;
    const install = await npmInstall(dir, [main]);
    expect(install.status).not.toBe(0);
    const out = install.stdout + install.stderr;
    expect(out).toContain(`no native addon loads on ${process.platform}-${process.arch}`);
    expect(out).toMatch(/libtorch: (system libtorch \d+\.\d+|no libtorch found)/);
    expect(out).toContain(`fix: npm install ${PREBUILT!.package}@${VERSION}`);
    expect(out).toMatch(/build from source: not possible here: missing cmake, a C\+\+17 compiler/);

    // DFDET_SKIP_BUILD=1 lets it pass; first use then says the same.
    const skipped = await npmInstall(dir, [main], userEnv({ DFDET_SKIP_BUILD: '1' }));
    expect(skipped.status, skipped.stderr).toBe(0);
    expect(skipped.stdout).toContain('DFDET_SKIP_BUILD set');
    const doctor = await run('npx', ['dfdet', 'doctor', '--cache-dir', path.join(tmp, 'cache')], dir);
    expect(doctor.status).toBe(1);
    expect(doctor.stdout).toContain(`${PREBUILT!.package}: skipped (package not installed)`);
    expect(doctor.stdout).toContain(`fix: npm install ${PREBUILT!.package}@${VERSION}`);
  }, 600_000);
});
