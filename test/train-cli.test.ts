/**
 * `dfdet train` as users run it (the built CLI): faces found and cropped by the detection pipeline
 * on real photos, a JSON log, a checkpoint, and an output model that `dfdet detect` loads.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initModel } from '../lib/detector-model/init';
import { debianPhoto, dfdet, ensureBuilt, ndjson } from './helpers/cli';

const astronaut = debianPhoto('astronaut.png');
const hopper = debianPhoto('grace_hopper.jpg');
let dir: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-train-cli-'));
  await ensureBuilt();
  await initModel({ arch: 'tiny', seed: 2, output: path.join(dir, 'base.pt') });
  if (astronaut && hopper) {
    for (const [cls, photo] of [['real', astronaut], ['fake', hopper]] as const) {
      fs.mkdirSync(path.join(dir, 'data', cls), { recursive: true });
      fs.copyFileSync(photo, path.join(dir, 'data', cls, path.basename(photo)));
    }
    // A photo without a face is skipped (and reported), not a failure.
    fs.writeFileSync(path.join(dir, 'data', 'fake', 'blank.png'), Buffer.from(
      'iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAFklEQVR4nGP8z0AaYBxVMKpgVMHQVAAA+JIA/ReuPJ4AAAAASUVORK5CYII=', 'base64'));
  }
}, 120_000);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!astronaut || !hopper)('dfdet train', () => {
  it('crops faces with the detection pipeline, logs each epoch, and writes a model dfdet detect loads', async () => {
    const out = path.join(dir, 'tuned.pt');
    const cache = path.join(dir, 'cache');
    const args = ['train', '--model', path.join(dir, 'base.pt'), '--data', path.join(dir, 'data'), '--val', path.join(dir, 'data'), '--out', out, '--epochs', '2', '--batch-size', '2', '--lr', '0.01', '--cache-dir', cache];
    const r = await dfdet(args, { timeoutMs: 240_000 });
    expect(r.stderr).toMatch(/train: 3 items, 2 crops, 1 without a face or unreadable/);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/epoch 1: train loss [\d.]+ auroc [\d.-]+ \| val loss [\d.]+ auroc [\d.]+/);
    expect(r.stdout).toMatch(/epoch 2: /);
    const log = JSON.parse(fs.readFileSync(`${out}.log.json`, 'utf8')) as { epochs: { valAuroc: number; valLoss: number }[]; skipped: { train: { path: string; reason: string }[] } };
    expect(log.epochs).toHaveLength(2);
    expect(log.skipped.train).toEqual([{ path: path.join(dir, 'data', 'fake', 'blank.png'), reason: 'no face found' }]);
    expect(fs.existsSync(`${out}.ckpt`)).toBe(true);
    // The crop cache holds the two faces (one row each).
    const rows = fs.readdirSync(path.join(cache, 'train-crops')).filter((f) => f.endsWith('.f32'));
    expect(rows.map((f) => fs.statSync(path.join(cache, 'train-crops', f)).size)).toEqual([2 * 3 * 224 * 224 * 4]);

    const det = await dfdet(['detect', '--model', out, '--json', astronaut!], { timeoutMs: 120_000 });
    expect(det.code, det.stderr).toBe(0);
    const [res] = ndjson<{ pFake: number; faces: unknown[] }>(det.stdout);
    expect(res!.faces).toHaveLength(1);
    expect(res!.pFake).toBeGreaterThan(0);

    // Resuming the finished run trains no further epoch; a bad flag is a usage error.
    const again = await dfdet([...args, '--resume', `${out}.ckpt`], { timeoutMs: 240_000 });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/resumed after epoch 2/);
    const bad = await dfdet(['train', '--model', 'm.pt', '--data', 'd', '--out', 'o.pt', '--dtype', 'float16']);
    expect(bad.code).toBe(2);
  }, 600_000);
});
