/** Cache folder names: readable for registry-style names, and never shared by two distinct names. */
import * as path from 'node:path';

import { describe, expect, it } from 'vitest';

import { modelCacheDir, safeModelDirName } from '../lib/cache';

describe('safeModelDirName', () => {
  it('keeps registry-style names readable, as before', () => {
    expect(safeModelDirName('yermandy/deepfake-detection')).toBe('yermandy--deepfake-detection');
    expect(safeModelDirName('owner/repo:v2.1')).toBe('owner--repo@v2.1');
    expect(safeModelDirName('tiny_model+x')).toBe('tiny_model+x');
  });

  it('gives distinct names distinct folders (the readable rewrite alone collides)', () => {
    const pairs = [
      ['a/b', 'a--b'],
      ['a:b', 'a@b'],
      ['a b', 'a_b'],
      ['a-/b', 'a/-b'],
      ['a/b:c', 'a--b@c'],
      ['a?b', 'a*b'],
      ['.', '_.'],
    ];
    for (const [x, y] of pairs) expect(safeModelDirName(x!), `${x} vs ${y}`).not.toBe(safeModelDirName(y!));
    const names = ['a/b', 'a--b', 'a@b', 'a:b', 'a_b', 'a b', 'a-/b', 'a/-b', 'a/b:c', 'a--b@c', 'a/b/c', 'a--b--c', 'A/b', '.', '..', '_.', 'x:y:z', 'x@y@z'];
    const dirs = names.map((n) => safeModelDirName(n));
    expect(new Set(dirs).size).toBe(names.length);
    // Every folder is one plain path segment inside <cacheDir>/models.
    for (const [i, d] of dirs.entries()) {
      expect(d, names[i]).toMatch(/^[A-Za-z0-9._@+~-]+$/);
      expect(['.', '..']).not.toContain(d);
      expect(path.dirname(modelCacheDir(names[i]!, '/cache'))).toBe(path.join('/cache', 'models'));
    }
  });

  it('rejects empty names with BAD_INPUT', () => {
    expect(() => safeModelDirName(' ')).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
  });
});
