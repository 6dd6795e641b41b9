/** Numeric comparisons against Python references, shared by the test files. */
import { expect } from 'vitest';

/** Largest absolute difference between `a` and the row-major flattening of `b` (whose size must match). */
export function maxAbsDiff(a: ArrayLike<number>, b: number[][]): number {
  const flat = b.flat();
  expect(a.length).toBe(flat.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - flat[i]!));
  return m;
}
