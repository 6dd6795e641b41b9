#!/usr/bin/env node
// `npm run package`: writes every tarball a release publishes into release/ (emptied first): the
// main package `dfdet-<v>.tgz` and one `@dfdet/<flavour>` package per published prebuilt flavour
// (lib/runtime/flavours.ts), plus SHA256SUMS. The packed package.json lists those flavours as
// optionalDependencies and keeps only the `install` script (the development scripts do not ship).
//
// From a clean tree: the sources are `git archive HEAD` (the committed tree, whatever the working
// tree holds) unpacked into a temporary folder; the TypeScript is compiled there afresh without
// source maps and the addon is built there from scratch. npm pack gives every file the same
// timestamp, so the same commit and the same compiler give byte-identical tarballs.
//
//   node scripts/package.js [--worktree] [--addon <file>] [--prebuilt-dir <dir>] [--out <dir>]
//     --worktree        pack the working tree (tracked + untracked, not ignored files) instead of HEAD
//     --addon <file>    use this built addon for the host flavour instead of building it
//     --prebuilt-dir D  flavours built on other machines: D/<flavour>/dfdet.node
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { prebuild } = require('./prebuild');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? path.resolve(args[i + 1]) : undefined;
};
const out = opt('--out') ?? path.join(root, 'release');

function git(...a) {
  return execFileSync('git', a, { cwd: root, encoding: 'buffer', maxBuffer: 1 << 30 });
}

function stageSources(stage) {
  if (flag('--worktree')) {
    const files = git('ls-files', '-z', '--cached', '--others', '--exclude-standard').toString().split('\0').filter(Boolean);
    for (const f of new Set(files)) {
      const src = path.join(root, f);
      if (!fs.existsSync(src)) continue; // deleted in the working tree
      fs.mkdirSync(path.dirname(path.join(stage, f)), { recursive: true });
      fs.copyFileSync(src, path.join(stage, f));
      fs.chmodSync(path.join(stage, f), fs.statSync(src).mode & 0o777);
    }
    return 'the working tree';
  }
  const dirty = git('status', '--porcelain', '--untracked-files=no').toString().trim();
  if (dirty) console.warn('package: the working tree has uncommitted changes; packing HEAD without them (--worktree packs them)');
  const tar = git('archive', '--format=tar', 'HEAD');
  const r = spawnSync('tar', ['-x', '-C', stage], { input: tar });
  if (r.status !== 0) throw new Error(`tar -x failed: ${r.stderr}`);
  return `commit ${git('rev-parse', '--short', 'HEAD').toString().trim()}`;
}

function pack(dir) {
  const r = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', out], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm pack in ${dir} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout)[0].filename;
}

function flavourPackage(stage, flavour, binary, version, license) {
  const dir = path.join(stage, 'release-packages', flavour.id);
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(binary, path.join(dir, 'dfdet.node'));
  fs.copyFileSync(license, path.join(dir, 'LICENSE'));
  const torch = `${flavour.layout === 'system' ? 'the system ' : ''}libtorch ${flavour.torch} (${flavour.device === 'cuda' ? 'CUDA' : 'CPU'})`;
  const pkg = {
    name: flavour.package,
    version,
    description: `dfdet's prebuilt native addon for ${flavour.os}-${flavour.cpu}${flavour.libc ? ` (${flavour.libc})` : ''} with ${torch}`,
    license: 'MIT',
    os: [flavour.os],
    cpu: [flavour.cpu],
    ...(flavour.libc ? { libc: [flavour.libc] } : {}),
    engines: { node: '>=20' },
    files: ['dfdet.node'],
    exports: { './dfdet.node': './dfdet.node', './package.json': './package.json' },
    preferUnplugged: true,
    dfdet: { flavour: flavour.id, torch: flavour.torch, device: flavour.device, layout: flavour.layout },
  };
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  const needs = flavour.layout === 'system'
    ? `the system libtorch ${flavour.torch} shared libraries (Debian/Ubuntu: \`sudo bash node_modules/dfdet/scripts/setup-system.sh --runtime\`)`
    : `libtorch ${flavour.torch}: set LIBTORCH to its folder and put its lib/ on LD_LIBRARY_PATH`;
  fs.writeFileSync(path.join(dir, 'README.md'), `# ${flavour.package}\n\nThe native addon of [dfdet](https://www.npmjs.com/package/dfdet) for ${flavour.id}, installed by\ndfdet as an optional dependency where it fits. Do not depend on it directly.\n\nRun-time needs: ${needs}.\n`);
  return dir;
}

function main() {
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-package-'));
  try {
    const from = stageSources(stage);
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(stage, 'node_modules'), 'dir');
    const license = path.join(stage, 'LICENSE');
    if (!fs.existsSync(license)) throw new Error('LICENSE is missing');
    const pkg = JSON.parse(fs.readFileSync(path.join(stage, 'package.json'), 'utf8'));

    console.log(`package: compiling the TypeScript of ${from}`);
    execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(stage, 'tsconfig.build.json'), '--sourceMap', 'false'], { stdio: 'inherit' });
    fs.copyFileSync(path.join(stage, 'binding.d.ts'), path.join(stage, 'dist', 'binding.d.ts'));
    const flavours = require(path.join(stage, 'dist', 'lib', 'runtime', 'flavours.js'));
    const published = flavours.FLAVOURS.filter((f) => f.published);

    // The prebuilt packages become optionalDependencies here, from the flavour table, pinned to
    // this version. (Not in the repository's package.json: an unpublished package there breaks
    // `npm ci`, whose lock file cannot hold it.)
    if (pkg.optionalDependencies) throw new Error('package.json must not list optionalDependencies: package.js adds the prebuilt flavours');
    const released = { ...pkg, scripts: { install: pkg.scripts.install }, optionalDependencies: Object.fromEntries(published.map((f) => [f.package, pkg.version])) };
    fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(released, null, 2)}\n`);

    const binaries = new Map();
    const prebuiltDir = opt('--prebuilt-dir');
    for (const f of published) {
      const p = prebuiltDir && path.join(prebuiltDir, f.id, 'dfdet.node');
      if (p && fs.existsSync(p)) binaries.set(f.id, p);
    }
    if (flavours.flavoursForHost(published).some((f) => !binaries.has(f.id))) {
      const addon = opt('--addon');
      console.log(`package: ${addon ? `stripping ${addon}` : 'building the addon from scratch (cmake-js rebuild)'}`);
      const r = prebuild({ root: stage, addon, outDir: path.join(stage, 'prebuilds'), flavours });
      binaries.set(r.flavour.id, r.file);
      console.log(`package: ${r.flavour.id}: links libtorch ${r.probe.version} (${r.probe.libtorch}), RUNPATH ${r.probe.runpath ?? 'none'}`);
    }
    const missing = published.filter((f) => !binaries.has(f.id)).map((f) => f.id);
    if (missing.length) throw new Error(`no binary for the published flavour(s) ${missing.join(', ')}: build each on its platform (npm run prebuildify) and pass --prebuilt-dir`);

    fs.rmSync(out, { recursive: true, force: true });
    fs.mkdirSync(out, { recursive: true });
    const tarballs = [pack(stage)];
    for (const f of published) tarballs.push(pack(flavourPackage(stage, f, binaries.get(f.id), pkg.version, license)));
    const sums = tarballs.map((t) => `${crypto.createHash('sha256').update(fs.readFileSync(path.join(out, t))).digest('hex')}  ${t}`);
    fs.writeFileSync(path.join(out, 'SHA256SUMS'), `${sums.join('\n')}\n`);
    for (const t of tarballs) console.log(`package: ${path.relative(process.cwd(), path.join(out, t))} (${fs.statSync(path.join(out, t)).size} bytes)`);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

try {
  main();
} catch (e) {
  console.error(`package: ${e.message}`);
  process.exit(1);
}
