/**
 * `dfdet info <model>`: what a model file holds (architecture, preprocessing, provenance, size).
 */
import * as fs from 'node:fs';

import type { Command } from 'commander';

import { METADATA_FILE, readDetectorMetadata } from '../../detector-model/metadata';
import { Model } from '../../model';
import { bytes } from '../output';
import { resolveModel } from '../../resolve-model';
import { choiceOption } from '../options';

interface InfoFlags {
  json?: boolean;
  cacheDir?: string;
  device: string;
  dtype: 'auto' | 'float32' | 'float16' | 'bfloat16';
}

/** Registers `info`. */
export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('show a model\'s metadata: architecture, head, input size/mean/std, labels, source, methods, parameters')
    .argument('[model]', 'model file or pulled registry name (default: the registry default)')
    .option('--json', 'print JSON')
    .option('--cache-dir <dir>', 'model cache folder')
    .option('--device <device>', "device to load on: 'cpu', 'cuda', 'cuda:N'", 'cpu')
    .option('--dtype <dtype>', "precision to load in ('auto': bf16 where the CPU/GPU has it)", choiceOption('--dtype', ['auto', 'float32', 'float16', 'bfloat16'] as const), 'auto')
    .addHelpText('after', '\nExit codes: 0 shown, 2 model not found or not loadable.')
    .action(async (name: string | undefined, flags: InfoFlags) => {
      const { source, name: shown } = await resolveModel(name, flags.cacheDir);
      const file = source as string; // names and paths only: bytes never come from the command line
      const model = await Model.load(file, { device: flags.device, dtype: flags.dtype, extraFiles: [METADATA_FILE] });
      try {
        const info = model.info;
        const meta = readDetectorMetadata(info);
        const hasMeta = Boolean(info.extraFiles[METADATA_FILE]);
        const out = {
          name: shown,
          file,
          fileBytes: fs.statSync(file).size,
          hasMetadata: hasMeta,
          metadata: meta,
          randomWeights: meta.source.kind === 'init',
          methods: info.methods,
          parameterCount: info.parameterCount,
          parameterBytes: info.parameterBytes,
          device: info.device,
          dtype: info.dtype,
        };
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
          return;
        }
        const a = meta.arch;
        const s = meta.source;
        const lines = [
          `model:      ${shown}${shown !== file ? ` (${file})` : ''}, ${bytes(out.fileBytes)}`,
          `arch:       CLIP ViT ${a.imageSize}px, patch ${a.patchSize}, width ${a.width}, ${a.layers} layers, ${a.heads} heads, MLP x${a.mlpRatio}`,
          `head:       ${a.head}${a.head === 'LinearNorm' ? ' (linear on the L2-normalised CLS feature)' : ''}`,
          `input:      ${meta.input.size}x${meta.input.size} ${meta.input.interpolation}, mean [${meta.input.mean.join(', ')}], std [${meta.input.std.join(', ')}]`,
          `labels:     ${meta.labels.map((l, i) => `${i}=${l}`).join(', ')}`,
          `source:     ${s.kind}${s.file ? ` ${s.file}` : ''}${s.sha256 ? ` sha256 ${s.sha256}` : ''}${s.seed !== undefined ? ` seed ${s.seed}` : ''}`,
          `created by: ${meta.createdBy || '-'}${hasMeta ? '' : ` (no ${METADATA_FILE} in the file: the paper's defaults are assumed)`}`,
          `methods:    ${info.methods.join(', ')}`,
          `parameters: ${info.parameterCount.toLocaleString('en-US')} (${bytes(info.parameterBytes)}), ${info.dtype} on ${info.device}`,
        ];
        if (out.randomWeights) lines.push('warning:    RANDOM weights (dfdet model init): scores from this model mean nothing');
        process.stdout.write(`${lines.join('\n')}\n`);
      } finally {
        await model.dispose();
      }
    });
}
