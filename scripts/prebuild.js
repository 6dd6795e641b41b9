#!/usr/bin/env node
// Makes the prebuilt addon of this machine's flavour: builds it with cmake-js (or takes a given
// binary), strips it, loads it in a separate process to learn which libtorch it links (version,
// CUDA, system or upstream layout), and writes prebuilds/<flavour>/dfdet.node, where
// <flavour> is an id from lib/runtime/flavours.ts (e.g. linux-x64-torch1.13-cpu).
// `npm run package` turns these into the @dfdet/<flavour> packages.
//
//   node scripts/prebuild.js [--addon build/Release/dfdet.node] [--flavour <id>] [--out prebuilds]
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

function run(cmd, args, cwd, env = process.env) {
  const r = spawnSync(cmd, args, { cwd, stdio: 'inherit', env });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
}

// Loads the binary in a fresh process: what libtorch did it bring in?
function probe(file) {
  const code = `
    const b = require(${JSON.stringify(file)});
    const maps = require('fs').readFileSync('/proc/self/maps', 'utf8');
    const torch = /\\s(\\/\\S*\\/libtorch_cpu\\.so[.\\d]*)$/m.exec(maps);
    process.stdout.write(JSON.stringify({ version: b.runtimeInfo().torchVersion, libtorch: torch && torch[1], cuda: /libtorch_cuda\\.so/.test(maps) }));`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the stripped addon does not load: ${r.stderr.trim().split('\n')[0]}`);
  return JSON.parse(r.stdout);
}

/**
 * Strips `addon` (building it first in `root` when not given) into `<outDir>/<flavour>/dfdet.node`.
 * `flavours` is the table from dist/lib/runtime/flavours.js. Returns { flavour, file, probe }.
 */
function prebuild({ root, addon, flavourId, outDir, flavours }) {
  if (!addon) {
    run(process.execPath, [require.resolve('cmake-js/bin/cmake-js', { paths: [root] }), 'rebuild', '--out', 'build'], root, { ...process.env, DFDET_NO_RPATH: '1' });
    addon = path.join(root, 'build', 'Release', 'dfdet.node');
  }
  const tmp = path.join(outDir, '.strip-tmp.node');
  fs.mkdirSync(outDir, { recursive: true });
  fs.copyFileSync(addon, tmp);
  run('strip', ['--strip-unneeded', tmp]);
  const p = probe(path.resolve(tmp));
  const minor = /^(\d+\.\d+)/.exec(p.version)?.[1];
  const layout = p.libtorch && /\.so\.\d+\.\d+/.test(p.libtorch) ? 'system' : 'upstream';
  const fitting = flavours.flavoursForHost().filter((f) => f.torch === minor && f.layout === layout && f.device === (p.cuda ? 'cuda' : 'cpu'));
  const flavour = flavourId ? fitting.find((f) => f.id === flavourId) : fitting.length === 1 ? fitting[0] : undefined;
  if (!flavour) {
    fs.rmSync(tmp);
    throw new Error(
      `the addon links ${layout} libtorch ${p.version}${p.cuda ? ' (CUDA)' : ''} (${p.libtorch}); ` +
        (flavourId ? `that is not flavour ${flavourId}` : `flavours that fit: ${fitting.map((f) => f.id).join(', ') || 'none (add one to lib/runtime/flavours.ts)'}`),
    );
  }
  // A RUNPATH other than a system folder would tie the binary to the build machine's libtorch.
  const runpath = /\((?:RUNPATH|RPATH)\)[^[]*\[([^\]]*)\]/.exec(spawnSync('readelf', ['-d', tmp], { encoding: 'utf8' }).stdout ?? '')?.[1];
  if (runpath && runpath.split(':').some((d) => !/^\/(usr\/)?lib(64)?(\/[\w-]+-linux-gnu)?$/.test(d))) {
    fs.rmSync(tmp);
    throw new Error(`the addon has RUNPATH ${runpath} (the build machine's folders); build it with DFDET_NO_RPATH=1`);
  }
  p.runpath = runpath ?? null;
  const dir = path.join(outDir, flavour.id);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'dfdet.node');
  fs.renameSync(tmp, file);
  return { flavour, file, probe: p };
}

module.exports = { prebuild };

if (require.main === module) {
  const root = path.resolve(__dirname, '..');
  const args = process.argv.slice(2);
  const opt = (name) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const flavours = require(path.join(root, 'dist', 'lib', 'runtime', 'flavours.js'));
  try {
    const r = prebuild({ root, addon: opt('--addon'), flavourId: opt('--flavour'), outDir: path.resolve(root, opt('--out') ?? 'prebuilds'), flavours });
    console.log(`prebuild: ${path.relative(root, r.file)} (${fs.statSync(r.file).size} bytes, libtorch ${r.probe.version} from ${r.probe.libtorch})`);
  } catch (e) {
    console.error(`prebuild: ${e.message}`);
    process.exit(1);
  }
}
