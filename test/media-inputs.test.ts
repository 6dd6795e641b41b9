/**
 * Inputs: folder scans and globs never follow symlinked folders, symlink loops get their own
 * message, described inputs check their kind, and a stream that never ends can always be aborted.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import sharp from 'sharp';
import { listMediaFiles, resolveInput } from '../lib/inputs';
import { expandGlob } from '../lib/cli/glob';
import { decodeImage } from '../lib/media/image';
import { expectDfdetError } from './helpers/errors';

let dir: string;
let outside: string;
let png: Buffer;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-inputs-'));
  outside = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-outside-'));
  png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#08f' } }).png().toBuffer();
  fs.writeFileSync(path.join(outside, 'secret.png'), png);
  fs.mkdirSync(path.join(dir, 'd', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'd', 'a.png'), png);
  fs.writeFileSync(path.join(dir, 'd', 'sub', 'b.png'), png);
  // Folders named like media, pointing outside; a link to a file; a loop; a dangling link.
  fs.symlinkSync(outside, path.join(dir, 'd', 'innocent.jpg'));
  fs.symlinkSync('/', path.join(dir, 'd', 'root.jpg'));
  fs.symlinkSync(path.join(outside, 'secret.png'), path.join(dir, 'd', 'file-link.png'));
  fs.symlinkSync(path.join(dir, 'd', 'loop.png'), path.join(dir, 'd', 'loop.png'));
  fs.symlinkSync(path.join(dir, 'nowhere.png'), path.join(dir, 'd', 'dangling.png'));
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(outside, { recursive: true, force: true });
});

describe('folder scans and globs do not follow symlinked folders', () => {
  it('listMediaFiles skips folder links named like media, keeps file links and reports broken ones', async () => {
    const files = (await listMediaFiles(path.join(dir, 'd'))).map((f) => path.relative(dir, f));
    expect(files).toEqual(['d/a.png', 'd/dangling.png', 'd/file-link.png', 'd/loop.png', 'd/sub/b.png']);
    expect(files.some((f) => f.includes('secret') || f.includes('innocent') || f.includes('root'))).toBe(false);
  });

  it('resolveInput of the folder gives only the files under it', async () => {
    const sources = await resolveInput(path.join(dir, 'd'));
    expect(sources.every((s) => s.path!.startsWith(path.join(dir, 'd')))).toBe(true);
    expect(sources.map((s) => path.basename(s.path!))).not.toContain('innocent.jpg');
  });

  it('globs match file links but never walk into folder links', async () => {
    const star = (await expandGlob(path.join(dir, 'd', '*.jpg'))).map((f) => path.relative(dir, f));
    expect(star).toEqual([]);
    const deep = (await expandGlob(path.join(dir, '**', '*.png'))).map((f) => path.relative(dir, f));
    expect(deep).toEqual(['d/a.png', 'd/file-link.png', 'd/sub/b.png']);
    const any = (await expandGlob(path.join(dir, 'd', '*', '*'))).map((f) => path.relative(dir, f));
    expect(any).toEqual(['d/sub/b.png']);
  });
});

describe('symlink loops', () => {
  it('are BAD_INPUT with a clear message, not NOT_FOUND', async () => {
    const loop = path.join(dir, 'd', 'loop.png');
    await expectDfdetError(resolveInput(loop), 'BAD_INPUT', /symbolic link loop/);
    await expectDfdetError(decodeImage(loop), 'BAD_INPUT', /symbolic link loop/);
    // A missing file stays NOT_FOUND.
    await expectDfdetError(resolveInput(path.join(dir, 'd', 'dangling.png')), 'NOT_FOUND', /no such file/);
  });
});

describe('described inputs', () => {
  it("reject kind 'audio' (and other kinds) with BAD_INPUT", async () => {
    await expectDfdetError(resolveInput({ data: png, kind: 'audio' as never }), 'BAD_INPUT', /'image' or 'video' for kind/);
    await expectDfdetError(resolveInput({ path: path.join(dir, 'd', 'a.png'), kind: 'text' as never }), 'BAD_INPUT', /for kind/);
    expect((await resolveInput({ data: png, kind: 'image', name: 'mine.png' }))[0]).toMatchObject({ name: 'mine.png', kind: 'image' });
  });

  it('keep a stream whole after sniffing its kind', async () => {
    const [img] = await resolveInput({ data: Readable.from([png.subarray(0, 10), png.subarray(10)]), name: 'up.png' });
    expect(img).toMatchObject({ name: 'up.png', kind: 'image' });
    expect(Buffer.compare(Buffer.from(img!.bytes!), png)).toBe(0);
  });
});

/** A stream that sends `head` and then nothing, ever. */
function endless(head?: Buffer): Readable {
  const s = new Readable({ read() {} });
  if (head) s.push(head);
  return s;
}

/** Resolves when nothing else is pending in the event loop's current turn (the read is waiting). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('a stream that never ends', () => {
  for (const [label, headBytes] of [
    ['no bytes at all', 0],
    ['an image head', 40],
  ] as const) {
    it(`resolveInput aborts at once (${label})`, async () => {
      const s = endless(headBytes ? png.subarray(0, headBytes) : undefined);
      const ac = new AbortController();
      const p = resolveInput({ data: s, name: 'upload' }, { signal: ac.signal });
      await settle();
      ac.abort(new Error('client went away'));
      await expectDfdetError(p, 'ABORTED', /upload/);
      expect(s.destroyed).toBe(true);
    });
  }

  it('resolveInput rejects at once when already aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    await expectDfdetError(resolveInput(endless(), { signal: ac.signal }), 'ABORTED');
  });

  it('decodeImage of a stream aborts at once', async () => {
    const s = endless(png.subarray(0, 40));
    const ac = new AbortController();
    const p = decodeImage(s, { signal: ac.signal, name: 'upload.png' });
    await settle();
    ac.abort();
    await expectDfdetError(p, 'ABORTED', /upload\.png/);
    expect(s.destroyed).toBe(true);
  });
});
