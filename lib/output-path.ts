/**
 * Where dfdet may write a file it creates (model init, convert, buildModule). Writers put a temp file
 * beside the target and rename it over the target; a rename replaces whatever the path names, so a
 * device (`-o /dev/null` as root), a FIFO, a socket or a directory must be refused first.
 */
import * as fs from 'node:fs';

import { DfdetError, invalidParameter } from './errors';

/** What `stats` describes, in words, for messages. */
function kindOf(stats: fs.Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Checks that `file` may be replaced by a new file: it does not exist yet, is a regular file, or
 * is a symlink to a regular file (or a dangling one: the rename replaces only the link).
 * @param name the option or parameter named in the message (e.g. 'output', '--output').
 * @throws DfdetError BAD_INPUT for an empty path or for a device, FIFO, socket or directory (or a
 *   symlink to one).
 */
export async function checkOutputPath(file: string, name = 'output'): Promise<void> {
  if (typeof file !== 'string' || file === '') invalidParameter(name, 'a file path', file);
  let link: fs.Stats;
  try {
    link = await fs.promises.lstat(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new DfdetError('BAD_INPUT', `Cannot write ${name} ${file}: ${(e as Error).message}`, { cause: e, details: { file } });
  }
  if (link.isFile()) return;
  let target = link;
  let via = '';
  if (link.isSymbolicLink()) {
    try {
      target = await fs.promises.stat(file);
    } catch {
      return; // dangling link: renaming over it touches nothing else
    }
    if (target.isFile()) return;
    via = `a symlink to ${await fs.promises.realpath(file).catch(() => '?')}, `;
  }
  throw new DfdetError(
    'BAD_INPUT',
    `Expected a regular file or a new path for ${name} but ${file} is ${via}${kindOf(target)}: dfdet writes a new file and renames it into place, which would replace it`,
    { details: { file } },
  );
}
