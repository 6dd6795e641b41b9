/**
 * Batched preprocessing in the addon: face crops (the affine warp of lib/faces/align.ts), the
 * Pillow-exact resize and the CLIP normalisation of lib/media/transform.ts, as libtorch ops on the
 * model's device and off the event loop. The JS functions stay the reference: the native path
 * computes the same arithmetic. Measured against it (test/preprocess-native.test.ts, real photos
 * and real face crops): the CPU loops (AVX-512, AVX2 or baseline) give the very same bytes (max
 * |delta| 0), and so did the libtorch ops on those inputs; the tests hold the ops to the issue's
 * bound of 1/255 in pixel units.
 */
import type { Affine } from '../faces/align';
import { invalidParameter } from '../errors';
import type { RgbImage } from '../media/image';
import type { ClipTensor } from '../media/transform';
import { checkDevice } from '../model-options';
import type { DetectorMetadata } from '../detector-model/metadata';
import { native, wrapNativeError } from '../native';

/** One crop: which image, and the matrix from image to crop index coordinates (null: the whole image). */
export interface CropSpec {
  image: number;
  matrix: Affine | null;
}

/** Options of {@link preprocessBatch}. */
export interface PreprocessOptions {
  /** Side of the warped face crops (the detector's `cropSize`, 256). */
  cropSize: number;
  /** The model input: size, mean, std, interpolation. */
  input: DetectorMetadata['input'];
  /** Where the ops run ('cpu', 'cuda', 'cuda:N'). Default 'cpu'. */
  device?: string;
  /**
   * The CPU implementation: 'loops' (default, fastest: vectorised loops, AVX-512 or AVX2 as the
   * CPU allows), 'avx2' (the loops with at most AVX2), 'baseline' (the loops without either) or
   * 'ops' (the libtorch ops CUDA runs). All give the same bytes.
   */
  kernel?: 'loops' | 'avx2' | 'baseline' | 'ops';
}

function checkImage(image: RgbImage, i: number): void {
  const ok =
    image && typeof image === 'object' && Number.isInteger(image.width) && image.width >= 1 && Number.isInteger(image.height) && image.height >= 1 &&
    image.data instanceof Uint8Array && image.data.length === image.width * image.height * 3;
  if (!ok) invalidParameter(`images[${i}]`, 'an RgbImage (width * height * 3 bytes)', image);
}

/**
 * The model input `[crops.length, 3, size, size]` for crops of `images`: warped crops
 * (cv2.warpAffine semantics, `cropSize` px) or whole images, each resized shortest side to `size`
 * with Pillow's filter, centre-cropped and normalised: what `cropFace` + `clipTransform` give.
 * @throws DfdetError BAD_INPUT (malformed images, crops, options), UNSUPPORTED (a CUDA device
 *   without CUDA), OUT_OF_MEMORY.
 */
export async function preprocessBatch(images: readonly RgbImage[], crops: readonly CropSpec[], options: PreprocessOptions): Promise<ClipTensor> {
  if (!Array.isArray(images)) invalidParameter('images', 'an array of RgbImage', images);
  if (!Array.isArray(crops)) invalidParameter('crops', 'an array of { image, matrix }', crops);
  images.forEach(checkImage);
  const n = crops.length;
  const { size, mean, std, interpolation } = options.input;
  if (n === 0) return { data: new Float32Array(0), shape: [0, 3, size, size] };
  const imageOf = new Int32Array(n);
  const matrices = new Float64Array(n * 6);
  crops.forEach((c, i) => {
    if (!c || !Number.isInteger(c.image) || c.image < 0 || c.image >= images.length) invalidParameter(`crops[${i}].image`, `an image index below ${images.length}`, c?.image);
    imageOf[i] = c.image;
    if (c.matrix === null) matrices[i * 6] = NaN;
    else if (Array.isArray(c.matrix) && c.matrix.length === 6) matrices.set(c.matrix, i * 6);
    else invalidParameter(`crops[${i}].matrix`, 'an affine [a, b, c, d, e, f] or null', c.matrix);
  });
  const device = checkDevice(options.device ?? 'cpu');
  try {
    const out = await native().preprocess({
      images: images.map((im) => ({ data: im.data, shape: [im.height, im.width, 3], dtype: 'uint8' })),
      imageOf,
      matrices,
      cropSize: options.cropSize,
      size,
      mean: [...mean],
      std: [...std],
      interpolation,
      device,
      kernel: options.kernel ?? 'loops',
    });
    return { data: out.data as Float32Array, shape: [n, 3, size, size] };
  } catch (e) {
    throw wrapNativeError(e, 'cannot preprocess the crops');
  }
}
