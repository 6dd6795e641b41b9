/**
 * Prometheus metrics of a Detector's model (prom-client), shared by `dfdet serve` and
 * `dfdet worker`: batch sizes, faces scored, seconds in the model and faces/s. They are read from
 * `Detector.stats` when the registry is scraped, so the pipeline carries no metrics code.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

import type { Detector } from '../detector';

/**
 * Registers the detector metrics in `registry` (names start with `prefix`) and returns the function
 * that brings them up to date: call it once before each render.
 */
export function registerDetectorMetrics(registry: Registry, detector: Detector, prefix: string): () => void {
  const registers = [registry];
  const batches = new Histogram({ name: `${prefix}batch_size`, help: 'Faces per model batch', buckets: [1, 2, 4, 8, 16, 32, 64, 128], registers });
  const faces = new Counter({ name: `${prefix}faces_scored_total`, help: 'Faces scored by the detector model', registers });
  const modelSeconds = new Counter({ name: `${prefix}model_seconds_total`, help: 'Seconds spent inside the detector model', registers });
  const facesPerSecond = new Gauge({ name: `${prefix}faces_per_second`, help: 'Faces scored per second over the last minute', registers });
  // Detector counters already turned into metrics, and (time s, faces scored) samples of the last minute.
  const seen = { items: 0, modelMs: 0, sizes: {} as Record<number, number> };
  const rate: { t: number; items: number }[] = [];
  return () => {
    const s = detector.stats;
    for (const [size, count] of Object.entries(s.sizes)) {
      const k = Number(size);
      for (let i = seen.sizes[k] ?? 0; i < count; i++) batches.observe(k);
      seen.sizes[k] = count;
    }
    faces.inc(s.items - seen.items);
    modelSeconds.inc(Math.max(0, (s.modelMs - seen.modelMs) / 1000));
    seen.items = s.items;
    seen.modelMs = s.modelMs;
    const t = performance.now() / 1000;
    rate.push({ t, items: s.items });
    while (rate.length > 2 && t - rate[1]!.t >= 60) rate.shift();
    const first = rate[0]!;
    facesPerSecond.set(t > first.t ? (s.items - first.items) / (t - first.t) : 0);
  };
}
