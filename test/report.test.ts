import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { evaluate, type Prediction } from '../lib/eval/evaluate';
import { type ReportModel, writeReport, figureSvg } from '../lib/eval/report';
import { computeMetrics } from '../lib/eval/metrics';
import { parseCsv } from '../lib/eval/dataset';
import { curveSvg } from '../lib/eval/plot';
import { isDfdetError } from '../lib/errors';
import { rng } from './helpers/random';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-report-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Two datasets, several sources, 6 videos per source, 4 frames per video, plus failures. */
function makePredictions(): Prediction[] {
  const r = rng(42);
  const layout: Record<string, string[]> = { CDF: ['Celeb-real', 'YouTube-real', 'Celeb-synthesis'], FF: ['real', 'DF', 'NT'] };
  const out: Prediction[] = [];
  for (const [ds, sources] of Object.entries(layout)) {
    for (const src of sources) {
      const label = /real/i.test(src) ? 0 : 1;
      const shift = src === 'NT' ? 0.05 : 0.25; // NT is harder than DF
      for (let v = 0; v < 6; v++) {
        for (let f = 0; f < 4; f++) {
          out.push({
            path: `/d/${ds}/${src}/v${v}/${f}.png`,
            dataset: ds,
            source: src,
            video: `v${v}`,
            frame: String(f),
            label,
            pFake: Math.min(1, Math.max(0, 0.45 + (label ? shift : -shift) + (r() - 0.5) * 0.6)),
          });
        }
      }
    }
  }
  out.push({ path: '/d/FF/DF/broken.png', dataset: 'FF', source: 'DF', video: 'v9', label: 1, pFake: null, error: 'DECODE_FAILED: bad png' });
  out.push({ path: '/d/FF/DF/nan.png', dataset: 'FF', source: 'DF', video: 'v9', label: 1, pFake: NaN });
  out.push({ path: '/x/unknown.png', dataset: 'misc', source: '', video: 'u', label: null, pFake: 0.3 });
  return out;
}

const preds = makePredictions();
const ok = preds.filter((p) => p.error === undefined && typeof p.pFake === 'number' && Number.isFinite(p.pFake) && p.label !== null);

/** Metrics computed here from an explicit subset (computeMetrics itself is checked against sklearn). */
function frameMetrics(f: (p: Prediction) => boolean) {
  const s = ok.filter(f);
  return computeMetrics(s.map((p) => p.label as number), s.map((p) => p.pFake as number));
}
function videoMetrics(f: (p: Prediction) => boolean) {
  const groups = new Map<string, { label: number; scores: number[] }>();
  for (const p of ok.filter(f)) {
    const k = `${p.dataset}|${p.source}|${p.video}`;
    if (!groups.has(k)) groups.set(k, { label: p.label as number, scores: [] });
    groups.get(k)!.scores.push(p.pFake as number);
  }
  const g = [...groups.values()];
  return computeMetrics(g.map((x) => x.label), g.map((x) => x.scores.reduce((a, b) => a + b, 0) / x.scores.length));
}

describe('evaluate', () => {
  const res = evaluate(preds);

  it('counts scored, failed and unlabelled items', () => {
    expect(res.counts).toEqual({ items: preds.length, scored: ok.length, failed: 2, unlabelled: 1, videos: 36 });
    expect(res.failed.map((f) => f.path)).toEqual(['/d/FF/DF/broken.png', '/d/FF/DF/nan.png']);
    expect(res.failed[0]!.error).toMatch(/DECODE_FAILED/);
    expect(res.failed[1]!.error).toMatch(/NaN/);
  });

  it('video score is the mean of frame scores', () => {
    const v = res.videos.find((x) => x.dataset === 'FF' && x.source === 'NT' && x.video === 'v3')!;
    const frames = ok.filter((p) => p.dataset === 'FF' && p.source === 'NT' && p.video === 'v3').map((p) => p.pFake as number);
    expect(v.frames).toBe(4);
    expect(v.pFake).toBeCloseTo(frames.reduce((a, b) => a + b, 0) / 4, 14);
  });

  it('overall and per-dataset metrics equal metrics of the pooled subsets', () => {
    expect(res.overall.frame).toEqual(frameMetrics(() => true));
    expect(res.overall.video).toEqual(videoMetrics(() => true));
    expect(res.datasets.map((d) => d.name)).toEqual(['CDF', 'FF']);
    for (const d of res.datasets) {
      expect(d.frame).toEqual(frameMetrics((p) => p.dataset === d.name));
      expect(d.video).toEqual(videoMetrics((p) => p.dataset === d.name));
    }
    expect(res.mean.frame.auroc).toBeCloseTo((res.datasets[0]!.frame.auroc + res.datasets[1]!.frame.auroc) / 2, 14);
    expect(res.mean.frame.datasets).toBe(2);
  });

  it('per source: fake sources vs the dataset real sources; real sources alone', () => {
    const cdf = res.datasets[0]!;
    expect(cdf.sources.map((s) => [s.name, s.label, s.comparedWith])).toEqual([
      ['Celeb-real', 0, []],
      ['Celeb-synthesis', 1, ['Celeb-real', 'YouTube-real']],
      ['YouTube-real', 0, []],
    ]);
    const nt = res.datasets[1]!.sources.find((s) => s.name === 'NT')!;
    const df = res.datasets[1]!.sources.find((s) => s.name === 'DF')!;
    expect(nt.frame).toEqual(frameMetrics((p) => p.dataset === 'FF' && (p.source === 'NT' || p.source === 'real')));
    expect(nt.video).toEqual(videoMetrics((p) => p.dataset === 'FF' && (p.source === 'NT' || p.source === 'real')));
    // The harder manipulation scores lower (data were made so).
    expect(nt.frame.auroc).toBeLessThan(df.frame.auroc);
    const real = cdf.sources[0]!;
    expect(real.frame.auroc).toBeNaN();
    expect(real.frame.reasons.auroc).toMatch(/only real/);
    expect(real.frame.accuracy).toBe(real.frame.tn / real.frame.n);
  });

  it('rejects bad input with BAD_INPUT', () => {
    const bad: unknown[] = [
      'nope',
      [{ path: 1, label: 0, pFake: 0.1 }],
      [{ path: 'a', label: 2, pFake: 0.1 }],
      [
        { path: 'a', video: 'v', label: 0, pFake: 0.1 },
        { path: 'b', video: 'v', label: 1, pFake: 0.1 },
      ],
    ];
    for (const b of bad) {
      let err: unknown;
      try {
        evaluate(b as Prediction[]);
      } catch (e) {
        err = e;
      }
      expect(isDfdetError(err, 'BAD_INPUT'), String(err)).toBe(true);
    }
  });

  it('empty predictions give NaN metrics, not a crash', () => {
    const e = evaluate([]);
    expect(e.overall.frame.auroc).toBeNaN();
    expect(e.datasets).toEqual([]);
  });
});

/** A model with known provenance, and one made by `dfdet model init`. */
const TRAINED: ReportModel = { name: 'models/trained.pt', arch: 'vit 224px/14 w1024 L24 (LinearNorm)', sourceKind: 'lightning', sourceSha256: 'ab'.repeat(32) };
const RANDOM: ReportModel = { name: 'models/tiny.pt', sourceKind: 'init', sourceSha256: '' };

describe('writeReport', () => {
  it('writes CSVs, JSON, Markdown and SVG/PNG figures', async () => {
    const res = evaluate(preds);
    const out = path.join(tmp, 'report');
    const files = await writeReport(res, out, { model: TRAINED });
    // predictions.csv round-trips.
    const rows = parseCsv(fs.readFileSync(files.predictionsCsv, 'utf8'));
    expect(rows[0]!.fields).toEqual(['path', 'dataset', 'source', 'video', 'frame', 'label', 'pFake', 'error']);
    expect(rows.length).toBe(preds.length + 1);
    const broken = rows.find((r) => r.fields[0] === '/d/FF/DF/broken.png')!;
    expect(broken.fields[6]).toBe('');
    expect(broken.fields[7]).toBe('DECODE_FAILED: bad png');
    expect(Number(rows[1]!.fields[6])).toBe(preds[0]!.pFake);
    expect(parseCsv(fs.readFileSync(files.videosCsv, 'utf8')).length).toBe(37);
    // metrics.json: NaN as null, no per-item arrays.
    const json = JSON.parse(fs.readFileSync(files.metricsJson, 'utf8'));
    expect(json.predictions).toBeUndefined();
    expect(json.overall.frame.auroc).toBeCloseTo(res.overall.frame.auroc, 12);
    expect(json.datasets[0].sources[0].frame.auroc).toBeNull();
    expect(json.failed).toHaveLength(2);
    // Markdown tables.
    const md = fs.readFileSync(files.markdown, 'utf8');
    expect(md).toMatch(/\| dataset \| level \| n \|/);
    expect(md).toContain(`| CDF | frame | ${res.datasets[0]!.frame.n} |`);
    expect(md).toContain(res.datasets[1]!.video.auroc.toFixed(4));
    expect(md).toContain('![roc-frame.png](roc-frame.png)');
    // Figures.
    expect(files.figures.map((f) => path.basename(f.svg))).toEqual(['roc-frame.svg', 'pr-frame.svg', 'roc-video.svg', 'pr-video.svg']);
    for (const f of files.figures) {
      const svg = fs.readFileSync(f.svg, 'utf8');
      expect(svg.match(/<polyline/g)?.length).toBe(2); // one curve per dataset
      expect(svg).toContain('CDF (');
      const meta = await sharp(f.png!).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['png', 640, 520]);
    }
  });

  it('the PNG shows the curves in their colours', async () => {
    const svg = curveSvg({
      title: 't',
      xLabel: 'x',
      yLabel: 'y',
      series: [{ label: 'a', x: [0, 0, 1], y: [0, 1, 1], color: '#ff0000' }],
    });
    const { data, info } = await sharp(Buffer.from(svg)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    // The curve runs up the left axis and along the top: red pixels at x = left margin (70).
    let red = 0;
    for (let i = 0; i < data.length; i += 3) if (data[i]! > 200 && data[i + 1]! < 60 && data[i + 2]! < 60) red++;
    expect(red).toBeGreaterThan(500);
    const at = (x: number, y: number) => Array.from(data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3));
    expect(at(70, 200)[0]).toBeGreaterThan(200);
    expect(at(300, 300)).toEqual([255, 255, 255]);
  });

  it('figures skip datasets with one class', () => {
    const res = evaluate([
      { path: 'a', dataset: 'A', label: 0, pFake: 0.1 },
      { path: 'b', dataset: 'A', label: 1, pFake: 0.9 },
      { path: 'c', dataset: 'B', label: 0, pFake: 0.2 },
    ]);
    const svg = figureSvg(res, { kind: 'roc', level: 'frame' }, TRAINED);
    expect(svg.match(/<polyline/g)?.length).toBe(1);
    expect(svg).toContain('A (AUROC 1.0000)');
  });

  it('every file names the model, its source and sha256; random weights carry the warning everywhere', async () => {
    const res = evaluate(preds);
    for (const model of [TRAINED, RANDOM]) {
      const out = path.join(tmp, `report-${model.sourceKind}`);
      const files = await writeReport(res, out, { model, png: false });
      const md = fs.readFileSync(files.markdown, 'utf8');
      const json = JSON.parse(fs.readFileSync(files.metricsJson, 'utf8'));
      const svgs = files.figures.map((f) => fs.readFileSync(f.svg, 'utf8'));
      expect(md).toContain(`Model: \`${model.name}\``);
      expect(md).toContain(`source kind \`${model.sourceKind}\``);
      expect(json.model).toMatchObject({ name: model.name, sourceKind: model.sourceKind, sourceSha256: model.sourceSha256 });
      for (const svg of svgs) expect(svg).toContain(`model ${model.name} · source ${model.sourceKind}`);
      const random = model.sourceKind === 'init';
      expect(json.model.randomWeights).toBe(random);
      expect(/RANDOM weights/.test(md)).toBe(random);
      expect(/RANDOM weights/.test(json.model.warning ?? '')).toBe(random);
      for (const svg of svgs) expect(svg.includes('RANDOM WEIGHTS')).toBe(random);
      if (!random) {
        expect(md).toContain(model.sourceSha256);
        for (const svg of svgs) expect(svg).toContain(`sha256 ${model.sourceSha256.slice(0, 12)}`);
      } else expect(md).toContain('sha256 unknown');
    }
    // No report without a model.
    await expect(writeReport(res, path.join(tmp, 'nomodel'), {} as never)).rejects.toMatchObject({ code: 'BAD_INPUT' });
  });
});
