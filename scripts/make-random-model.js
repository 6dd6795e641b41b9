#!/usr/bin/env node
/**
 * Benchmark prep: write a seeded random detector through initModel (the same builder as converted models).
 *   npm run build:ts && node scripts/make-random-model.js [arch] [output] [seed]
 *   e.g. node scripts/make-random-model.js vit-l-14 /tmp/vit-l-14-random.pt 1   (≈1.2 GB float32)
 * arch: tiny | vit-b-16 | vit-b-32 | vit-l-14 | vit-l-14-336 (default vit-l-14).
 */
'use strict';
const path = require('node:path');

async function main() {
  const [arch = 'vit-l-14', output = `${arch}-random.pt`, seed = '0'] = process.argv.slice(2);
  const { initModel } = require(path.join(__dirname, '..', 'dist', 'lib', 'detector-model', 'init.js'));
  const t0 = Date.now();
  const r = await initModel({ arch, seed: Number(seed), output: path.resolve(output) });
  console.log(JSON.stringify({ ...r, seconds: (Date.now() - t0) / 1000 }));
}

main().catch((e) => {
  console.error(e && e.message ? `${e.code ?? 'ERROR'}: ${e.message}` : e);
  process.exit(1);
});
