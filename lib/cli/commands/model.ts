/**
 * `dfdet model init`: a seeded detector with RANDOM weights (tests, benchmarks, fine-tuning start).
 */
import * as fs from 'node:fs';

import type { Command } from 'commander';

import type { ArchName, HeadKind } from '../../detector-model/arch';
import { initModel } from '../../detector-model/init';
import { bytes } from '../output';
import { choiceOption, intOption } from '../options';

const ARCH_NAMES = ['tiny', 'vit-b-16', 'vit-b-32', 'vit-l-14', 'vit-l-14-336'] as const;

interface InitFlags {
  arch: ArchName;
  seed: number;
  output: string;
  head: HeadKind;
  json?: boolean;
}

/** Registers `model` and its subcommands. */
export function registerModel(program: Command): void {
  const model = program.command('model').description('make model files');
  model
    .command('init')
    .description('write a detector with seeded RANDOM weights (its scores mean nothing: for tests, benchmarks, fine-tuning)')
    .requiredOption('-o, --output <file>', 'output model file (.pt): a new path or a regular file to replace (devices, FIFOs and folders are refused)')
    .option('--arch <name>', `architecture: ${ARCH_NAMES.join(', ')} (tiny: 2 layers, width 64, for tests)`, choiceOption('--arch', ARCH_NAMES), 'vit-l-14')
    .option('--seed <n>', 'random seed', intOption('--seed', 0, Number.MAX_SAFE_INTEGER), 0)
    .option('--head <kind>', "head variant: 'LinearNorm' (the paper's) or 'linear'", choiceOption('--head', ['linear', 'LinearNorm'] as const), 'LinearNorm')
    .option('--json', 'print the result as JSON')
    .action(async (flags: InitFlags) => {
      const t0 = performance.now();
      const r = await initModel({ arch: flags.arch, seed: flags.seed, head: flags.head, output: flags.output });
      const seconds = (performance.now() - t0) / 1000;
      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ ...r, seconds, randomWeights: true })}\n`);
      } else {
        const a = r.arch;
        process.stdout.write(
          `wrote ${r.output} (${bytes(fs.statSync(r.output).size)}) in ${seconds.toFixed(1)} s\n` +
            `  arch: ${flags.arch}: ViT ${a.imageSize}px, patch ${a.patchSize}, width ${a.width}, ${a.layers} layers, ${a.heads} heads; head ${r.head}\n` +
            `  params: ${r.parameterCount.toLocaleString('en-US')}, seed ${r.seed}\n`,
        );
      }
      process.stderr.write('note: the weights are RANDOM: scores from this model mean nothing. For the trained detector run `dfdet pull`.\n');
    });
}
