#!/usr/bin/env node
// npm install hook: use a prebuilt binary when one loads, else build the addon with cmake-js.
// A missing prebuild never fails the install; a failed build prints what to do and leaves the
// package installed (dfdet then reports NATIVE_LOAD_FAILED with the same advice at first use).
// DFDET_SKIP_BUILD=1 skips the build (e.g. to build later with a CUDA libtorch).
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function loads() {
  try {
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

if (process.env.DFDET_SKIP_BUILD) {
  console.log('dfdet: DFDET_SKIP_BUILD set, not building the native addon (run `npm run build:native` later).');
  process.exit(0);
}
if (loads()) process.exit(0);

console.log('dfdet: no prebuilt binary for this platform/libtorch; building the native addon with cmake-js...');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', 'build'], { cwd: root, stdio: 'inherit' });
if (r.status === 0 && loads()) process.exit(0);

console.warn(
  [
    '',
    'dfdet: building the native addon failed. dfdet needs libtorch, cmake and a C++17 compiler.',
    `  Debian/Ubuntu: sudo bash ${path.join(root, 'scripts', 'setup-system.sh')}   (libtorch-dev, OpenBLAS, ffmpeg, build tools)`,
    '  CUDA: download a libtorch 2.x CUDA build, then LIBTORCH=/path/to/libtorch npm rebuild dfdet',
    `  then: (cd ${root} && npm run build:native)`,
    '',
  ].join('\n'),
);
process.exit(0);
