import { describe, it, expect } from 'vitest';
import { auroc, averagePrecision, computeMetrics, prCurve, rocCurve } from '../lib/eval/metrics';
import { isDfdetError } from '../lib/errors';
import { rng } from './helpers/random';
import { runPython, skipWithoutPython } from './helpers/python';

const TOL = 1e-9;

/** sklearn (+ scipy) reference: without it skip visibly, except on CI where it must be there. */
const HAVE_REF = !skipWithoutPython('sklearn', 'scipy');

interface Case {
  labels: number[];
  scores: number[];
  threshold?: number;
}
interface RefOut {
  roc: { fpr: (number | null)[]; tpr: (number | null)[]; thresholds: number[] };
  pr: { precision: number[]; recall: number[]; thresholds: number[] };
  auroc: number | null;
  ap: number | null;
  eer: number | null;
  accuracy: number;
  balancedAccuracy: number;
}

function reference(cases: Case[]): RefOut[] {
  return runPython<RefOut[]>('metrics_ref.py', [], { cases });
}

function makeCases(): { name: string; c: Case }[] {
  const out: { name: string; c: Case }[] = [];
  const r = rng(1234);
  for (const n of [2, 5, 17, 100, 1000, 5000]) {
    const labels = Array.from({ length: n }, (_, i) => (i < 2 ? i : r() < 0.4 ? 1 : 0));
    // Informative but noisy scores.
    const scores = labels.map((l) => Math.min(1, Math.max(0, 0.5 + (l - 0.5) * 0.3 + (r() - 0.5) * 0.8)));
    out.push({ name: `random n=${n}`, c: { labels, scores } });
  }
  for (const levels of [2, 3, 5, 11]) {
    const n = 400;
    const labels = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 1 : 0));
    const scores = labels.map((l) => Math.round((r() * 0.7 + l * 0.3) * (levels - 1)) / (levels - 1));
    out.push({ name: `heavy ties levels=${levels}`, c: { labels, scores } });
  }
  const n = 50;
  const lab = Array.from({ length: n }, (_, i) => (i % 2) as number);
  out.push({ name: 'all scores equal', c: { labels: lab, scores: lab.map(() => 0.5) } });
  out.push({ name: 'perfect', c: { labels: lab, scores: lab.map((l, i) => l * 0.6 + 0.3 + i * 1e-3) } });
  out.push({ name: 'inverted', c: { labels: lab, scores: lab.map((l, i) => (1 - l) * 0.6 + 0.2 + i * 1e-3) } });
  out.push({ name: 'threshold 0.3', c: { labels: lab, scores: lab.map((_, i) => (i * 7919) % 101 / 100), threshold: 0.3 } });
  out.push({ name: 'scores exactly 0.5', c: { labels: [0, 1, 0, 1], scores: [0.5, 0.5, 0.49, 0.51] } });
  out.push({ name: 'only fakes', c: { labels: [1, 1, 1], scores: [0.2, 0.7, 0.9] } });
  out.push({ name: 'only reals', c: { labels: [0, 0, 0, 0], scores: [0.2, 0.7, 0.9, 0.1] } });
  return out;
}

function expectClose(actual: number[], expected: (number | null)[], what: string): void {
  expect(actual.length, `${what} length`).toBe(expected.length);
  for (let i = 0; i < actual.length; i++) {
    const e = expected[i];
    if (e === null) expect(Number.isFinite(actual[i]!), `${what}[${i}] should be NaN/inf`).toBe(false);
    else expect(Math.abs(actual[i]! - e), `${what}[${i}] ${actual[i]} vs ${e}`).toBeLessThanOrEqual(TOL);
  }
}

function expectMetric(actual: number, expected: number | null, what: string): void {
  if (expected === null) expect(actual, what).toBeNaN();
  else expect(Math.abs(actual - expected), `${what}: ${actual} vs ${expected}`).toBeLessThanOrEqual(TOL);
}

describe.skipIf(!HAVE_REF)('metrics vs scikit-learn', () => {
  const cases = makeCases();
  const refs = HAVE_REF ? reference(cases.map((x) => x.c)) : [];
  cases.forEach(({ name, c }, k) => {
    it(name, () => {
      const ref = refs[k]!;
      const roc = rocCurve(c.labels, c.scores);
      expectClose(roc.fpr, ref.roc.fpr, 'fpr');
      expectClose(roc.tpr, ref.roc.tpr, 'tpr');
      expect(roc.thresholds[0]).toBe(Infinity);
      expectClose(roc.thresholds.slice(1), ref.roc.thresholds, 'thresholds');
      const pr = prCurve(c.labels, c.scores);
      expectClose(pr.precision, ref.pr.precision, 'precision');
      expectClose(pr.recall, ref.pr.recall, 'recall');
      expectClose(pr.thresholds, ref.pr.thresholds, 'pr thresholds');
      const m = computeMetrics(c.labels, c.scores, c.threshold ?? 0.5);
      expectMetric(m.auroc, ref.auroc, 'auroc');
      expectMetric(auroc(c.labels, c.scores), ref.auroc, 'auroc()');
      expectMetric(m.ap, ref.ap, 'ap');
      expectMetric(averagePrecision(c.labels, c.scores), ref.ap, 'averagePrecision()');
      expectMetric(m.eer, ref.eer, 'eer');
      expectMetric(m.accuracy, ref.accuracy, 'accuracy');
      expectMetric(m.balancedAccuracy, ref.balancedAccuracy, 'balancedAccuracy');
      expect(m.tp + m.fp + m.tn + m.fn).toBe(c.labels.length);
    });
  });
});

describe('metrics: known values and degenerate input', () => {
  it('perfect and inverted classifiers', () => {
    const labels = [0, 0, 1, 1];
    const good = computeMetrics(labels, [0.1, 0.2, 0.8, 0.9]);
    expect([good.auroc, good.ap, good.eer, good.accuracy]).toEqual([1, 1, 0, 1]);
    const bad = computeMetrics(labels, [0.9, 0.8, 0.2, 0.1]);
    expect([bad.auroc, bad.eer, bad.accuracy]).toEqual([0, 1, 0]);
  });

  it('a tie between a fake and a real gets half credit', () => {
    expect(auroc([0, 1], [0.5, 0.5])).toBe(0.5);
    expect(auroc([0, 1, 1], [0.5, 0.5, 0.9])).toBe(0.75);
  });

  it('score equal to the threshold counts as fake', () => {
    const m = computeMetrics([1, 0], [0.5, 0.4999]);
    expect([m.tp, m.tn, m.accuracy]).toEqual([1, 1, 1]);
  });

  it('empty input gives NaN with reasons', () => {
    const m = computeMetrics([], []);
    expect(m.n).toBe(0);
    expect(m.auroc).toBeNaN();
    expect(m.accuracy).toBeNaN();
    expect(m.reasons.auroc).toMatch(/no samples/);
  });

  it('one class only gives NaN AUROC/EER with a reason, accuracy defined', () => {
    const m = computeMetrics([0, 0, 0], [0.1, 0.6, 0.2]);
    expect(m.auroc).toBeNaN();
    expect(m.eer).toBeNaN();
    expect(m.ap).toBeNaN();
    expect(m.reasons.auroc).toMatch(/only real/);
    expect(m.accuracy).toBeCloseTo(2 / 3, 12);
    const f = computeMetrics([1, 1], [0.1, 0.6]);
    expect(f.auroc).toBeNaN();
    expect(f.ap).toBe(1);
    expect(f.reasons.auroc).toMatch(/only fake/);
  });

  it('rejects NaN scores, bad labels and length mismatch with BAD_INPUT', () => {
    const cases: [number[], number[]][] = [
      [[0, 1], [0.1, NaN]],
      [[0, 2], [0.1, 0.2]],
      [[0, 1], [0.1]],
      [[0, 1], [0.1, Infinity]],
    ];
    for (const [l, s] of cases) {
      let err: unknown;
      try {
        computeMetrics(l, s);
      } catch (e) {
        err = e;
      }
      expect(isDfdetError(err, 'BAD_INPUT'), String(err)).toBe(true);
    }
    expect(() => computeMetrics([0], [0.1], NaN)).toThrow(/threshold/);
  });

  it('100k samples: the AUROC of two shifted uniform score distributions matches its closed form', () => {
    const r = rng(7);
    const n = 100_000;
    const labels = Array.from({ length: n }, () => (r() < 0.5 ? 1 : 0));
    const scores = labels.map((l) => r() * 0.8 + l * 0.2);
    const m = computeMetrics(labels, scores);
    // fake = 0.8U + 0.2, real = 0.8V: AUROC = P(U - V > -0.25) = 1 - 0.75^2 / 2 (sd ~0.002 at this n).
    expect(m.auroc).toBeCloseTo(1 - 0.75 ** 2 / 2, 2);
    expect(m.n).toBe(n);
  });
});
