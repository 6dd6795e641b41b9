#!/usr/bin/env node
// npm install hook. When a prebuilt addon package (@dfdet/<platform>-<arch>-torch<x.y>-<device>)
// loads, it does nothing else: no compiler, no build/ folder, and dfdet also works when npm does
// not run this script at all (npm 11 allowScripts, --ignore-scripts). Otherwise it builds the addon
// from source with cmake-js; when that is not possible or fails, the install FAILS with one
// message naming the platform, the libtorch found and the fix. DFDET_SKIP_BUILD=1 lets the install
// pass without an addon (to build it later with `npm rebuild dfdet`).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

if (process.env.DFDET_SKIP_BUILD && process.env.DFDET_SKIP_BUILD !== '0') {
  console.log('dfdet: DFDET_SKIP_BUILD set: not loading or building the native addon (later: npm rebuild dfdet).');
  process.exit(0);
}

// The loader ships compiled in dist/. A git checkout runs this before its TypeScript is built
// (`prepare` comes after `install`): there a source build is what the developer wants anyway.
const runtime = path.join(root, 'dist', 'lib', 'runtime');
const haveRuntime = fs.existsSync(path.join(runtime, 'loader.js'));

function load() {
  return require(path.join(runtime, 'loader.js')).loadAddon(root);
}

let report = null;
if (haveRuntime) {
  const r = load();
  if (r.binding) {
    console.log(`dfdet: using ${r.report.loaded.name} (${r.report.loaded.file})`);
    process.exit(0);
  }
  report = r.report;
  const missing = require(path.join(runtime, 'advice.js')).sourceBuildMissing(root, report);
  if (missing.length) fail(`not possible here: missing ${missing.join(', ')}`);
}

console.log('dfdet: no prebuilt addon loads here; building it from source with cmake-js (a few minutes)...');
let cmakeJs;
try {
  cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
} catch {
  fail('not possible here: missing the npm package cmake-js');
}
const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', 'build'], { cwd: root, stdio: 'inherit' });
if (r.status === 0 && (!haveRuntime || load().binding)) process.exit(0);
fail(r.status === 0 ? 'built, but the result does not load (see above)' : `cmake-js failed (exit ${r.status ?? r.signal}; its output is above)`);

function fail(sourceBuild) {
  if (haveRuntime) {
    const advice = require(path.join(runtime, 'advice.js'));
    console.error(`\n${advice.loadFailureMessage(root, report ?? load().report, sourceBuild)}\n`);
  } else {
    console.error(`\ndfdet: source build ${sourceBuild}. Install the build set (sudo bash ${path.join(root, 'scripts', 'setup-system.sh')}) and \`npm ci\`; DFDET_SKIP_BUILD=1 skips the build.\n`);
  }
  process.exit(1);
}
