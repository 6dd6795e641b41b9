/**
 * `train()` end to end on a tiny detector: it learns a synthetic task made from real photos (loss
 * falls, validation AUROC rises, measured by the Detector on the saved model); crops are cached;
 * runs are reproducible from the seed and resume from checkpoints; bad runs end in typed errors.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Detector } from '../lib/detector';
import { initModel } from '../lib/detector-model/init';
import { METADATA_FILE } from '../lib/detector-model/metadata';
import { BLAZEFACE_MODEL_PATH } from '../lib/faces/blazeface';
import { auroc } from '../lib/eval/metrics';
import { scanDataset } from '../lib/eval/dataset';
import { Model } from '../lib/model';
import { train, type TrainEvent, type TrainOptions } from '../lib/train/loop';
import { havePhotos, writeSyntheticSet } from './helpers/train-data';

let dir: string;
let base: string;
const photos = havePhotos();
if (!photos) {
  if (process.env.CI) throw new Error('Debian photos (python3-imageio, python-matplotlib-data) are required in CI');
  console.warn('SKIPPED: train.test.ts needs Debian photos (scripts/setup-system.sh --test)');
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-train-'));
  base = path.join(dir, 'base.pt');
  await initModel({ arch: 'tiny', seed: 1, output: base });
  if (photos) {
    await writeSyntheticSet(path.join(dir, 'train'), 48, 1);
    await writeSyntheticSet(path.join(dir, 'val'), 16, 2);
  }
}, 120_000);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function collect(o: TrainOptions, stopAfterEpoch?: number): Promise<TrainEvent[]> {
  const events: TrainEvent[] = [];
  for await (const e of train(o)) {
    events.push(e);
    if (stopAfterEpoch !== undefined && e.type === 'saved' && e.what === 'log') {
      const epochs = events.filter((x) => x.type === 'epoch').length;
      if (epochs === stopAfterEpoch) break;
    }
  }
  return events;
}

/** Validation AUROC of a model file through the Detector (faces: 'none', the crops are faces). */
async function detectorAuroc(model: string): Promise<number> {
  const items = await scanDataset(path.join(dir, 'val'));
  // float32, as training validated: 'auto' would pick bf16 on CPUs that have it, and a bf16 score
  // can cross another one, moving the AUROC by a pair.
  const detector = await Detector.create({ model, faces: 'none', dtype: 'float32' });
  try {
    const results = await detector.detect(items.map((it) => it.path));
    return auroc(
      items.map((it) => it.label!),
      results.map((r) => r.pFake!),
    );
  } finally {
    await detector.dispose();
  }
}

const opts = (out: string, extra: Partial<TrainOptions> = {}): TrainOptions => ({
  model: base,
  data: path.join(dir, 'train'),
  val: path.join(dir, 'val'),
  out,
  faces: 'none',
  batchSize: 16,
  lr: 0.05,
  warmup: 0.1,
  cacheDir: path.join(dir, 'cache'),
  ...extra,
});

describe.skipIf(!photos)('train()', () => {
  it('learns a recoloured-region task: loss falls, validation AUROC rises; the output is a dfdet model with provenance', async () => {
    const out = path.join(dir, 'learned.pt');
    const events = await collect(opts(out, { epochs: 20 }));
    const data = events.filter((e) => e.type === 'data');
    expect(data.map((e) => [e.split, e.rows, e.cached])).toEqual([
      ['train', 96, false],
      ['val', 32, false],
    ]);
    const epochs = events.flatMap((e) => (e.type === 'epoch' ? [e.record] : []));
    expect(epochs).toHaveLength(20);
    expect(events.filter((e) => e.type === 'step')).toHaveLength(20 * 6);
    const first = epochs[0]!;
    const last3 = epochs.slice(-3).reduce((a, r) => a + r.trainLoss, 0) / 3;
    expect(last3).toBeLessThan(first.trainLoss * 0.5);

    const before = await detectorAuroc(base);
    const after = await detectorAuroc(out);
    expect(after).toBeGreaterThan(before + 0.05);
    expect(after).toBeGreaterThan(0.85);
    // The saved model is the best epoch: its AUROC through the Detector is the one the log reports.
    const log = JSON.parse(fs.readFileSync(`${out}.log.json`, 'utf8')) as { bestEpoch: number; epochs: { valAuroc: number }[] };
    expect(after).toBeCloseTo(log.epochs[log.bestEpoch - 1]!.valAuroc, 5);
    expect(Math.max(...log.epochs.map((e) => e.valAuroc))).toBe(log.epochs[log.bestEpoch - 1]!.valAuroc);

    const m = await Model.load(out, { extraFiles: [METADATA_FILE] });
    const meta = JSON.parse(m.info.extraFiles[METADATA_FILE]!) as {
      format: string;
      source: { kind: string };
      training: { base: { file: string; source: { kind: string } }; hyperparameters: Record<string, unknown>; data: { rows: number } };
    };
    await m.dispose();
    expect(meta.format).toBe('dfdet-detector');
    expect(meta.source.kind).toBe('train');
    expect(meta.training.base.file).toBe(base);
    expect(meta.training.base.source.kind).toBe('init');
    expect(meta.training.hyperparameters).toMatchObject({ lr: 0.05, batchSize: 16, seed: 0, slerp: true });
    expect(meta.training.data.rows).toBe(96);

    // The crops are cached: a second run decodes nothing.
    const again = await collect(opts(path.join(dir, 'again.pt'), { epochs: 1 }));
    expect(again.filter((e) => e.type === 'data').map((e) => e.type === 'data' && e.cached)).toEqual([true, true]);
  }, 300_000);

  it('is reproducible from its seed, and resuming a checkpoint gives the same run', async () => {
    const full = await collect(opts(path.join(dir, 'full.pt'), { epochs: 3, seed: 7 }));
    const cut = await collect(opts(path.join(dir, 'cut.pt'), { epochs: 3, seed: 7 }), 1);
    expect(cut.filter((e) => e.type === 'epoch')).toHaveLength(1);
    const resumed = await collect(opts(path.join(dir, 'cut.pt'), { epochs: 3, seed: 7, resume: path.join(dir, 'cut.pt.ckpt') }));
    expect(resumed.find((e) => e.type === 'resumed')).toMatchObject({ epoch: 1 });
    const losses = (ev: TrainEvent[]) => ev.flatMap((e) => (e.type === 'step' ? [e.loss] : []));
    const fullLosses = losses(full);
    const joined = [...losses(cut), ...losses(resumed)];
    expect(joined).toHaveLength(fullLosses.length);
    joined.forEach((l, i) => expect(l).toBeCloseTo(fullLosses[i]!, 6));
    const hist = (ev: TrainEvent[]) => ev.flatMap((e) => (e.type === 'epoch' ? [e.record.valAuroc] : []));
    expect(hist(resumed)).toEqual(hist(full).slice(1));
    // Another seed is another run.
    const other = await collect(opts(path.join(dir, 'other.pt'), { epochs: 1, seed: 8 }));
    expect(losses(other)[0]).not.toBeCloseTo(fullLosses[0]!, 6);
  }, 300_000);

  it('videos give one crop per sampled frame (faces: none), labelled by their folder', async () => {
    const videos = ['/usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4', '/usr/lib/python3/dist-packages/imageio/resources/images/realshort.mp4'];
    if (!videos.every((v) => fs.existsSync(v))) {
      if (process.env.CI) throw new Error('python3-imageio videos are required in CI');
      console.warn('SKIPPED: video training data (python3-imageio videos missing)');
      return;
    }
    const vdir = path.join(dir, 'videos');
    for (const [cls, v] of [['real', videos[0]!], ['fake', videos[1]!]] as const) {
      fs.mkdirSync(path.join(vdir, cls), { recursive: true });
      fs.copyFileSync(v, path.join(vdir, cls, path.basename(v)));
    }
    const events = await collect(opts(path.join(dir, 'v.pt'), { data: vdir, val: undefined, frames: 3, batchSize: 4 }));
    expect(events.find((e) => e.type === 'data')).toMatchObject({ items: 2, rows: 6, skipped: 0 });
    expect(events.filter((e) => e.type === 'step')).toHaveLength(2);
  }, 120_000);

  it('typed errors: unlabelled data, a checkpoint of another run, an abort', async () => {
    const unl = path.join(dir, 'unlabelled');
    fs.mkdirSync(unl, { recursive: true });
    fs.copyFileSync(path.join(dir, 'train', 'real', '000.png'), path.join(unl, 'a.png'));
    await expect(collect(opts(path.join(dir, 'u.pt'), { data: unl }))).rejects.toMatchObject({ code: 'BAD_INPUT' });
    await collect(opts(path.join(dir, 'e.pt'), { epochs: 3, seed: 7 }), 1);
    await expect(collect(opts(path.join(dir, 'r.pt'), { epochs: 3, seed: 9, resume: path.join(dir, 'e.pt.ckpt') }))).rejects.toMatchObject({
      code: 'BAD_INPUT',
      message: expect.stringMatching(/same seed/),
    });
    await expect(collect(opts(path.join(dir, 'n.pt'), { resume: path.join(dir, 'missing.ckpt') }))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // A TorchScript file that is not a dfdet detector (BlazeFace, whose metadata says so): a typed
    // error before any cropping (the unlabelled folder would fail at cropping otherwise).
    const notDetector = await collect(opts(path.join(dir, 'bf.pt'), { model: BLAZEFACE_MODEL_PATH, data: unl })).catch((e: unknown) => e);
    expect(notDetector).toMatchObject({ code: 'MODEL_LOAD_FAILED', message: expect.stringMatching(/dfdet-detector/) });
    await expect(collect(opts(path.join(dir, 'm.pt'), { model: path.join(dir, 'missing.pt') }))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(collect(opts(path.join(dir, 'b.pt'), { batchSize: 1 }))).rejects.toMatchObject({ code: 'BAD_INPUT' });
    const ac = new AbortController();
    const run = train(opts(path.join(dir, 'a.pt'), { epochs: 2, signal: ac.signal }));
    await expect(
      (async () => {
        for await (const e of run) if (e.type === 'step') ac.abort();
      })(),
    ).rejects.toMatchObject({ code: 'ABORTED' });
  }, 300_000);
});
