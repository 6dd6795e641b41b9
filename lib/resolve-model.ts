/**
 * Where a detector model comes from: a file, or a registry name pulled into the cache. Shared by
 * the Detector and the CLI so that both accept the same names.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { modelCacheDir, readManifest } from './cache';
import { DfdetError, invalidParameter } from './errors';
import { defaultModel, getModel } from './registry';

/** A model ready for Model.load, and the name to show for it. */
export interface ResolvedModel {
  source: string | Uint8Array;
  /**
   * The name results show: the registry name, else the file's base name (results may leave the
   * machine, e.g. from a server: they must not reveal its paths), or `<bytes>`.
   */
  name: string;
}

/**
 * Resolves `model`: bytes as they are; an existing path; else a registry name whose pulled and
 * converted file is in the cache; `undefined` means the registry's default model.
 * @throws DfdetError NOT_FOUND with the command that fixes it.
 */
export async function resolveModel(model: string | Uint8Array | undefined, cacheDir?: string): Promise<ResolvedModel> {
  if (model instanceof Uint8Array) return { source: model, name: '<bytes>' };
  if (model !== undefined && typeof model !== 'string') invalidParameter('model', 'a path, a registry name or a Uint8Array', model);
  if (model !== undefined && fs.existsSync(model)) return { source: model, name: path.basename(model) };
  let entryName: string;
  try {
    entryName = (model === undefined ? defaultModel() : getModel(model)).name;
  } catch {
    if (model === undefined) throw noModel();
    throw new DfdetError('NOT_FOUND', `model not found: ${model} is neither a file nor a registry name (see dfdet pull --list)`);
  }
  const manifest = await readManifest(entryName, cacheDir);
  if (manifest?.converted && fs.existsSync(manifest.converted)) return { source: manifest.converted, name: entryName };
  if (model === undefined) throw noModel();
  throw new DfdetError('NOT_FOUND', `${entryName} is not in the cache (${modelCacheDir(entryName, cacheDir)}): run \`dfdet pull ${entryName}\``);
}

function noModel(): DfdetError {
  return new DfdetError(
    'NOT_FOUND',
    "no detector model given and none pulled: run `dfdet pull` (the authors' weights), pass --model FILE, " +
      'or make a random demo model with `dfdet model init -o demo.pt` (its scores mean nothing)',
  );
}
