/**
 * Pure pieces of the training loop: the learning-rate schedule, the epoch's batch order and the
 * slerp pairs. Randomness comes from a seeded generator, so a run is reproducible from its seed.
 */
import { SeededRandom } from '../detector-model/init';

/** The learning-rate schedule: linear warm-up, then cosine decay to `minLr`. */
export interface Schedule {
  /** Peak learning rate. */
  lr: number;
  /** Floor of the cosine decay. */
  minLr: number;
  /** Steps of linear warm-up (0: none). */
  warmupSteps: number;
  /** Steps of the whole run. */
  totalSteps: number;
}

/**
 * Learning rate of optimiser step `step` (0-based): `lr·(step+1)/warmup` during warm-up, then
 * `minLr + (lr − minLr)·(1 + cos(π·p))/2` with p going from 0 to 1 over the remaining steps.
 */
export function learningRate(step: number, s: Schedule): number {
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const p = Math.min(1, (step - s.warmupSteps) / span);
  return s.minLr + ((s.lr - s.minLr) * (1 + Math.cos(Math.PI * p))) / 2;
}

/** The generator of one epoch: the same seed and epoch give the same order and slerp pairs. */
export function epochRandom(seed: number, epoch: number): SeededRandom {
  return new SeededRandom((Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) + epoch * 0x632be5ab) >>> 0);
}

/** A random permutation of 0..n-1 (Fisher–Yates). */
export function permutation(n: number, rng: SeededRandom): number[] {
  const out = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Batches of indices in a shuffled order (the last one may be smaller; a 1-image tail is dropped). */
export function epochBatches(n: number, batchSize: number, rng: SeededRandom): number[][] {
  const order = permutation(n, rng);
  const out: number[][] = [];
  for (let i = 0; i < n; i += batchSize) out.push(order.slice(i, i + batchSize));
  if (out.length > 1 && out[out.length - 1]!.length < 2) out.pop();
  return out;
}

/** Slerp pairs of a batch: each row's same-class partner (-1 when its class has one row) and weight t. */
export interface SlerpPairs {
  partner: Int32Array;
  weight: Float32Array;
}

/**
 * The paper's feature augmentation, as its reference draws it: within each class of the batch,
 * row i is paired with row perm(i) of a random permutation of that class (possibly itself), and
 * t is uniform in [t0, t1].
 */
export function slerpPairs(labels: ArrayLike<number>, rng: SeededRandom, range: readonly [number, number] = [0, 1]): SlerpPairs {
  const n = labels.length;
  const partner = new Int32Array(n).fill(-1);
  const weight = new Float32Array(n);
  for (const cls of [0, 1]) {
    const rows: number[] = [];
    for (let i = 0; i < n; i++) if (labels[i] === cls) rows.push(i);
    if (rows.length < 2) continue;
    const perm = permutation(rows.length, rng);
    rows.forEach((r, k) => {
      partner[r] = rows[perm[k]!]!;
      weight[r] = range[0] + rng.uniform() * (range[1] - range[0]);
    });
  }
  return { partner, weight };
}
