/**
 * The addon loader's choices: which prebuilt flavours are tried on a machine, in what order, and
 * why the others are skipped (libtorch 2.x CPU and CUDA flavours included, as they will drop in);
 * libtorch discovery on real folders; and the message when nothing loads.
 */
import { describe, it, expect, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadFailureMessage, loadFix } from '../lib/runtime/advice';
import { FLAVOURS, type Flavour, flavourPackage, hostPlatformLabel } from '../lib/runtime/flavours';
import { findLibtorch, type LibtorchInstall } from '../lib/runtime/libtorch';
import { loadAddon, planCandidates } from '../lib/runtime/loader';
import { packageRoot } from '../lib/runtime/root';

function fl(torch: string, device: 'cpu' | 'cuda', layout: Flavour['layout']): Flavour {
  const id = `linux-x64-torch${torch}-${device}`;
  return { id, package: flavourPackage(id), os: 'linux', cpu: 'x64', libc: 'glibc', torch, device, layout, published: true };
}

const SYS113 = fl('1.13', 'cpu', 'system');
const CPU25 = fl('2.5', 'cpu', 'upstream');
const CU25 = fl('2.5', 'cuda', 'upstream');
const TABLE = [SYS113, CPU25, CU25];

function lt(over: Partial<LibtorchInstall>): LibtorchInstall {
  return { layout: 'system', libDir: '/usr/lib/x86_64-linux-gnu', version: '1.13.1', minor: '1.13', cuda: false, headers: false, source: 'system', onLoaderPath: true, ...over };
}
const system113 = lt({});
const upstream25 = (cuda: boolean, onLoaderPath = true): LibtorchInstall =>
  lt({ layout: 'upstream', libDir: '/opt/libtorch/lib', version: cuda ? '2.5.1+cu124' : '2.5.1+cpu', minor: '2.5', cuda, source: 'LIBTORCH', onLoaderPath });

const order = (installs: LibtorchInstall[]) => planCandidates(TABLE, installs).map((p) => [p.flavour.id, p.skip === null]);

describe('planCandidates', () => {
  it('Debian with libtorch 1.13 only: tries the system flavour, skips the 2.x ones with the reason', () => {
    const plan = planCandidates(TABLE, [system113]);
    expect(plan.map((p) => [p.flavour.id, p.skip === null])).toEqual([[SYS113.id, true], [CU25.id, false], [CPU25.id, false]]);
    expect(plan.find((p) => p.flavour === CU25)!.skip).toContain('needs a CUDA libtorch 2.5');
    expect(plan.find((p) => p.flavour === CPU25)!.skip).toMatch(/needs libtorch 2\.5 .*LIBTORCH/);
  });

  it('a CPU libtorch 2.5 on the loader path: 2.5 CPU first, then 1.13; the CUDA flavour is never tried', () => {
    expect(order([system113, upstream25(false)])).toEqual([[CPU25.id, true], [SYS113.id, true], [CU25.id, false]]);
    expect(planCandidates(TABLE, [upstream25(false)]).find((p) => p.flavour === CU25)!.skip).toContain('is a CPU build');
  });

  it('a CUDA libtorch 2.5: the CUDA flavour first, the CPU build of the same libtorch next', () => {
    expect(order([system113, upstream25(true)])).toEqual([[CU25.id, true], [CPU25.id, true], [SYS113.id, true]]);
  });

  it('an upstream libtorch off LD_LIBRARY_PATH is skipped with the export that fixes it', () => {
    const plan = planCandidates(TABLE, [upstream25(true, false)]);
    expect(plan.find((p) => p.flavour === CU25)!.skip).toContain('export LD_LIBRARY_PATH=/opt/libtorch/lib:$LD_LIBRARY_PATH');
  });

  it('no libtorch at all: every flavour is skipped', () => {
    expect(planCandidates(TABLE, []).every((p) => p.skip !== null)).toBe(true);
  });

  it('the published table names packages @dfdet/<platform>-<arch>-torch<x.y>-<device>', () => {
    for (const f of FLAVOURS) expect(f.package).toMatch(/^@dfdet\/(linux|linuxmusl|darwin|win32)-[a-z0-9]+-torch\d+\.\d+-(cpu|cuda)$/);
    expect(FLAVOURS.filter((f) => f.published).map((f) => f.id)).toContain('linux-x64-torch1.13-cpu');
  });
});

describe('findLibtorch', () => {
  const saved = { LIBTORCH: process.env.LIBTORCH, LD_LIBRARY_PATH: process.env.LD_LIBRARY_PATH };
  let dir: string | undefined;
  afterEach(() => {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('reads an upstream libtorch folder named by LIBTORCH: version, CUDA, headers, loader path', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-libtorch-'));
    fs.mkdirSync(path.join(dir, 'lib'));
    fs.mkdirSync(path.join(dir, 'share', 'cmake', 'Torch'), { recursive: true });
    for (const f of ['lib/libtorch_cpu.so', 'lib/libtorch_cuda.so', 'share/cmake/Torch/TorchConfig.cmake']) fs.writeFileSync(path.join(dir, f), '');
    fs.writeFileSync(path.join(dir, 'build-version'), '2.5.1+cu124\n');
    process.env.LIBTORCH = dir;
    delete process.env.LD_LIBRARY_PATH;
    let found = findLibtorch().find((t) => t.source === 'LIBTORCH');
    expect(found).toMatchObject({ layout: 'upstream', version: '2.5.1+cu124', minor: '2.5', cuda: true, headers: true, onLoaderPath: false });
    process.env.LD_LIBRARY_PATH = path.join(dir, 'lib');
    found = findLibtorch().find((t) => t.source === 'LIBTORCH');
    expect(found!.onLoaderPath).toBe(true);
  });

  const haveSystem = fs.existsSync('/usr/lib/x86_64-linux-gnu/libtorch_cpu.so.1.13');
  if (!haveSystem && process.env.CI) throw new Error('CI installs libtorch1.13 (scripts/setup-system.sh)');
  it.skipIf(!haveSystem)('finds the system libtorch 1.13 that the linux-x64 prebuilt links', () => {
    expect(findLibtorch().filter((t) => t.layout === 'system').map((t) => t.minor)).toContain('1.13');
  });
});

describe('loadAddon', () => {
  const saved = process.env.DFDET_NATIVE_PATH;
  afterEach(() => {
    if (saved === undefined) delete process.env.DFDET_NATIVE_PATH;
    else process.env.DFDET_NATIVE_PATH = saved;
  });

  it('a DFDET_NATIVE_PATH that does not load: no binding, the reason, and a message naming the platform and the fix', () => {
    process.env.DFDET_NATIVE_PATH = path.join(os.tmpdir(), 'no-such-dir', 'dfdet.node');
    const { binding, report } = loadAddon(packageRoot);
    expect(binding).toBeNull();
    expect(report.attempts).toEqual([expect.objectContaining({ name: 'DFDET_NATIVE_PATH', outcome: 'failed', reason: expect.stringContaining('Cannot find module') })]);
    const msg = loadFailureMessage(packageRoot, report, 'not tried');
    expect(msg).toContain(`no native addon loads on ${hostPlatformLabel()}`);
    expect(msg).toContain('libtorch: ');
    expect(msg).toContain(`fix: ${loadFix(packageRoot, report)}`);
  });

  it('this checkout: the source build loads first and the prebuilt is reported as not tried or not installed', () => {
    delete process.env.DFDET_NATIVE_PATH;
    const { binding, report } = loadAddon(packageRoot);
    expect(binding).not.toBeNull();
    expect(report.loaded).toMatchObject({ name: 'source build', outcome: 'loaded' });
    for (const a of report.attempts.filter((x) => x.kind === 'prebuilt')) expect(a.reason).toMatch(/not installed|loaded first/);
  });
});

describe('loadFix', () => {
  const base = (reason: string) => ({
    platform: 'linux-x64 (glibc 2.31)',
    node: 'v20',
    libtorch: [lt({})],
    loaded: null,
    attempts: [{ name: flavourPackage('linux-x64-torch1.13-cpu'), kind: 'prebuilt' as const, file: '/x/dfdet.node', flavour: 'linux-x64-torch1.13-cpu', outcome: 'failed' as const, reason }],
  });

  it.skipIf(process.platform !== 'linux' || process.arch !== 'x64')('a missing shared library: install the run-time set; a glibc too old: build from source', () => {
    expect(loadFix(packageRoot, base('libopenblas.so.0: cannot open shared object file: No such file or directory'))).toMatch(/^sudo apt-get install --no-install-recommends libtorch1\.13 libopenblas0-openmp ffmpeg/);
    const old = loadFix(packageRoot, base("/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found"));
    expect(old).toContain('does not link on this system');
    expect(old).toContain('build from source');
  });
});
