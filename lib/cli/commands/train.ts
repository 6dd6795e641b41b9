/**
 * `dfdet train --model BASE --data DIR --out OUT.pt`: the paper's LN-tuning (lib/train) with a
 * progress line, per-epoch validation lines, a JSON log and checkpoints.
 */
import type { Command } from 'commander';

import { fmt } from '../output';
import { choiceOption, EXIT, interruptSignal, intOption, numberOption } from '../options';
import { train, type TrainOptions } from '../../train/loop';

interface TrainFlags {
  model: string;
  data: string;
  val?: string;
  out: string;
  epochs: number;
  lr: number;
  minLr?: number;
  batchSize: number;
  weightDecay: number;
  warmup: number;
  seed: number;
  faces: 'detect' | 'none';
  device: string;
  dtype: 'float32' | 'bfloat16';
  resume?: string;
  labelSmoothing: number;
  slerp: boolean;
  alignment: number;
  uniformity: number;
  gradClip: number;
  frames: number;
  cacheDir?: string;
  progress: boolean;
}

/** Registers `train`. */
export function registerTrain(program: Command): void {
  program
    .command('train')
    .description("fine-tune a detector's LayerNorms and head on labelled data (the paper's LN-tuning)")
    .requiredOption('-m, --model <file>', 'base detector: a dfdet model file (dfdet pull / convert / model init)')
    .requiredOption('--data <dir|csv>', 'training data in any layout dfdet eval reads (paper layout, CSV, real/ and fake/ folders)')
    .option('--val <dir|csv>', 'validation data (the best epoch on it is the output; without it, the last epoch)')
    .requiredOption('-o, --out <file>', 'output model (also writes <out>.ckpt and <out>.log.json)')
    .option('--epochs <n>', 'epochs', intOption('--epochs', 1, 100_000), 1)
    .option('--lr <rate>', 'peak learning rate (cosine schedule)', numberOption('--lr', 0, 10), 3e-4)
    .option('--min-lr <rate>', 'learning rate at the end of the cosine schedule (default 1e-6)', numberOption('--min-lr', 0, 10))
    .option('--batch-size <n>', 'images per step', intOption('--batch-size', 2, 65_536), 32)
    .option('--weight-decay <w>', "AdamW weight decay (the head's weight only, as the authors)", numberOption('--weight-decay', 0, 10), 0.01)
    .option('--warmup <steps>', 'linear warm-up: steps (>= 1) or a fraction of all steps (< 1)', numberOption('--warmup', 0, 1e9), 0)
    .option('--seed <n>', 'seed of the batch order and slerp pairs', intOption('--seed', 0, Number.MAX_SAFE_INTEGER), 0)
    .option('--faces <mode>', "'detect' crops faces as detection does; 'none' uses whole images (face crops)", choiceOption('--faces', ['detect', 'none'] as const), 'detect')
    .option('--device <device>', "'cpu', 'cuda' or 'cuda:N'", 'cpu')
    .option('--dtype <dtype>', "'float32', or 'bfloat16' mixed precision (autocast)", choiceOption('--dtype', ['float32', 'bfloat16'] as const), 'float32')
    .option('--resume <ckpt>', 'continue a run from its checkpoint')
    .option('--label-smoothing <s>', 'cross-entropy label smoothing', numberOption('--label-smoothing', 0, 1), 0)
    .option('--no-slerp', "turn off the paper's slerp feature augmentation")
    .option('--alignment <w>', "weight of GenD's alignment loss (0: off)", numberOption('--alignment', 0, 1e6), 0)
    .option('--uniformity <w>', "weight of GenD's uniformity loss (0: off)", numberOption('--uniformity', 0, 1e6), 0)
    .option('--grad-clip <norm>', 'clip the global gradient norm (0: off)', numberOption('--grad-clip', 0, 1e9), 1)
    .option('--frames <n>', 'frames sampled per training video', intOption('--frames', 1, 100_000), 32)
    .option('--cache-dir <dir>', 'where face crops are cached (default: the dfdet cache)')
    .option('--no-progress', 'no progress line on stderr')
    .addHelpText(
      'after',
      `
Only the LayerNorm weights and biases and the head are trained (AdamW, cosine schedule with
warm-up, gradient clipping); features are interpolated on the hypersphere within each class
(slerp). The output is a dfdet model: dfdet detect / eval / serve load it directly, and its
metadata records the base model, the data and the hyper-parameters.

Exit codes: 0 done, 1 failed, 2 usage/model/data error, 130 interrupted (resume with --resume).`,
    )
    .action(async (flags: TrainFlags) => {
      process.exitCode = await runTrain(flags);
    });
}

async function runTrain(f: TrainFlags): Promise<number> {
  const interrupt = interruptSignal();
  const tty = f.progress && Boolean(process.stderr.isTTY);
  const line = (s: string): void => {
    if (tty) process.stderr.write(`\r\x1b[K${s}`);
  };
  const options: TrainOptions = {
    model: f.model, data: f.data, val: f.val, out: f.out, epochs: f.epochs, lr: f.lr, minLr: f.minLr, batchSize: f.batchSize,
    weightDecay: f.weightDecay, warmup: f.warmup, seed: f.seed, faces: f.faces, device: f.device, dtype: f.dtype, resume: f.resume,
    labelSmoothing: f.labelSmoothing, slerp: f.slerp, alignment: f.alignment, uniformity: f.uniformity, gradClip: f.gradClip,
    frames: f.frames, cacheDir: f.cacheDir, signal: interrupt.signal,
  };
  try {
    const run = train(options);
    for (let r = await run.next(); ; r = await run.next()) {
      if (r.done) {
        line('');
        process.stdout.write(`best epoch ${r.value.bestEpoch}: ${r.value.out}\nlog: ${r.value.log}\ncheckpoint: ${r.value.checkpoint}\n`);
        return EXIT.OK;
      }
      const e = r.value;
      if (e.type === 'crops') line(`${e.split}: cropping ${e.done}/${e.total} (${e.rows} faces)`);
      else if (e.type === 'data') {
        line('');
        process.stderr.write(`${e.split}: ${e.items} items, ${e.rows} crops${e.cached ? ' (cached)' : ''}${e.skipped ? `, ${e.skipped} without a face or unreadable` : ''}\n`);
      } else if (e.type === 'resumed') process.stderr.write(`resumed after epoch ${e.epoch} from ${e.checkpoint}\n`);
      else if (e.type === 'step') {
        const bar = '#'.repeat(Math.round((20 * e.batch) / e.batches)).padEnd(20, '.');
        line(`epoch ${e.epoch} [${bar}] ${e.batch}/${e.batches} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)}`);
      } else if (e.type === 'epoch') {
        const x = e.record;
        line('');
        process.stdout.write(
          `epoch ${x.epoch}: train loss ${fmt(x.trainLoss)} auroc ${fmt(x.trainAuroc)} | val loss ${fmt(x.valLoss)} auroc ${fmt(x.valAuroc)} | ` +
            `${x.imagesPerSec.toFixed(1)} img/s${e.best ? ' | best' : ''}\n`,
        );
      }
    }
  } finally {
    line('');
    interrupt.dispose();
  }
}
