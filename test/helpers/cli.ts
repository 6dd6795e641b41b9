/**
 * Running the BUILT `dfdet` CLI (dist/lib/cli/main.js) in child processes, as users do.
 * The build is refreshed first when a source under lib/ is newer than it (one build at a time
 * across test files, through a lock folder).
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const ROOT = path.join(__dirname, '..', '..');
export const CLI = path.join(ROOT, 'dist', 'lib', 'cli', 'main.js');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, fs.statSync(p).mtimeMs);
  }
  return newest;
}

function stale(): boolean {
  if (!fs.existsSync(CLI)) return true;
  return newestMtime(path.join(ROOT, 'lib')) > fs.statSync(CLI).mtimeMs;
}

/** Builds dist/ with tsc when it is missing or older than lib/. */
export async function ensureBuilt(): Promise<void> {
  const lock = path.join(os.tmpdir(), `dfdet-cli-build-${Buffer.from(ROOT).toString('hex').slice(-16)}.lock`);
  for (let i = 0; i < 600 && stale(); i++) {
    try {
      fs.mkdirSync(lock);
    } catch {
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    try {
      if (stale()) execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' });
      // tsc leaves the output's mtime alone when nothing changed; mark the build as fresh.
      const now = new Date();
      fs.utimesSync(CLI, now, now);
    } finally {
      fs.rmdirSync(lock);
    }
  }
}

/** What a CLI run gave. */
export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Options of {@link dfdet}. */
export interface CliOptions {
  cwd?: string;
  input?: string;
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
  /** Called with each stderr chunk (e.g. to send a signal once the run has started). */
  onStderr?: (chunk: string, child: ReturnType<typeof spawn>) => void;
}

/** Runs `node dist/lib/cli/main.js ...args`; resolves with exit code and output (never rejects on a non-zero exit). */
export function dfdet(args: string[], options: CliOptions = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, ...options.env };
    for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
    const child = spawn(process.execPath, [CLI, ...args], { cwd: options.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      options.onStderr?.(d, child);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

/** A real photo shipped by a Debian package, or null (skips locally, fails under CI). */
export function debianPhoto(name: 'grace_hopper.jpg' | 'astronaut.png'): string | null {
  const candidates = {
    'grace_hopper.jpg': ['/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg', 'python-matplotlib-data'],
    'astronaut.png': ['/usr/lib/python3/dist-packages/imageio/resources/images/astronaut.png', 'python3-imageio'],
  } as const;
  const [file, pkg] = candidates[name];
  if (fs.existsSync(file)) return file;
  const msg = `${name} not found at ${file}: install the Debian package ${pkg} (scripts/setup-system.sh --test)`;
  if (process.env.CI) throw new Error(msg);
  console.warn(`SKIPPED: ${msg}`);
  return null;
}

/** Both Debian photos (grace_hopper.jpg, astronaut.png), or null when one is missing (skips locally, fails under CI). */
export function debianPhotos(): [string, string] | null {
  const grace = debianPhoto('grace_hopper.jpg');
  const astronaut = debianPhoto('astronaut.png');
  return grace && astronaut ? [grace, astronaut] : null;
}

/** Parses NDJSON text into objects (one per non-empty line). */
export function ndjson<T = Record<string, unknown>>(text: string): T[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}
