/**
 * Glob expansion for quoted patterns (`dfdet detect 'data/**\/*.jpg'`), so that the CLI behaves
 * the same in shells that do not expand `**` and on collections too large for a command line.
 * Supported: `*` (any characters but `/`), `?` (one character but `/`), `**` (any number of
 * folders, as a whole path segment) and `[...]` character classes. Patterns match files only.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** True when `s` holds a glob metacharacter (`*`, `?` or `[`). */
export function hasGlob(s: string): boolean {
  return /[*?[]/.test(s);
}

/**
 * What an input that was a pattern matching no file is reported with (not "no such file": the
 * user gave a pattern, not a file name).
 */
export function noMatchMessage(pattern: string): string {
  return `the pattern ${pattern} matched no files`;
}

/** Regular expression of one path segment pattern (no `/`). */
export function segmentRegExp(segment: string): RegExp {
  let re = '';
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = segment.indexOf(']', i + 2);
      if (end < 0) {
        re += '\\[';
        continue;
      }
      let body = segment.slice(i + 1, end);
      if (body.startsWith('!')) body = `^${body.slice(1)}`;
      re += `[${body.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  // Like shells, `*` and `?` do not match a leading dot.
  return new RegExp(segment.startsWith('.') ? `^${re}$` : `^(?!\\.)${re}$`);
}

/**
 * Files matching `pattern`, sorted. Folders matched by a wildcard or `**` are walked without
 * following symlinked folders, whatever their name (`d/*.jpg` skips `d/root.jpg -> /`); symlinks to
 * files match. A pattern that matches nothing gives an empty list.
 */
export async function expandGlob(pattern: string): Promise<string[]> {
  const abs = path.isAbsolute(pattern);
  const parts = pattern.split(/[\\/]+/).filter((p, i) => p !== '' || (i === 0 && abs));
  // The literal prefix is the starting folder.
  let i = 0;
  const prefix: string[] = [];
  while (i < parts.length - 1 && !hasGlob(parts[i]!)) prefix.push(parts[i++]!);
  const base = abs ? path.join('/', ...prefix) : prefix.length ? path.join(...prefix) : '.';
  const rest = parts.slice(i);
  const out: string[] = [];
  const seen = new Set<string>();

  const readDir = async (dir: string): Promise<fs.Dirent[]> => {
    try {
      const entries = await fs.promises.readdir(dir, { withFileTypes: true });
      return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    } catch {
      return [];
    }
  };
  const isFile = async (e: fs.Dirent, p: string): Promise<boolean> => e.isFile() || (e.isSymbolicLink() && (await fs.promises.stat(p).catch(() => null))?.isFile() === true);
  const join = (dir: string, name: string): string => (dir === '.' && !abs ? name : path.join(dir, name));

  const walk = async (dir: string, k: number): Promise<void> => {
    const seg = rest[k]!;
    const last = k === rest.length - 1;
    if (seg === '**') {
      // Zero folders, then one more folder and `**` again.
      if (last) {
        for (const e of await readDir(dir)) {
          const p = join(dir, e.name);
          if (e.name.startsWith('.')) continue;
          if (e.isDirectory()) await walk(p, k);
          else if (await isFile(e, p)) add(p);
        }
        return;
      }
      await walk(dir, k + 1);
      for (const e of await readDir(dir)) if (e.isDirectory() && !e.name.startsWith('.')) await walk(join(dir, e.name), k);
      return;
    }
    if (!hasGlob(seg)) {
      const p = join(dir, seg);
      const st = await fs.promises.stat(p).catch(() => null);
      if (!st) return;
      if (last) {
        if (st.isFile()) add(p);
      } else if (st.isDirectory()) await walk(p, k + 1);
      return;
    }
    const re = segmentRegExp(seg);
    for (const e of await readDir(dir)) {
      if (!re.test(e.name)) continue;
      const p = join(dir, e.name);
      if (last) {
        if (await isFile(e, p)) add(p);
      } else if (e.isDirectory()) await walk(p, k + 1);
    }
  };
  const add = (p: string): void => {
    if (!seen.has(p)) {
      seen.add(p);
      out.push(p);
    }
  };
  if (rest.length === 0) return [];
  await walk(base, 0);
  return out.sort();
}
