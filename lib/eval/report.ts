/**
 * Evaluation of predictions (scores already computed by the caller) and report writers.
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
import fs from 'node:fs';
import path from 'node:path';
import { DfdetError, invalidParameter } from '../errors';
import { type BinaryMetrics, computeMetrics, prCurve, rocCurve } from './metrics';
import { type CurveSeries, curveSvg, svgToPng } from './plot';
import { checkOutputPath } from '../output-path';

/** One scored (or failed) item, as produced by the caller's inference loop. */
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

// ---------------------------------------------------------------- writers

/** Quote a CSV field when needed (RFC 4180). */
export function csvField(v: unknown): string {
  const s = v === null || v === undefined ? '' : typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '') : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function csv(header: string[], rows: unknown[][]): string {
  return [header, ...rows].map((r) => r.map(csvField).join(',')).join('\n') + '\n';
}

/** Predictions as CSV: `path,dataset,source,video,frame,label,pFake,error`. */
export function predictionsCsv(result: EvalResult): string {
  return csv(
    ['path', 'dataset', 'source', 'video', 'frame', 'label', 'pFake', 'error'],
    result.predictions.map((p) => [p.path, p.dataset, p.source, p.video, p.frame, p.label, p.pFake, p.error]),
  );
}

/** Video scores as CSV: `dataset,source,video,label,pFake,frames`. */
export function videosCsv(result: EvalResult): string {
  return csv(
    ['dataset', 'source', 'video', 'label', 'pFake', 'frames'],
    result.videos.map((v) => [v.dataset, v.source, v.video, v.label, v.pFake, v.frames]),
  );
}

/**
 * The metrics as JSON text, led by the `model` they are of (name, source kind, sha256, and the
 * random-weights warning when it applies); no per-item arrays except `failed`; NaN/Infinity are
 * written as null.
 */
export function metricsJson(result: EvalResult, model: ReportModel): string {
  const { predictions: _p, videos: _v, ...rest } = result;
  void _p;
  void _v;
  const doc = { model: modelRecord(checkModel(model)), ...rest };
  return JSON.stringify(doc, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n';
}

/** A metric with 4 decimals, 'n/a' when undefined (NaN). */
function metric4(v: number): string {
  return Number.isFinite(v) ? v.toFixed(4) : 'n/a';
}

function metricCells(m: BinaryMetrics): string[] {
  return [String(m.n), String(m.negatives), String(m.positives), metric4(m.auroc), metric4(m.ap), metric4(m.eer), metric4(m.accuracy), metric4(m.balancedAccuracy)];
}

function table(header: string[], rows: string[][]): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [
    `| ${header.map(esc).join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

/** The model whose scores a report evaluates (a Detector's `identity` is one). */
export interface ReportModel {
  /** Path or registry name given. */
  name: string;
  /** Architecture summary, when known. */
  arch?: string;
  /** Where the weights came from (the metadata's source kind; 'init' means random weights). */
  sourceKind: string;
  /** sha256 of the file the weights were converted from ('' when unknown, e.g. random weights). */
  sourceSha256: string;
}

/** The warning every report of a model with random weights carries. */
export const RANDOM_WEIGHTS_WARNING =
  "this model has RANDOM weights (source kind 'init', made by `dfdet model init`): its scores mean nothing. " +
  'Get the trained detector with `dfdet pull`.';

/** True when the model's weights are random (`dfdet model init`). */
export function hasRandomWeights(model: ReportModel): boolean {
  return model.sourceKind === 'init';
}

/** The `model` record of metrics.json. */
function modelRecord(model: ReportModel): Record<string, unknown> {
  const random = hasRandomWeights(model);
  return {
    name: model.name,
    ...(model.arch === undefined ? {} : { arch: model.arch }),
    sourceKind: model.sourceKind,
    sourceSha256: model.sourceSha256,
    randomWeights: random,
    ...(random ? { warning: RANDOM_WEIGHTS_WARNING } : {}),
  };
}

function checkModel(model: unknown): ReportModel {
  const m = model as Partial<ReportModel> | undefined;
  if (!m || typeof m !== 'object' || typeof m.name !== 'string' || typeof m.sourceKind !== 'string' || typeof m.sourceSha256 !== 'string')
    invalidParameter('model', 'the model that made the scores ({ name, sourceKind, sourceSha256 }, e.g. a Detector\'s identity)', model);
  return m as ReportModel;
}

/** Options of {@link markdownReport} and {@link writeReport}. */
export interface ReportOptions {
  /** The model that made the scores: named, with its source and sha256, in every file written. */
  model: ReportModel;
  /** Report title. Default 'dfdet evaluation'. */
  title?: string;
  /** Failed items listed in the Markdown report. Default 20. */
  maxFailedListed?: number;
  /** Also render PNG versions of the figures (sharp). Default true. */
  png?: boolean;
}

const METRIC_HEADER = ['n', 'real', 'fake', 'AUROC', 'AP', 'EER', `Acc`, 'BAcc'];

/**
 * A short Markdown report: the model, counts, overall / per-dataset / per-source tables, failed
 * items, figures.
 */
export function markdownReport(result: EvalResult, options: ReportOptions, figures: string[] = []): string {
  const c = result.counts;
  const model = checkModel(options?.model);
  const out: string[] = [];
  out.push(`# ${options.title ?? 'dfdet evaluation'}`, '');
  if (hasRandomWeights(model)) out.push(`> **Warning:** ${RANDOM_WEIGHTS_WARNING}`, '');
  out.push(
    `Model: \`${model.name}\`${model.arch ? ` (${model.arch})` : ''}; weights from source kind \`${model.sourceKind}\`, ` +
      `sha256 ${model.sourceSha256 ? `\`${model.sourceSha256}\`` : 'unknown'}.`,
    '',
  );
  out.push(
    `Items: ${c.items} (scored ${c.scored}, failed ${c.failed}, unlabelled ${c.unlabelled}); videos: ${c.videos}. ` +
      `Accuracy at pFake >= ${result.threshold} → fake. Video score = mean frame pFake.`,
    '',
  );
  out.push('## Overall', '');
  out.push(table(['level', ...METRIC_HEADER], [['frame', ...metricCells(result.overall.frame)], ['video', ...metricCells(result.overall.video)]]), '');
  if (result.datasets.length > 1) {
    const mr = (lvl: string, m: MeanMetrics): string[] => [lvl, String(m.datasets), metric4(m.auroc), metric4(m.ap), metric4(m.eer), metric4(m.accuracy)];
    out.push('Mean over datasets:', '');
    out.push(table(['level', 'datasets', 'AUROC', 'AP', 'EER', 'Acc'], [mr('frame', result.mean.frame), mr('video', result.mean.video)]), '');
  }
  out.push('## Per dataset', '');
  out.push(
    table(
      ['dataset', 'level', ...METRIC_HEADER],
      result.datasets.flatMap((d) => [
        [d.name, 'frame', ...metricCells(d.frame)],
        [d.name, 'video', ...metricCells(d.video)],
      ]),
    ),
    '',
  );
  out.push('## Per source', '', 'Fake sources are scored against the real sources of their dataset; real sources alone (accuracy = TNR).', '');
  out.push(
    table(
      ['dataset', 'source', 'label', 'frames', 'videos', 'AUROC frame', 'AUROC video', 'EER video', 'Acc frame', 'Acc video'],
      result.datasets.flatMap((d) =>
        d.sources.map((s) => [
          d.name,
          s.name,
          s.label === 1 ? 'fake' : 'real',
          String(s.frame.n),
          String(s.video.n),
          metric4(s.frame.auroc),
          metric4(s.video.auroc),
          metric4(s.video.eer),
          metric4(s.frame.accuracy),
          metric4(s.video.accuracy),
        ]),
      ),
    ),
    '',
  );
  if (result.failed.length) {
    const max = options.maxFailedListed ?? 20;
    out.push(`## Failed items (${result.failed.length})`, '');
    out.push(table(['path', 'error'], result.failed.slice(0, max).map((f) => [f.path, f.error])));
    if (result.failed.length > max) out.push('', `… and ${result.failed.length - max} more (see predictions.csv).`);
    out.push('');
  }
  if (figures.length) {
    out.push('## Figures', '');
    for (const f of figures) out.push(`![${f}](${f})`, '');
  }
  return out.join('\n');
}

/** Which figure. */
export interface FigureSpec {
  kind: 'roc' | 'pr';
  level: 'frame' | 'video';
}

/**
 * SVG of the ROC or PR curves of a result, one curve per dataset (datasets with both classes),
 * titled with the model (and the random-weights warning when it applies).
 */
export function figureSvg(result: EvalResult, spec: FigureSpec, model: ReportModel): string {
  const m0 = checkModel(model);
  const sha = m0.sourceSha256 ? `sha256 ${m0.sourceSha256.slice(0, 12)}…` : 'sha256 unknown';
  const notes: { text: string; color?: string }[] = [{ text: `model ${m0.name} · source ${m0.sourceKind} · ${sha}` }];
  if (hasRandomWeights(m0)) notes.push({ text: 'RANDOM WEIGHTS (dfdet model init): these scores mean nothing', color: '#d62728' });
  const series: CurveSeries[] = [];
  const names = result.datasets.map((d) => d.name);
  names.forEach((ds, i) => {
    const d = result.datasets[i]!;
    const m = d[spec.level];
    if (!Number.isFinite(m.auroc)) return;
    const items =
      spec.level === 'video'
        ? result.videos.filter((v) => v.dataset === ds)
        : result.predictions.filter(
            (p): p is typeof p & { label: 0 | 1; pFake: number } =>
              p.dataset === ds && p.error === undefined && p.label !== null && typeof p.pFake === 'number' && Number.isFinite(p.pFake),
          );
    const labels = items.map((p) => p.label);
    const scores = items.map((p) => p.pFake);
    const name = ds === '' ? '(no dataset)' : ds;
    if (spec.kind === 'roc') {
      const roc = rocCurve(labels, scores);
      series.push({ label: `${name} (AUROC ${metric4(m.auroc)})`, x: roc.fpr, y: roc.tpr });
    } else {
      const pr = prCurve(labels, scores);
      series.push({ label: `${name} (AP ${metric4(m.ap)})`, x: pr.recall, y: pr.precision, step: true });
    }
  });
  const lvl = spec.level === 'frame' ? 'frame level' : 'video level';
  return spec.kind === 'roc'
    ? curveSvg({ title: `ROC (${lvl})`, xLabel: 'False positive rate (real → fake)', yLabel: 'True positive rate', series, diagonal: true, notes })
    : curveSvg({ title: `Precision-recall, fake = positive (${lvl})`, xLabel: 'Recall', yLabel: 'Precision', series, legend: 'lower-left', notes });
}

/** Paths written by {@link writeReport}. */
export interface ReportFiles {
  /** `predictions.csv` */
  predictionsCsv: string;
  /** `videos.csv` */
  videosCsv: string;
  /** `metrics.json` */
  metricsJson: string;
  /** `report.md` */
  markdown: string;
  /** `roc-frame`, `pr-frame`, `roc-video`, `pr-video` as `.svg` (+ `.png` unless disabled). */
  figures: { kind: 'roc' | 'pr'; level: 'frame' | 'video'; svg: string; png: string | null }[];
}

async function writeAtomic(file: string, data: string | Buffer): Promise<void> {
  await checkOutputPath(file);
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.promises.writeFile(tmp, data);
  await fs.promises.rename(tmp, file);
}

/**
 * Write predictions.csv, videos.csv, metrics.json, report.md and the ROC/PR figures (SVG + PNG)
 * into `outDir` (created if missing; existing files of these names are replaced). report.md,
 * metrics.json and every figure name `options.model` and carry the random-weights warning when
 * its source kind is 'init'.
 */
export async function writeReport(result: EvalResult, outDir: string, options: ReportOptions): Promise<ReportFiles> {
  if (!result || typeof result !== 'object' || !Array.isArray(result.predictions)) invalidParameter('result', 'an EvalResult', result);
  if (typeof outDir !== 'string' || outDir === '') invalidParameter('outDir', 'a folder path', outDir);
  if (!options || typeof options !== 'object') invalidParameter('options', 'an options object with the model', options);
  const model = checkModel(options.model);
  await fs.promises.mkdir(outDir, { recursive: true });
  const p = (f: string): string => path.join(outDir, f);
  const files: ReportFiles = {
    predictionsCsv: p('predictions.csv'),
    videosCsv: p('videos.csv'),
    metricsJson: p('metrics.json'),
    markdown: p('report.md'),
    figures: [],
  };
  await writeAtomic(files.predictionsCsv, predictionsCsv(result));
  await writeAtomic(files.videosCsv, videosCsv(result));
  await writeAtomic(files.metricsJson, metricsJson(result, model));
  const specs: FigureSpec[] = [
    { kind: 'roc', level: 'frame' },
    { kind: 'pr', level: 'frame' },
    { kind: 'roc', level: 'video' },
    { kind: 'pr', level: 'video' },
  ];
  for (const spec of specs) {
    const base = `${spec.kind}-${spec.level}`;
    const svg = figureSvg(result, spec, model);
    await writeAtomic(p(`${base}.svg`), svg);
    let png: string | null = null;
    if (options.png !== false) {
      png = p(`${base}.png`);
      await writeAtomic(png, await svgToPng(svg));
    }
    files.figures.push({ ...spec, svg: p(`${base}.svg`), png });
  }
  const figs = files.figures.map((f) => path.basename(f.png ?? f.svg));
  await writeAtomic(files.markdown, markdownReport(result, options, figs));
  return files;
}
