/** Content hashes of files: model provenance, downloads and conversions name files by them. */
import crypto from 'node:crypto';
import fs from 'node:fs';

/** sha256 (lower-case hex) of a file, streamed in 1 MiB chunks. */
export async function sha256File(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
