#!/usr/bin/env node
// Makes a prebuilt binary for this platform: prebuilds/<platform>-<arch>/dfdet.napi.glibc.node,
// the layout node-gyp-build resolves before build/. prebuildify drives node-gyp only, and the addon
// is built by cmake-js (libtorch's CMake config), so this does prebuildify's job for cmake-js.
// The binary links the libtorch it was built against (LIBTORCH / Torch_DIR or the system one):
// publish one per platform and libtorch flavour.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

run(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'rebuild', '--out', 'build']);
const libc = process.platform === 'linux' ? (process.report?.getReport().header.glibcVersionRuntime ? '.glibc' : '.musl') : '';
const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
fs.mkdirSync(dir, { recursive: true });
const out = path.join(dir, `dfdet.napi${libc}.node`);
fs.copyFileSync(path.join(root, 'build', 'Release', 'dfdet.node'), out);
if (process.platform !== 'win32') run('strip', ['--strip-unneeded', out]);
// Prove the stripped binary loads and works. (node-gyp-build prefers build/Release when it
// exists; installs from the registry have no build/, so they get this file.)
const binding = require(out);
if (typeof binding.runtimeInfo().torchVersion !== 'string') process.exit(1);
console.log(`prebuild: ${path.relative(root, out)} (${fs.statSync(out).size} bytes)`);
