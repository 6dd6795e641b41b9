/**
 * Binary detection metrics (label 1 = fake = positive class, score = pFake).
 *
 * Definitions follow scikit-learn (checked against Debian's python3-sklearn 1.2 in
 * test/metrics.test.ts at 1e-9):
 * - {@link rocCurve} = `sklearn.metrics.roc_curve(y, s, drop_intermediate=False)`: one point per
 *   distinct score (tied scores form one point, so a tie group is a diagonal segment), plus the
 *   origin. The origin's threshold is `+Infinity` (sklearn >= 1.3; 1.2 used `max(score) + 1`).
 * - {@link auroc} = `roc_auc_score`: trapezoid area under that curve, so a (fake, real) pair with
 *   equal scores gets 0.5 credit.
 * - {@link prCurve} = `precision_recall_curve`; {@link averagePrecision} = `average_precision_score`
 *   = sum_n (R_n - R_{n-1}) P_n (step function, no interpolation; ties form one point).
 * - EER: the point where the piecewise-linear ROC curve crosses FNR = FPR (i.e. `1 - tpr = fpr`).
 *   Same value as `brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)` over sklearn's curve, which
 *   is the authors' definition (`calculate_eer` in github.com/yermandy/GenD src/metrics.py). Their EER
 *   threshold is interpolated; ours is the threshold of the first ROC point at or past the crossing.
 * - Accuracy / balanced accuracy at a threshold (default 0.5): `score >= threshold` → fake.
 *   Balanced accuracy = `balanced_accuracy_score` (mean recall over the classes present).
 */
import { DfdetError, invalidParameter } from '../errors';

/** A label: 0 = real, 1 = fake. */
export type Label = 0 | 1;

/** ROC curve; arrays have equal length, ordered by decreasing threshold (fpr, tpr non-decreasing). */
export interface RocCurve {
  /** False positive rate (real called fake). NaN everywhere when there is no real sample. */
  fpr: number[];
  /** True positive rate (fake called fake). NaN everywhere when there is no fake sample. */
  tpr: number[];
  /** `thresholds[i]`: the point counts `score >= thresholds[i]` as fake; `thresholds[0] = +Infinity`. */
  thresholds: number[];
}

/** Precision-recall curve as sklearn returns it: recall decreasing, last point (recall 0, precision 1). */
export interface PrCurve {
  /** Precision; length = thresholds.length + 1. */
  precision: number[];
  /** Recall; length = thresholds.length + 1. All 1 (sklearn's convention) when there is no fake sample. */
  recall: number[];
  /** Distinct scores, increasing. */
  thresholds: number[];
}

/** Names of the metrics that can be undefined (NaN) on degenerate input. */
export type MetricName = 'auroc' | 'ap' | 'eer' | 'accuracy' | 'balancedAccuracy';

/** All metrics of one set of predictions. Undefined metrics are NaN and `reasons[name]` says why. */
export interface BinaryMetrics {
  /** Number of samples. */
  n: number;
  /** Number of fake samples (label 1). */
  positives: number;
  /** Number of real samples (label 0). */
  negatives: number;
  /** Area under the ROC curve. */
  auroc: number;
  /** Average precision (fake = positive). */
  ap: number;
  /** Equal error rate (FPR = FNR on the interpolated ROC curve). */
  eer: number;
  /** Threshold of the ROC point where FPR first reaches FNR (score >= it → fake); NaN with eer. */
  eerThreshold: number;
  /** Decision threshold used for the confusion counts and accuracies. */
  threshold: number;
  /** Fraction of samples classified correctly at `threshold`. */
  accuracy: number;
  /** Mean of the per-class recalls (classes present only, as sklearn). */
  balancedAccuracy: number;
  /** Fakes called fake. */
  tp: number;
  /** Reals called fake. */
  fp: number;
  /** Reals called real. */
  tn: number;
  /** Fakes called real. */
  fn: number;
  /** Why a metric is NaN, keyed by metric name. Empty when all are defined. */
  reasons: Partial<Record<MetricName, string>>;
}

interface Counts {
  /** Cumulative false positives at each distinct score (descending). */
  fps: number[];
  /** Cumulative true positives at each distinct score (descending). */
  tps: number[];
  /** The distinct scores, descending. */
  thresholds: number[];
}

/** Validate labels and scores. */
function checkInputs(labels: ArrayLike<number>, scores: ArrayLike<number>): void {
  if (labels === null || typeof labels !== 'object' || typeof labels.length !== 'number') {
    invalidParameter('labels', 'an array of 0/1', labels);
  }
  if (scores === null || typeof scores !== 'object' || typeof scores.length !== 'number') {
    invalidParameter('scores', 'an array of finite numbers', scores);
  }
  if (labels.length !== scores.length) {
    throw new DfdetError(
      'BAD_INPUT',
      `Expected labels and scores of equal length but received ${labels.length} labels and ${scores.length} scores`,
    );
  }
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i];
    if (l !== 0 && l !== 1) invalidParameter(`labels[${i}]`, '0 (real) or 1 (fake)', l);
    const s = scores[i];
    if (typeof s !== 'number' || !Number.isFinite(s)) invalidParameter(`scores[${i}]`, 'a finite number', s);
  }
}

/** sklearn's `_binary_clf_curve`: counts at each distinct score, scores descending. */
function binaryCounts(labels: ArrayLike<number>, scores: ArrayLike<number>): Counts {
  checkInputs(labels, scores);
  const n = labels.length;
  const s = Float64Array.from(scores);
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => s[b]! - s[a]!);
  const fps: number[] = [];
  const tps: number[] = [];
  const thresholds: number[] = [];
  let tp = 0;
  let fp = 0;
  for (let k = 0; k < n; k++) {
    const i = order[k]!;
    if (labels[i] === 1) tp++;
    else fp++;
    // Close a point at the end of each group of equal scores (ties form one point).
    if (k === n - 1 || s[order[k + 1]!] !== s[i]) {
      tps.push(tp);
      fps.push(fp);
      thresholds.push(s[i]!);
    }
  }
  return { fps, tps, thresholds };
}

/**
 * ROC curve with every distinct threshold kept (sklearn `drop_intermediate=False`).
 * @throws DfdetError BAD_INPUT on length mismatch, labels other than 0/1, non-finite scores.
 */
export function rocCurve(labels: ArrayLike<number>, scores: ArrayLike<number>): RocCurve {
  return rocFromCounts(binaryCounts(labels, scores));
}

function rocFromCounts({ fps, tps, thresholds }: Counts): RocCurve {
  const negatives = fps.length ? fps[fps.length - 1]! : 0;
  const positives = tps.length ? tps[tps.length - 1]! : 0;
  const fpr = [0, ...fps].map((v) => (negatives > 0 ? v / negatives : NaN));
  const tpr = [0, ...tps].map((v) => (positives > 0 ? v / positives : NaN));
  return { fpr, tpr, thresholds: [Infinity, ...thresholds] };
}

/** Trapezoid area under a curve given by x (monotone) and y, as `sklearn.metrics.auc`. */
export function trapezoid(x: readonly number[], y: readonly number[]): number {
  let area = 0;
  for (let i = 1; i < x.length; i++) area += ((x[i]! - x[i - 1]!) * (y[i]! + y[i - 1]!)) / 2;
  return area;
}

/** AUROC; NaN when only one class is present or the input is empty. */
export function auroc(labels: ArrayLike<number>, scores: ArrayLike<number>): number {
  const roc = rocCurve(labels, scores);
  if (roc.fpr.length < 2 || Number.isNaN(roc.fpr[1]) || Number.isNaN(roc.tpr[1])) return NaN;
  return trapezoid(roc.fpr, roc.tpr);
}

/**
 * Precision-recall curve as `sklearn.metrics.precision_recall_curve`.
 * @throws DfdetError BAD_INPUT as {@link rocCurve}.
 */
export function prCurve(labels: ArrayLike<number>, scores: ArrayLike<number>): PrCurve {
  return prFromCounts(binaryCounts(labels, scores));
}

function prFromCounts({ fps, tps, thresholds }: Counts): PrCurve {
  const positives = tps.length ? tps[tps.length - 1]! : 0;
  const m = tps.length;
  const precision: number[] = [];
  const recall: number[] = [];
  const th: number[] = [];
  for (let k = m - 1; k >= 0; k--) {
    const ps = tps[k]! + fps[k]!;
    precision.push(ps !== 0 ? tps[k]! / ps : 0);
    recall.push(positives > 0 ? tps[k]! / positives : 1);
    th.push(thresholds[k]!);
  }
  precision.push(1);
  recall.push(0);
  return { precision, recall, thresholds: th };
}

/** Average precision from a PR curve: `-sum(diff(recall) * precision[:-1])` (sklearn). */
function apFromCurve(pr: PrCurve): number {
  let s = 0;
  for (let i = 1; i < pr.recall.length; i++) s -= (pr.recall[i]! - pr.recall[i - 1]!) * pr.precision[i - 1]!;
  return s;
}

/** Average precision (fake = positive); NaN when there is no fake sample or no sample. */
export function averagePrecision(labels: ArrayLike<number>, scores: ArrayLike<number>): number {
  const pr = prCurve(labels, scores);
  let positives = 0;
  for (let i = 0; i < labels.length; i++) positives += labels[i]!;
  if (positives === 0) return NaN;
  return apFromCurve(pr);
}

/**
 * Equal error rate from an ROC curve: walk the piecewise-linear curve from (0,0) to (1,1) and find
 * where g = fpr + tpr - 1 (= FPR - FNR) changes sign; interpolate linearly inside that segment.
 * g is non-decreasing along the curve, so the crossing is unique. Returns `{eer, threshold}` where
 * threshold is the threshold of the segment's end point (first point with FPR >= FNR).
 */
export function eerFromRoc(roc: RocCurve): { eer: number; threshold: number } {
  const { fpr, tpr, thresholds } = roc;
  if (fpr.length < 2 || Number.isNaN(fpr[1]) || Number.isNaN(tpr[1])) return { eer: NaN, threshold: NaN };
  for (let i = 1; i < fpr.length; i++) {
    const g1 = fpr[i]! + tpr[i]! - 1;
    if (g1 < 0) continue;
    const g0 = fpr[i - 1]! + tpr[i - 1]! - 1;
    const t = g1 === g0 ? 0 : -g0 / (g1 - g0);
    return { eer: fpr[i - 1]! + t * (fpr[i]! - fpr[i - 1]!), threshold: thresholds[i]! };
  }
  // Unreachable for a complete curve (the last point is (1,1), g = 1).
  return { eer: NaN, threshold: NaN };
}

/**
 * Every metric of {@link BinaryMetrics} at once (one sort).
 * Degenerate inputs do not throw: empty input → all NaN; one class only → AUROC/EER NaN
 * (and AP NaN without fakes), each with a reason.
 * @param threshold Decision threshold for the accuracies, default 0.5 (`score >= threshold` → fake).
 * @throws DfdetError BAD_INPUT on length mismatch, labels other than 0/1, non-finite scores or threshold.
 */
export function computeMetrics(labels: ArrayLike<number>, scores: ArrayLike<number>, threshold = 0.5): BinaryMetrics {
  if (typeof threshold !== 'number' || !Number.isFinite(threshold)) invalidParameter('threshold', 'a finite number', threshold);
  const counts = binaryCounts(labels, scores);
  const roc = rocFromCounts(counts);
  const n = labels.length;
  let tp = 0;
  let fp = 0;
  let tn = 0;
  let fn = 0;
  for (let i = 0; i < n; i++) {
    const fake = scores[i]! >= threshold;
    if (labels[i] === 1) {
      if (fake) tp++;
      else fn++;
    } else if (fake) fp++;
    else tn++;
  }
  const positives = tp + fn;
  const negatives = tn + fp;
  const reasons: BinaryMetrics['reasons'] = {};
  const m: BinaryMetrics = {
    n,
    positives,
    negatives,
    auroc: NaN,
    ap: NaN,
    eer: NaN,
    eerThreshold: NaN,
    threshold,
    accuracy: NaN,
    balancedAccuracy: NaN,
    tp,
    fp,
    tn,
    fn,
    reasons,
  };
  if (n === 0) {
    for (const k of ['auroc', 'ap', 'eer', 'accuracy', 'balancedAccuracy'] as const) reasons[k] = 'no samples';
    return m;
  }
  m.accuracy = (tp + tn) / n;
  const recalls: number[] = [];
  if (positives > 0) recalls.push(tp / positives);
  if (negatives > 0) recalls.push(tn / negatives);
  m.balancedAccuracy = recalls.reduce((a, b) => a + b, 0) / recalls.length;
  if (positives === 0 || negatives === 0) {
    const why = positives === 0 ? 'only real samples (no fake)' : 'only fake samples (no real)';
    reasons.auroc = why;
    reasons.eer = why;
  } else {
    m.auroc = trapezoid(roc.fpr, roc.tpr);
    const e = eerFromRoc(roc);
    m.eer = e.eer;
    m.eerThreshold = e.threshold;
  }
  if (positives === 0) reasons.ap = 'no fake samples (precision undefined)';
  else m.ap = apFromCurve(prFromCounts(counts));
  return m;
}
