/**
 * What to tell a user whose addon does not load: the platform, the libtorch found, why each
 * candidate failed, and the one fix that applies (install the prebuilt package, install the
 * run-time libraries, or build from source). Shared by the install script, `native()`'s
 * NATIVE_LOAD_FAILED error and `dfdet doctor`, so all three say the same thing.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { FLAVOURS, type Flavour, flavoursForHost } from './flavours';
import { describeLibtorch } from './libtorch';
import type { LoadReport } from './loader';

/** Packages a source build needs besides the system tools (dev-only for dfdet, like sharp's). */
export const BUILD_PACKAGES = ['cmake-js', 'node-addon-api', 'node-api-headers'] as const;

function onPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** What a source build lacks here (empty when it can be attempted). Calls no tool. */
export function sourceBuildMissing(root: string, report: LoadReport): string[] {
  const missing: string[] = [];
  if (!onPath('cmake')) missing.push('cmake');
  const cxx = process.env.CXX ? [process.env.CXX] : ['c++', 'g++', 'clang++'];
  if (!cxx.some((c) => (path.isAbsolute(c) ? fs.existsSync(c) : onPath(c)))) missing.push('a C++17 compiler (g++ or clang++)');
  if (!onPath('make') && !onPath('ninja')) missing.push('make or ninja');
  const npmMissing = BUILD_PACKAGES.filter((pkg) => {
    try {
      require.resolve(`${pkg}/package.json`, { paths: [root] });
      return false;
    } catch {
      return true;
    }
  });
  if (npmMissing.length) missing.push(`the npm package${npmMissing.length > 1 ? 's' : ''} ${npmMissing.join(', ')}`);
  if (!report.libtorch.some((t) => t.headers)) missing.push('libtorch headers (libtorch-dev, or LIBTORCH=/path/to/libtorch)');
  return missing;
}

/** The run-time set of a system-libtorch flavour: shared libraries only (no headers, no compiler). */
const RUNTIME_FIX = (torch: string): string =>
  `sudo apt-get install --no-install-recommends libtorch${torch} libopenblas0-openmp ffmpeg ` +
  '(Debian/Ubuntu; or `sudo bash node_modules/dfdet/scripts/setup-system.sh --runtime`, which also selects the OpenMP OpenBLAS)';

function pinnedVersion(root: string, pkg: string): string {
  try {
    const json = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version?: string; optionalDependencies?: Record<string, string> };
    return json.optionalDependencies?.[pkg] ?? json.version ?? 'latest';
  } catch {
    return 'latest';
  }
}

function bestFlavour(report: LoadReport): Flavour | undefined {
  const host = flavoursForHost(FLAVOURS.filter((f) => f.published));
  const order = report.attempts.map((a) => a.flavour);
  return [...host].sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id)).find((f) => f.device === 'cpu') ?? host[0];
}

/** The fix, as commands: what makes a prebuilt load here, else how to build from source. */
export function loadFix(root: string, report: LoadReport): string {
  // Commands that work even after a failed install removed the package folder.
  const setup = 'sudo apt-get install --no-install-recommends';
  const build =
    `build from source: ${setup} libtorch-dev cmake g++ make (Debian/Ubuntu), then in your project ` +
    `\`npm install --save-dev ${BUILD_PACKAGES.join(' ')}\` and \`npm rebuild dfdet\` ` +
    '(LIBTORCH=/path/to/libtorch for another libtorch, e.g. a CUDA 2.x one)';
  const f = bestFlavour(report);
  if (!f) return `no prebuilt addon is published for ${report.platform}; ${build}.`;
  const attempt = report.attempts.find((a) => a.flavour === f.id);
  const steps: string[] = [];
  // A prebuilt that is there but does not link here (older glibc/libstdc++ than it was built
  // with, or a libtorch whose symbols changed) is fixed by a source build, not by packages.
  if (attempt?.outcome === 'failed' && !/cannot open shared object file/.test(attempt.reason ?? ''))
    return `${f.package} does not link on this system (${attempt.reason}); ${build}.`;
  const needsLibtorch = !report.libtorch.some((t) => t.layout === f.layout && t.minor === f.torch);
  if (needsLibtorch || attempt?.outcome === 'failed')
    steps.push(f.layout === 'system' ? `${RUNTIME_FIX(f.torch)}` : `install libtorch ${f.torch} and export LIBTORCH and LD_LIBRARY_PATH`);
  if (!attempt?.file) steps.push(`npm install ${f.package}@${pinnedVersion(root, f.package)} (the prebuilt addon for this machine; optional dependencies were omitted or could not be fetched)`);
  if (steps.length === 0) steps.push(RUNTIME_FIX(f.torch));
  return `${steps.join(', then ')}. Or ${build}.`;
}

/**
 * The one message for "no addon loads": platform, libtorch found, each candidate's fate, the fix.
 * `sourceBuild` says what happened to the source build when one was considered.
 */
export function loadFailureMessage(root: string, report: LoadReport, sourceBuild?: string): string {
  const lines = [
    `dfdet: no native addon loads on ${report.platform}, Node ${report.node}.`,
    `  libtorch: ${describeLibtorch(report.libtorch)}`,
    ...report.attempts.map((a) => `  ${a.name}: ${a.outcome}${a.reason ? ` (${a.reason})` : ''}`),
    ...(sourceBuild ? [`  build from source: ${sourceBuild}`] : []),
    `  fix: ${loadFix(root, report)}`,
    '  (DFDET_SKIP_BUILD=1 installs without the addon, to build it later.)',
  ];
  return lines.join('\n');
}
