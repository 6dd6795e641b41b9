/**
 * `dfdet doctor`: checks the installation (which addon loaded and why the others did not, libtorch,
 * BLAS, ffmpeg, sharp, face model, cache) and says how to fix what is wrong. Exit 0 when all is well, 1 with a list of problems.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';

import type { Command } from 'commander';

import { cacheList, defaultCacheDir } from '../../cache';
import { isDfdetError } from '../../errors';
import { BLAZEFACE_MODEL_PATH } from '../../faces/blazeface';
import { native, nativeLoadReport, packageRoot } from '../../native';
import { loadFix, sourceBuildMissing } from '../../runtime/advice';
import { cpuFeatures, type CpuFeatures } from '../../runtime/cpu';
import { describeLibtorch } from '../../runtime/libtorch';
import { chooseDType } from '../../model';
import type { LoadAttempt } from '../../runtime/loader';
import { defaultModel } from '../../registry';
import { bytes } from '../output';
import { EXIT } from '../options';

/** One finding: a problem (exit 1) or a warning, with how to fix it. */
export interface Finding {
  what: string;
  fix: string;
}

/** Everything `doctor` reports (`--json`). */
export interface DoctorReport {
  ok: boolean;
  problems: Finding[];
  warnings: Finding[];
  node: { version: string; platform: string; arch: string; cpus: number };
  /** The addon candidates in load order: the one that loaded, and why each other did not. */
  addon: { platform: string; loaded: string | null; file: string | null; libtorch: string; attempts: LoadAttempt[]; sourceBuildMissing: string[] };
  torch: { version: string; flavour: string; cudaAvailable: boolean; cudaDevices: number; threads: number; sdpaShim: boolean; blasLibraries: string[]; blas: string } | null;
  /** What `dtype: 'auto'` chooses on the CPU here, and the CPU flags it read. */
  precision: { autoCpu: string; cpu: CpuFeatures };
  ffmpeg: { path: string; version: string | null };
  ffprobe: { path: string; version: string | null };
  sharp: { version: string | null; libvips: string | null };
  faceModel: { path: string; present: boolean };
  cache: { dir: string; models: { name: string; complete: boolean; converted: string | null; bytes: number; missing: string[]; partial: string[] }[] };
}

const SETUP_FIX = `sudo bash ${packageRoot}/scripts/setup-system.sh`;

/** Which BLAS the mapped libraries are: 'reference' (slow), 'openblas-pthread' (oversubscribes), 'openblas-openmp', 'mkl' or 'unknown'. */
export function classifyBlas(libs: readonly string[]): string {
  if (libs.some((l) => /\/blas\/libblas\.so|\/lapack\/liblapack\.so/.test(l))) return 'reference';
  if (libs.some((l) => /openblas-pthread/.test(l))) return 'openblas-pthread';
  if (libs.some((l) => /openblas-openmp/.test(l))) return 'openblas-openmp';
  if (libs.some((l) => /mkl/i.test(l))) return 'mkl';
  if (libs.some((l) => /openblas/.test(l))) return 'openblas';
  return 'unknown';
}

function toolVersion(bin: string): string | null {
  const r = spawnSync(bin, ['-hide_banner', '-version'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status !== 0) return null;
  const m = /version\s+(\S+)/.exec(r.stdout);
  return m ? m[1]! : r.stdout.split('\n')[0]!.trim();
}

/** Runs every check. */
export async function runChecks(cacheDir = defaultCacheDir()): Promise<DoctorReport> {
  const problems: Finding[] = [];
  const warnings: Finding[] = [];
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  if (nodeMajor < 20) problems.push({ what: `Node ${process.version} is too old`, fix: 'install Node 20 or newer' });

  const load = nativeLoadReport();
  const addon: DoctorReport['addon'] = {
    platform: load.platform,
    loaded: load.loaded?.name ?? null,
    file: load.loaded?.file ?? null,
    libtorch: describeLibtorch(load.libtorch),
    attempts: load.attempts,
    sourceBuildMissing: sourceBuildMissing(packageRoot, load),
  };
  let torch: DoctorReport['torch'] = null;
  try {
    const r = native().runtimeInfo();
    const blas = classifyBlas(r.blasLibraries);
    torch = {
      version: r.torchVersion,
      flavour: r.cudaAvailable ? `CUDA (${r.cudaDeviceCount} device${r.cudaDeviceCount === 1 ? '' : 's'})` : 'CPU',
      cudaAvailable: r.cudaAvailable,
      cudaDevices: r.cudaDeviceCount,
      threads: r.threads,
      sdpaShim: r.sdpaShim,
      blasLibraries: r.blasLibraries,
      blas,
    };
    if (blas === 'reference')
      problems.push({ what: 'the reference BLAS is loaded (about 50x slower than OpenBLAS: ~85 s per ViT-L/14 image)', fix: `${SETUP_FIX}  (selects OpenBLAS-OpenMP as libblas.so.3)` });
    else if (blas === 'openblas-pthread')
      problems.push({ what: 'the pthread flavour of OpenBLAS is loaded (it oversubscribes the cores together with libtorch\'s OpenMP: ~2x slower)', fix: `${SETUP_FIX}  (or run with OMP_WAIT_POLICY=PASSIVE)` });
    if (r.threads < os.cpus().length) warnings.push({ what: `libtorch uses ${r.threads} of ${os.cpus().length} cores before a model is loaded`, fix: 'dfdet sets the thread count when it loads a model (--threads, DFDET_THREADS)' });
  } catch (e) {
    problems.push({ what: `the native addon does not load: ${isDfdetError(e, 'NATIVE_LOAD_FAILED') ? 'no candidate loads (see addon above)' : String(e)}`, fix: loadFix(packageRoot, load) });
  }

  const ffmpegPath = process.env.DFDET_FFMPEG || 'ffmpeg';
  const ffprobePath = process.env.DFDET_FFPROBE || 'ffprobe';
  const ffmpeg = { path: ffmpegPath, version: toolVersion(ffmpegPath) };
  const ffprobe = { path: ffprobePath, version: toolVersion(ffprobePath) };
  for (const [name, t, env] of [['ffmpeg', ffmpeg, 'DFDET_FFMPEG'], ['ffprobe', ffprobe, 'DFDET_FFPROBE']] as const) {
    if (!t.version) problems.push({ what: `${name} not found (${t.path}): videos cannot be read`, fix: `sudo apt-get install ffmpeg (or set ${env} to its path)` });
  }

  const sharp: DoctorReport['sharp'] = { version: null, libvips: null };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const v = (require('sharp') as { versions: Record<string, string> }).versions;
    sharp.version = v.sharp ?? null;
    sharp.libvips = v.vips ?? null;
  } catch (e) {
    problems.push({ what: `sharp does not load: ${(e as Error).message.split('\n')[0]}`, fix: 'npm rebuild sharp (or reinstall dfdet)' });
  }

  const faceModel = { path: BLAZEFACE_MODEL_PATH, present: fs.existsSync(BLAZEFACE_MODEL_PATH) };
  if (!faceModel.present) problems.push({ what: `the face detector model is missing (${BLAZEFACE_MODEL_PATH})`, fix: 'reinstall dfdet (the file ships with the package)' });

  const entries = await cacheList({ cacheDir }).catch(() => []);
  const models = entries.map((m) => ({ name: m.name, complete: m.complete, converted: m.converted, bytes: m.bytes, missing: m.missing, partial: m.partial }));
  for (const m of models) {
    if (!m.complete) warnings.push({ what: `cached model ${m.name} is incomplete (missing: ${m.missing.join(', ') || '-'})`, fix: `dfdet pull ${m.name}` });
    else if (!m.converted) warnings.push({ what: `cached model ${m.name} is not converted`, fix: `dfdet pull ${m.name}` });
  }
  let def = '';
  try {
    def = defaultModel().name;
  } catch {
    // A broken registry shows up when pulling.
  }
  if (def && !models.some((m) => m.name === def && m.complete && m.converted))
    warnings.push({ what: `the default detector (${def}) is not pulled: detect needs --model until it is`, fix: 'dfdet pull' });

  return {
    ok: problems.length === 0,
    problems,
    warnings,
    node: { version: process.version, platform: process.platform, arch: process.arch, cpus: os.cpus().length },
    addon,
    torch,
    precision: { autoCpu: chooseDType('auto', 'cpu'), cpu: cpuFeatures() },
    ffmpeg,
    ffprobe,
    sharp,
    faceModel,
    cache: { dir: cacheDir, models },
  };
}

/** Registers `doctor`. */
export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('check the installation (which addon loaded and why the others did not, libtorch, BLAS, ffmpeg, sharp, models, cache) and say how to fix problems')
    .option('--json', 'print JSON')
    .option('--cache-dir <dir>', 'cache folder to inspect')
    .addHelpText('after', '\nExit codes: 0 all good (warnings allowed), 1 problems found (each with its fix).')
    .action(async (flags: { json?: boolean; cacheDir?: string }) => {
      const r = await runChecks(flags.cacheDir ?? defaultCacheDir());
      process.exitCode = r.ok ? EXIT.OK : EXIT.FAILED;
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
        return;
      }
      const t = r.torch;
      const lines = [
        `node:      ${r.node.version} on ${r.addon.platform}, ${r.node.cpus} cores`,
        `addon:     ${r.addon.loaded ? `${r.addon.loaded} (${r.addon.file})` : 'NONE LOADS'}`,
        ...r.addon.attempts.filter((a) => a.outcome !== 'loaded').map((a) => `  ${a.name}: ${a.outcome}${a.reason ? ` (${a.reason})` : ''}`),
        `  build from source: ${r.addon.sourceBuildMissing.length ? `not possible here (missing ${r.addon.sourceBuildMissing.join(', ')})` : 'possible (npm rebuild dfdet)'}`,
        `  libtorch found: ${r.addon.libtorch}`,
        t
          ? `libtorch:  ${t.version}, ${t.flavour}, ${t.threads} thread${t.threads === 1 ? '' : 's'}, SDPA shim ${t.sdpaShim ? 'on' : 'off'}`
          : 'libtorch:  NOT LOADED',
        `precision: auto = ${r.precision.autoCpu} on cpu (${r.precision.cpu.bf16 ? 'native bf16' : 'no native bf16'}; flags: ${r.precision.cpu.flags.join(' ') || 'none found'})`,
        ...(t ? [`BLAS:      ${t.blas}${t.blasLibraries.length ? `: ${t.blasLibraries.join(', ')}` : ''}`] : []),
        `ffmpeg:    ${r.ffmpeg.version ?? 'MISSING'} (${r.ffmpeg.path})`,
        `ffprobe:   ${r.ffprobe.version ?? 'MISSING'} (${r.ffprobe.path})`,
        `sharp:     ${r.sharp.version ?? 'MISSING'}, libvips ${r.sharp.libvips ?? '-'}`,
        `faces:     ${r.faceModel.present ? 'ok' : 'MISSING'} (${r.faceModel.path})`,
        `cache:     ${r.cache.dir}`,
        ...(r.cache.models.length
          ? r.cache.models.map((m) => `  ${m.name}: ${m.complete ? 'complete' : 'INCOMPLETE'}, ${bytes(m.bytes)}${m.converted ? `, model ${m.converted}` : ', not converted'}${m.partial.length ? `, ${m.partial.length} partial download(s)` : ''}`)
          : ['  (no models pulled)']),
      ];
      for (const w of r.warnings) lines.push(`warning: ${w.what}\n  fix: ${w.fix}`);
      if (r.problems.length) {
        lines.push('', `${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}:`);
        for (const p of r.problems) lines.push(`- ${p.what}\n  fix: ${p.fix}`);
      } else lines.push('', 'all good');
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
