/**
 * Report writers for an {@link EvalResult} (see ./evaluate): predictions and video CSVs, metrics
 * JSON, a Markdown report and ROC/PR figures, written atomically into one folder.
 */
import fs from 'node:fs';
import path from 'node:path';
import { invalidParameter } from '../errors';
import type { EvalResult, MeanMetrics } from './evaluate';
import { type BinaryMetrics, prCurve, rocCurve } from './metrics';
import { type CurveSeries, curveSvg, svgToPng } from './plot';
import { checkOutputPath } from '../output-path';

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
