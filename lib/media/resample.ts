/**
 * Pillow-exact separable resampling of 8-bit RGB images.
 *
 * A TypeScript port of Pillow 9.x `libImaging/Resample.c` (`ImagingResample` for 8-bit images):
 * per output pixel, a convolution whose support is scaled by the downscale factor (so downscaling
 * antialiases), coefficients normalised to sum 1 and then quantised to 22-bit fixed point, a
 * horizontal pass whose result is rounded and clipped to uint8, then a vertical pass. This is what
 * `PIL.Image.resize(size, Image.BICUBIC)` computes, and so what Hugging Face's `CLIPImageProcessor`
 * feeds the model. sharp/libvips' cubic kernels differ, hence this port.
 *
 * Only the pixels of an optional output crop are computed; every output pixel depends only on its
 * own input window, so cropping after a full resize gives the very same bytes.
 */
import { checkRgbImage, type RgbImage } from './rgb';
import { invalidParameter } from '../errors';

/** Resampling filter, as in Pillow: `'bicubic'` (a = -0.5, support 2) or `'bilinear'` (triangle, support 1). */
export type ResampleFilter = 'bicubic' | 'bilinear';

/** Pillow's `PRECISION_BITS` for 8-bit images (32 - 8 - 2). */
const PRECISION_BITS = 22;
const HALF = 1 << (PRECISION_BITS - 1);
/** Accumulator value at or above which `clip8` saturates to 255. */
const SAT = 255 * 2 ** PRECISION_BITS + 2 ** PRECISION_BITS;

function bicubic(x: number): number {
  // Pillow's bicubic_filter with a = -0.5; the expression order is kept for bit-identical doubles.
  const a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

function bilinear(x: number): number {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

const FILTERS: Record<ResampleFilter, { fn: (x: number) => number; support: number }> = {
  bicubic: { fn: bicubic, support: 2.0 },
  bilinear: { fn: bilinear, support: 1.0 },
};

/** Fixed-point coefficients of one axis: output pixel `i` reads `count[i]` inputs from `first[i]`. */
interface AxisCoeffs {
  ksize: number;
  first: Int32Array;
  count: Int32Array;
  /** `outSize * ksize` coefficients in 2^22 fixed point (integers, stored as doubles for speed; sums stay exact). */
  k: Float64Array;
}

/** Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the box [0, inSize). */
function precomputeCoeffs(inSize: number, outSize: number, filter: ResampleFilter): AxisCoeffs {
  const { fn, support: baseSupport } = FILTERS[filter];
  const scale = inSize / outSize;
  const filterscale = scale < 1.0 ? 1.0 : scale;
  const support = baseSupport * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const k = new Float64Array(outSize * ksize);
  const w = new Float64Array(ksize);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) cast truncates toward zero; negative values are clamped to 0 right after anyway.
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      const v = fn((x + xmin - center + 0.5) * ss);
      w[x] = v;
      ww += v;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0.0 ? w[x] / ww : w[x];
      // normalize_coeffs_8bpc: round half away from zero, then truncate.
      k[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    first[xx] = xmin;
    count[xx] = xmax;
  }
  return { ksize, first, count, k };
}

function clip8(v: number): number {
  if (v >= SAT) return 255;
  if (v <= 0) return 0;
  return v >> PRECISION_BITS;
}

/** A rectangle in output pixels. */
export interface CropRect {
  left: number;
  top: number;
  width: number;
  height: number;
}

const coeffCache = new Map<string, AxisCoeffs>();

/** Coefficients depend only on (inSize, outSize, filter); batches of same-sized crops reuse them. */
function coeffsFor(inSize: number, outSize: number, filter: ResampleFilter): AxisCoeffs {
  const key = `${filter}:${inSize}:${outSize}`;
  let c = coeffCache.get(key);
  if (!c) {
    c = precomputeCoeffs(inSize, outSize, filter);
    if (coeffCache.size > 64) coeffCache.clear();
    coeffCache.set(key, c);
  }
  return c;
}

/**
 * Resize an RGB image to `outWidth` x `outHeight` exactly as Pillow's `Image.resize` does for an
 * 8-bit RGB image, and return only the `crop` part of the result (default: all of it).
 *
 * @param image - HWC interleaved RGB input.
 * @param outWidth - Width of the (virtual) resized image, positive integer.
 * @param outHeight - Height of the (virtual) resized image, positive integer.
 * @param filter - Resampling filter (default `'bicubic'`).
 * @param crop - Region of the resized image to compute (default: the whole image); must lie inside it.
 * @param out - Optional destination of at least `crop.width * crop.height * 3` bytes.
 * @returns The cropped, resized image (its `data` is `out` when given, or a view of it).
 */
export function resizeRgb(
  image: RgbImage,
  outWidth: number,
  outHeight: number,
  filter: ResampleFilter = 'bicubic',
  crop?: CropRect,
  out?: Uint8Array,
): RgbImage {
  checkRgbImage(image);
  if (!Number.isInteger(outWidth) || outWidth < 1) invalidParameter('outWidth', 'a positive integer', outWidth);
  if (!Number.isInteger(outHeight) || outHeight < 1) invalidParameter('outHeight', 'a positive integer', outHeight);
  if (filter !== 'bicubic' && filter !== 'bilinear') invalidParameter('filter', "one of 'bicubic', 'bilinear'", filter);
  const c = crop ?? { left: 0, top: 0, width: outWidth, height: outHeight };
  if (
    !Number.isInteger(c.left) || !Number.isInteger(c.top) || !Number.isInteger(c.width) || !Number.isInteger(c.height) ||
    c.left < 0 || c.top < 0 || c.width < 1 || c.height < 1 || c.left + c.width > outWidth || c.top + c.height > outHeight
  ) {
    invalidParameter('crop', `integer rectangle inside ${outWidth}x${outHeight}`, JSON.stringify(c));
  }
  const need = c.width * c.height * 3;
  let dst: Uint8Array;
  if (out) {
    if (!(out instanceof Uint8Array) || out.length < need) invalidParameter('out', `a Uint8Array of at least ${need} bytes`, out?.length);
    dst = out.length === need ? out : out.subarray(0, need);
  } else {
    dst = new Uint8Array(need);
  }

  const { data: src, width: inW, height: inH } = image;
  const needH = outWidth !== inW;
  const needV = outHeight !== inH;

  // Rows of the source that the vertical pass reads for the crop's output rows.
  let rowFirst = c.top;
  let rowEnd = c.top + c.height;
  let vert: AxisCoeffs | undefined;
  if (needV) {
    vert = coeffsFor(inH, outHeight, filter);
    rowFirst = vert.first[c.top];
    rowEnd = vert.first[c.top + c.height - 1] + vert.count[c.top + c.height - 1];
  }
  const tmpRows = rowEnd - rowFirst;
  const rowLen = c.width * 3;

  // Horizontal pass into uint8 rows (Pillow clips to 8 bits between the passes).
  let tmp: Uint8Array;
  if (needH) {
    const hz = coeffsFor(inW, outWidth, filter);
    tmp = needV ? new Uint8Array(tmpRows * rowLen) : dst;
    const { ksize, first, count, k } = hz;
    for (let r = 0; r < tmpRows; r++) {
      const srcRow = (rowFirst + r) * inW * 3;
      let o = r * rowLen;
      for (let xx = c.left; xx < c.left + c.width; xx++) {
        const xmin = first[xx];
        const n = count[xx];
        const kb = xx * ksize;
        let s0 = HALF;
        let s1 = HALF;
        let s2 = HALF;
        let p = srcRow + xmin * 3;
        for (let x = 0; x < n; x++, p += 3) {
          const w = k[kb + x];
          s0 += src[p] * w;
          s1 += src[p + 1] * w;
          s2 += src[p + 2] * w;
        }
        tmp[o++] = clip8(s0);
        tmp[o++] = clip8(s1);
        tmp[o++] = clip8(s2);
      }
    }
  } else {
    // No horizontal resampling: the vertical pass reads the source columns of the crop directly.
    tmp = new Uint8Array(tmpRows * rowLen);
    for (let r = 0; r < tmpRows; r++) {
      const s = ((rowFirst + r) * inW + c.left) * 3;
      tmp.set(src.subarray(s, s + rowLen), r * rowLen);
    }
    if (!needV) {
      dst.set(tmp);
      return { data: dst, width: c.width, height: c.height };
    }
  }

  if (vert) {
    const { ksize, first, count, k } = vert;
    const acc = new Float64Array(rowLen);
    for (let yy = c.top; yy < c.top + c.height; yy++) {
      const ymin = first[yy] - rowFirst;
      const n = count[yy];
      const kb = yy * ksize;
      acc.fill(HALF);
      for (let y = 0; y < n; y++) {
        const w = k[kb + y];
        const base = (ymin + y) * rowLen;
        for (let j = 0; j < rowLen; j++) acc[j] += tmp[base + j] * w;
      }
      const o = (yy - c.top) * rowLen;
      for (let j = 0; j < rowLen; j++) dst[o + j] = clip8(acc[j]);
    }
  }
  return { data: dst, width: c.width, height: c.height };
}
