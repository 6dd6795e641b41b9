/**
 * Opening and reading the binary files that the format readers (safetensors, torch zip) parse.
 */

import * as fs from 'node:fs';
import { DfdetError } from '../errors';

/**
 * Opens `path` for reading and hands the handle to `parse`. When `parse` throws, the handle is closed
 * and the error passed on; otherwise the handle belongs to what `parse` returned.
 * @throws DfdetError NOT_FOUND when the file does not exist, BAD_FORMAT when it is not a regular
 *   file or cannot be opened otherwise.
 */
export async function openFileWith<T>(path: string, parse: (handle: fs.promises.FileHandle) => Promise<T>): Promise<T> {
  let handle: fs.promises.FileHandle;
  try {
    await checkRegularFile(path);
    handle = await fs.promises.open(path, 'r');
  } catch (e) {
    if (e instanceof DfdetError) throw e;
    const code = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'NOT_FOUND' : 'BAD_FORMAT';
    throw new DfdetError(code, `Cannot open ${path}: ${(e as Error).message}`, { cause: e, details: { file: path } });
  }
  try {
    return await parse(handle);
  } catch (e) {
    await handle.close().catch(() => undefined);
    throw e;
  }
}

/**
 * Fills `into` with the bytes at `position` (short reads are continued); when the file ends first,
 * calls `onEnd` with the offset reached, which throws the caller's error.
 */
export async function readExactly(handle: fs.promises.FileHandle, into: Uint8Array, position: number, onEnd: (offset: number) => never): Promise<void> {
  let done = 0;
  while (done < into.byteLength) {
    const { bytesRead } = await handle.read(into, done, into.byteLength - done, position + done);
    if (bytesRead === 0) onEnd(position + done);
    done += bytesRead;
  }
}

/**
 * Refuses anything but a regular file (following symlinks) before it is opened: opening a FIFO
 * blocks until a writer comes, and a device never ends.
 * @throws DfdetError BAD_FORMAT naming what the path is; the stat error itself otherwise.
 */
export async function checkRegularFile(path: string): Promise<void> {
  const st = await fs.promises.stat(path);
  if (st.isFile()) return;
  const what = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : 'a device';
  throw new DfdetError('BAD_FORMAT', `Expected a regular file for ${path} but it is ${what}`, { details: { file: path } });
}
