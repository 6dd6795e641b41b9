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

/** Runs `PYTHON ...argv` with `input` on stdin; returns stdout, or throws with stderr unless it exits 0. */
function python(what: string, argv: string[], input: string | undefined, timeoutMs: number): string {
  const r = spawnSync(PYTHON, argv, {
    encoding: 'utf8',
    input,
    maxBuffer: 1 << 28,
    timeout: timeoutMs,
    env: { ...process.env, OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '2' },
  });
  if (r.status !== 0) throw new Error(`${what} failed (${r.status ?? r.signal}): ${r.stderr}`);
  return r.stdout;
}

/**
 * Runs a script from test/python with `args`, and `input` as JSON on stdin when given; returns its
 * stdout (for scripts that write their results to files or print text).
 */
export function runPythonRaw(script: string, args: string[] = [], input?: unknown, timeoutMs = 300_000): string {
  const stdin = input === undefined ? undefined : JSON.stringify(input);
  return python(script, [path.join(__dirname, '..', 'python', script), ...args], stdin, timeoutMs);
}

/** Runs a script from test/python with JSON on stdin; returns its stdout parsed as JSON. */
export function runPython<T = unknown>(script: string, args: string[] = [], input?: unknown, timeoutMs = 300_000): T {
  return JSON.parse(runPythonRaw(script, args, input, timeoutMs)) as T;
}

/** Runs a snippet of Python source (`python -c`); returns its stdout. */
export function runPythonCode(code: string, timeoutMs = 300_000): string {
  return python('python -c', ['-c', code], undefined, timeoutMs);
}
