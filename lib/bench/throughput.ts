/**
 * Benchmark part "throughput": what `dtype: 'auto'`, batches that fill and native preprocessing
 * give, as ratios measured in one run:
 * - model only in the auto precision against PyTorch float32 on the same file and input
 *   (>= 1.8x on CPUs with native bf16, >= 1.0x elsewhere);
 * - end to end (`detect`) against model only at the same precision, in faces per second, for face
 *   crops with `faces: 'none'`, photos with faces, and a video (target >= 0.9x);
 * - preprocessing (crop + resize + normalise) in crops per second, native against the JS path.
 * Face crops come from $DFDET_BENCH_CROPS (a folder of crops) when set, else from a real photo.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import sharp from 'sharp';

import type { ArchName } from '../detector-model/arch';
import { ARCHS } from '../detector-model/arch';
import { Detector } from '../detector/detector';
import { cropAndTransform } from '../detector/run';
import { cropMatrix } from '../faces/align';
import { detectFaces, loadFaceDetector } from '../faces/blazeface';
import { decodeImage } from '../media/image';
import { CLIP_MEAN, CLIP_STD } from '../media/transform';
import { chooseDType, Model } from '../model';
import { native } from '../native';
import { preprocessBatch, type CropSpec } from '../preprocess/native';
import { cpuFeatures } from '../runtime/cpu';
import { type BenchContext, type BenchResult, cachedDetector, median, now, PyForwardServer, pythonUnavailable, rate, ratioOf, syntheticInput } from './common';

const PHOTO_PATHS = ['/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg', '/usr/lib/python3/dist-packages/imageio/resources/images/astronaut.png'];

/** Settings of {@link benchThroughput}; defaults depend on `ctx.quick`. */
export interface ThroughputBenchOptions {
  /**
   * Detector size (default 'vit-l-14'; quick: 'tiny'). The paper's size is the default because the
   * end-to-end ratios depend on it: decoding and face detection cost the same per frame whatever the
   * detector, so a smaller ViT (vit-b-16: about 4.6x less work per face) gives lower ratios.
   */
  arch?: ArchName;
  /** Model batch size (default 8). */
  batch?: number;
  /** Face crops scored end to end (default 128; quick: 16). */
  crops?: number;
  /** Seconds per preprocessing rate (default 3; quick: 0.5). */
  seconds?: number;
}

/** Image files of face crops: $DFDET_BENCH_CROPS, else squares cut from a real photo. */
async function faceCrops(ctx: BenchContext, photo: string, n: number): Promise<string[]> {
  const dir = process.env.DFDET_BENCH_CROPS;
  if (dir && fs.existsSync(dir)) {
    const files = spawnSync('find', [dir, '-type', 'f', '(', '-name', '*.png', '-o', '-name', '*.jpg', ')'], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean)
      .sort();
    if (files.length) return Array.from({ length: n }, (_, i) => files[i % files.length]!);
  }
  const meta = await sharp(photo).metadata();
  const side = Math.min(meta.width!, meta.height!);
  const out: string[] = [];
  for (let i = 0; i < Math.min(n, 8); i++) {
    const s = Math.round(side * (0.5 + 0.05 * i));
    const file = path.join(ctx.tmpDir, `crop${i}.png`);
    await sharp(photo).extract({ left: Math.round((meta.width! - s) / 2), top: Math.round((meta.height! - s) / 3), width: s, height: s }).png().toFile(file);
    out.push(file);
  }
  return Array.from({ length: n }, (_, i) => out[i % out.length]!);
}

/** Runs the throughput part. */
export async function benchThroughput(ctx: BenchContext, opts: ThroughputBenchOptions = {}): Promise<BenchResult[]> {
  const arch = opts.arch ?? (ctx.quick ? 'tiny' : 'vit-l-14');
  const batch = opts.batch ?? 8;
  const nCrops = opts.crops ?? (ctx.quick ? 16 : 128);
  const seconds = opts.seconds ?? (ctx.quick ? 0.5 : 3);
  const photo = PHOTO_PATHS.find((p) => fs.existsSync(p));
  if (!photo) throw new Error('no sample photo (install python-matplotlib-data or python3-imageio)');
  const cpu = cpuFeatures();
  const dtype = chooseDType('auto', 'cpu');
  const file = await cachedDetector(ctx, arch);
  const size = ARCHS[arch].imageSize;
  const per = 3 * size * size;
  const input = syntheticInput(batch * per);
  const label = `${arch} b=${batch} ${dtype}`;
  const results: BenchResult[] = [];

  // Model only: the auto precision against PyTorch float32 on the same file, taking turns.
  const model = await Model.load(file, { dtype: 'auto' });
  const forward = async (): Promise<void> => void (await model.run('forward', [{ data: input, shape: [batch, 3, size, size], dtype: 'float32' }]));
  const modelTimes: number[] = [];
  const torchTimes: number[] = [];
  try {
    const why = await pythonUnavailable(ctx);
    const inputFile = path.join(ctx.tmpDir, 'throughput-input.f32');
    fs.writeFileSync(inputFile, input);
    const py = why ? undefined : await PyForwardServer.start(ctx, file, inputFile, [3, size, size], native().runtimeInfo().threads);
    if (why) ctx.log(`throughput: PyTorch reference skipped: ${why}`);
    try {
      ctx.log(`throughput: model only, ${label} against PyTorch float32`);
      for (let i = 0; i < 2; i++) {
        await forward();
        await py?.run(batch, 0, 1);
      }
      for (let i = 0; i < (ctx.quick ? 3 : 6); i++) {
        const t0 = now();
        await forward();
        modelTimes.push(now() - t0);
        if (py) torchTimes.push((await py.run(batch, 0, 1)).times[0]!);
      }
    } finally {
      await py?.close();
    }
    const mine = batch / median(modelTimes);
    const torch = torchTimes.length ? batch / median(torchTimes) : undefined;
    results.push({
      part: 'throughput',
      name: `forward ${label} (model only)`,
      value: mine,
      unit: 'img/s',
      ...(torch !== undefined ? { reference: { name: 'torch fp32', value: torch } } : {}),
      ratio: ratioOf(mine, torch),
      ratioLabel: 'dfdet/torch-fp32',
      target: cpu.bf16 ? '>= 1.8 (aim 2)' : '>= 1.0',
      details: { dtype, cpuFlags: cpu.flags, modelTimesS: modelTimes, torchTimesS: torchTimes },
    });

    // End to end against model only at the same precision, in faces per second.
    const crops = await faceCrops(ctx, photo, nCrops);
    const photos = Array.from({ length: ctx.quick ? 8 : 32 }, (_, i) => PHOTO_PATHS.filter((p) => fs.existsSync(p))[i % 2] ?? photo);
    const video = path.join(ctx.tmpDir, 'face.mp4');
    const gen = spawnSync('ffmpeg', ['-v', 'error', '-y', '-loop', '1', '-i', photo, '-t', '2', '-r', '15', '-vf', 'scale=640:-2', '-pix_fmt', 'yuv420p', video]);
    // perInput: the faces each input gives (the photos and the clip show one face).
    const cases: { name: string; faces: 'none' | 'detect'; inputs: string[]; perInput: number }[] = [
      { name: `face crops, faces none (${crops.length})`, faces: 'none', inputs: crops, perInput: 1 },
      { name: `photos with faces (${photos.length})`, faces: 'detect', inputs: photos, perInput: 1 },
    ];
    if (gen.status === 0)
      cases.push({ name: `videos, 16 frames (${ctx.quick ? 2 : 8})`, faces: 'detect', inputs: Array.from({ length: ctx.quick ? 2 : 8 }, () => video), perInput: 16 });
    else ctx.log('throughput: video case skipped (ffmpeg could not make the clip)');
    for (const c of cases) {
      ctx.log(`throughput: end to end, ${c.name}`);
      // The model alone on as many faces as the case has, in full batches, interleaved with the
      // end-to-end calls: each quarter of the inputs runs between two stretches of model-only runs,
      // so that the machine's drift over the minutes a case takes (measured: model-only speed moving
      // by 10-25% between two stretches a minute apart on a shared VM) falls on both sides of the
      // ratio. Each round starts with an empty pipeline, which costs the end-to-end side a little.
      const rounds = Math.min(4, c.inputs.length);
      const runs = Math.max(2 * rounds, Math.ceil((c.inputs.length * c.perInput) / batch));
      const modelRuns = async (n: number): Promise<{ s: number; faces: number }> => {
        const t0 = now();
        for (let i = 0; i < n; i++) await forward();
        return { s: now() - t0, faces: n * batch };
      };
      const d = await Detector.create({ model: file, dtype: 'auto', faces: c.faces, batchSize: batch, frames: 16 });
      const perRound: { e2e: number; model: number }[] = [];
      const alone = { s: 0, faces: 0 };
      let faces = 0;
      let s = 0;
      // The model's batches during the timed calls: their sizes, and how long it ran (busy / s below
      // 1 means the pipeline left the model waiting; busy near 1 with a low ratio means the rest of
      // the pipeline slowed the model down by sharing its cores).
      const batches: Record<number, number> = {};
      let busyS = 0;
      try {
        await d.detect(c.inputs.slice(0, 2));
        for (let r = 0; r < rounds; r++) {
          const inputs = c.inputs.slice(Math.round((r * c.inputs.length) / rounds), Math.round(((r + 1) * c.inputs.length) / rounds));
          const share = Math.round(((r + 1) * runs) / rounds) - Math.round((r * runs) / rounds);
          const m1 = await modelRuns(Math.floor(share / 2));
          const before = d.stats;
          const t0 = now();
          const rs = await d.detect(inputs);
          const roundS = now() - t0;
          const after = d.stats;
          const m2 = await modelRuns(share - Math.floor(share / 2));
          const roundFaces = rs.reduce((n, x) => n + x.faces.length, 0);
          for (const [k, n] of Object.entries(after.sizes)) {
            const added = n - (before.sizes[Number(k)] ?? 0);
            if (added > 0) batches[Number(k)] = (batches[Number(k)] ?? 0) + added;
          }
          busyS += (after.modelMs - before.modelMs) / 1000;
          faces += roundFaces;
          s += roundS;
          alone.s += m1.s + m2.s;
          alone.faces += m1.faces + m2.faces;
          perRound.push({ e2e: roundFaces / roundS, model: (m1.faces + m2.faces) / (m1.s + m2.s) });
        }
      } finally {
        await d.dispose();
      }
      const modelFacesPerS = alone.faces / alone.s;
      const e2e = faces / s;
      results.push({
        part: 'throughput',
        name: `detect ${c.name}`,
        value: e2e,
        unit: 'faces/s',
        reference: { name: `model only ${dtype}`, value: modelFacesPerS },
        ratio: ratioOf(e2e, modelFacesPerS),
        ratioLabel: 'e2e/model',
        target: '>= 0.9',
        details: {
          faces,
          seconds: s,
          inputs: c.inputs.length,
          batches,
          modelBusyS: busyS,
          modelBusyFraction: busyS / s,
          // The model's speed inside the pipeline against alone (1: nothing else slowed it down).
          modelSpeedInPipeline: busyS > 0 ? faces / busyS / modelFacesPerS : null,
          // Faces/s of each round, end to end and the model alone around it.
          rounds: perRound,
        },
      });
    }
  } finally {
    await model.dispose();
  }

  // Preprocessing: native against the JS reference, on real face crops of the photo.
  const img = await decodeImage(photo);
  const fm = await loadFaceDetector();
  const found = await detectFaces(fm, [img]).finally(() => fm.dispose());
  const face = found[0]?.[0];
  const specs: CropSpec[] = Array.from({ length: 32 }, () => ({ image: 0, matrix: face ? cropMatrix(face, {}) : [1, 0, 0, 0, 1, 0] }));
  const inputSpec = { size: 224, interpolation: 'bicubic' as const, mean: [...CLIP_MEAN], std: [...CLIP_STD] };
  ctx.log('throughput: preprocessing (align 256 + resize 224 + normalise), native and JS');
  const native32 = (kernel: 'loops' | 'avx2' | 'baseline') => () => preprocessBatch([img], specs, { cropSize: 256, input: inputSpec, kernel });
  const js32 = () => cropAndTransform([img], specs, { options: { cropSize: 256 } as never, input: inputSpec, preprocess: 'js' });
  // One call each first: the first pays for its threads, page faults and (JS) compilation.
  for (const f of [native32('loops'), native32('avx2'), native32('baseline'), js32]) await f();
  const nat = await rate(native32('loops'), seconds);
  // What CPUs with AVX2 but no AVX-512, and CPUs with neither, run.
  const avx2 = await rate(native32('avx2'), seconds / 2);
  const baseline = await rate(native32('baseline'), seconds / 2);
  const js = await rate(js32, seconds);
  const perS = (r: { perSec: number }): number => r.perSec * specs.length;
  ctx.log(`throughput: preprocessing, crops/s: native ${perS(nat).toFixed(0)} (at most AVX2 ${perS(avx2).toFixed(0)}, baseline ${perS(baseline).toFixed(0)}), JS ${perS(js).toFixed(0)}`);
  results.push({
    part: 'throughput',
    name: 'preprocess 32 crops (native)',
    value: perS(nat),
    unit: 'crops/s',
    reference: { name: 'JS cropFace + clipTransform', value: perS(js) },
    ratio: ratioOf(nat.perSec, js.perSec),
    ratioLabel: 'native/js',
    target: '>= 1000 crops/s',
    details: {
      threads: native().runtimeInfo().threads,
      face: Boolean(face),
      cpuFlags: cpu.flags,
      avx2CropsPerS: perS(avx2),
      baselineCropsPerS: perS(baseline),
    },
  });
  return results;
}
