/**
 * API keys: one per line in a file, checked against `Authorization: Bearer <key>` with a
 * constant-time compare of SHA-256 digests (so neither the key's length nor its first wrong byte
 * shows in the timing), against every key without stopping at the first match.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';

import { DfdetError } from '../errors';

const sha256 = (s: string): Buffer => crypto.createHash('sha256').update(s, 'utf8').digest();

/**
 * Reads an API key file: one key per line; blank lines and lines starting with `#` are skipped.
 * @throws DfdetError NOT_FOUND (no file), BAD_INPUT (no key in it, or a key shorter than 16 characters).
 */
export function readApiKeyFile(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new DfdetError('NOT_FOUND', `cannot read the API key file ${file}`);
  }
  const keys = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (keys.length === 0) throw new DfdetError('BAD_INPUT', `Expected at least one key (one per line) for the API key file but received none in ${file}`);
  const short = keys.findIndex((k) => k.length < 16);
  if (short >= 0) throw new DfdetError('BAD_INPUT', `Expected keys of at least 16 characters for the API key file but received ${keys[short]!.length} on key ${short + 1}`);
  return keys;
}

/** A checker of `Authorization` headers against `keys`: true when the header carries one of them. */
export function bearerChecker(keys: readonly string[]): (authorization: string | undefined) => boolean {
  const digests = keys.map(sha256);
  return (authorization) => {
    const m = typeof authorization === 'string' ? /^Bearer +(\S+) *$/i.exec(authorization) : null;
    if (!m) return false;
    const given = sha256(m[1]!);
    let ok = false;
    for (const d of digests) ok = crypto.timingSafeEqual(d, given) || ok;
    return ok;
  };
}
