/**
 * The decoded image type every stage shares, its one check, and the fast resize.
 *
 * Two resizes exist on purpose, both in lib/media: resample.ts's `resizeRgb` is Pillow-exact
 * (the CLIP transform must match the reference preprocessing bit for bit) but runs in JS on the
 * event loop; {@link scaleRgb} here runs in libvips off the event loop and is what every-frame
 * work uses (face-detector letterboxing). Measured on this project's machine, 1920x1080 to 256x144
 * bilinear: 21 ms of event-loop time for `resizeRgb`, 3.2 ms wall for `scaleRgb` (640x480: 4.3
 * against 2.3 ms).
 */
import sharp from 'sharp';
import { invalidParameter } from '../errors';

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
 * Asserts that `image` is a well-formed {@link RgbImage}; `name` names it in the BAD_INPUT message
 * (`images[3].width`).
 */
export function checkRgbImage(image: unknown, name = 'image'): asserts image is RgbImage {
  if (!image || typeof image !== 'object') invalidParameter(name, 'an RgbImage object', image);
  const { data, width, height } = image as RgbImage;
  if (!Number.isInteger(width) || width < 1) invalidParameter(`${name}.width`, 'a positive integer', width);
  if (!Number.isInteger(height) || height < 1) invalidParameter(`${name}.height`, 'a positive integer', height);
  if (!(data instanceof Uint8Array)) invalidParameter(`${name}.data`, 'a Uint8Array', data);
  if (data.length !== width * height * 3) invalidParameter(`${name}.data.length`, `width * height * 3 = ${width * height * 3}`, data.length);
}

/**
 * Resize `image` to `width` x `height` (aspect not kept) with libvips' linear kernel, antialiased
 * when shrinking, on libuv's thread pool. Not Pillow-exact: use resample.ts's `resizeRgb` where
 * results must match a Python reference. Returns `image` itself when the size is already right.
 */
export async function scaleRgb(image: RgbImage, width: number, height: number): Promise<RgbImage> {
  checkRgbImage(image);
  if (!Number.isInteger(width) || width < 1) invalidParameter('width', 'a positive integer', width);
  if (!Number.isInteger(height) || height < 1) invalidParameter('height', 'a positive integer', height);
  if (width === image.width && height === image.height) return image;
  const raw = Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength);
  const data = await sharp(raw, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(width, height, { kernel: 'linear', fit: 'fill' })
    .raw()
    .toBuffer();
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width, height };
}
