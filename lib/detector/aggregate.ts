/**
 * From scored faces to a result's score: pure functions, no I/O and no model. An image's pFake is
 * its highest face pFake; a video's the mean of the frame probabilities of the main face track
 * (the paper's rule), or with `allFaces` the highest track mean. See {@link AggregateRule}.
 */
import type { FaceTrack } from '../faces/track';
import type { AggregateRule, DetectResult, FaceGeometry, FaceResult, FrameResult, TrackResult } from './types';

/** A face with its probability, and the frame it is in (0 for images). */
export interface ScoredFace {
  face: FaceGeometry;
  frame: number;
  pFake: number;
}

/** A decoded frame's place in the video (images: one frame 0 at 0 s). */
export interface FrameMeta {
  index: number;
  timestampSec: number;
}

/** Everything the aggregation needs of one input. */
export interface AggregateInput {
  kind: 'image' | 'video';
  /** False with `faces: 'none'` (each image or frame scored whole). */
  detecting: boolean;
  faces: readonly ScoredFace[];
  /** One per decoded frame, in order. */
  frames: readonly FrameMeta[];
  /** Videos with face detection: the face tracks and the main one's id (-1: none). */
  tracks: readonly FaceTrack[];
  mainId: number;
  partial: boolean;
}

/** The scoring part of a {@link DetectResult}. */
export type Aggregated = Pick<DetectResult, 'pFake' | 'label' | 'faces' | 'noFace' | 'aggregate' | 'frames' | 'tracks' | 'partial'>;

/** P(fake) from logits [real, fake]: softmax index 1, computed stably. */
export function softmaxFake(logits: ArrayLike<number>): number {
  const a = logits[0]!;
  const b = logits[1]!;
  return 1 / (1 + Math.exp(a - b));
}

/** 'fake' at or above the threshold, 'real' below, null without a score. */
export function labelOf(pFake: number | null, threshold: number): DetectResult['label'] {
  return pFake === null ? null : pFake >= threshold ? 'fake' : 'real';
}

function mean(xs: readonly number[]): number | null {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
}

function faceResult(s: ScoredFace): FaceResult {
  return { ...s.face, pFake: s.pFake };
}

/** The rule {@link aggregate} applies to an input of this kind and settings. */
export function aggregateRule(kind: 'image' | 'video', detecting: boolean, allFaces: boolean): AggregateRule {
  if (kind === 'image') return detecting ? 'max-face' : 'whole-image';
  if (!detecting) return 'mean-frames';
  return allFaces ? 'max-track-mean' : 'mean-frames-main-track';
}

/** Scores one input from its scored faces (see the file comment for the rules). */
export function aggregate(input: AggregateInput, settings: { threshold: number; allFaces: boolean }): Aggregated {
  const faces = input.faces.map(faceResult);
  const rule = aggregateRule(input.kind, input.detecting, settings.allFaces);
  const noFace = input.detecting && faces.length === 0;
  if (input.kind === 'image') {
    const pFake = faces.length ? Math.max(...faces.map((f) => f.pFake)) : null;
    return { pFake, label: labelOf(pFake, settings.threshold), faces, noFace, aggregate: rule };
  }
  // Per-frame faces, per-track means, then the video's rule.
  const frames: FrameResult[] = input.frames.map((m) => ({ index: m.index, timestampSec: m.timestampSec, pFake: null, faces: [] }));
  input.faces.forEach((s, i) => frames[s.frame]!.faces.push(faces[i]!));
  for (const f of frames) {
    if (f.faces.length === 0) continue;
    if (!input.detecting) f.pFake = f.faces[0]!.pFake;
    else if (settings.allFaces) f.pFake = Math.max(...f.faces.map((x) => x.pFake));
    else f.pFake = f.faces.find((x) => x.track === input.mainId)?.pFake ?? null;
  }
  const tracks: TrackResult[] = [];
  for (const t of input.tracks) {
    const p = mean(faces.filter((f) => f.track === t.id).map((f) => f.pFake));
    if (p !== null) tracks.push({ id: t.id, frames: t.points.length, pFake: p, main: t.id === input.mainId });
  }
  let pFake: number | null;
  if (rule === 'mean-frames') pFake = mean(frames.filter((f) => f.pFake !== null).map((f) => f.pFake!));
  else if (rule === 'max-track-mean') pFake = tracks.length ? Math.max(...tracks.map((t) => t.pFake)) : null;
  else pFake = tracks.find((t) => t.main)?.pFake ?? null;
  return { pFake, label: labelOf(pFake, settings.threshold), faces, frames, tracks, partial: input.partial, noFace, aggregate: rule };
}
