/**
 * Still-image decoding with sharp: any input sharp reads (JPEG, PNG, WebP, AVIF, TIFF, GIF first
 * frame, ...) becomes an 8-bit sRGB image, EXIF orientation applied, alpha composited away.
 */
import sharp from 'sharp';
import { DfdetError, invalidParameter } from '../errors';
import { checkMediaFile } from './file';

/** An 8-bit RGB image: `width * height * 3` bytes, rows top to bottom, pixels interleaved R,G,B (HWC). */
export interface RgbImage {
  /** Pixel bytes, length `width * height * 3`. */
  data: Uint8Array;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
}

/**
 * Default pixel limit of {@link decodeImage}: 100 megapixels (300 MB of decoded RGB). Lower than
 * sharp's own default (268402689 = 0x3FFF²) because a server decodes many images at once.
 */
export const DEFAULT_MAX_PIXELS = 100_000_000;

/** Options of {@link decodeImage}. */
export interface DecodeImageOptions {
  /**
   * Largest accepted `width * height` (default {@link DEFAULT_MAX_PIXELS}). Checked from the header
   * before any pixel is decoded, so decompression bombs fail fast with DECODE_FAILED.
   */
  maxPixels?: number;
  /**
   * How transparency becomes RGB (default `'white'`): `'white'` / `'black'` composite the image
   * over that colour; `'drop'` discards alpha and keeps the stored colour values (what
   * `PIL.Image.convert('RGB')` does, and so Hugging Face's `convert_rgb`).
   */
  alpha?: 'white' | 'black' | 'drop';
  /**
   * Reject images with decoder warnings such as a truncated JPEG (default `true`, sharp's
   * `failOn: 'warning'`). `false` decodes whatever can be decoded (`failOn: 'none'`).
   */
  strict?: boolean;
  /** Largest accepted encoded size in bytes for stream inputs (default 512 MiB). */
  maxBytes?: number;
}

async function readStream(stream: NodeJS.ReadableStream, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer | string>) {
      const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      total += b.length;
      if (total > maxBytes) {
        throw new DfdetError('DECODE_FAILED', `Image stream is larger than maxBytes (${maxBytes} bytes)`);
      }
      chunks.push(b);
    }
  } catch (e) {
    if (e instanceof DfdetError) throw e;
    throw new DfdetError('DECODE_FAILED', `Could not read image stream: ${(e as Error)?.message ?? e}`, { cause: e });
  }
  return Buffer.concat(chunks, total);
}

function describe(input: string | Buffer): string {
  return typeof input === 'string' ? input : `<buffer of ${input.length} bytes>`;
}

/**
 * Decode an image file, buffer or stream to 8-bit RGB.
 *
 * - EXIF orientation is applied (the result is upright, as viewers show it).
 * - Greyscale, CMYK, 16-bit and palette images become 8-bit sRGB; alpha per `opts.alpha`.
 * - Animated GIF/WebP: the first frame.
 *
 * @param input - File path, encoded bytes, or a readable stream of encoded bytes.
 * @param opts - See {@link DecodeImageOptions}.
 * @returns The decoded image.
 * @throws DfdetError `NOT_FOUND` (missing file), `DECODE_FAILED` (empty, corrupt, truncated,
 *   unsupported, over `maxPixels`), `BAD_INPUT` (bad options).
 */
export async function decodeImage(
  input: string | Buffer | Uint8Array | NodeJS.ReadableStream,
  opts: DecodeImageOptions = {},
): Promise<RgbImage> {
  if (!opts || typeof opts !== 'object') invalidParameter('opts', 'an options object', opts);
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!Number.isInteger(maxPixels) || maxPixels < 1) invalidParameter('maxPixels', 'a positive integer', maxPixels);
  const alpha = opts.alpha ?? 'white';
  if (alpha !== 'white' && alpha !== 'black' && alpha !== 'drop') invalidParameter('alpha', "one of 'white', 'black', 'drop'", alpha);
  const strict = opts.strict ?? true;
  if (typeof strict !== 'boolean') invalidParameter('strict', 'a boolean', strict);
  const maxBytes = opts.maxBytes ?? 512 * 1024 * 1024;
  if (!Number.isInteger(maxBytes) || maxBytes < 1) invalidParameter('maxBytes', 'a positive integer', maxBytes);

  let src: string | Buffer;
  if (typeof input === 'string') {
    await checkMediaFile(input, 'Image');
    src = input;
  } else if (Buffer.isBuffer(input)) {
    src = input;
  } else if (input instanceof Uint8Array) {
    src = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  } else if (input && typeof (input as NodeJS.ReadableStream).pipe === 'function') {
    src = await readStream(input as NodeJS.ReadableStream, maxBytes);
  } else {
    invalidParameter('input', 'a file path, Buffer, Uint8Array or readable stream', input);
  }
  if (typeof src !== 'string' && src.length === 0) throw new DfdetError('DECODE_FAILED', 'Image data is empty (0 bytes)');

  const sharpOpts: sharp.SharpOptions = { limitInputPixels: maxPixels, failOn: strict ? 'warning' : 'none', sequentialRead: true };
  // Header first: size checks and a clear message before any pixel is decoded.
  let meta: sharp.Metadata;
  try {
    meta = await sharp(src, { ...sharpOpts, limitInputPixels: false }).metadata();
  } catch (e) {
    throw new DfdetError('DECODE_FAILED', `Could not decode image ${describe(src)}: ${(e as Error)?.message ?? e}`, {
      cause: e,
      details: typeof src === 'string' ? { path: src } : undefined,
    });
  }
  const w = meta.width ?? 0;
  const h = meta.height ?? 0;
  if (w * h > maxPixels) {
    throw new DfdetError(
      'DECODE_FAILED',
      `Image ${describe(src)} is ${w}x${h} = ${w * h} pixels, over the limit of ${maxPixels} (option maxPixels)`,
      { details: { width: w, height: h, maxPixels } },
    );
  }

  try {
    let p = sharp(src, sharpOpts).rotate();
    if (meta.hasAlpha) p = alpha === 'drop' ? p.removeAlpha() : p.flatten({ background: alpha === 'white' ? '#ffffff' : '#000000' });
    const { data, info } = await p
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) {
      throw new DfdetError('DECODE_FAILED', `Decoded image has ${info.channels} channels, expected 3`);
    }
    const out = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return { data: out, width: info.width, height: info.height };
  } catch (e) {
    if (e instanceof DfdetError) throw e;
    throw new DfdetError('DECODE_FAILED', `Could not decode image ${describe(src)}: ${(e as Error)?.message ?? e}`, {
      cause: e,
      details: typeof src === 'string' ? { path: src } : undefined,
    });
  }
}
