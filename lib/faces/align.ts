/**
 * Face crops as DeepfakeBench makes them (the crops the CLIP detectors were trained on).
 *
 * DeepfakeBench (`preprocessing/preprocess.py`, `img_align_crop`) estimates a similarity transform
 * (skimage `SimilarityTransform`, i.e. Umeyama: rotation + uniform scale + translation, no
 * reflection) from 5 dlib landmarks — image-left eye (dlib 37), image-right eye (44), nose tip
 * (30), mouth corners (49, 55) — onto the ArcFace 112x112 template, shifted by 8 px in x, scaled
 * to the output size and shrunk by the margin `scale` = 1.3, then `cv2.warpAffine` (bilinear,
 * black border) to 256x256.
 *
 * BlazeFace gives eye centres, nose tip and the mouth *centre*, not mouth corners. We therefore fit
 * the same similarity to four correspondences: eyes -> template eyes, nose -> template nose,
 * mouth centre -> midpoint of the two template mouth corners. A similarity fitted by least squares
 * to the midpoint is what the two corners would give if they were placed symmetrically about the
 * mouth centre, so the result matches DeepfakeBench's crop up to landmark noise (dlib's points 37
 * and 44 are upper-lid points, a few pixels above the eye centres we use). The ears are not used:
 * the template has no ear points and they are unreliable on turned heads.
 *
 * DeepfakeBench's crops are not level, though: its dlib indices 49 and 55 are an upper-lip point
 * near the image-left mouth corner and a lower-lip point near the image-right one, so the fitted
 * "mouth line" is tilted and every crop comes out rotated by a few degrees. Detecting faces in 32
 * DeepfakeBench crops (8 videos of FF++ and Celeb-DF v2) and re-aligning them with the plain
 * 4-point fit needed, on average, a rotation of +4.8° (sd 1.9°, positive in all 8 videos), a scale
 * of 1.020 and a shift of (+2.5, -2.3) px at the centre. By default (`deepfakeBenchBias: true`) we
 * apply the inverse of that mean transform after the fit, so our crops are framed like the crops
 * the detectors were trained on; `false` gives the plain fit onto the template.
 *
 * Pixel conventions: inputs are continuous coordinates (pixel (i, j) spans [i, i+1)), as
 * detectFaces returns; internally they are turned into OpenCV/skimage index coordinates (pixel
 * centres on integers) by subtracting 0.5, so the matrix and the warp are those of OpenCV.
 */
import { DfdetError, invalidParameter } from '../errors';
import type { RgbImage } from '../media/rgb';
import type { Face, Point } from './types';

/** Options of {@link cropFace}. */
export interface CropFaceOptions {
  /**
   * `'align'` (default): DeepfakeBench similarity alignment from the keypoints.
   * `'box'`: axis-aligned square centred on the box, side `scale * max(width, height)`.
   */
  mode?: 'align' | 'box';
  /** Margin factor (default 1.3, DeepfakeBench's value). */
  scale?: number;
  /** Output side in pixels (default 256). */
  size?: number;
  /**
   * `'align'` mode only: reproduce DeepfakeBench's systematic rotation/offset (see the file
   * comment; default true). `false`: the plain least-squares fit onto the template.
   */
  deepfakeBenchBias?: boolean;
}

/** A 2x3 affine matrix `[a, b, c, d, e, f]`: `x' = a x + b y + c`, `y' = d x + e y + f`. */
export type Affine = [number, number, number, number, number, number];

/** ArcFace's 5-point template for 112x112 crops: left eye, right eye (image sides), nose, mouth corners. */
const ARCFACE_112: readonly Point[] = [
  [30.2946, 51.6963],
  [65.5318, 51.5014],
  [48.0252, 71.7366],
  [33.5493, 92.3655],
  [62.7299, 92.2041],
];

/**
 * DeepfakeBench's destination points for an `size` x `size` crop with margin `scale`, in index
 * coordinates: the `img_align_crop` arithmetic, step by step.
 */
export function deepfakeBenchTemplate(size = 256, scale = 1.3): Point[] {
  const margin = (size * (scale - 1)) / 2;
  return ARCFACE_112.map(([x, y]) => {
    let dx = ((x + 8.0) * size) / 112;
    let dy = (y * size) / 112;
    dx += margin;
    dy += margin;
    dx *= size / (size + 2 * margin);
    dy *= size / (size + 2 * margin);
    return [dx, dy] as Point;
  });
}

/**
 * Least-squares similarity (Umeyama with scaling, no reflection) mapping `src` onto `dst`.
 * In 2-D this is the complex linear fit `w = a z + b`; null when `src` points coincide.
 */
export function similarityTransform(src: readonly Point[], dst: readonly Point[]): Affine | null {
  const n = src.length;
  let sx = 0;
  let sy = 0;
  let dx = 0;
  let dy = 0;
  for (let i = 0; i < n; i++) {
    sx += src[i][0];
    sy += src[i][1];
    dx += dst[i][0];
    dy += dst[i][1];
  }
  sx /= n;
  sy /= n;
  dx /= n;
  dy /= n;
  let re = 0;
  let im = 0;
  let norm = 0;
  for (let i = 0; i < n; i++) {
    const zx = src[i][0] - sx;
    const zy = src[i][1] - sy;
    const wx = dst[i][0] - dx;
    const wy = dst[i][1] - dy;
    // (w) * conj(z)
    re += wx * zx + wy * zy;
    im += wy * zx - wx * zy;
    norm += zx * zx + zy * zy;
  }
  if (!(norm > 1e-12)) return null;
  const a = re / norm;
  const b = im / norm;
  // x' = a x - b y + tx ; y' = b x + a y + ty
  return [a, -b, dx - (a * sx - b * sy), b, a, dy - (b * sx + a * sy)];
}

/**
 * Mean transform from DeepfakeBench 256 px crops to our plain 4-point alignment of them (index
 * coordinates), measured as described in the file comment, for size 256 and scale 1.3.
 */
const DFB_TO_PLAIN_256: Affine = [1.020411520980709, -0.08528942904937563, 10.755031637561585, 0.08528942904937563, 1.020411520980709, -15.742592796598924];

/** `a ∘ b`: apply `b`, then `a`. */
export function composeAffine(a: Affine, b: Affine): Affine {
  return [
    a[0] * b[0] + a[1] * b[3],
    a[0] * b[1] + a[1] * b[4],
    a[0] * b[2] + a[1] * b[5] + a[2],
    a[3] * b[0] + a[4] * b[3],
    a[3] * b[1] + a[4] * b[4],
    a[3] * b[2] + a[4] * b[5] + a[5],
  ];
}

/** Inverse of an affine matrix (null when singular). */
export function invertAffine(m: Affine): Affine | null {
  const [a, b, c, d, e, f] = m;
  const det = a * e - b * d;
  if (!(Math.abs(det) > 1e-15)) return null;
  const ia = e / det;
  const ib = -b / det;
  const id = -d / det;
  const ie = a / det;
  return [ia, ib, -(ia * c + ib * f), id, ie, -(id * c + ie * f)];
}

/**
 * `cv2.warpAffine(image, m, (width, height), flags=INTER_LINEAR, borderMode=BORDER_CONSTANT,
 * borderValue=0)` in floating point: output pixel (x, y) samples the input at `m⁻¹ (x, y)` (index
 * coordinates) bilinearly; neighbours outside the image count as black. OpenCV quantises the
 * sample position to 1/32 pixel, so results can differ from it by about one grey level.
 */
export function warpAffine(image: RgbImage, m: Affine, width: number, height: number): RgbImage {
  const inv = invertAffine(m);
  if (!inv) throw new DfdetError('BAD_INPUT', 'Affine transform is singular');
  const [ia, ib, ic, id, ie, iF] = inv;
  const { data: src, width: W, height: H } = image;
  const out = new Uint8Array(width * height * 3);
  const row = W * 3;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const fx = ia * x + ib * y + ic;
      const fy = id * x + ie * y + iF;
      if (!(fx > -1 && fy > -1 && fx < W && fy < H)) continue; // all four neighbours outside: black
      const x0 = Math.floor(fx);
      const y0 = Math.floor(fy);
      const tx = fx - x0;
      const ty = fy - y0;
      const w00 = (1 - tx) * (1 - ty);
      const w01 = tx * (1 - ty);
      const w10 = (1 - tx) * ty;
      const w11 = tx * ty;
      const o = (y * width + x) * 3;
      const i = y0 * row + x0 * 3;
      if (x0 >= 0 && y0 >= 0 && x0 + 1 < W && y0 + 1 < H) {
        // fast path: all four neighbours inside
        for (let c = 0; c < 3; c++) {
          out[o + c] = Math.round(w00 * src[i + c] + w01 * src[i + 3 + c] + w10 * src[i + row + c] + w11 * src[i + row + 3 + c]);
        }
      } else {
        // border: neighbours outside the image are black (BORDER_CONSTANT 0)
        const in00 = x0 >= 0 && y0 >= 0;
        const in01 = x0 + 1 < W && y0 >= 0;
        const in10 = x0 >= 0 && y0 + 1 < H;
        const in11 = x0 + 1 < W && y0 + 1 < H;
        for (let c = 0; c < 3; c++) {
          let v = 0;
          if (in00) v += w00 * src[i + c];
          if (in01) v += w01 * src[i + 3 + c];
          if (in10) v += w10 * src[i + row + c];
          if (in11) v += w11 * src[i + row + 3 + c];
          out[o + c] = Math.round(v);
        }
      }
    }
  }
  return { data: out, width, height };
}

function checkPoint(p: unknown, name: string): Point {
  if (!Array.isArray(p) || p.length !== 2 || !Number.isFinite(p[0]) || !Number.isFinite(p[1])) invalidParameter(name, 'an [x, y] pair of finite numbers', p);
  return p as Point;
}

function checkBox(face: Face): void {
  const b = face?.box;
  if (!b || typeof b !== 'object') invalidParameter('face.box', 'a {x, y, width, height} object', b);
  for (const k of ['x', 'y', 'width', 'height'] as const) {
    if (!Number.isFinite(b[k])) invalidParameter(`face.box.${k}`, 'a finite number', b[k]);
  }
  if (!(b.width > 0 && b.height > 0)) invalidParameter('face.box', 'a box with positive width and height', JSON.stringify(b));
}

/**
 * Matrix mapping image index coordinates to crop index coordinates for `face` (see
 * {@link cropFace}). In `'align'` mode, keypoints too close together to define a transform fall
 * back to `'box'` mode.
 */
export function cropMatrix(face: Face, opts: CropFaceOptions = {}): Affine {
  if (!opts || typeof opts !== 'object') invalidParameter('opts', 'an options object', opts);
  const mode = opts.mode ?? 'align';
  if (mode !== 'align' && mode !== 'box') invalidParameter('mode', "one of 'align', 'box'", mode);
  const scale = opts.scale ?? 1.3;
  if (typeof scale !== 'number' || !(scale > 0 && scale <= 10)) invalidParameter('scale', 'a number in (0, 10]', scale);
  const size = opts.size ?? 256;
  if (!Number.isInteger(size) || size < 1 || size > 4096) invalidParameter('size', 'an integer between 1 and 4096', size);
  const bias = opts.deepfakeBenchBias ?? true;
  if (typeof bias !== 'boolean') invalidParameter('deepfakeBenchBias', 'a boolean', bias);
  if (!face || typeof face !== 'object') invalidParameter('face', 'a Face object', face);
  checkBox(face);

  if (mode === 'align') {
    const k = face.keypoints;
    if (!k || typeof k !== 'object') invalidParameter('face.keypoints', 'a keypoints object', k);
    // image-left eye first, as the template (BlazeFace's rightEye is the subject's right = image left)
    const src = [k.rightEye, k.leftEye, k.nose, k.mouth].map((p, i) =>
      checkPoint(p, `face.keypoints.${['rightEye', 'leftEye', 'nose', 'mouth'][i]}`),
    ).map(([x, y]) => [x - 0.5, y - 0.5] as Point);
    const t = deepfakeBenchTemplate(size, scale);
    const dst: Point[] = [t[0], t[1], t[2], [(t[3][0] + t[4][0]) / 2, (t[3][1] + t[4][1]) / 2]];
    const m = similarityTransform(src, dst);
    if (m) {
      if (!bias) return m;
      // The correction was measured on 256 px crops at scale 1.3. deepfakeBenchTemplate maps
      // those coordinates r to t = (size/256) * ((1.3/scale) * (r - 128) + 128) for other sizes and
      // scales: conjugate the correction by that map.
      const al = ((size / 256) * 1.3) / scale;
      const be = (size / 256) * 128 * (1 - 1.3 / scale);
      const fromRef: Affine = [al, 0, be, 0, al, be];
      const toRef = invertAffine(fromRef)!;
      const corr = composeAffine(fromRef, composeAffine(invertAffine(DFB_TO_PLAIN_256)!, toRef));
      return composeAffine(corr, m);
    }
  }
  const { x, y, width, height } = face.box;
  const side = scale * Math.max(width, height);
  const s = size / side;
  const x0 = x + width / 2 - side / 2;
  const y0 = y + height / 2 - side / 2;
  // continuous: crop = (img - origin) * s; index coords: crop_i + 0.5 = (img_i + 0.5 - origin) * s
  return [s, 0, (0.5 - x0) * s - 0.5, 0, s, (0.5 - y0) * s - 0.5];
}

/**
 * Crop a face as DeepfakeBench does (default) or as a plain enlarged square.
 *
 * - `'align'`: similarity transform from eyes, nose and mouth centre onto DeepfakeBench's
 *   ArcFace-derived template with margin `scale` (see the file comment for the 4-point choice).
 * - `'box'`: the square of side `scale * max(box.width, box.height)` centred on the box, resized.
 *
 * Both warp with bilinear interpolation like `cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT)`:
 * parts of the crop outside the image are black (0), and edge pixels blend with black over one
 * pixel, as in OpenCV. Shrinking is not antialiased (neither is DeepfakeBench's).
 *
 * @param image - Source frame.
 * @param face - A face from detectFaces (source-pixel coordinates).
 * @param opts - See {@link CropFaceOptions}.
 * @returns A `size` x `size` RGB image.
 * @throws DfdetError `BAD_INPUT` for malformed images, faces or options.
 */
export function cropFace(image: RgbImage, face: Face, opts: CropFaceOptions = {}): RgbImage {
  if (!image || typeof image !== 'object') invalidParameter('image', 'an RgbImage object', image);
  const { data, width, height } = image;
  if (!Number.isInteger(width) || width < 1) invalidParameter('image.width', 'a positive integer', width);
  if (!Number.isInteger(height) || height < 1) invalidParameter('image.height', 'a positive integer', height);
  if (!(data instanceof Uint8Array) || data.length !== width * height * 3) {
    invalidParameter('image.data', `a Uint8Array of width * height * 3 = ${width * height * 3} bytes`, data?.length);
  }
  const m = cropMatrix(face, opts);
  const size = opts.size ?? 256;
  return warpAffine(image, m, size, size);
}
