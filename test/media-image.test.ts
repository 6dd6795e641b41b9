import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { decodeImage, type RgbImage } from '../lib/media/image';
import { sniffMediaKind, mediaKindFromPath } from '../lib/media/kind';
import type { ErrorCode } from '../lib/errors';
import { expectDfdetError } from './helpers/errors';

let dir: string;
const W = 64;
const H = 48;

/** Left half red, right half blue, a green top row: enough to tell orientation and channel order. */
function pattern(): Buffer {
  const b = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      if (y < 8) b[i + 1] = 255;
      else if (x < W / 2) b[i] = 255;
      else b[i + 2] = 255;
    }
  }
  return b;
}

function px(img: RgbImage, x: number, y: number): number[] {
  const i = (y * img.width + x) * 3;
  return [img.data[i], img.data[i + 1], img.data[i + 2]];
}

function near(a: number[], b: number[], tol: number): boolean {
  return a.every((v, i) => Math.abs(v - b[i]) <= tol);
}

/** Bad images must be refused within 2 s by default (never hang). */
async function expectCode(p: Promise<unknown>, code: ErrorCode, re?: RegExp, maxMs = 2000): Promise<void> {
  await expectDfdetError(p, code, re, maxMs);
}

const crcTable = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(b: Buffer): number {
  let c = 0xffffffff;
  for (const v of b) c = crcTable[(c ^ v) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-image-'));
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('decodeImage formats', () => {
  const raw = () => sharp(pattern(), { raw: { width: W, height: H, channels: 3 } });
  const formats: [string, (s: sharp.Sharp) => sharp.Sharp, number][] = [
    ['jpeg', (s) => s.jpeg({ quality: 95 }), 40],
    ['png', (s) => s.png(), 0],
    ['webp', (s) => s.webp({ lossless: true }), 0],
    ['avif', (s) => s.avif({ quality: 90 }), 60],
    ['tiff', (s) => s.tiff({ compression: 'lzw' }), 0],
    ['gif', (s) => s.gif(), 8],
  ];
  for (const [fmt, enc, tol] of formats) {
    it(`decodes ${fmt} from a path, a Buffer and a stream`, async () => {
      const file = path.join(dir, `p.${fmt}`);
      await enc(raw()).toFile(file);
      const buf = fs.readFileSync(file);
      expect(sniffMediaKind(buf)).toBe('image');
      expect(mediaKindFromPath(file)).toBe('image');
      for (const input of [file, buf, fs.createReadStream(file)]) {
        const img = await decodeImage(input);
        expect([img.width, img.height]).toEqual([W, H]);
        expect(img.data.length).toBe(W * H * 3);
        expect(near(px(img, 10, 30), [255, 0, 0], tol), `${fmt} red ${px(img, 10, 30)}`).toBe(true);
        expect(near(px(img, 50, 30), [0, 0, 255], tol), `${fmt} blue ${px(img, 50, 30)}`).toBe(true);
        expect(near(px(img, 30, 2), [0, 255, 0], tol), `${fmt} green ${px(img, 30, 2)}`).toBe(true);
      }
    });
  }

  it('takes the first frame of an animated GIF', async () => {
    const frames = Buffer.concat([Buffer.alloc(16 * 16 * 3, 0), Buffer.alloc(16 * 16 * 3, 255)]);
    const file = path.join(dir, 'anim.gif');
    await sharp(frames, { raw: { width: 16, height: 32, channels: 3, pageHeight: 16 } as sharp.CreateRaw })
      .gif({ loop: 0 })
      .toFile(file);
    expect((await sharp(file).metadata()).pages).toBe(2);
    const img = await decodeImage(file);
    expect([img.width, img.height]).toEqual([16, 16]);
    expect(px(img, 8, 8)).toEqual([0, 0, 0]);
  });

  it('applies EXIF orientation 6 (rotate 90° clockwise)', async () => {
    const file = path.join(dir, 'rot.jpg');
    await raw().jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toFile(file);
    expect((await sharp(file).metadata()).orientation).toBe(6);
    const img = await decodeImage(file);
    expect([img.width, img.height]).toEqual([H, W]);
    // Stored top row (green) becomes the right column; stored left half (red) becomes the top half.
    expect(near(px(img, H - 2, W / 2), [0, 255, 0], 40)).toBe(true);
    expect(near(px(img, 10, 10), [255, 0, 0], 40)).toBe(true);
    expect(near(px(img, 10, W - 10), [0, 0, 255], 40)).toBe(true);
  });

  it('turns greyscale into equal RGB channels', async () => {
    const g = Buffer.alloc(32 * 8);
    for (let i = 0; i < g.length; i++) g[i] = (i % 32) * 8;
    const file = path.join(dir, 'grey.png');
    await sharp(g, { raw: { width: 32, height: 8, channels: 1 } }).toColourspace('b-w').png().toFile(file);
    expect((await sharp(file).metadata()).channels).toBe(1);
    const img = await decodeImage(file);
    expect(px(img, 5, 3)).toEqual([40, 40, 40]);
    expect(px(img, 31, 0)).toEqual([248, 248, 248]);
  });

  it('converts CMYK JPEG to RGB', async () => {
    const file = path.join(dir, 'cmyk.jpg');
    await raw().toColourspace('cmyk').jpeg({ quality: 95 }).toFile(file);
    expect((await sharp(file).metadata()).space).toBe('cmyk');
    const img = await decodeImage(file);
    expect([img.width, img.height]).toEqual([W, H]);
    const red = px(img, 10, 30);
    expect(red[0]).toBeGreaterThan(180);
    expect(red[1]).toBeLessThan(90);
    expect(red[2]).toBeLessThan(90);
    const blue = px(img, 50, 30);
    // sRGB blue is outside the CMYK gamut: it comes back darker, but clearly blue.
    expect(blue[2]).toBeGreaterThan(120);
    expect(blue[2] - Math.max(blue[0], blue[1])).toBeGreaterThan(50);
  });

  it('composites RGBA over white (default), black, or drops alpha', async () => {
    // Transparent pixel storing red, opaque pixel storing blue.
    const rgba = Buffer.from([255, 0, 0, 0, 0, 0, 255, 255]);
    const file = path.join(dir, 'alpha.png');
    await sharp(rgba, { raw: { width: 2, height: 1, channels: 4 } }).png().toFile(file);
    expect(px(await decodeImage(file), 0, 0)).toEqual([255, 255, 255]);
    expect(px(await decodeImage(file, { alpha: 'black' }), 0, 0)).toEqual([0, 0, 0]);
    expect(px(await decodeImage(file, { alpha: 'drop' }), 0, 0)).toEqual([255, 0, 0]);
    expect(px(await decodeImage(file), 1, 0)).toEqual([0, 0, 255]);
  });

  it('reduces 16-bit PNG to 8 bits', async () => {
    const file = path.join(dir, 'deep.png');
    await raw().toColourspace('rgb16').png().toFile(file);
    expect((await sharp(file).metadata()).depth).toBe('ushort');
    const img = await decodeImage(file);
    expect(px(img, 10, 30)).toEqual([255, 0, 0]);
  });
});

describe('decodeImage bad input', () => {
  it('rejects a 50000x50000 PNG header fast (decompression bomb)', async () => {
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(50000, 0);
    ihdr.writeUInt32BE(50000, 4);
    ihdr[8] = 8; // bit depth
    ihdr[9] = 2; // RGB
    const png = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', ihdr),
      chunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])),
      chunk('IEND', Buffer.alloc(0)),
    ]);
    const file = path.join(dir, 'bomb.png');
    fs.writeFileSync(file, png);
    await expectCode(decodeImage(file), 'DECODE_FAILED', /50000x50000 = 2500000000 pixels, over the limit of 100000000/, 1000);
    await expectCode(decodeImage(png, { maxPixels: 10 }), 'DECODE_FAILED', /over the limit of 10 /, 1000);
  });

  it('enforces a custom maxPixels on a real image', async () => {
    const file = path.join(dir, 'small.png');
    await sharp({ create: { width: 100, height: 100, channels: 3, background: '#808080' } }).png().toFile(file);
    await expectCode(decodeImage(file, { maxPixels: 9999 }), 'DECODE_FAILED', /maxPixels/);
    expect((await decodeImage(file, { maxPixels: 10000 })).width).toBe(100);
  });

  it('rejects empty files and buffers', async () => {
    const file = path.join(dir, 'empty.jpg');
    fs.writeFileSync(file, '');
    await expectCode(decodeImage(file), 'DECODE_FAILED', /empty/);
    await expectCode(decodeImage(Buffer.alloc(0)), 'DECODE_FAILED', /empty/);
  });

  it('rejects a truncated JPEG (strict) and decodes what it can otherwise', async () => {
    const full = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#336699' } })
      .jpeg()
      .toBuffer();
    const cut = full.subarray(0, Math.floor(full.length / 2));
    const file = path.join(dir, 'cut.jpg');
    fs.writeFileSync(file, cut);
    await expectCode(decodeImage(file), 'DECODE_FAILED', /Could not decode image/);
    const lenient = await decodeImage(cut, { strict: false });
    expect([lenient.width, lenient.height]).toEqual([640, 480]);
  });

  it('rejects random bytes and text', async () => {
    const rnd = Buffer.alloc(4096);
    for (let i = 0; i < rnd.length; i++) rnd[i] = (i * 2654435761) >>> 24;
    const file = path.join(dir, 'random.jpg');
    fs.writeFileSync(file, rnd);
    await expectCode(decodeImage(file), 'DECODE_FAILED');
    await expectCode(decodeImage(Buffer.from('hello, world')), 'DECODE_FAILED');
  });

  it('reports a missing file as NOT_FOUND and a directory as DECODE_FAILED', async () => {
    await expectCode(decodeImage(path.join(dir, 'nope.png')), 'NOT_FOUND', /not found/);
    await expectCode(decodeImage(dir), 'DECODE_FAILED', /Not a regular file/);
  });

  it('reports a failing stream as DECODE_FAILED', async () => {
    const { Readable } = await import('node:stream');
    const s = new Readable({
      read() {
        this.destroy(new Error('disk on fire'));
      },
    });
    await expectCode(decodeImage(s), 'DECODE_FAILED', /disk on fire/);
  });

  it('validates options with BAD_INPUT', async () => {
    await expectCode(decodeImage(Buffer.from([1]), { maxPixels: -1 }), 'BAD_INPUT', /Expected a positive integer for maxPixels/);
    await expectCode(decodeImage(Buffer.from([1]), { alpha: 'grey' as 'white' }), 'BAD_INPUT', /alpha/);
    await expectCode(decodeImage(42 as unknown as Buffer), 'BAD_INPUT', /for input/);
  });
});

describe('media kind', () => {
  it('classifies by extension', () => {
    expect(mediaKindFromPath('/a/b/C.JPG')).toBe('image');
    expect(mediaKindFromPath('x.webm')).toBe('video');
    expect(mediaKindFromPath('x.MOV')).toBe('video');
    expect(mediaKindFromPath('notes.txt')).toBe('unknown');
    expect(mediaKindFromPath('noext')).toBe('unknown');
  });

  it('sniffs magic bytes', () => {
    const ftyp = (brand: string) => Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from(`ftyp${brand}`, 'ascii'), Buffer.alloc(8)]);
    expect(sniffMediaKind(ftyp('isom'))).toBe('video');
    expect(sniffMediaKind(ftyp('avif'))).toBe('image');
    expect(sniffMediaKind(Buffer.from([0x1a, 0x45, 0xdf, 0xa3, 0, 0]))).toBe('video');
    expect(sniffMediaKind(Buffer.from('RIFF\0\0\0\0AVI LIST', 'latin1'))).toBe('video');
    expect(sniffMediaKind(Buffer.from('hello world'))).toBe('unknown');
    expect(sniffMediaKind(Buffer.alloc(2))).toBe('unknown');
  });
});
