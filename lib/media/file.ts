/**
 * Checks on a media file path before a decoder (sharp, ffmpeg) is started on it, so that a missing,
 * empty or non-regular file gets a clear typed error instead of a decoder's message.
 */
import * as fs from 'node:fs';
import { DfdetError } from '../errors';

/**
 * Asserts that `file` is a non-empty regular file. `what` names it in messages ('Image', 'Video').
 * @throws DfdetError NOT_FOUND when it cannot be stat'ed; DECODE_FAILED when it is not a regular file or is empty.
 */
export async function checkMediaFile(file: string, what: 'Image' | 'Video'): Promise<void> {
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(file);
  } catch (e) {
    throw new DfdetError('NOT_FOUND', `${what} file not found: ${file}`, { cause: e, details: { path: file } });
  }
  if (!st.isFile()) throw new DfdetError('DECODE_FAILED', `Not a regular file: ${file}`, { details: { path: file } });
  if (st.size === 0) throw new DfdetError('DECODE_FAILED', `${what} file is empty (0 bytes): ${file}`, { details: { path: file } });
}
