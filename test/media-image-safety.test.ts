/**
 * Images: raster formats only, by content (an SVG named .jpg is refused and reads no sibling
 * file); decoded bytes bounded per input (a tiny GIF declaring 10000x10000) and in total; sharp's
 * vague messages replaced by what is wrong with the input.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { decodeImage } from '../lib/media/image';
import { Budget, reserveDecodedBytes } from '../lib/media/budget';
import { checkRgbImage, scaleRgb } from '../lib/media/rgb';
import { expectDfdetError } from './helpers/errors';

let dir: string;
let png: Buffer;
let jpg: Buffer;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-isafe-'));
  png = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#0a0' } }).png().toBuffer();
  jpg = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#a00' } }).jpeg().toBuffer();
  fs.writeFileSync(path.join(dir, 'sibling.png'), png);
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('SVG and other non-raster content', () => {
  const svg = (href: string): string =>
    `<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64">` +
    `<image width="64" height="64" xlink:href="${href}"/></svg>`;

  it('the recipe decodes with sharp alone (else this test proves nothing)', async () => {
    const file = path.join(dir, 'probe.svg');
    fs.writeFileSync(file, svg('sibling.png'));
    expect((await sharp(file).metadata()).format).toBe('svg');
  });

  it('an SVG named .jpg is refused by content, as a file and as bytes', async () => {
    for (const href of ['sibling.png', path.join(dir, 'sibling.png')]) {
      const file = path.join(dir, 'innocent.jpg');
      fs.writeFileSync(file, svg(href));
      await expectDfdetError(decodeImage(file), 'DECODE_FAILED', /innocent\.jpg.*vector or document file \(SVG/);
      await expectDfdetError(decodeImage(Buffer.from(svg(href)), { name: 'upload.jpg' }), 'DECODE_FAILED', /upload\.jpg.*SVG/);
    }
    // Leading whitespace or no XML prolog changes nothing.
    await expectDfdetError(decodeImage(Buffer.from(`  \n<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>`)), 'DECODE_FAILED', /SVG/);
  });

  it('PDF and text are refused by content', async () => {
    await expectDfdetError(decodeImage(Buffer.from('%PDF-1.4\n1 0 obj\n')), 'DECODE_FAILED', /PDF/);
    await expectDfdetError(decodeImage(Buffer.from('hello world, not an image')), 'DECODE_FAILED', /not a raster image/);
  });
});

/** A GIF whose header declares `w` x `h` (the real data is one pixel). */
async function bombGif(w: number, h: number): Promise<Buffer> {
  const g = Buffer.from(await sharp({ create: { width: 1, height: 1, channels: 3, background: '#f00' } }).gif().toBuffer());
  g.writeUInt16LE(w, 6);
  g.writeUInt16LE(h, 8);
  const d = g.indexOf(0x2c, 13);
  g.writeUInt16LE(w, d + 5);
  g.writeUInt16LE(h, d + 7);
  return g;
}

describe('decoded bytes are bounded', () => {
  it('a tiny GIF declaring 10000x10000 is refused from its header', async () => {
    const gif = await bombGif(10000, 10000);
    expect(gif.length).toBeLessThan(100);
    expect((await sharp(gif).metadata()).width).toBe(10000);
    await expectDfdetError(decodeImage(gif, { name: 'bomb.gif' }), 'DECODE_FAILED', /bomb\.gif.*10000x10000.*option maxDecodedBytes/);
  });

  it('maxDecodedBytes applies to real images too', async () => {
    await expectDfdetError(decodeImage(jpg, { maxDecodedBytes: 64 * 48 * 6 - 1 }), 'DECODE_FAILED', /maxDecodedBytes/);
    const ok = await decodeImage(jpg, { maxDecodedBytes: 64 * 48 * 6 });
    expect([ok.width, ok.height]).toEqual([64, 48]);
    await expectDfdetError(decodeImage(jpg, { maxDecodedBytes: 0 }), 'BAD_INPUT', /maxDecodedBytes/);
  });

  it('the process-wide budget refuses what can never fit and queues the rest first come first served', async () => {
    await expectDfdetError(reserveDecodedBytes(Number.MAX_SAFE_INTEGER, 'huge'), 'DECODE_FAILED', /DFDET_MAX_DECODED_BYTES/);
    const b = new Budget(10);
    const first = await b.reserve(6, 'a');
    const order: string[] = [];
    const second = b.reserve(6, 'b').then((r) => (order.push('b'), r));
    const third = b.reserve(2, 'c').then((r) => (order.push('c'), r));
    expect(b.waiting).toBe(2);
    first();
    first(); // idempotent
    (await second)();
    (await third)();
    expect(order).toEqual(['b', 'c']);
    expect(b.used).toBe(0);
  });

  it('an aborted waiter leaves the queue at once and gets nothing', async () => {
    const b = new Budget(1);
    const held = await b.reserve(1, 'a');
    const ac = new AbortController();
    const waiting = b.reserve(1, 'waiter', ac.signal);
    ac.abort();
    await expectDfdetError(waiting, 'ABORTED', /waiter/);
    expect(b.waiting).toBe(0);
    held();
    expect(b.used).toBe(0);
  });
});

describe('messages say what is wrong with the input', () => {
  it('a truncated JPEG: "corrupt or truncated header" with the decoder’s words, not a bare prefix', async () => {
    const e = await expectDfdetError(decodeImage(jpg.subarray(0, 100), { name: 'cut.jpg' }), 'DECODE_FAILED');
    expect(e.message).toMatch(/cut\.jpg: corrupt or truncated header \(.*premature end/i);
    expect(e.message).not.toMatch(/corrupt header:\s*$/);
  });

  it('a damaged JPEG tile in a TIFF (strict) shows the decoder’s warning, not "Warning treated as error"', async () => {
    const raw = Buffer.alloc(64 * 48 * 3);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * 7) & 255;
    const tif = await sharp(raw, { raw: { width: 64, height: 48, channels: 3 } }).tiff({ compression: 'jpeg' }).toBuffer();
    const sos = tif.indexOf(Buffer.from([0xff, 0xda]));
    for (let i = sos + 20; i < sos + 200; i += 11) tif[i] = 0;
    // The recipe: sharp alone says only that a warning was treated as an error.
    await expect(sharp(tif, { failOn: 'warning' }).raw().toBuffer()).rejects.toThrow(/^Warning treated as error/);
    const e = await expectDfdetError(decodeImage(tif, { name: 'scan.tif' }), 'DECODE_FAILED');
    expect(e.message).toMatch(/^Could not decode image scan\.tif: damaged image data \(Corrupt JPEG data: .+\); pass strict: false/);
    expect(e.message).not.toMatch(/Warning treated as error/);
    expect((await decodeImage(tif, { strict: false })).width).toBe(64);
  });

  it('a damaged JPEG body in strict mode says what is damaged', async () => {
    // Garbage in the entropy-coded data after a valid header: libvips warns, strict mode fails.
    const bad = Buffer.from(jpg);
    const sos = bad.indexOf(Buffer.from([0xff, 0xda]));
    for (let i = sos + 20; i < bad.length - 2; i += 3) bad[i] = 0xff;
    const e = await expectDfdetError(decodeImage(bad, { name: 'damaged.jpg' }), 'DECODE_FAILED', /damaged\.jpg/);
    expect(e.message).not.toMatch(/Warning treated as error/);
    const lax = await decodeImage(bad, { strict: false });
    expect(lax.width).toBe(64);
  });
});

describe('rgb.ts', () => {
  it('checkRgbImage names the bad field; scaleRgb resizes off the event loop and keeps the colour', async () => {
    expect(() => checkRgbImage({ data: new Uint8Array(11), width: 2, height: 2 }, 'frame')).toThrow(/width \* height \* 3 = 12 for frame\.data\.length/);
    expect(() => checkRgbImage(null, 'images[3]')).toThrow(/RgbImage object for images\[3\]/);
    const img = { data: new Uint8Array(40 * 30 * 3).fill(200), width: 40, height: 30 };
    const small = await scaleRgb(img, 20, 15);
    expect([small.width, small.height, small.data.length]).toEqual([20, 15, 20 * 15 * 3]);
    expect(small.data.every((v) => v === 200)).toBe(true);
    expect(await scaleRgb(img, 40, 30)).toBe(img);
    await expect(scaleRgb(img, 0, 3)).rejects.toThrow(/positive integer for width/);
  });
});
