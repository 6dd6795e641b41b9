/**
 * Finds the libtorch installations on this machine without loading any of them: the system one
 * (Debian/Ubuntu `libtorch1.13`, versioned sonames) and upstream ones named by `LIBTORCH`,
 * `Torch_DIR` or `LD_LIBRARY_PATH` (the pytorch.org zip or a pip `torch/lib`). The loader uses
 * this to try only the prebuilt flavours whose libtorch is there, and messages use it to say
 * what was found.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { LibtorchLayout } from './flavours';

/** One libtorch found on disk. */
export interface LibtorchInstall {
  layout: LibtorchLayout;
  /** Folder holding libtorch_cpu.so*. */
  libDir: string;
  /** Full version (`1.13.1`, `2.5.1+cu124`) or null when the files do not say. */
  version: string | null;
  /** `major.minor`, or null. */
  minor: string | null;
  /** A CUDA build (libtorch_cuda.so is there). */
  cuda: boolean;
  /** Its CMake config is there too, so a source build can use it (`libtorch-dev`). */
  headers: boolean;
  /** How it was found: `system`, `LIBTORCH`, `Torch_DIR` or `LD_LIBRARY_PATH`. */
  source: string;
  /** Whether the dynamic loader finds it without help (system folder or on LD_LIBRARY_PATH). */
  onLoaderPath: boolean;
}

const MULTIARCH: Record<string, string> = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' };

/** System library folders searched for a packaged libtorch. */
export function systemLibDirs(): string[] {
  const triplet = MULTIARCH[process.arch];
  return [...(triplet ? [`/usr/lib/${triplet}`] : []), '/usr/lib64', '/usr/lib'];
}

function list(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

function minorOf(version: string | null): string | null {
  const m = version ? /^(\d+\.\d+)/.exec(version) : null;
  return m ? m[1]! : null;
}

function findSystem(): LibtorchInstall[] {
  const found: LibtorchInstall[] = [];
  for (const dir of systemLibDirs()) {
    const files = list(dir);
    for (const f of files) {
      const m = /^libtorch_cpu\.so\.(\d+\.\d+)$/.exec(f);
      if (!m) continue;
      const full = files.map((g) => new RegExp(`^libtorch_cpu\\.so\\.(${m[1]!.replace('.', '\\.')}\\.\\d+)$`).exec(g)?.[1]).find(Boolean);
      found.push({
        layout: 'system',
        libDir: dir,
        version: full ?? m[1]!,
        minor: m[1]!,
        cuda: files.includes(`libtorch_cuda.so.${m[1]}`),
        headers: fs.existsSync(path.join(dir, 'cmake', 'Torch', 'TorchConfig.cmake')),
        source: 'system',
        onLoaderPath: true,
      });
    }
  }
  return found;
}

function upstreamVersion(root: string): string | null {
  try {
    return fs.readFileSync(path.join(root, 'build-version'), 'utf8').trim() || null; // libtorch zip
  } catch {
    // not a libtorch zip
  }
  try {
    const m = /__version__\s*=\s*['"]([^'"]+)['"]/.exec(fs.readFileSync(path.join(root, 'version.py'), 'utf8')); // pip torch/
    return m ? m[1]! : null;
  } catch {
    return null;
  }
}

function loaderPathDirs(): string[] {
  return (process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean).map((d) => path.resolve(d));
}

function findUpstream(libDir: string, source: string): LibtorchInstall | null {
  const dir = path.resolve(libDir);
  if (!fs.existsSync(path.join(dir, 'libtorch_cpu.so'))) return null;
  const root = path.dirname(dir);
  const version = upstreamVersion(root);
  return {
    layout: 'upstream',
    libDir: dir,
    version,
    minor: minorOf(version),
    cuda: fs.existsSync(path.join(dir, 'libtorch_cuda.so')),
    headers: fs.existsSync(path.join(root, 'share', 'cmake', 'Torch', 'TorchConfig.cmake')),
    source,
    onLoaderPath: loaderPathDirs().includes(dir),
  };
}

/** Every libtorch found: the system one(s) first, then those named by the environment. */
export function findLibtorch(): LibtorchInstall[] {
  const found = findSystem();
  const upstream: [string, string][] = [];
  if (process.env.LIBTORCH) upstream.push([path.join(process.env.LIBTORCH, 'lib'), 'LIBTORCH']);
  if (process.env.Torch_DIR) upstream.push([path.resolve(process.env.Torch_DIR, '..', '..', '..', 'lib'), 'Torch_DIR']);
  for (const d of loaderPathDirs()) upstream.push([d, 'LD_LIBRARY_PATH']);
  for (const [dir, source] of upstream) {
    if (found.some((f) => f.libDir === path.resolve(dir))) continue;
    const u = findUpstream(dir, source);
    if (u) found.push(u);
  }
  return found;
}

/** `system libtorch 1.13.1 (CPU, with headers) in /usr/lib/x86_64-linux-gnu`, or what was searched. */
export function describeLibtorch(installs: readonly LibtorchInstall[]): string {
  if (installs.length === 0)
    return `no libtorch found (searched ${systemLibDirs().join(', ')}, LIBTORCH, Torch_DIR, LD_LIBRARY_PATH)`;
  return installs
    .map((t) => {
      const what = t.layout === 'system' ? 'system libtorch' : `libtorch (${t.source})`;
      const notes = [t.cuda ? 'CUDA' : 'CPU', t.headers ? 'with headers' : 'no headers'];
      if (!t.onLoaderPath) notes.push('not on LD_LIBRARY_PATH');
      return `${what} ${t.version ?? '(version unknown)'} (${notes.join(', ')}) in ${t.libDir}`;
    })
    .join('; ');
}
