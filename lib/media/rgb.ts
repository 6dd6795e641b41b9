/**
 * The decoded image type every stage shares and its one check. The one resizer of RgbImages is
 * resample.ts's `resizeRgb` (Pillow-exact, which the CLIP transform needs).
 */
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
