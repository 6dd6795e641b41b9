/**
 * The CLIP image transform: what Hugging Face's `CLIPImageProcessor` does to an RGB image
 * (transformers 4.x, `do_resize` / `do_center_crop` / `do_rescale` / `do_normalize`):
 *
 * 1. Resize so the shortest side is `size`, with Pillow's resampler (`PIL.Image.BICUBIC` by default).
 *    Output size follows `get_resize_output_image_size(..., default_to_square=False)`:
 *    `short = size`, `long = int(size * long / short)` (truncation).
 * 2. Centre crop `size` x `size`, offsets as `image_transforms.center_crop`:
 *    `top = (h - size) // 2`, `left = (w - size) // 2` (floor; torchvision's `CenterCrop` rounds
 *    instead, which differs only when `h - size` or `w - size` is odd).
 * 3. Rescale by 1/255 (float64, then float32) and normalise `(x - mean) / std` in float32.
 *
 * Output: one contiguous float32 NCHW tensor for the batch.
 */
import { resizeRgb, type ResampleFilter } from './resample';
import type { RgbImage } from './rgb';
import { invalidParameter } from '../errors';

/** Options of {@link clipTransform}. */
export interface ClipTransformOptions {
  /** Shortest side after resize and side of the square centre crop (CLIP ViT-L/14: 224). */
  size: number;
  /** Per-channel mean, RGB order, in [0, 1] units (CLIP: [0.48145466, 0.4578275, 0.40821073]). */
  mean: readonly [number, number, number] | readonly number[];
  /** Per-channel standard deviation, RGB order (CLIP: [0.26862954, 0.26130258, 0.27577711]). */
  std: readonly [number, number, number] | readonly number[];
  /** Resampling filter of the resize (default `'bicubic'`, Pillow's BICUBIC as in CLIPProcessor). */
  interpolation?: ResampleFilter;
}

/** The output of {@link clipTransform}. */
export interface ClipTensor {
  /** `B * 3 * size * size` float32 values, NCHW, contiguous. */
  data: Float32Array;
  /** `[B, 3, size, size]`. */
  shape: [number, number, number, number];
}

/** CLIP's normalisation constants (OpenAI CLIP, also used by the paper's detectors). */
export const CLIP_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
/** CLIP's normalisation constants (OpenAI CLIP, also used by the paper's detectors). */
export const CLIP_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/**
 * Output size `[width, height]` of the shortest-side resize, as transformers'
 * `get_resize_output_image_size(image, size, default_to_square=False)`.
 */
export function shortSideResizeSize(width: number, height: number, size: number): [number, number] {
  if (width <= height) return [size, Math.trunc((size * height) / width)];
  return [Math.trunc((size * width) / height), size];
}

/** Per-channel lookup table uint8 -> normalised float32, computed with numpy's float32 rounding. */
function normLut(mean: readonly number[], std: readonly number[]): Float32Array {
  const lut = new Float32Array(3 * 256);
  const scale = 1 / 255;
  for (let c = 0; c < 3; c++) {
    const m = Math.fround(mean[c]);
    const s = Math.fround(std[c]);
    for (let v = 0; v < 256; v++) {
      const x = Math.fround(v * scale); // rescale: float64 multiply, then cast to float32
      lut[c * 256 + v] = Math.fround(Math.fround(x - m) / s);
    }
  }
  return lut;
}

function checkTriple(name: string, v: unknown, positive: boolean): void {
  if (
    !Array.isArray(v) || v.length !== 3 ||
    !v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0))
  ) {
    invalidParameter(name, positive ? 'an array of 3 positive finite numbers' : 'an array of 3 finite numbers', v);
  }
}

/**
 * Apply the CLIP transform to a batch of RGB images.
 *
 * @param images - Input images (any sizes; each is resized, cropped and normalised independently).
 * @param opts - Size, mean, std and filter; see {@link ClipTransformOptions}.
 * @param out - Optional reusable output buffer: used when it holds at least `B*3*size*size` floats
 *   (the result's `data` is then `out` itself, or its leading `subarray` when `out` is larger);
 *   a new buffer is allocated otherwise.
 * @returns NCHW float32 tensor `[B, 3, size, size]`.
 */
export function clipTransform(images: readonly RgbImage[], opts: ClipTransformOptions, out?: Float32Array): ClipTensor {
  if (!Array.isArray(images)) invalidParameter('images', 'an array of RgbImage', images);
  if (!opts || typeof opts !== 'object') invalidParameter('opts', 'an options object', opts);
  const { size } = opts;
  if (!Number.isInteger(size) || size < 1 || size > 8192) invalidParameter('size', 'an integer between 1 and 8192', size);
  checkTriple('mean', opts.mean, false);
  checkTriple('std', opts.std, true);
  const filter = opts.interpolation ?? 'bicubic';
  if (filter !== 'bicubic' && filter !== 'bilinear') invalidParameter('interpolation', "one of 'bicubic', 'bilinear'", filter);
  if (out !== undefined && !(out instanceof Float32Array)) invalidParameter('out', 'a Float32Array', out);

  const plane = size * size;
  const need = images.length * 3 * plane;
  const data = out && out.length >= need ? (out.length === need ? out : out.subarray(0, need)) : new Float32Array(need);
  const lut = normLut(opts.mean, opts.std);
  const crop = new Uint8Array(plane * 3);

  for (let b = 0; b < images.length; b++) {
    const img = images[b];
    const [rw, rh] = shortSideResizeSize(img.width, img.height, size);
    const rect = { left: Math.floor((rw - size) / 2), top: Math.floor((rh - size) / 2), width: size, height: size };
    resizeRgb(img, rw, rh, filter, rect, crop);
    const base = b * 3 * plane;
    const o0 = base;
    const o1 = base + plane;
    const o2 = base + 2 * plane;
    for (let i = 0, p = 0; i < plane; i++, p += 3) {
      data[o0 + i] = lut[crop[p]];
      data[o1 + i] = lut[256 + crop[p + 1]];
      data[o2 + i] = lut[512 + crop[p + 2]];
    }
  }
  return { data, shape: [images.length, 3, size, size] };
}
