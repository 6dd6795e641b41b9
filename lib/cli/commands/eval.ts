/**
 * `dfdet eval <root | list.csv>`: score a labelled dataset with the Detector, then write the
 * evaluation report (lib/eval) and print the main metrics.
 */
import * as path from 'node:path';

import { type Command, Option } from 'commander';

import { Detector } from '../../detector';
import { scanDataset, type DatasetItem } from '../../eval/dataset';
import type { BinaryMetrics } from '../../eval/metrics';
import { evaluate, type EvalResult, type Prediction } from '../../eval/evaluate';
import { writeReport } from '../../eval/report';
import { fmt, Progress, Tally, textTable } from '../output';
import { addDetectorOptions, type DetectorFlags, detectorOptions, EXIT, interruptSignal, intOption, randomWeightsWarning } from '../options';

interface EvalFlags extends DetectorFlags {
  out?: string;
  png?: boolean;
  progress?: boolean;
  limit?: number;
}

/** Default report folder: `./dfdet-eval-<UTC timestamp>`. */
export function defaultOutDir(now = new Date()): string {
  return `dfdet-eval-${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`;
}

/** The metrics table printed after an evaluation: overall, mean and per-dataset rows, both levels. */
export function metricsTable(result: EvalResult): string {
  const rows: string[][] = [];
  const push = (name: string, level: string, m: BinaryMetrics): void => {
    rows.push([name, level, String(m.n), String(m.negatives), String(m.positives), fmt(m.auroc), fmt(m.ap), fmt(m.eer), fmt(m.accuracy), fmt(m.balancedAccuracy)]);
  };
  for (const d of result.datasets) {
    push(d.name, 'frame', d.frame);
    push(d.name, 'video', d.video);
  }
  if (result.datasets.length > 1) {
    push('(all pooled)', 'frame', result.overall.frame);
    push('(all pooled)', 'video', result.overall.video);
    for (const level of ['frame', 'video'] as const) {
      const m = result.mean[level];
      rows.push([`(mean of ${m.datasets})`, level, '', '', '', fmt(m.auroc), fmt(m.ap), fmt(m.eer), fmt(m.accuracy), fmt(m.balancedAccuracy)]);
    }
  }
  return textTable(['dataset', 'level', 'n', 'real', 'fake', 'AUROC', 'AP', 'EER', 'Acc', 'BalAcc'], rows);
}

/** Registers `eval`. */
export function registerEval(program: Command): void {
  const cmd = program
    .command('eval')
    .description('evaluate a detector on a labelled dataset (folder layout <dataset>/<source>/<video>/<frame>, or a CSV path,label[,dataset,video])')
    .argument('<dataset>', 'dataset folder or CSV file')
    .option('-o, --out <dir>', 'report folder (default ./dfdet-eval-<timestamp>)')
    .option('--limit <n>', 'score only the first n items (quick checks)', intOption('--limit', 1, Number.MAX_SAFE_INTEGER))
    .addOption(new Option('--no-png', 'write the figures as SVG only'))
    .addOption(new Option('--no-progress', 'no progress line on stderr'));
  addDetectorOptions(cmd, { faces: 'detect' });
  cmd.addHelpText(
    'after',
    `
Labels come from the layout: a source folder whose name contains "real" is real, any other is fake.
Use --faces none for datasets of face crops (such as the paper's 256-px aligned crops).
Video-level scores are the mean of a video's frame scores. Writes predictions.csv, videos.csv,
metrics.json, report.md and ROC/PR figures into --out.

Exit codes: 0 done, 1 some items failed to decode (listed in the report), 2 usage/model error, 130 interrupted.`,
  );
  cmd.action(async (dataset: string, flags: EvalFlags) => {
    process.exitCode = await runEval(dataset, flags);
  });
}

async function runEval(dataset: string, flags: EvalFlags): Promise<number> {
  const options = detectorOptions(flags);
  let items: DatasetItem[] = await scanDataset(dataset);
  if (flags.limit !== undefined) items = items.slice(0, flags.limit);
  const outDir = path.resolve(flags.out ?? defaultOutDir());
  const detector = await Detector.create(options);
  const interrupt = interruptSignal();
  const tally = new Tally();
  const progress = new Progress(process.stderr, flags.progress !== false && Boolean(process.stderr.isTTY), items.length);
  const predictions: Prediction[] = new Array(items.length);
  let decodeFailures = 0;
  try {
    if (detector.identity.sourceKind === 'init') process.stderr.write(`${randomWeightsWarning(detector.identity.name)}\n`);
    process.stderr.write(`evaluating ${items.length} items from ${dataset} with ${detector.identity.name} (${detector.identity.arch})\n`);
    const inputs = items.map((it) => ({ path: it.path, kind: it.kind }));
    for await (const r of detector.detectStream(inputs, { signal: interrupt.signal })) {
      if (interrupt.interrupted) break;
      tally.add(r);
      const it = items[r.index]!;
      if (r.error) decodeFailures++;
      const error = r.error ? `${r.error.code}: ${r.error.message}` : r.pFake === null ? 'no face found' : undefined;
      predictions[r.index] = { path: it.path, dataset: it.dataset, source: it.source, video: it.video, frame: it.frame, label: it.label, pFake: r.pFake, error };
      progress.update(tally);
    }
  } finally {
    progress.clear();
    interrupt.dispose();
    await detector.dispose();
  }
  if (interrupt.interrupted) {
    process.stderr.write('interrupted: no report written\n');
    return EXIT.INTERRUPTED;
  }
  const result = evaluate(predictions, { threshold: options.threshold });
  const files = await writeReport(result, outDir, {
    model: detector.identity,
    png: flags.png !== false,
    title: `dfdet evaluation of ${path.basename(path.resolve(dataset))}`,
  });
  const c = result.counts;
  process.stdout.write(`${metricsTable(result)}\n\n`);
  process.stdout.write(`${c.items} items: ${c.scored} scored, ${c.failed} failed or without a face, ${c.unlabelled} unlabelled, ${c.videos} videos; threshold ${result.threshold}\n`);
  process.stdout.write(`${tally.summary()}\n\n`);
  process.stdout.write(`report:      ${files.markdown}\nmetrics:     ${files.metricsJson}\npredictions: ${files.predictionsCsv}\nvideos:      ${files.videosCsv}\n`);
  process.stdout.write(`figures:     ${files.figures.map((f) => path.basename(f.png ?? f.svg)).join(', ')}\n`);
  return decodeFailures > 0 ? EXIT.FAILED : EXIT.OK;
}
