/**
 * The benchmarks run end to end (`--quick`, all parts) and write a complete JSON report. No
 * timing is asserted: benchmarks report numbers, they do not judge them.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { BenchReport } from '../lib/bench/run';
import { skipWithoutPython } from './helpers/python';

const ROOT = path.join(__dirname, '..');
const VITE_NODE = path.join(ROOT, 'node_modules', '.bin', 'vite-node');
const MAIN = path.join(ROOT, 'lib', 'bench', 'main.ts');

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-bench-test-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs the bench CLI without blocking this worker (a long spawnSync starves vitest's RPC). */
function bench(args: string[], timeout = 240_000): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(VITE_NODE, [MAIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

describe('npm run bench --quick', () => {
  it('runs every part and writes every number to --json', async () => {
    const withPython = !skipWithoutPython('torch', 'numpy');
    const json = path.join(dir, 'report.json');
    const r = await bench(['--quick', '--json', json, '--cache-dir', path.join(dir, 'cache')]);
    expect(r.status, r.stderr).toBe(0);
    // The table: a header and one row per result.
    expect(r.stdout).toMatch(/part\s+measure\s+dfdet\s+unit\s+reference\s+ratio\s+target/);

    const report = JSON.parse(fs.readFileSync(json, 'utf8')) as BenchReport;
    expect(report.quick).toBe(true);
    expect(report.errors).toEqual([]);
    expect(report.parts).toEqual(['native', 'models', 'media', 'throughput', 'serve', 'train']);
    for (const part of report.parts) {
      const rows = report.results.filter((x) => x.part === part);
      expect(rows.length, part).toBeGreaterThan(0);
      for (const row of rows) {
        expect(Number.isFinite(row.value) && row.value > 0, `${row.name} = ${row.value}`).toBe(true);
        expect(r.stdout).toContain(row.name);
      }
    }
    const names = report.results.map((x) => x.name);
    for (const b of [1, 4, 8]) {
      expect(names).toContain(`forward tiny ${report.environment.threads} thr b=${b}`);
      expect(names).toContain(`forward tiny ${report.environment.threads} thr b=${b} optimize`);
    }
    expect(names.some((n) => n.startsWith('detectFaces 640x480 1 thr b=1'))).toBe(true);
    expect(names.some((n) => n.startsWith('detectFaces 640x480 1 thr b=8'))).toBe(true);
    expect(names.some((n) => n.startsWith('sampleFrames 32'))).toBe(true);
    expect(names.some((n) => n.startsWith('cropFace align 256 + clipTransform 224'))).toBe(true);
    expect(names.some((n) => n.startsWith('LN-tuning step tiny b=8 float32'))).toBe(true);
    expect(names.some((n) => n.startsWith('HTTP POST /v1/detect'))).toBe(true);
    expect(names).toContain('1-face request p99 while two 24-face clients run');

    if (withPython) {
      // Each PyTorch comparison has its reference and ratio, and both engines computed the same outputs.
      const native = report.results.filter((x) => x.part === 'native' && !x.name.endsWith('optimize'));
      for (const row of native) {
        expect(row.reference?.name).toBe('torch');
        expect(row.ratio).toBeCloseTo(row.value / row.reference!.value, 9);
        expect(row.details?.maxAbsOutputDiff as number).toBeLessThan(1e-4);
      }
      const load = report.results.find((x) => x.name.startsWith('load tiny'))!;
      expect(load.reference?.name).toBe('torch.jit.load');
      expect(report.results.some((x) => x.name.startsWith('peak RSS after load tiny (torch)'))).toBe(true);
    }
  }, 300_000);

  it('rejects an unknown --only part with a message', async () => {
    const r = await bench(['--only', 'native,bogus'], 60_000);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('Expected a comma-separated list of native, models, media, throughput, serve, train for --only but received "native,bogus"');
  });
});
