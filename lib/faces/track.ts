/**
 * Face tracking across sampled video frames by box overlap.
 *
 * Frames are processed in order. Each live track is compared with each detection of the frame by
 * IoU against the track's latest box; pairs are matched greedily, best IoU first. Because dfdet
 * samples frames sparsely (e.g. 32 per video), a face can move more than its overlap allows
 * between two samples, so a pair with IoU below the threshold still matches when the centres are
 * at most one box side apart and the sizes within a factor of 1.5 (ranked after all IoU matches,
 * nearest first).
 * Unmatched detections start new tracks; a track that misses more than `maxGap` consecutive frames
 * ends.
 *
 * The main track is the one with the largest score = sum over its frames of the box area (pixels²):
 * big faces that stay in view win over small or fleeting ones (a face twice as wide counts as
 * much as one present in four times as many frames).
 */
import { invalidParameter } from '../errors';
import type { Face } from './types';
import { iou } from './nms';

/** One detection of a track. */
export interface TrackPoint {
  /** Index of the frame in the input array. */
  frame: number;
  /** The detection. */
  face: Face;
}

/** A face followed across frames. */
export interface FaceTrack {
  /** 0-based, in order of creation (first appearance). */
  id: number;
  /** Detections, by increasing frame index (at most one per frame). */
  points: TrackPoint[];
  /** Sum of box areas over the track's frames (pixels²); see the file comment. */
  score: number;
}

/** IoU at or above which a detection continues a track, by default. */
export const TRACK_IOU = 0.3;

/** A detection this many times larger or smaller (in side) than a track's last box never continues it by the nearby rule. */
export const TRACK_SIZE_RATIO = 1.5;

/** Options of {@link trackFaces} and {@link mainTrack}. */
export interface TrackOptions {
  /** IoU at or above which a detection continues a track (default 0.3). */
  iouThreshold?: number;
  /** Consecutive frames a track may miss and still continue (default 2). */
  maxGap?: number;
  /** Tracks with fewer detections are dropped (default 1: keep all). */
  minLength?: number;
}

function corners(f: Face) {
  return { x1: f.box.x, y1: f.box.y, x2: f.box.x + f.box.width, y2: f.box.y + f.box.height };
}

/** Centre distance and size ratio fallback for fast motion between sparse samples. */
function nearby(a: Face, b: Face): number | null {
  const sa = Math.sqrt(a.box.width * a.box.height);
  const sb = Math.sqrt(b.box.width * b.box.height);
  if (!(sa > 0 && sb > 0) || Math.max(sa, sb) / Math.min(sa, sb) > TRACK_SIZE_RATIO) return null;
  const d = Math.hypot(a.box.x + a.box.width / 2 - (b.box.x + b.box.width / 2), a.box.y + a.box.height / 2 - (b.box.y + b.box.height / 2));
  return d <= Math.max(sa, sb) ? d / Math.max(sa, sb) : null;
}

/**
 * Group per-frame detections into tracks.
 *
 * @param frames - `frames[i]` = faces detected in sampled frame i (as from detectFaces).
 * @param opts - See {@link TrackOptions}.
 * @returns Tracks sorted by descending score (ties: earlier track first).
 */
export function trackFaces(frames: readonly (readonly Face[])[], opts: TrackOptions = {}): FaceTrack[] {
  if (!Array.isArray(frames)) invalidParameter('frames', 'an array of Face arrays', frames);
  if (!opts || typeof opts !== 'object') invalidParameter('opts', 'an options object', opts);
  const iouThreshold = opts.iouThreshold ?? TRACK_IOU;
  if (typeof iouThreshold !== 'number' || !(iouThreshold > 0 && iouThreshold <= 1)) invalidParameter('iouThreshold', 'a number in (0, 1]', iouThreshold);
  const maxGap = opts.maxGap ?? 2;
  if (!Number.isInteger(maxGap) || maxGap < 0) invalidParameter('maxGap', 'an integer >= 0', maxGap);
  const minLength = opts.minLength ?? 1;
  if (!Number.isInteger(minLength) || minLength < 1) invalidParameter('minLength', 'an integer >= 1', minLength);

  const tracks: FaceTrack[] = [];
  let live: FaceTrack[] = [];
  frames.forEach((faces, frame) => {
    if (!Array.isArray(faces)) invalidParameter(`frames[${frame}]`, 'an array of Face', faces);
    live = live.filter((t) => frame - t.points[t.points.length - 1].frame - 1 <= maxGap);
    // candidate pairs: IoU matches first (best IoU), then nearby fallbacks (smallest distance)
    const pairs: { t: number; f: number; rank: number }[] = [];
    live.forEach((t, ti) => {
      const last = t.points[t.points.length - 1].face;
      faces.forEach((f, fi) => {
        const o = iou(corners(last), corners(f));
        if (o >= iouThreshold) pairs.push({ t: ti, f: fi, rank: 2 + o });
        else {
          const d = nearby(last, f);
          if (d !== null) pairs.push({ t: ti, f: fi, rank: 1 - d });
        }
      });
    });
    pairs.sort((a, b) => b.rank - a.rank || a.t - b.t || a.f - b.f);
    const usedT = new Set<number>();
    const usedF = new Set<number>();
    for (const p of pairs) {
      if (usedT.has(p.t) || usedF.has(p.f)) continue;
      usedT.add(p.t);
      usedF.add(p.f);
      live[p.t].points.push({ frame, face: faces[p.f] });
    }
    faces.forEach((f, fi) => {
      if (usedF.has(fi)) return;
      const t: FaceTrack = { id: tracks.length, points: [{ frame, face: f }], score: 0 };
      tracks.push(t);
      live.push(t);
    });
  });
  for (const t of tracks) t.score = t.points.reduce((s, p) => s + p.face.box.width * p.face.box.height, 0);
  return tracks.filter((t) => t.points.length >= minLength).sort((a, b) => b.score - a.score || a.id - b.id);
}

/**
 * The main face of a video: the track with the largest sum of box areas (see {@link trackFaces}).
 *
 * @returns The track, or null when no frame has a face.
 */
export function mainTrack(frames: readonly (readonly Face[])[], opts: TrackOptions = {}): FaceTrack | null {
  return trackFaces(frames, opts)[0] ?? null;
}

/** The track's face in `frame`, or undefined when the track missed that frame. */
export function faceAt(track: FaceTrack, frame: number): Face | undefined {
  return track.points.find((p) => p.frame === frame)?.face;
}
