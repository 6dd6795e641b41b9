/**
 * `dfdet convert <input> -o model.pt`: published weights (HF CLIP, GenD, the authors' Lightning
 * checkpoint) into a dfdet detector file, through lib/convert.
 */
import * as fs from 'node:fs';

import type { Command } from 'commander';

import { convertModel, type ConvertOptions } from '../../convert';
import type { ArchName, HeadKind } from '../../detector-model/arch';
import { DfdetError } from '../../errors';
import { bytes } from '../output';
import { choiceOption, intOption, UsageError } from '../options';

interface ConvertFlags {
  output?: string;
  format: 'auto' | 'hf-clip' | 'gend' | 'lightning';
  head?: string;
  headKind?: HeadKind;
  config?: string;
  arch?: ArchName;
  seed?: number;
  json?: boolean;
}

const ARCH_NAMES = ['tiny', 'vit-b-16', 'vit-b-32', 'vit-l-14', 'vit-l-14-336'] as const;

/** Head variant named by a config JSON file (`{"head": "linear" | "LinearNorm"}`, GenD's config.json). */
export function headKindFromConfig(file: string): HeadKind | undefined {
  let cfg: unknown;
  try {
    cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new DfdetError(fs.existsSync(file) ? 'BAD_FORMAT' : 'NOT_FOUND', `cannot read config ${file}: ${(e as Error).message}`);
  }
  const head = (cfg as { head?: unknown } | null)?.head;
  if (head === undefined) return undefined;
  if (head !== 'linear' && head !== 'LinearNorm') throw new DfdetError('BAD_WEIGHTS', `config ${file} names an unknown head ${JSON.stringify(head)} (expected linear or LinearNorm)`);
  return head;
}

/** Registers `convert`. */
export function registerConvert(program: Command): void {
  program
    .command('convert')
    .description('convert published weights (HF CLIP safetensors, GenD safetensors, the authors\' Lightning model.ckpt) into a dfdet model file')
    .argument('<input>', 'weights file, or a folder holding model.safetensors / model.ckpt')
    .requiredOption('-o, --output <file>', 'output model file (.pt): a new path or a regular file to replace (devices, FIFOs and folders are refused)')
    .option('--format <format>', 'input layout: auto, hf-clip, gend or lightning', choiceOption('--format', ['auto', 'hf-clip', 'gend', 'lightning'] as const), 'auto')
    .option('--head <safetensors>', 'hf-clip: safetensors file with the head (linear.weight [2, D], linear.bias [2])')
    .option('--head-kind <kind>', "head variant: 'LinearNorm' (linear on the L2-normalised feature, the paper's) or 'linear'", choiceOption('--head-kind', ['linear', 'LinearNorm'] as const))
    .option('--config <json>', 'config JSON naming the head variant ({"head": ...}, as GenD\'s config.json); default: config.json beside a GenD input')
    .option('--arch <name>', `expected architecture, checked against the weights (${ARCH_NAMES.join(', ')})`, choiceOption('--arch', ARCH_NAMES))
    .option('--seed <n>', 'seed of a random head when the input has none', intOption('--seed', 0, Number.MAX_SAFE_INTEGER), 0)
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nExit codes: 0 converted, 2 bad input/weights (the message names the offending key).')
    .action(async (input: string, flags: ConvertFlags) => {
      if (!flags.output) throw new UsageError('--output is required');
      const opts: ConvertOptions = { format: flags.format, seed: flags.seed };
      if (flags.head) opts.head = flags.head;
      if (flags.arch) opts.arch = flags.arch;
      const fromConfig = flags.config ? headKindFromConfig(flags.config) : undefined;
      const headKind = flags.headKind ?? fromConfig;
      if (headKind) opts.headKind = headKind;
      const t0 = performance.now();
      const r = await convertModel(input, flags.output, opts);
      const seconds = (performance.now() - t0) / 1000;
      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ ...r, seconds }, null, 2)}\n`);
        return;
      }
      const a = r.arch;
      const size = fs.statSync(r.output).size;
      const lines = [
        `converted ${input} (${r.format}) in ${seconds.toFixed(1)} s`,
        `  arch:    ViT ${a.imageSize}px, patch ${a.patchSize}, width ${a.width}, ${a.layers} layers, ${a.heads} heads`,
        `  head:    ${r.head} (weights from ${r.headSource === 'input' ? 'the input' : r.headSource === 'file' ? flags.head : `a random init, seed ${flags.seed}`})`,
        `  source:  ${r.source.file} sha256 ${r.source.sha256}`,
        `  params:  ${r.parameterCount.toLocaleString('en-US')}` + (r.ignoredKeys.length ? `; ${r.ignoredKeys.length} input tensors not used (text tower, projections, ...)` : ''),
        `  output:  ${r.output} (${bytes(size)})`,
      ];
      for (const w of r.warnings) lines.push(`warning: ${w}`);
      process.stdout.write(`${lines.join('\n')}\n`);
      if (r.headSource === 'random') process.stderr.write('warning: the head is random: scores mean nothing until it is trained or replaced (--head).\n');
    });
}
