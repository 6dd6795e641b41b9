/**
 * The native boundary under random malformed arguments: every call must settle with a typed
 * error or a result, and the process must survive (the review found two ways to abort it here).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { isDfdetError } from '../lib/errors';
import { Model, buildModule, tensor } from '../lib/model';
import { native } from '../lib/native';
import { rng } from './helpers/random';

let dir: string;
let model: Model;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-fuzz-'));
  await buildModule(
    { className: 'Fuzz', source: 'def forward(self, x):\n    return x.sum() + self.b\n', parameters: { b: tensor(new Float32Array([1]), [1]) } },
    path.join(dir, 'fuzz.pt'),
  );
  model = await Model.load(path.join(dir, 'fuzz.pt'));
});
afterAll(async () => {
  await model.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

// Typed array makers with the dtype they carry; malformed pairings are mixed in below.
const PAIRS: [string, (n: number) => unknown][] = [
  ['float32', (n) => new Float32Array(n)],
  ['float64', (n) => new Float64Array(n)],
  ['float16', (n) => new Uint16Array(n)],
  ['bfloat16', (n) => new Uint16Array(n)],
  ['int32', (n) => new Int32Array(n)],
  ['int64', (n) => new BigInt64Array(n)],
  ['uint8', (n) => new Uint8Array(n)],
  ['bool', (n) => new Uint8Array(n)],
];
const BAD_DTYPES: unknown[] = ['complex64', '', 7, null];
// Sizes that overflow int64 when multiplied (2^32 * 2^32 wraps to 0), and plain invalid ones.
const DIMS: unknown[] = [0, 1, 2, 3, 4, 2 ** 31, 2 ** 32, 2 ** 33, 2 ** 62, Number.MAX_SAFE_INTEGER, -1, 1.5, Number.NaN, Infinity, '2'];

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!;
}

function randomTensor(r: () => number): unknown {
  if (r() < 0.03) return null;
  const rank = Math.floor(r() * 4);
  const shape = Array.from({ length: rank }, () => (r() < 0.5 ? pick(r, [0, 1, 2, 3]) : pick(r, DIMS)));
  const n = pick(r, [0, 0, 1, 2, 4, 8]);
  const [dtype, make] = pick(r, PAIRS);
  const t: Record<string, unknown> = {
    data: r() < 0.9 ? make(n) : pick(r, [Array.from({ length: n }, () => 0), 'data', undefined]),
    shape: r() < 0.95 ? shape : 'nope',
    dtype: r() < 0.85 ? dtype : r() < 0.5 ? pick(r, PAIRS)[0] : pick(r, BAD_DTYPES),
  };
  if (r() < 0.35) t.strides = Array.from({ length: r() < 0.85 ? rank : rank + 1 }, () => (r() < 0.5 ? pick(r, [0, 1, 2]) : pick(r, DIMS)));
  return t;
}

describe('native boundary fuzz', () => {
  it('run() with 400 random malformed tensors only ever resolves or rejects with a DfdetError', async () => {
    const r = rng(20261125);
    let rejected = 0;
    for (let i = 0; i < 400; i++) {
      const inputs = Array.from({ length: 1 + Math.floor(r() * 2) }, () => randomTensor(r));
      try {
        await model.run('forward', inputs as never);
      } catch (e) {
        expect(isDfdetError(e), `case ${i}: ${String(e)}`).toBe(true);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(200);
    // Still healthy afterwards.
    const ok = await model.forward(tensor(new Float32Array([1, 2]), [2]));
    expect((ok as { data: Float32Array }).data[0]).toBe(4);
  });

  it('buildModule() with random malformed specs only ever rejects with a DfdetError', async () => {
    const r = rng(7);
    const out = path.join(dir, 'fuzz-out.pt');
    for (let i = 0; i < 150; i++) {
      const spec: Record<string, unknown> = {
        className: r() < 0.8 ? `C${i}` : ['', '1x', 'a b', 5][Math.floor(r() * 4)],
        source: r() < 0.7 ? 'def forward(self, x):\n    return x\n' : ['def (', 42, 'def forward(self):\n  return self.w\n'][Math.floor(r() * 3)],
        parameters: r() < 0.7 ? { w: randomTensor(r) } : r() < 0.5 ? { 'bad name': randomTensor(r) } : 'x',
        attributes: r() < 0.5 ? { a: [1, 'x'][Math.floor(r() * 2)] } : { b: { nested: true } },
      };
      if (r() < 0.2) spec.submodules = { s: { className: `C${i}`, source: '' } };
      try {
        await buildModule(spec as never, out);
      } catch (e) {
        expect(isDfdetError(e), `case ${i}: ${String(e)}`).toBe(true);
      }
    }
    expect(native().runtimeInfo().torchVersion).toMatch(/^\d/);
  });
});
