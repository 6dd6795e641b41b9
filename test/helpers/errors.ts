/** Assertions on dfdet's typed errors, shared by the test files. */
import { expect } from 'vitest';
import { isDfdetError, type DfdetError, type ErrorCode } from '../../lib/errors';

/**
 * Awaits `p` and asserts that it rejects with a {@link DfdetError} of `code`; its message must match
 * `message` when given, and the rejection must come within `maxMs` milliseconds when given (bad
 * input must fail fast, never hang). Returns the error for further checks.
 */
export async function expectDfdetError(p: Promise<unknown>, code: ErrorCode, message?: RegExp, maxMs?: number): Promise<DfdetError> {
  const t0 = Date.now();
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  const ms = Date.now() - t0;
  expect(err, `expected a rejection with ${code}`).toBeDefined();
  expect(isDfdetError(err), `expected a DfdetError ${code}, got ${String(err)}`).toBe(true);
  expect((err as DfdetError).code).toBe(code);
  if (message) expect((err as Error).message).toMatch(message);
  if (maxMs !== undefined) expect(ms).toBeLessThan(maxMs);
  return err as DfdetError;
}
