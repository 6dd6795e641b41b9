/**
 * Still-image decoding with sharp: raster images only (JPEG, PNG, WebP, AVIF/HEIF, TIFF, GIF first
 * frame, ...), recognised by their content whatever their name, become 8-bit sRGB, EXIF orientation
 * applied, alpha composited away. Vector and document formats (SVG, PDF) are refused: an SVG can
 * pull in other files.
 */
import * as fs from 'node:fs';
import sharp from 'sharp';
import { DfdetError, invalidParameter } from '../errors';
import { reserveDecodedBytes } from './budget';
import { abortError, checkMediaFile, defaultName, isReadable, pathError, readStream, type MediaData } from './file';
import { sniffMediaKind } from './kind';
import type { RgbImage } from './rgb';

export type { RgbImage } from './rgb';

/**
 * Default pixel limit of {@link decodeImage}: 100 megapixels (300 MB of decoded RGB). Lower than
 * sharp's own default (268402689 = 0x3FFF²) because a server decodes many images at once.
 */
export const DEFAULT_MAX_PIXELS = 100_000_000;

/** Default of {@link DecodeImageOptions.maxDecodedBytes}: 512 MiB. */
export const DEFAULT_MAX_DECODED_BYTES = 512 * 2 ** 20;

/** sharp's names of the raster formats decoded; anything else (svg, pdf, magick, ...) is refused. */
const RASTER_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', 'avif', 'jp2', 'jxl']);

/** Options of {@link decodeImage}. */
export interface DecodeImageOptions {
  /**
   * Largest accepted `width * height` (default {@link DEFAULT_MAX_PIXELS}). Checked from the header
   * before any pixel is decoded, so decompression bombs fail fast with DECODE_FAILED.
   */
  maxPixels?: number;
  /**
   * Most bytes the decoder may hold for this input (default {@link DEFAULT_MAX_DECODED_BYTES}):
   * every decoded frame at the decoder's working channel count plus the RGB result. Checked from
   * the header; a tiny file declaring a huge canvas fails fast with DECODE_FAILED. The process-wide
   * total is bounded too (env `DFDET_MAX_DECODED_BYTES`, default 4 GiB).
   */
  maxDecodedBytes?: number;
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
  /** Abort: settles at once with `ABORTED` (a stream being read is destroyed). */
  signal?: AbortSignal;
  /** The input's name in messages (default: the path, or a description of the bytes). */
  name?: string;
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) invalidParameter(name, 'a positive integer', v);
  return v;
}

/** The first bytes of a file, to recognise its format by content. */
async function fileHead(file: string, name: string): Promise<Uint8Array> {
  try {
    const fd = await fs.promises.open(file, 'r');
    try {
      const head = Buffer.alloc(64);
      const { bytesRead } = await fd.read(head, 0, 64, 0);
      return head.subarray(0, bytesRead);
    } finally {
      await fd.close();
    }
  } catch (e) {
    throw pathError(name, e, 'Image file');
  }
}

/** sharp's message with its generic wrappers replaced by what is wrong with the input. */
function explainSharp(e: unknown, warnings: readonly string[], src: string | Buffer, name: string): string {
  let m = String((e as Error)?.message ?? e).trim();
  // The caller's name in place of the path (they differ for `{ path, name }` inputs).
  if (typeof src === 'string' && src !== name) m = m.split(src).join(name);
  const lines = (text: string): string[] => [...new Set(text.split('\n').map((l) => l.trim()).filter(Boolean))];
  if (/Warning treated as error/.test(m)) {
    // sharp puts the decoder's warnings after its own line; the 'warning' events may add more.
    const w = lines([...lines(m).filter((l) => !/Warning treated as error/.test(l)), ...warnings].join('\n')).slice(0, 3);
    const what = w.length ? `damaged image data (${w.join('; ')})` : 'damaged image data (the decoder warned without details)';
    return `${what}; pass strict: false to decode what is readable`;
  }
  m = lines(m).slice(-3).join('; ');
  const header = /^Input (?:buffer|file) has corrupt header:?\s*(.*)$/s.exec(m);
  if (header) return header[1] ? `corrupt or truncated header (${header[1].trim()})` : 'corrupt header (the decoder gave no detail)';
  if (/unsupported image format/i.test(m)) return 'not an image the decoder can read (an unsupported variant, or a corrupt header)';
  if (/end of stream|premature end|unexpected end|truncated/i.test(m)) return `truncated image data (${m})`;
  return m;
}

/**
 * Decode an image file, buffer or stream to 8-bit RGB.
 *
 * - Only raster formats, recognised by content: an SVG named `.jpg` is refused.
 * - EXIF orientation is applied (the result is upright, as viewers show it).
 * - Greyscale, CMYK, 16-bit and palette images become 8-bit sRGB; alpha per `opts.alpha`.
 * - Animated GIF/WebP: the first frame.
 *
 * @param input - File path, encoded bytes, or a readable stream of encoded bytes.
 * @param opts - See {@link DecodeImageOptions}.
 * @returns The decoded image.
 * @throws DfdetError `NOT_FOUND` (missing file), `DECODE_FAILED` (empty, corrupt, truncated,
 *   not a raster image, over `maxPixels` or `maxDecodedBytes`), `BAD_INPUT` (bad options, symlink
 *   loop), `ABORTED`.
 */
export async function decodeImage(input: MediaData | Buffer, opts: DecodeImageOptions = {}): Promise<RgbImage> {
  if (!opts || typeof opts !== 'object') invalidParameter('opts', 'an options object', opts);
  const maxPixels = positiveInt('maxPixels', opts.maxPixels ?? DEFAULT_MAX_PIXELS);
  const maxDecodedBytes = positiveInt('maxDecodedBytes', opts.maxDecodedBytes ?? DEFAULT_MAX_DECODED_BYTES);
  const alpha = opts.alpha ?? 'white';
  if (alpha !== 'white' && alpha !== 'black' && alpha !== 'drop') invalidParameter('alpha', "one of 'white', 'black', 'drop'", alpha);
  const strict = opts.strict ?? true;
  if (typeof strict !== 'boolean') invalidParameter('strict', 'a boolean', strict);
  const maxBytes = positiveInt('maxBytes', opts.maxBytes ?? 512 * 1024 * 1024);
  const { signal } = opts;
  const name = opts.name ?? defaultName(input);
  if (signal?.aborted) throw abortError(`Decoding ${name}`, signal);

  let src: string | Buffer;
  let head: Uint8Array;
  if (typeof input === 'string') {
    if (input === '') invalidParameter('input', 'a non-empty path', input);
    await checkMediaFile(input, 'Image', name);
    src = input;
    head = await fileHead(input, name);
  } else if (input instanceof Uint8Array) {
    src = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    head = src;
  } else if (isReadable(input)) {
    src = await readStream(input, { maxBytes, signal, name });
    head = src;
  } else {
    return invalidParameter('input', 'a file path, Buffer, Uint8Array or readable stream', input);
  }
  if (typeof src !== 'string' && src.length === 0) throw new DfdetError('DECODE_FAILED', `Image ${name} is empty (0 bytes)`);
  const fail = (why: string, cause?: unknown, details?: Record<string, unknown>): DfdetError =>
    new DfdetError('DECODE_FAILED', `Could not decode image ${name}: ${why}`, { cause, details: { path: name, ...details } });
  // By content, before any decoder sees it: only the raster formats kind.ts knows.
  if (sniffMediaKind(head) !== 'image') {
    const text = /^\s*(<\?xml|<svg|<!DOCTYPE|%PDF)/i.test(Buffer.from(head).toString('latin1'));
    throw fail(text ? 'it is a vector or document file (SVG/XML/PDF), not a raster image; such inputs are refused' : 'not a raster image format dfdet decodes (JPEG, PNG, WebP, GIF, TIFF, AVIF/HEIF)');
  }

  const sharpOpts: sharp.SharpOptions = { limitInputPixels: maxPixels, failOn: strict ? 'warning' : 'none', sequentialRead: true };
  const warnings: string[] = [];
  const run = async <T>(f: () => Promise<T>): Promise<T> => {
    try {
      return await abortable(f(), signal, name);
    } catch (e) {
      if (e instanceof DfdetError) throw e;
      throw fail(explainSharp(e, warnings, src, name), e);
    }
  };
  // Header first: format and size checks, and a clear message, before any pixel is decoded.
  const meta = await run(() => sharp(src, { ...sharpOpts, limitInputPixels: false }).on('warning', (w: string) => warnings.push(w)).metadata());
  if (!meta.format || !RASTER_FORMATS.has(meta.format)) throw fail(`its content is '${meta.format ?? 'unknown'}', not a raster image format dfdet decodes`);
  const w = meta.width ?? 0;
  const h = meta.height ?? 0;
  if (w * h > maxPixels) {
    throw fail(`it is ${w}x${h} = ${w * h} pixels, over the limit of ${maxPixels} (option maxPixels)`, undefined, { width: w, height: h, maxPixels });
  }
  // The decoder's working copy (its channels, one frame: only the first page is decoded) plus the RGB result.
  const cost = w * h * (Math.max(meta.channels ?? 4, 3) + 3);
  if (cost > maxDecodedBytes) {
    throw fail(
      `its header declares ${w}x${h} pixels, which would take ${cost} bytes to decode, over the limit of ${maxDecodedBytes} (option maxDecodedBytes)`,
      undefined,
      { width: w, height: h, maxDecodedBytes },
    );
  }
  const release = await reserveDecodedBytes(cost, `image ${name}`, signal);
  const decode = async (): Promise<RgbImage> => {
    // The reservation lasts as long as libvips works, even when an abort settled the call earlier.
    try {
      let p = sharp(src, sharpOpts).on('warning', (x: string) => warnings.push(x)).rotate();
      if (meta.hasAlpha) p = alpha === 'drop' ? p.removeAlpha() : p.flatten({ background: alpha === 'white' ? '#ffffff' : '#000000' });
      const { data, info } = await p.toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
      if (info.channels !== 3) throw fail(`it decoded to ${info.channels} channels, expected 3`);
      return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
    } finally {
      release();
    }
  };
  return run(decode);
}

/** `p`, or `ABORTED` as soon as `signal` aborts (libvips cannot be interrupted; its result is dropped). */
function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined, name: string): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortError(`Decoding ${name}`, signal));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
