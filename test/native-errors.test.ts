/**
 * The typed native boundary: the addon's error codes are declared once (native/errors.h, with
 * binding.d.ts declaring the same set), native code names them only through that header, and
 * lib/native.ts maps every one without a list of its own. Runtime options (device, dtype,
 * threads) are checked once, in TypeScript, with sharp-style errors; the addon keeps a backstop.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DfdetError } from '../lib/errors';
import { buildModule, Model, setThreads, tensor } from '../lib/model';
import { native, wrapNativeError } from '../lib/native';
import { expectDfdetError } from './helpers/errors';

const ROOT = path.join(__dirname, '..');
const read = (f: string): string => fs.readFileSync(path.join(ROOT, f), 'utf8');

/** Codes of `DFDET_NATIVE_ERROR_CODES(X)` in native/errors.h. */
function headerCodes(): string[] {
  const m = /#define DFDET_NATIVE_ERROR_CODES\(X\)([\s\S]*?)\n\n/.exec(read('native/errors.h'));
  expect(m, 'DFDET_NATIVE_ERROR_CODES in native/errors.h').not.toBeNull();
  return [...m![1]!.matchAll(/X\((\w+)\)/g)].map((x) => x[1]!);
}

/** Members of a string-literal union type `name` in a .ts/.d.ts file (comments between members allowed). */
function unionMembers(file: string, name: string): string[] {
  const text = read(file).replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  const m = new RegExp(`export type ${name} =([\\s\\S]*?);`).exec(text);
  expect(m, `${name} in ${file}`).not.toBeNull();
  return [...m![1]!.matchAll(/'([A-Z_]+)'/g)].map((x) => x[1]!);
}

describe('error codes', () => {
  it('native/errors.h and binding.d.ts declare the same codes, which the addon exports and lib/errors.ts knows', () => {
    const header = headerCodes();
    const declared = unionMembers('binding.d.ts', 'NativeErrorCode');
    expect(header.length).toBeGreaterThan(0);
    expect(new Set(header).size).toBe(header.length);
    expect([...declared].sort()).toEqual([...header].sort());
    expect([...native().errorCodes]).toEqual(header);
    expect(Object.isFrozen(native().errorCodes)).toBe(true);
    const all = new Set(unionMembers('lib/errors.ts', 'ErrorCode'));
    for (const c of header) expect(all.has(c), `${c} is an ErrorCode of lib/errors.ts`).toBe(true);
  });

  it('native code names codes only through errors.h, and lib/native.ts keeps no list of its own', () => {
    const codes = headerCodes();
    const bare = new RegExp(`"(${codes.join('|')})"`);
    for (const f of fs.readdirSync(path.join(ROOT, 'native'))) {
      if (f === 'errors.h' || !/\.(cc|h)$/.test(f)) continue;
      expect(bare.exec(read(`native/${f}`))?.[0], `bare code string in native/${f}`).toBeUndefined();
    }
    const quoted = new RegExp(`'(${codes.join('|')})'`, 'g');
    const inNative = [...read('lib/native.ts').matchAll(quoted)].map((x) => x[1]);
    expect(inNative.filter((c) => c !== 'RUNTIME_ERROR'), 'codes spelled out in lib/native.ts').toEqual([]);
  });

  it('wrapNativeError keeps every native code and turns anything else into RUNTIME_ERROR', () => {
    for (const code of native().errorCodes) {
      const e = Object.assign(new Error(`boom ${code}`), { code });
      const w = wrapNativeError(e, 'ctx');
      expect(w).toBeInstanceOf(DfdetError);
      expect(w.code).toBe(code);
      expect(w.message).toBe(`ctx: boom ${code}`);
      expect(w.cause).toBe(e);
    }
    expect(wrapNativeError(Object.assign(new Error('x'), { code: 'ERR_INVALID_ARG_TYPE' })).code).toBe('RUNTIME_ERROR');
    expect(wrapNativeError(Object.assign(new Error('x'), { code: 'NOT_FOUND' })).code).toBe('RUNTIME_ERROR');
    expect(wrapNativeError('plain string').code).toBe('RUNTIME_ERROR');
  });

  it('the raw addon rejects with its declared codes', async () => {
    const b = native();
    await expect(b.NativeModel.load(Buffer.from('not a model'), { device: 'cpu', dtype: 'float32' })).rejects.toMatchObject({ code: 'MODEL_LOAD_FAILED' });
    expect(() => b.setThreads(0)).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
  });
});

describe('runtime options: one TypeScript check, sharp-style', () => {
  let dir: string;
  let file: string;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-boundary-'));
    file = path.join(dir, 'id.pt');
    await buildModule({ className: 'Id', source: 'def forward(self, x):\n    return x + self.b\n', parameters: { b: tensor(new Float32Array(1), [1]) } }, file);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('threads: 1 to 1024 in Model.load and setThreads, with the same message', async () => {
    for (const bad of [0, -1, 1.5, 2000, Number.NaN, '4']) {
      const message = new RegExp(`^Expected an integer between 1 and 1024 for threads but received .* of type ${typeof bad}$`);
      await expectDfdetError(Model.load(file, { threads: bad as number }), 'BAD_INPUT', message);
      expect(() => setThreads(bad as number)).toThrow(message);
    }
  });

  it('device and dtype are checked before the addon sees them', async () => {
    await expectDfdetError(Model.load(file, { device: 'tpu' }), 'BAD_INPUT', /^Expected 'cpu', 'cuda' or 'cuda:N' for device but received "tpu" of type string$/);
    await expectDfdetError(Model.load(file, { device: 'cuda:x' }), 'BAD_INPUT', /for device but received "cuda:x"/);
    await expectDfdetError(Model.load(file, { dtype: 'int8' as never }), 'BAD_INPUT', /^Expected one of auto, float32, float16, bfloat16 for dtype but received "int8" of type string$/);
    await expectDfdetError(Model.load(file, { extraFiles: 'dfdet.json' as never }), 'BAD_INPUT', /for extraFiles/);
    const m = await Model.load(file, { device: 'cpu', dtype: 'float32', threads: 1 });
    await m.dispose();
  });
});

describe('public surface', () => {
  it('lib/index.ts does not export the raw binding, and lib/model.ts knows no detector file', async () => {
    const api = await import('../lib/index.js');
    expect('native' in api).toBe(false);
    expect(read('lib/model.ts')).not.toMatch(/dfdet\.json|METADATA_FILE\s*=/);
  });
});
