/** The detector's pool of face models (lib/detector/face-pool.ts), on the real bundled BlazeFace. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { FaceModelPool } from '../lib/detector/face-pool';
import { detectFaces } from '../lib/faces/blazeface';
import { decodeImage } from '../lib/media/image';
import type { RgbImage } from '../lib/media/rgb';
import { debianPhotos } from './helpers/cli';

const photos = debianPhotos();

/** A `[n, 3, 256, 256]` input of value `v`. */
const frames = (n: number, v: number) => [{ data: new Float32Array(n * 3 * 256 * 256).fill(v), shape: [n, 3, 256, 256], dtype: 'float32' as const }];

let pool: FaceModelPool;
beforeAll(async () => {
  pool = await FaceModelPool.load(2, 'cpu');
});
afterAll(async () => {
  await pool.dispose();
});

describe('FaceModelPool', () => {
  it('loads the instances asked for and answers each lane with the model’s own output', async () => {
    expect(pool.models).toHaveLength(2);
    const direct = (await pool.models[0]!.run('forward', frames(2, 0.25))) as { data: Float32Array }[];
    const a = pool.lane();
    const b = pool.lane();
    // Four runs at once on two instances: each gets its own result.
    const [r1, r2, r3, r4] = (await Promise.all([a.run('forward', frames(2, 0.25)), b.run('forward', frames(1, -0.5)), a.run('forward', frames(2, 0.25)), b.run('forward', frames(1, -0.5))])) as {
      data: Float32Array;
    }[][];
    for (const r of [r1!, r3!]) expect(Array.from(r[0]!.data)).toEqual(Array.from(direct[0]!.data));
    expect(r2![0]!.data.length).toBe(896);
    expect(Array.from(r4![0]!.data)).toEqual(Array.from(r2![0]!.data));
  });

  it('serves the earliest lane first when its runs wait', async () => {
    const one = await FaceModelPool.load(1, 'cpu');
    try {
      const early = one.lane();
      const late = one.lane();
      const order: string[] = [];
      const busy = late.run('forward', frames(4, 0)).then(() => order.push('busy'));
      // Both wait behind the running one; the later lane asked first, yet the earlier one goes first.
      const l = late.run('forward', frames(1, 0)).then(() => order.push('late'));
      const e = early.run('forward', frames(1, 0)).then(() => order.push('early'));
      await Promise.all([busy, l, e]);
      expect(order).toEqual(['busy', 'early', 'late']);
    } finally {
      await one.dispose();
    }
  });

  it.skipIf(!photos)('finds the same faces through a lane as through the model itself', async () => {
    const images: RgbImage[] = await Promise.all(photos!.map((p) => decodeImage(p)));
    const direct = await detectFaces(pool.models[1]!, images);
    const pooled = await detectFaces(pool.lane(), images);
    expect(pooled).toEqual(direct);
    expect(pooled.flat().length).toBeGreaterThanOrEqual(2);
  });

  it('fails the run, not the pool, when the model rejects an input', async () => {
    const lane = pool.lane();
    await expect(lane.run('forward', [{ data: new Float32Array(3 * 8 * 8), shape: [1, 3, 8, 8], dtype: 'float32' }])).rejects.toMatchObject({ code: 'RUNTIME_ERROR' });
    const ok = (await lane.run('forward', frames(1, 0))) as { data: Float32Array }[];
    expect(ok[0]!.data.length).toBe(896);
  });
});
