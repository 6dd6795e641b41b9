/**
 * `dfdet eval` end to end through the built CLI, on a dataset in the paper's layout
 * (`<dataset>/<source>/<video>/<frame>.png`, crops scored with `--faces none`) made of real photos.
 *
 * The labels are chosen from the model's own scores (a tiny random model from `dfdet model init`):
 * `detect` scores 12 distinct images first; dataset "sep" puts the 6 highest-scored images in a fake
 * source and the 6 lowest in a real one, so its AUROC must be exactly 1 at frame and video level;
 * dataset "mix" interleaves them, and its AUROC is checked against a Mann–Whitney pair count done
 * here. eval's scores must equal detect's, and metrics.json must equal the metrics recomputed from
 * predictions.csv.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';

import { parseCsv } from '../lib/eval/dataset';
import { computeMetrics } from '../lib/eval/metrics';
import { debianPhoto, dfdet, ensureBuilt, ndjson } from './helpers/cli';

const grace = debianPhoto('grace_hopper.jpg');
const astronaut = debianPhoto('astronaut.png');

let tmp: string;

beforeAll(async () => {
  await ensureBuilt();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-cli-eval-'));
}, 300_000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** AUROC as the probability that a fake outscores a real (ties count half): an independent reference. */
function mannWhitney(real: number[], fake: number[]): number {
  let wins = 0;
  for (const f of fake) for (const r of real) wins += f > r ? 1 : f === r ? 0.5 : 0;
  return wins / (real.length * fake.length);
}

const mean = (a: number[]): number => a.reduce((x, y) => x + y, 0) / a.length;

describe.skipIf(grace === null || astronaut === null)('dfdet eval', () => {
  it('scores a paper-layout dataset and writes a report whose metrics match the scores', async () => {
    const model = path.join(tmp, 'tiny.pt');
    const init = await dfdet(['model', 'init', '--arch', 'tiny', '--seed', '3', '--head', 'linear', '-o', model]);
    expect(init.code, init.stderr).toBe(0);

    // 12 distinct 256-px "face crops": regions of the two photos and two synthetic images.
    const stage = path.join(tmp, 'stage');
    fs.mkdirSync(stage);
    const crops: { src: string; left: number; top: number; size: number }[] = [];
    for (const [src, w, h] of [
      [grace!, 512, 600],
      [astronaut!, 512, 512],
    ] as const) {
      for (let k = 0; k < 5; k++) crops.push({ src, left: Math.round((k * (w - 200)) / 4), top: Math.round((k * (h - 200)) / 5), size: 200 });
    }
    const images: string[] = [];
    for (const [i, c] of crops.entries()) {
      const f = path.join(stage, `img${String(i).padStart(2, '0')}.png`);
      await sharp(c.src).extract({ left: c.left, top: c.top, width: c.size, height: c.size }).resize(256, 256).png().toFile(f);
      images.push(f);
    }
    for (const [i, bg] of ['#c03020', '#2040d0'].entries()) {
      const f = path.join(stage, `img${10 + i}.png`);
      await sharp({ create: { width: 256, height: 256, channels: 3, background: bg } }).png().toFile(f);
      images.push(f);
    }

    const det = await dfdet(['detect', '--model', model, '--faces', 'none', '--json', stage]);
    expect(det.code, det.stderr).toBe(0);
    const score = new Map(ndjson<{ source: string; pFake: number }>(det.stdout).map((r) => [path.resolve(r.source), r.pFake]));
    expect(score.size).toBe(12);
    const order = [...images].sort((a, b) => score.get(a)! - score.get(b)!);
    // Distinct scores, so that the orderings below are strict.
    for (let i = 1; i < order.length; i++) expect(score.get(order[i]!)! - score.get(order[i - 1]!)!).toBeGreaterThan(1e-6);

    // sep: lowest 6 real, highest 6 fake. mix: interleaved.
    const root = path.join(tmp, 'data');
    const origin = new Map<string, string>();
    const place = (dataset: string, source: string, video: string, files: string[]): void => {
      const dir = path.join(root, dataset, source, video);
      fs.mkdirSync(dir, { recursive: true });
      files.forEach((f, i) => {
        const dst = path.join(dir, `${String(i).padStart(3, '0')}.png`);
        fs.copyFileSync(f, dst);
        origin.set(dst, f);
      });
    };
    place('sep', 'real_src', 'v0', order.slice(0, 3));
    place('sep', 'real_src', 'v1', order.slice(3, 6));
    place('sep', 'FakeSrc', 'v2', order.slice(6, 9));
    place('sep', 'FakeSrc', 'v3', order.slice(9, 12));
    const even = order.filter((_, i) => i % 2 === 0);
    const odd = order.filter((_, i) => i % 2 === 1);
    place('mix', 'youtube_real', 'vA', even.slice(0, 3));
    place('mix', 'youtube_real', 'vB', even.slice(3));
    place('mix', 'Deepfakes', 'vC', odd.slice(0, 3));
    place('mix', 'Deepfakes', 'vD', odd.slice(3));

    const out = path.join(tmp, 'report');
    const r = await dfdet(['eval', root, '--model', model, '--faces', 'none', '--out', out, '--batch-size', '5']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/RANDOM weights/);
    // The printed table: one frame and one video row per dataset, then the report paths.
    expect(r.stdout).toMatch(/dataset\s+level\s+n\s+real\s+fake\s+AUROC\s+AP\s+EER\s+Acc\s+BalAcc/);
    expect(r.stdout).toMatch(/^sep\s+frame\s+12\s+6\s+6\s+1\.0000\s/m);
    expect(r.stdout).toMatch(/^sep\s+video\s+4\s+2\s+2\s+1\.0000\s/m);
    expect(r.stdout).toContain(path.join(out, 'metrics.json'));
    for (const f of ['report.md', 'metrics.json', 'predictions.csv', 'videos.csv', 'roc-frame.svg', 'roc-frame.png', 'pr-video.png']) {
      expect(fs.statSync(path.join(out, f)).size, f).toBeGreaterThan(0);
    }

    // eval's scores are detect's scores.
    const csv = parseCsv(fs.readFileSync(path.join(out, 'predictions.csv'), 'utf8')).map((x) => x.fields);
    const h = csv[0]!;
    const rows = csv.slice(1).map((f) => Object.fromEntries(h.map((k, i) => [k, f[i]!])));
    expect(rows.length).toBe(24);
    for (const row of rows) {
      expect(row.error).toBe('');
      expect(Number(row.pFake)).toBeCloseTo(score.get(origin.get(row.path!)!)!, 5);
    }

    const metrics = JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8')) as {
      counts: { items: number; scored: number; failed: number; videos: number };
      datasets: { name: string; frame: { auroc: number; n: number; ap: number; eer: number; accuracy: number }; video: { auroc: number; n: number } }[];
    };
    expect(metrics.counts).toMatchObject({ items: 24, scored: 24, failed: 0, videos: 8 });
    const ds = (n: string) => metrics.datasets.find((d) => d.name === n)!;
    expect(ds('sep').frame.auroc).toBe(1);
    expect(ds('sep').video.auroc).toBe(1);
    expect(ds('sep').frame.eer).toBe(0);

    // mix: the independent pair count, at frame and video level, on eval's own scores.
    const mixRows = rows.filter((x) => x.dataset === 'mix');
    const p = (src: string) => mixRows.filter((x) => x.source === src).map((x) => Number(x.pFake));
    expect(ds('mix').frame.auroc).toBeCloseTo(mannWhitney(p('youtube_real'), p('Deepfakes')), 12);
    const videoMean = (v: string) => mean(mixRows.filter((x) => x.video.endsWith(v)).map((x) => Number(x.pFake)));
    expect(ds('mix').video.auroc).toBeCloseTo(mannWhitney([videoMean('vA'), videoMean('vB')], [videoMean('vC'), videoMean('vD')]), 12);

    // And every per-dataset frame metric equals lib/eval/metrics recomputed from predictions.csv.
    for (const d of metrics.datasets) {
      const sub = rows.filter((x) => x.dataset === d.name);
      const m = computeMetrics(
        sub.map((x) => Number(x.label)),
        sub.map((x) => Number(x.pFake)),
        0.5,
      );
      expect(d.frame.n).toBe(m.n);
      expect(d.frame.ap).toBeCloseTo(m.ap, 12);
      expect(d.frame.accuracy).toBeCloseTo(m.accuracy, 12);
    }
  });

  it('usage errors exit 2', async () => {
    const [missing, bad] = await Promise.all([dfdet(['eval', path.join(tmp, 'nope')]), dfdet(['eval', tmp, '--threshold', 'x'])]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/NOT_FOUND/);
    expect(bad.code).toBe(2);
  });
});
