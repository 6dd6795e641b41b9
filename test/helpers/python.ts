/**
 * Access to the independent Python references (Debian's python3-torch & co under /usr/bin/python3).
 * Missing references skip with a visible message locally, and fail under CI (CI installs them).
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

export const PYTHON = process.env.DFDET_PYTHON ?? '/usr/bin/python3';

const probed = new Map<string, boolean>();

/** True when `PYTHON` can import every module named. */
export function hasPython(...modules: string[]): boolean {
  const key = modules.join(',');
  if (!probed.has(key)) {
    const r = spawnSync(PYTHON, ['-c', modules.map((m) => `import ${m}`).join('; ')], { encoding: 'utf8' });
    probed.set(key, r.status === 0);
  }
  return probed.get(key)!;
}

/**
 * Whether tests needing these Python modules should be skipped. Under CI a missing reference is
 * an error (the set-up script installs them), never a silent skip.
 */
export function skipWithoutPython(...modules: string[]): boolean {
  if (hasPython(...modules)) return false;
  const msg = `Python reference unavailable (${PYTHON} cannot import ${modules.join(', ')}): install with scripts/setup-system.sh --test`;
  if (process.env.CI) throw new Error(msg);
  console.warn(`SKIPPED: ${msg}`);
  return true;
}

/** Runs a script from test/python with JSON on stdin; returns its stdout parsed as JSON. */
export function runPython<T = unknown>(script: string, args: string[] = [], input?: unknown, timeoutMs = 300_000): T {
  const r = spawnSync(PYTHON, [path.join(__dirname, '..', 'python', script), ...args], {
    encoding: 'utf8',
    input: input === undefined ? undefined : JSON.stringify(input),
    maxBuffer: 1 << 28,
    timeout: timeoutMs,
    env: { ...process.env, OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '2' },
  });
  if (r.status !== 0) throw new Error(`${script} failed (${r.status ?? r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
