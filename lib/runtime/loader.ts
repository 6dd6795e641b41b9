/**
 * Finds and loads the native addon: `DFDET_NATIVE_PATH` when set, else a source build
 * (`build/Release/dfdet.node`, made for this machine by `npm rebuild dfdet`), else the installed
 * prebuilt flavours whose libtorch is present, best first. Keeps the first that loads and records
 * why every other candidate did not, for `dfdet doctor`, the install script and error messages.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { FLAVOURS, type Flavour, flavoursForHost, hostPlatformLabel } from './flavours';
import { findLibtorch, type LibtorchInstall } from './libtorch';

/** A prebuilt flavour in load order, or skipped with the reason. */
export interface PlannedFlavour {
  flavour: Flavour;
  /** The libtorch it would use. */
  libtorch: LibtorchInstall | null;
  /** Why it is not tried on this machine; null when it is. */
  skip: string | null;
}

function versionKey(v: string): number {
  const [a = 0, b = 0] = v.split('.').map(Number);
  return a * 1000 + b;
}

function fits(f: Flavour, t: LibtorchInstall): boolean {
  return t.layout === f.layout && t.minor === f.torch && (f.device === 'cpu' || t.cuda);
}

function skipReason(f: Flavour, installs: readonly LibtorchInstall[]): string {
  const want = `${f.device === 'cuda' ? 'a CUDA ' : ''}libtorch ${f.torch}`;
  const sameVersion = installs.filter((t) => t.layout === f.layout && t.minor === f.torch);
  if (f.device === 'cuda' && sameVersion.length) return `needs ${want}; the libtorch ${f.torch} found is a CPU build`;
  if (f.layout === 'system') return `needs the system ${want} (Debian/Ubuntu package libtorch${f.torch}), not found`;
  return `needs ${want} (set LIBTORCH to its folder and put its lib/ on LD_LIBRARY_PATH), not found`;
}

/**
 * Orders the prebuilt flavours for this machine: those whose libtorch is present (CUDA ones only
 * where a CUDA libtorch is), CUDA first, then the newest libtorch; the others come last, skipped.
 */
export function planCandidates(flavours: readonly Flavour[], installs: readonly LibtorchInstall[]): PlannedFlavour[] {
  const planned = flavours.map((flavour): PlannedFlavour => {
    const t = installs.find((i) => fits(flavour, i) && i.onLoaderPath) ?? installs.find((i) => fits(flavour, i));
    if (!t) return { flavour, libtorch: null, skip: skipReason(flavour, installs) };
    if (!t.onLoaderPath)
      return { flavour, libtorch: t, skip: `libtorch ${t.version ?? flavour.torch} is in ${t.libDir}, which is not on LD_LIBRARY_PATH (export LD_LIBRARY_PATH=${t.libDir}:$LD_LIBRARY_PATH)` };
    return { flavour, libtorch: t, skip: null };
  });
  const rank = (p: PlannedFlavour): number => (p.skip ? 0 : 1e6) + (p.flavour.device === 'cuda' ? 1e5 : 0) + versionKey(p.flavour.torch);
  return planned.map((p, i) => ({ p, i })).sort((a, b) => rank(b.p) - rank(a.p) || a.i - b.i).map(({ p }) => p);
}

/** What happened to one candidate binary. */
export interface LoadAttempt {
  /** `DFDET_NATIVE_PATH`, `source build` or the prebuilt package name. */
  name: string;
  kind: 'override' | 'source' | 'prebuilt';
  /** The .node file, when there is one. */
  file: string | null;
  /** The flavour id (prebuilt only). */
  flavour: string | null;
  outcome: 'loaded' | 'failed' | 'skipped' | 'not tried';
  /** Why it did not load (null when it did). */
  reason: string | null;
}

/** Everything the loader saw: the platform, the libtorch found, every candidate's fate. */
export interface LoadReport {
  platform: string;
  node: string;
  libtorch: LibtorchInstall[];
  attempts: LoadAttempt[];
  loaded: LoadAttempt | null;
}

function resolvePrebuilt(pkg: string, root: string): string | null {
  try {
    return require.resolve(`${pkg}/dfdet.node`, { paths: [root] });
  } catch {
    return null;
  }
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}

/**
 * Tries the candidates in order and returns the first binding that loads (null if none does)
 * with the report. Loading is idempotent per file (Node caches it), so calling this again is cheap.
 */
export function loadAddon(root: string, flavours: readonly Flavour[] = FLAVOURS): { binding: unknown; report: LoadReport } {
  const libtorch = findLibtorch();
  const report: LoadReport = { platform: hostPlatformLabel(), node: `${process.version} (N-API ${process.versions.napi})`, libtorch, attempts: [], loaded: null };
  const queue: LoadAttempt[] = [];
  const override = process.env.DFDET_NATIVE_PATH;
  if (override) {
    queue.push({ name: 'DFDET_NATIVE_PATH', kind: 'override', file: path.resolve(override), flavour: null, outcome: 'not tried', reason: null });
  } else {
    const built = path.join(root, 'build', 'Release', 'dfdet.node');
    const hasBuild = fs.existsSync(built);
    queue.push({ name: 'source build', kind: 'source', file: hasBuild ? built : null, flavour: null, outcome: hasBuild ? 'not tried' : 'skipped', reason: hasBuild ? null : 'no build/Release/dfdet.node' });
    for (const p of planCandidates(flavoursForHost(flavours), libtorch)) {
      const file = resolvePrebuilt(p.flavour.package, root);
      const reasons = [...(file ? [] : ['package not installed']), ...(p.skip ? [p.skip] : [])];
      queue.push({ name: p.flavour.package, kind: 'prebuilt', file, flavour: p.flavour.id, outcome: reasons.length ? 'skipped' : 'not tried', reason: reasons.length ? reasons.join('; ') : null });
    }
  }
  let binding: unknown = null;
  for (const a of queue) {
    report.attempts.push(a);
    if (a.outcome !== 'not tried' || binding) continue;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      binding = require(a.file!);
      a.outcome = 'loaded';
      report.loaded = a;
    } catch (e) {
      a.outcome = 'failed';
      a.reason = firstLine(e);
    }
  }
  for (const a of report.attempts) if (a.outcome === 'not tried') a.reason = `${report.loaded!.name} loaded first`;
  return { binding, report };
}
