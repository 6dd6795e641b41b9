/**
 * The sampling plan: which frames a strategy picks and at what size they are delivered. Pure
 * functions of the strategy and the probe; no process runs here.
 */
import { integer, object, oneOf, positive, type Rule } from '../../options/checks';
import type { VideoProbe } from './probe';

/** How to choose frames. */
export type SamplingStrategy =
  /**
   * `count` frames at indices `floor(linspace(0, frameCount - 1, count))` (numpy's
   * `np.linspace(0, n - 1, count).astype(int)`, the usual "uniform sampling" of deepfake video
   * benchmarks); all frames when the video has fewer than `count`.
   */
  | { kind: 'uniform'; count: number }
  /** The first frame of every `1/fps` second interval, measured from the first frame's timestamp. */
  | { kind: 'fps'; fps: number }
  /** Frames 0, k, 2k, ... */
  | { kind: 'every'; k: number };

/** The rule of a frame count (`frames: n`, `{kind: 'uniform', count}`). */
export const frameCountRule = integer(1, 100_000);
/** The rule of `{kind: 'every', k}`. */
const everyK = integer(1, Number.MAX_SAFE_INTEGER);

/** A {@link SamplingStrategy}, or a frame count meaning uniform sampling; checked to the nested field. */
export const samplingRule: Rule<SamplingStrategy> = {
  expected: "a frame count or { kind: 'uniform' | 'fps' | 'every', ... }",
  valid(v: unknown): v is SamplingStrategy {
    try {
      samplingRule.check(v, 'frames');
      return typeof v === 'object';
    } catch {
      return false;
    }
  },
  check(v: unknown, name: string): SamplingStrategy {
    if (typeof v === 'number') return { kind: 'uniform', count: frameCountRule.check(v, name) };
    const s = object.check(v, name) as Partial<Record<string, unknown>>;
    switch (s.kind) {
      case 'uniform':
        return { kind: 'uniform', count: frameCountRule.check(s.count, `${name}.count`) };
      case 'fps':
        return { kind: 'fps', fps: positive.check(s.fps, `${name}.fps`) };
      case 'every':
        return { kind: 'every', k: everyK.check(s.k, `${name}.k`) };
      default:
        return oneOf(['uniform', 'fps', 'every'] as const).check(s.kind, `${name}.kind`) as never;
    }
  },
};

/**
 * Frame indices the `uniform` strategy picks: `np.linspace(0, frameCount - 1, count).astype(int)`,
 * duplicates removed (fewer than `count` only when the video has fewer frames).
 */
function uniformIndices(frameCount: number, count: number): number[] {
  if (frameCount <= 0) return [];
  if (count === 1) return [0];
  const stop = frameCount - 1;
  const step = stop / (count - 1);
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const v = i === count - 1 ? stop : Math.floor(i * step);
    if (out.length === 0 || out[out.length - 1] !== v) out.push(v);
  }
  return out;
}

/** `select` expression for sorted indices, runs of consecutive indices merged into `between`. */
function selectIndices(idx: number[]): string {
  const terms: string[] = [];
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j + 1 < idx.length && idx[j + 1] === idx[j]! + 1) j++;
    terms.push(i === j ? `eq(n\\,${idx[i]})` : `between(n\\,${idx[i]}\\,${idx[j]})`);
    i = j + 1;
  }
  return terms.join('+');
}

/** The frames to decode: ffmpeg's `select` expression, how many, and the exact indices when known. */
export interface Plan {
  select: string;
  planned: number;
  /** Frame indices (uniform strategy). */
  indices?: number[];
}

/** The plan of `strategy` on a probed video, at most `maxFrames` frames. */
export function makePlan(strategy: SamplingStrategy, probe: Pick<VideoProbe, 'frameCount' | 'durationSec' | 'startTimeSec'>, maxFrames: number): Plan {
  switch (strategy.kind) {
    case 'uniform': {
      const indices = uniformIndices(probe.frameCount, strategy.count).slice(0, maxFrames);
      return { select: selectIndices(indices), planned: indices.length, indices };
    }
    case 'every': {
      const planned = Math.min(maxFrames, Math.ceil(probe.frameCount / strategy.k));
      return { select: `not(mod(n\\,${strategy.k}))`, planned };
    }
    case 'fps': {
      const r = strategy.fps;
      const t0 = probe.startTimeSec;
      const buckets = probe.durationSec > 0 ? Math.ceil(probe.durationSec * r - 1e-9) : probe.frameCount;
      const planned = Math.min(maxFrames, Math.min(probe.frameCount, Math.max(1, buckets)));
      // First frame of each 1/r-second bucket since the stream start (t is the file's own
      // timestamp: ffmpeg runs with -copyts).
      return {
        // (+1 ns: a frame exactly on a bucket boundary stays there despite rounding in t - t0.)
        select: `isnan(prev_selected_t)+gt(floor((t-(${t0})+1e-9)*${r})\\,floor((prev_selected_t-(${t0})+1e-9)*${r}))`,
        planned,
      };
    }
  }
}

/**
 * Size of the delivered frames: the video's own, or scaled down so that the longer side is
 * `maxSide` (aspect kept, each side at least 1). `flags` is the scale filter's option suffix.
 */
export function outputSize(w: number, h: number, maxSide: number): { width: number; height: number; flags: string } {
  const long = Math.max(w, h);
  if (long <= maxSide) return { width: w, height: h, flags: '' };
  const f = maxSide / long;
  // Area averaging: no aliasing when shrinking by large factors.
  return { width: Math.max(1, Math.round(w * f)), height: Math.max(1, Math.round(h * f)), flags: ':flags=area' };
}
