/**
 * Child process of test/fuzz-models.test.ts: runs one case per stdin line through the BUILT
 * library (dist/) and answers on stdout. A crash (SIGSEGV in libtorch) kills only this process;
 * the parent sees which case was running from the `start` line and restarts a child.
 *
 * In:  {"i": 3, "file": "/tmp/x.pt", "op": "load" | "convert"} (odd cases load the model from its bytes)
 * Out: {"i": 3, "start": true}, then {"i": 3, "outcome": "ok" | "error" | "untyped" | "nonfinite", "code"?, "message"?}
 */
/* eslint-disable @typescript-eslint/no-require-imports */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');

const dist = path.join(__dirname, '..', '..', 'dist', 'lib');
const { Model, expectTensor } = require(path.join(dist, 'model.js'));
const { convertModel } = require(path.join(dist, 'convert.js'));
const { isDfdetError } = require(path.join(dist, 'errors.js'));

const image = new Float32Array(3 * 224 * 224).map((_, i) => Math.sin(i * 0.37));

/** Loads a model file (from its path, or from its bytes) and runs forward once; true when every output is finite. */
async function loadAndRun(file, fromBytes) {
  const model = await Model.load(fromBytes ? fs.readFileSync(file) : file);
  try {
    const out = expectTensor(await model.run('forward', [{ data: image, shape: [1, 3, 224, 224], dtype: 'float32' }]));
    return Array.from(out.data).every(Number.isFinite);
  } finally {
    await model.dispose();
  }
}

async function runCase(c) {
  let file = c.file;
  if (c.op === 'convert') {
    const out = `${c.file}.converted.pt`;
    try {
      await convertModel(c.file, out, { seed: 1 });
    } finally {
      file = out;
    }
  }
  try {
    return (await loadAndRun(file, c.i % 2 === 1)) ? { outcome: 'ok' } : { outcome: 'nonfinite' };
  } finally {
    if (file !== c.file) fs.rmSync(file, { force: true });
  }
}

function send(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

(async () => {
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const c = JSON.parse(line);
    send({ i: c.i, start: true });
    let result;
    try {
      result = await runCase(c);
    } catch (e) {
      const message = String(e && e.message ? e.message : e).slice(0, 300);
      result = isDfdetError(e) ? { outcome: 'error', code: e.code, message } : { outcome: 'untyped', message };
    }
    send({ i: c.i, ...result });
  }
})();
