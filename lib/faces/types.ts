/**
 * What face detection gives: boxes, keypoints and scores in source-image pixels. Shared by the
 * detector (blazeface.ts), alignment (align.ts), tracking (track.ts) and the Detector pipeline.
 *
 * Coordinates are continuous pixel coordinates: (0,0) is the top-left corner of the top-left
 * pixel, so pixel (i, j) covers [i, i+1) x [j, j+1) and its centre is (i+0.5, j+0.5).
 */

/** An axis-aligned box in source-image pixels. */
export interface FaceBox {
  /** Left edge. */
  x: number;
  /** Top edge. */
  y: number;
  /** Width. */
  width: number;
  /** Height. */
  height: number;
}

/** A point `[x, y]` in source-image pixels. */
export type Point = [number, number];

/**
 * BlazeFace's six keypoints, named from the subject's point of view as MediaPipe does: for a
 * frontal face `rightEye` is on the image's left.
 */
export interface FaceKeypoints {
  /** Centre of the subject's right eye (image left for a frontal face). */
  rightEye: Point;
  /** Centre of the subject's left eye. */
  leftEye: Point;
  /** Nose tip. */
  nose: Point;
  /** Mouth centre. */
  mouth: Point;
  /** Subject's right ear tragion. */
  rightEar: Point;
  /** Subject's left ear tragion. */
  leftEar: Point;
}

/** One detected face. */
export interface Face {
  /** Bounding box in source pixels. Not clipped: it may extend past the image border. */
  box: FaceBox;
  /** Detector confidence in [0, 1] (the top anchor's sigmoid score). */
  score: number;
  /** Keypoints in source pixels. */
  keypoints: FaceKeypoints;
}
