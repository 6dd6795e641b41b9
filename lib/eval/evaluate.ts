/**
 * Evaluation of predictions (scores already computed by the caller): frame- and video-level
 * metrics, overall, per dataset and per source. The report writers are in ./report.
 *
 * Levels:
 * - frame: one row per prediction (an image or frame; a video file scored as a whole is one row).
 * - video: rows grouped by (dataset, source, video); video score = mean of its frames' pFake (as the
 *   paper). Frames of one video must share a label.
 *
 * Groups: overall (everything pooled), per dataset, and per source. Per source, a fake source is
 * scored against the real sources of the same dataset (fake source ∪ real sources), as papers report
 * per-manipulation AUROC; a real source is scored alone, so only its accuracy (= TNR) is defined.
 * `mean` is the unweighted mean of the per-dataset metrics over datasets where they are defined.
 */
import { DfdetError, invalidParameter } from '../errors';
import { type BinaryMetrics, computeMetrics } from './metrics';

export interface Prediction {
  /** File path of the image/frame/video. */
  path: string;
  /** Dataset name. Default ''. */
  dataset?: string;
  /** Source / manipulation name. Default ''. */
  source?: string;
  /** Video id (frames of one video share it). Default: the path. */
  video?: string;
  /** Frame name, when the item is a frame. */
  frame?: string | null;
  /** 0 real, 1 fake, null unknown (unlabelled items are kept in the CSV, not in the metrics). */
  label: 0 | 1 | null;
  /** Probability of fake; null/NaN when the item failed. */
  pFake: number | null;
  /** Why scoring failed (decode error, no face, ...). An item with an error is not scored. */
  error?: string;
}

/** A {@link Prediction} with its defaults filled in (every field but `error` present). */
export type NormalizedPrediction = Required<Omit<Prediction, 'error'>> & Pick<Prediction, 'error'>;

/** A video-level score. */
export interface VideoScore {
  dataset: string;
  source: string;
  video: string;
  label: 0 | 1;
  /** Mean of the frames' pFake. */
  pFake: number;
  /** Number of scored frames averaged. */
  frames: number;
}

/** Frame- and video-level metrics of one group. */
export interface LevelMetrics {
  frame: BinaryMetrics;
  video: BinaryMetrics;
}

/** Unweighted means over datasets (NaN metrics skipped; NaN when no dataset defines one). */
export interface MeanMetrics {
  auroc: number;
  ap: number;
  eer: number;
  accuracy: number;
  balancedAccuracy: number;
  /** Number of datasets averaged for AUROC. */
  datasets: number;
}

/** Metrics of one source of a dataset. */
export interface SourceResult extends LevelMetrics {
  /** Source name. */
  name: string;
  /** The source's label. */
  label: 0 | 1;
  /** Real sources pooled with this one (empty for a real source). */
  comparedWith: string[];
}

/** Metrics of one dataset. */
export interface DatasetResult extends LevelMetrics {
  name: string;
  sources: SourceResult[];
}

/** An item that could not be scored. */
export interface FailedItem {
  path: string;
  dataset: string;
  source: string;
  video: string;
  error: string;
}

/** Everything {@link evaluate} computes. `predictions` and `videos` are not written to metrics.json. */
export interface EvalResult {
  /** Decision threshold of the accuracies. */
  threshold: number;
  counts: {
    /** Predictions given. */
    items: number;
    /** Labelled predictions with a finite pFake (the frame-level n). */
    scored: number;
    /** Predictions with an error or without a finite pFake. */
    failed: number;
    /** Scored predictions without a label (left out of metrics). */
    unlabelled: number;
    /** Videos with at least one scored frame. */
    videos: number;
  };
  overall: LevelMetrics;
  mean: { frame: MeanMetrics; video: MeanMetrics };
  datasets: DatasetResult[];
  failed: FailedItem[];
  /** The input predictions, normalised (defaults filled). */
  predictions: NormalizedPrediction[];
  /** Video-level scores, sorted by dataset, source, video. */
  videos: VideoScore[];
}

/** Options of {@link evaluate}. */
export interface EvaluateOptions {
  /** Decision threshold for accuracies (`pFake >= threshold` → fake). Default 0.5. */
  threshold?: number;
}

interface Row {
  dataset: string;
  source: string;
  video: string;
  label: 0 | 1;
  pFake: number;
}

function metricsOf(rows: readonly { label: 0 | 1; pFake: number }[], threshold: number): BinaryMetrics {
  return computeMetrics(
    rows.map((r) => r.label),
    rows.map((r) => r.pFake),
    threshold,
  );
}

function meanOf(list: BinaryMetrics[]): MeanMetrics {
  const avg = (k: 'auroc' | 'ap' | 'eer' | 'accuracy' | 'balancedAccuracy'): number => {
    const v = list.map((m) => m[k]).filter((x) => Number.isFinite(x));
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
  };
  return {
    auroc: avg('auroc'),
    ap: avg('ap'),
    eer: avg('eer'),
    accuracy: avg('accuracy'),
    balancedAccuracy: avg('balancedAccuracy'),
    datasets: list.filter((m) => Number.isFinite(m.auroc)).length,
  };
}

const key = (...parts: string[]): string => JSON.stringify(parts);

function optString(v: unknown, name: string, fallback: string): string {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'string') invalidParameter(name, 'a string', v);
  return v;
}

/**
 * Compute frame- and video-level metrics, overall, per dataset and per source.
 * @throws DfdetError BAD_INPUT for a non-array, an item without a string path, a label other than
 *   0/1/null, or frames of one video with different labels.
 */
export function evaluate(predictions: readonly Prediction[], options: EvaluateOptions = {}): EvalResult {
  if (!Array.isArray(predictions)) invalidParameter('predictions', 'an array', predictions);
  const threshold = options.threshold ?? 0.5;
  if (typeof threshold !== 'number' || !Number.isFinite(threshold)) invalidParameter('threshold', 'a finite number', threshold);

  const norm: NormalizedPrediction[] = [];
  const failed: FailedItem[] = [];
  const rows: Row[] = [];
  let unlabelled = 0;
  predictions.forEach((p, i) => {
    if (!p || typeof p !== 'object') invalidParameter(`predictions[${i}]`, 'an object', p);
    if (typeof p.path !== 'string') invalidParameter(`predictions[${i}].path`, 'a string', p.path);
    if (p.label !== 0 && p.label !== 1 && p.label !== null && p.label !== undefined) {
      invalidParameter(`predictions[${i}].label`, '0, 1 or null', p.label);
    }
    const label = p.label ?? null;
    const dataset = optString(p.dataset, `predictions[${i}].dataset`, '');
    const source = optString(p.source, `predictions[${i}].source`, '');
    const video = optString(p.video, `predictions[${i}].video`, p.path);
    const pFake = typeof p.pFake === 'number' ? p.pFake : null;
    const n: NormalizedPrediction = { path: p.path, dataset, source, video, frame: p.frame ?? null, label, pFake };
    if (p.error !== undefined) n.error = String(p.error);
    norm.push(n);
    if (n.error !== undefined || pFake === null || !Number.isFinite(pFake)) {
      failed.push({ path: p.path, dataset, source, video, error: n.error ?? `pFake is ${String(p.pFake)}` });
      return;
    }
    if (label === null) {
      unlabelled++;
      return;
    }
    rows.push({ dataset, source, video, label, pFake });
  });

  // Video scores: mean of frame scores.
  const vmap = new Map<string, { row: Row; sum: number; n: number }>();
  for (const r of rows) {
    const k = key(r.dataset, r.source, r.video);
    const v = vmap.get(k);
    if (!v) vmap.set(k, { row: r, sum: r.pFake, n: 1 });
    else {
      if (v.row.label !== r.label) {
        throw new DfdetError('BAD_INPUT', `Frames of video ${r.dataset}/${r.source}/${r.video} have different labels`, {
          details: { dataset: r.dataset, source: r.source, video: r.video },
        });
      }
      v.sum += r.pFake;
      v.n++;
    }
  }
  const videos: VideoScore[] = [...vmap.values()]
    .map(({ row, sum, n }) => ({ dataset: row.dataset, source: row.source, video: row.video, label: row.label, pFake: sum / n, frames: n }))
    .sort((a, b) => cmp(a.dataset, b.dataset) || cmp(a.source, b.source) || cmp(a.video, b.video));

  const level = (f: (r: { dataset: string; source: string }) => boolean): LevelMetrics => ({
    frame: metricsOf(rows.filter(f), threshold),
    video: metricsOf(videos.filter(f), threshold),
  });

  const datasetNames = [...new Set(rows.map((r) => r.dataset))].sort(cmp);
  const datasets: DatasetResult[] = datasetNames.map((ds) => {
    const inDs = rows.filter((r) => r.dataset === ds);
    const sourceLabel = new Map<string, 0 | 1>();
    for (const r of inDs) {
      // A source mixing labels is judged by its first row; its rows keep their own labels.
      if (!sourceLabel.has(r.source)) sourceLabel.set(r.source, r.label);
    }
    const realSources = [...sourceLabel].filter(([, l]) => l === 0).map(([s]) => s).sort(cmp);
    const sources: SourceResult[] = [...sourceLabel.keys()].sort(cmp).map((src) => {
      const label = sourceLabel.get(src)!;
      const pool = label === 1 ? new Set([src, ...realSources]) : new Set([src]);
      return {
        name: src,
        label,
        comparedWith: label === 1 ? realSources : [],
        ...level((r) => r.dataset === ds && pool.has(r.source)),
      };
    });
    return { name: ds, ...level((r) => r.dataset === ds), sources };
  });

  return {
    threshold,
    counts: { items: predictions.length, scored: rows.length, failed: failed.length, unlabelled, videos: videos.length },
    overall: level(() => true),
    mean: { frame: meanOf(datasets.map((d) => d.frame)), video: meanOf(datasets.map((d) => d.video)) },
    datasets,
    failed,
    predictions: norm,
    videos,
  };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
