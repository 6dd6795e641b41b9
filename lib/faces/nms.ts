/**
 * MediaPipe-style weighted non-maximum suppression of face detections.
 *
 * A port of the `WEIGHTED` algorithm of MediaPipe's `NonMaxSuppressionCalculator`
 * (`mediapipe/calculators/util/non_max_suppression_calculator.cc`): take the highest-scoring
 * remaining detection, gather every remaining detection whose IoU with it is above the threshold
 * (itself included), and replace the group by the score-weighted mean of its box corners and
 * keypoints. The merged detection keeps the top detection's score. Averaging the ~3–10 anchors that
 * fire on one face steadies the box and keypoints compared with plain (hard) NMS.
 */

/** A detection in any consistent coordinate system: box corners and keypoints as flat x,y pairs. */
export interface RawDetection {
  /** Confidence in [0, 1]. */
  score: number;
  /** Left edge. */
  x1: number;
  /** Top edge. */
  y1: number;
  /** Right edge. */
  x2: number;
  /** Bottom edge. */
  y2: number;
  /** Keypoints as `[x0, y0, x1, y1, ...]`. */
  keypoints: number[];
}

/** Intersection over union of two boxes (0 when either is empty). */
export function iou(a: { x1: number; y1: number; x2: number; y2: number }, b: { x1: number; y1: number; x2: number; y2: number }): number {
  const iw = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1);
  const ih = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  const union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * Weighted NMS (MediaPipe `WEIGHTED` overlap suppression).
 *
 * @param detections - Candidates (not modified), in any order.
 * @param iouThreshold - Detections with IoU strictly above this join the top detection's group.
 * @param maxDetections - Stop after this many merged detections (default: no limit).
 * @returns Merged detections, highest score first.
 */
export function weightedNms(detections: readonly RawDetection[], iouThreshold: number, maxDetections = Infinity): RawDetection[] {
  // Stable sort by descending score (ties keep anchor order, as std::sort on MediaPipe's pairs
  // would not guarantee; stability makes our output deterministic).
  let remaining = detections.map((d, i) => ({ d, i })).sort((a, b) => b.d.score - a.d.score || a.i - b.i).map((e) => e.d);
  const out: RawDetection[] = [];
  while (remaining.length > 0 && out.length < maxDetections) {
    const top = remaining[0];
    const group: RawDetection[] = [];
    const rest: RawDetection[] = [];
    for (const d of remaining) (iou(d, top) > iouThreshold ? group : rest).push(d);
    // `top` always overlaps itself (IoU 1) unless its box is empty; then keep it alone.
    if (group.length === 0) group.push(top);
    let total = 0;
    let x1 = 0;
    let y1 = 0;
    let x2 = 0;
    let y2 = 0;
    const kp = new Array<number>(top.keypoints.length).fill(0);
    for (const d of group) {
      const w = d.score;
      total += w;
      x1 += d.x1 * w;
      y1 += d.y1 * w;
      x2 += d.x2 * w;
      y2 += d.y2 * w;
      for (let k = 0; k < kp.length; k++) kp[k] += d.keypoints[k] * w;
    }
    if (total > 0) {
      out.push({ score: top.score, x1: x1 / total, y1: y1 / total, x2: x2 / total, y2: y2 / total, keypoints: kp.map((v) => v / total) });
    } else {
      out.push({ ...top, keypoints: top.keypoints.slice() });
    }
    remaining = rest.filter((d) => d !== top);
  }
  return out;
}
