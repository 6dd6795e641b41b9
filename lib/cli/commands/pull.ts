/**
 * `dfdet pull [name]`: download a registry model into the cache and convert it into a dfdet model
 * file (lib/pull + lib/convert); `--list` shows the registry.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Command } from 'commander';

import { cacheList, type CachedFile, defaultCacheDir } from '../../cache';
import { convertModel, type ConvertFormat } from '../../convert';
import { DfdetError } from '../../errors';
import { pull, type PullProgress } from '../../pull';
import { type Converter, defaultModel, getModel, listModels, type RegistryEntry } from '../../registry';
import { bytes, textTable } from '../output';
import { EXIT, interruptSignal } from '../options';

interface PullFlags {
  list?: boolean;
  cacheDir?: string;
  baseUrl?: string;
  force?: boolean;
  json?: boolean;
  progress?: boolean;
}

/** File name of the converted model inside a model's cache folder. */
export const CONVERTED_NAME = 'model.dfdet.pt';

const FORMATS: Record<Exclude<Converter, 'torchscript'>, { format: ConvertFormat; ext: RegExp }> = {
  'lightning-ckpt': { format: 'lightning', ext: /\.ckpt$/ },
  'gend-safetensors': { format: 'gend', ext: /\.safetensors$/ },
  'hf-clip-safetensors': { format: 'hf-clip', ext: /\.safetensors$/ },
};

/**
 * The `convert` step of pull for a registry entry: the converter the entry names, writing
 * `<model cache dir>/model.dfdet.pt`; a TorchScript entry is used as downloaded.
 */
export async function convertPulled(files: CachedFile[], entry: RegistryEntry, log: (s: string) => void = () => undefined): Promise<string> {
  if (entry.converter === 'torchscript') {
    const f = files[0];
    if (!f) throw new DfdetError('NOT_FOUND', `${entry.name} has no files`);
    return f.path;
  }
  const spec = FORMATS[entry.converter];
  const weights = files.find((f) => spec.ext.test(f.name));
  if (!weights) throw new DfdetError('NOT_FOUND', `${entry.name}: no file matching ${spec.ext} to convert (files: ${files.map((f) => f.name).join(', ')})`);
  const out = path.join(path.dirname(weights.path), CONVERTED_NAME);
  log(`converting ${weights.name} (${entry.converter}) ...`);
  const r = await convertModel(weights.path, out, { format: spec.format });
  for (const w of r.warnings) log(`warning: ${w}`);
  return r.output;
}

function progressLine(p: PullProgress): string {
  const name = `${p.file} (${p.fileIndex + 1}/${p.fileCount})`;
  if (p.cached) return `${name}: cached (${bytes(p.bytes)})`;
  if (p.total) {
    const f = Math.min(1, p.bytes / p.total);
    const w = 30;
    return `${name} [${'#'.repeat(Math.round(f * w))}${'.'.repeat(w - Math.round(f * w))}] ${(f * 100).toFixed(1)}% ${bytes(p.bytes)}/${bytes(p.total)}`;
  }
  return `${name}: ${bytes(p.bytes)}`;
}

async function listRegistry(flags: PullFlags): Promise<void> {
  const cacheDir = flags.cacheDir ?? defaultCacheDir();
  const cached = await cacheList({ cacheDir }).catch(() => []);
  const def = defaultModel().name;
  const rows = listModels().map((m) => {
    const c = cached.find((x) => x.name === m.name);
    const size = m.files.every((f) => f.size !== undefined) ? m.files.reduce((a, f) => a + (f.size ?? 0), 0) : null;
    return { entry: m, default: m.name === def, size, cached: c ? (c.complete ? 'yes' : 'partial') : 'no', converted: c?.converted ?? null };
  });
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(rows.map((r) => ({ ...r.entry, default: r.default, size: r.size, cached: r.cached, converted: r.converted })), null, 2)}\n`);
    return;
  }
  process.stdout.write(
    `${textTable(
      ['name', 'files', 'size', 'licence', 'cached'],
      rows.map((r) => [`${r.entry.name}${r.default ? ' (default)' : ''}`, r.entry.files.map((f) => f.name).join(' '), bytes(r.size), r.entry.licence, r.cached]),
    )}\ncache: ${cacheDir}\n`,
  );
}

/** Registers `pull`. */
export function registerPull(program: Command): void {
  program
    .command('pull')
    .description('download a registry model into the cache and convert it for dfdet')
    .argument('[name]', 'registry name (default: the registry default; see --list)')
    .option('--list', 'list the registry models (name, files, size, licence, cached?)')
    .option('--cache-dir <dir>', 'cache folder (default $DFDET_CACHE, else $XDG_CACHE_HOME/dfdet, else ~/.cache/dfdet)')
    .option('--base-url <url>', 'download from this host instead of the hub (mirrors, tests); default $DFDET_HUB_URL')
    .option('--force', 'download and convert again even when cached')
    .option('--json', 'print the result (or the list) as JSON')
    .option('--no-progress', 'no progress on stderr (shown only when stderr is a terminal)')
    .addHelpText('after', '\nExit codes: 0 pulled, 1 download failed (an interrupted download resumes next time), 2 unknown name, bad option or conversion failed, 130 interrupted.')
    .action(async (name: string | undefined, flags: PullFlags) => {
      if (flags.list) return listRegistry(flags);
      const entry = name ? getModel(name) : defaultModel();
      const baseUrl = flags.baseUrl ?? (process.env.DFDET_HUB_URL || undefined);
      const tty = flags.progress !== false && Boolean(process.stderr.isTTY);
      const interrupt = interruptSignal();
      let lastDraw = 0;
      const log = (s: string): void => {
        process.stderr.write(`${tty ? '\r\x1b[K' : ''}${s}\n`);
      };
      const t0 = performance.now();
      try {
        log(`pulling ${entry.name} (${entry.files.length} file${entry.files.length > 1 ? 's' : ''}, licence: ${entry.licence})`);
        const r = await pull(entry, {
          cacheDir: flags.cacheDir,
          baseUrl,
          force: Boolean(flags.force),
          signal: interrupt.signal,
          onProgress: (p) => {
            const done = p.cached || (p.total !== null && p.bytes >= p.total);
            if (!tty) {
              if (done) log(progressLine(p));
              return;
            }
            const now = performance.now();
            if (!done && now - lastDraw < 100) return;
            lastDraw = now;
            process.stderr.write(`\r\x1b[K${progressLine(p)}${done ? '\n' : ''}`);
          },
          convert: (files, e) => convertPulled(files, e, log),
        });
        const seconds = (performance.now() - t0) / 1000;
        if (flags.json) {
          process.stdout.write(`${JSON.stringify({ name: r.entry.name, dir: r.dir, files: r.files, downloaded: r.downloaded, converted: r.converted, manifest: r.manifest, seconds }, null, 2)}\n`);
        } else {
          const size = r.converted && fs.existsSync(r.converted) ? ` (${bytes(fs.statSync(r.converted).size)})` : '';
          process.stdout.write(
            `${r.entry.name}: ${r.downloaded.length ? `downloaded ${r.downloaded.join(', ')}` : 'already cached'} in ${seconds.toFixed(1)} s\n` +
              `  folder: ${r.dir}\n  model:  ${r.converted ?? '(not converted)'}${size}\n` +
              `use it: dfdet detect --model ${r.entry.name} photo.jpg${r.entry.name === defaultModel().name ? '   (or without --model: it is the default)' : ''}\n`,
          );
        }
      } finally {
        interrupt.dispose();
      }
      if (interrupt.interrupted) process.exitCode = EXIT.INTERRUPTED;
    });
}
