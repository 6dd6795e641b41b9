/**
 * Face detection for a video whose main face alone is scored: the pyramid's finer levels are
 * searched only when what they could find might change the main face track.
 *
 * The finer levels of lib/faces/pyramid.ts exist for small faces and cost most of the time (at the
 * default minFaceSize of 24, a 640x750 frame's finer level has 4.5x the pixels of its whole-frame
 * level). When every sampled frame shows one large face, the smaller faces they would add cannot
 * change the main track, its boxes or its crops, so the levels are run coarsest first and the
 * search stops as soon as that is proven. The proof, with B = the largest face a skipped level
 * answers for (so its candidates' boxes are at most B x B), requires after the levels run:
 * 1. every candidate and every face so far has an area above B^2 / t, with t the smaller of the NMS
 *    and tracking IoU thresholds and 1 / 1.5^2 (the tracker's size ratio): a skipped candidate's
 *    IoU with any of them is then below t, so weighted NMS groups no skipped candidate with a
 *    found one (found faces keep their exact boxes), and the tracker can neither continue a
 *    track with a small face nor a small face's track with a large one;
 * 2. exactly one face in every frame, and these form one track: it then continues through every
 *    frame whatever is added, and its score (sum of areas, each above B^2) beats any track of
 *    small faces (at most one box of at most B^2 per frame);
 * 3. no `maxFaces` cap (a cap could trade the large face for a small one that scores higher).
 * The main track is then the one a full search finds, point for point. Only its number can
 * differ: tracks are numbered in order of appearance, and small faces found in the first frame
 * would have come first.
 */
import type { Face } from './types';
import { checkDetectArgs, type DetectFacesOptions, facesByPlan, facesOf, levelCandidates, pyramidPlans, type TensorRunner } from './blazeface';
import type { RawDetection } from './nms';
import { TRACK_IOU, TRACK_SIZE_RATIO, trackFaces } from './track';
import type { RgbImage } from '../media/rgb';

/** What {@link detectMainFaceFrames} found, and how much of the pyramid it ran. */
export interface MainFaceFrames {
  /** For each frame, its faces (as detectFaces returns them, less the skipped levels' faces). */
  faces: Face[][];
  /** Pyramid levels run per frame, and skipped (finest first). */
  levelsRun: number;
  levelsSkipped: number;
}

const area = (b: { width: number; height: number }): number => b.width * b.height;

/**
 * Faces in a video's frames, enough to find its main face track ({@link mainTrack}) exactly as
 * from `detectFaces(model, frames, opts)`; see the file comment for when the finer levels are
 * skipped. Frames of different sizes, or a `maxFaces` cap, get the full search.
 * @param model - The face detector (`loadFaceDetector()` or a pool lane).
 * @param frames - The video's frames, in order.
 * @param opts - As for detectFaces; tracks must use the default tracking options.
 * @throws DfdetError `BAD_INPUT` for malformed frames or options; errors of `model.run` pass through.
 */
export async function detectMainFaceFrames(model: TensorRunner, frames: readonly RgbImage[], opts: DetectFacesOptions = {}): Promise<MainFaceFrames> {
  const o = checkDetectArgs(model, frames, opts);
  const plans = pyramidPlans(frames, o);
  const levels = plans[0]?.levels.length ?? 0;
  const sameSize = frames.every((im) => im.width === frames[0]!.width && im.height === frames[0]!.height);
  if (!sameSize || o.maxFaces !== Infinity || levels <= 1) {
    return { faces: await facesByPlan(model, frames, plans, o), levelsRun: levels, levelsSkipped: 0 };
  }
  // Overlaps below this never group in NMS nor continue a track.
  const t = Math.min(o.iouThreshold, TRACK_IOU, 1 / TRACK_SIZE_RATIO ** 2);
  let cands: RawDetection[][] = frames.map(() => []);
  for (let k = levels - 1; ; k--) {
    const found = await levelCandidates(model, frames, plans.map((p) => ({ levels: [p.levels[k]!] })), o.batchSize, o.scoreThreshold);
    // Finer levels' candidates first, as one pass over all levels lists them (NMS ties keep that order).
    cands = cands.map((c, i) => [...found[i]!, ...c]);
    const faces = cands.map((c) => facesOf(c, o));
    if (k === 0) return { faces, levelsRun: levels, levelsSkipped: 0 };
    const b = plans[0]!.levels[k]!.minFace;
    const large = (a: number): boolean => a * t > b * b;
    const proven =
      cands.every((c) => c.every((d) => large((d.x2 - d.x1) * (d.y2 - d.y1)))) &&
      faces.every((f) => f.length === 1 && large(area(f[0]!.box))) &&
      trackFaces(faces).length === 1;
    if (proven) return { faces, levelsRun: levels - k, levelsSkipped: k };
  }
}
