/**
 * Face tracking: hand-made detection sequences (crossing, gaps, fast motion, clutter) and real
 * detections on a panning "video" made from a collage of two real photos.
 */
import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { detectFaces } from '../lib/faces/blazeface';
import type { Face } from '../lib/faces/types';
import { faceAt, mainTrack, trackFaces } from '../lib/faces/track';
import { isDfdetError } from '../lib/errors';
import { ASTRONAUT, GRACE_HOPPER, loadBlazeFace, loadRgb, presentOrSkip } from './faces-helpers';

const FILE = 'test/faces-track.test.ts';

function face(x: number, y: number, size: number, score = 0.9): Face {
  const p: [number, number] = [x + size / 2, y + size / 2];
  return { box: { x, y, width: size, height: size }, score, keypoints: { rightEye: p, leftEye: p, nose: p, mouth: p, rightEar: p, leftEar: p } };
}

describe('trackFaces', () => {
  it('follows two faces, tolerates a short miss, splits after a long one', () => {
    const frames: Face[][] = [
      [face(100, 100, 80), face(400, 120, 40)],
      [face(108, 102, 80), face(405, 118, 40)],
      [face(405, 121, 41)], // big face missed once
      [face(120, 104, 82)], // small face missed once
      [face(126, 105, 82), face(410, 120, 40)],
      [],
      [],
      [],
      [face(130, 104, 80)], // 3 frames missed > maxGap 2: new track
    ];
    const tracks = trackFaces(frames);
    expect(tracks.length).toBe(3);
    const [big, small, late] = tracks;
    expect(big.points.map((p) => p.frame)).toEqual([0, 1, 3, 4]);
    expect(small.points.map((p) => p.frame)).toEqual([0, 1, 2, 4]);
    expect(late.points.map((p) => p.frame)).toEqual([8]);
    expect(big.score).toBeCloseTo(80 * 80 * 2 + 82 * 82 * 2, 6);
    expect(faceAt(big, 2)).toBeUndefined();
    expect(faceAt(big, 3)!.box.x).toBe(120);
    expect(mainTrack(frames)!.id).toBe(big.id);
    // with maxGap 3 the late face continues the big track
    expect(trackFaces(frames, { maxGap: 3 })[0].points.map((p) => p.frame)).toEqual([0, 1, 3, 4, 8]);
    // minLength drops the one-frame track
    expect(trackFaces(frames, { minLength: 2 }).length).toBe(2);
  });

  it('prefers persistent faces over a briefly larger one, and large over small ones', () => {
    const frames: Face[][] = [];
    for (let i = 0; i < 10; i++) {
      const fs = [face(50 + i, 50, 60)];
      if (i === 5) fs.push(face(300, 50, 100)); // 100² < 10 * 60²
      frames.push(fs);
    }
    expect(mainTrack(frames)!.points.length).toBe(10);
    expect(mainTrack([[face(0, 0, 30), face(200, 0, 31)]])!.points[0].face.box.x).toBe(200);
    expect(mainTrack([[], []])).toBeNull();
  });

  it('matches by centre distance when sparse sampling breaks the overlap, never across sizes', () => {
    // moves 45% then 90% of its size per frame (IoU 0.38, then 0.05), then a small face nearby
    const frames = [[face(0, 0, 100)], [face(45, 0, 100)], [face(135, 10, 100)], [face(180, 10, 30)]];
    const tracks = trackFaces(frames, { iouThreshold: 0.5 });
    expect(tracks[0].points.map((p) => p.frame)).toEqual([0, 1, 2]);
    expect(tracks.length).toBe(2); // the small face is another person
    // too far (1.2 sides): a new track
    expect(trackFaces([[face(0, 0, 100)], [face(120, 0, 100)]]).length).toBe(2);
  });

  it('assigns greedily by best overlap when faces cross', () => {
    const frames = [
      [face(100, 100, 50), face(160, 100, 50)],
      [face(165, 100, 50), face(105, 100, 50)], // listed in the other order
    ];
    const tracks = trackFaces(frames).sort((a, b) => a.id - b.id);
    expect(tracks[0].points[1].face.box.x).toBe(105);
    expect(tracks[1].points[1].face.box.x).toBe(165);
  });

  it('rejects bad options', () => {
    for (const o of [{ iouThreshold: 0 }, { maxGap: -1 }, { minLength: 0 }]) {
      let err: unknown;
      try {
        trackFaces([], o);
      } catch (e) {
        err = e;
      }
      expect(isDfdetError(err, 'BAD_INPUT')).toBe(true);
    }
  });
});

describe('tracking real detections', () => {
  it('a camera panning over two real faces gives two tracks; the bigger face is the main one', async (ctx) => {
    const { runner } = presentOrSkip(await loadBlazeFace(), ctx, 'a TorchScript runner', FILE);
    try {
      const collage = await sharp({ create: { width: 1300, height: 700, channels: 3, background: { r: 230, g: 230, b: 230 } } })
        .composite([
          { input: await sharp(ASTRONAUT).resize(300, 300).toBuffer(), left: 60, top: 200 },
          { input: GRACE_HOPPER, left: 600, top: 50 },
        ])
        .png()
        .toBuffer();
      // 8 frames of 1000x600, panning 40 px right per frame
      const frames = await Promise.all(
        Array.from({ length: 8 }, (_, i) => sharp(collage).extract({ left: 40 * i, top: 40, width: 1000, height: 600 }).png().toBuffer().then(loadRgb)),
      );
      const detections = await detectFaces(runner, frames);
      // Tiling (1000 px frames are searched for 24 px faces too) may add a one-frame false
      // positive (seen: a 56 px box, score 0.60, on the astronaut's suit): tracks of real faces
      // span several frames.
      const all = trackFaces(detections);
      expect(all.filter((t) => t.points.length === 1).length).toBeLessThanOrEqual(1);
      const tracks = all.filter((t) => t.points.length > 1);
      expect(tracks.length).toBe(2);
      const main = tracks[0];
      expect(main.points.length).toBe(8);
      // Grace Hopper's face is the larger one and sits right of x=540 (collage) - pan
      for (const p of main.points) expect(p.face.box.x + p.face.box.width / 2).toBeGreaterThan(540 - 40 * p.frame);
      // the faces move left by ~40 px per frame in the frame
      const xs = main.points.map((p) => p.face.box.x);
      // (box jitter between frames is a few % of the face size)
      for (let i = 1; i < xs.length; i++) expect(Math.abs(xs[i - 1] - xs[i] - 40)).toBeLessThan(0.05 * main.points[i].face.box.width);
      expect(tracks[1].points.length).toBeGreaterThanOrEqual(4);
    } finally {
      await runner.dispose();
    }
  });
});
