/**
 * Child process of the "models" benchmark: loads one model file with {@link Model.load} in a
 * fresh Node process and prints one JSON line with the load time and resident memory
 * (`/proc/self/status`: VmRSS before, VmRSS and VmHWM = peak after). The addon is loaded before
 * the baseline is taken, as `import torch` is on the Python side.
 *
 * usage: node load-child.js MODEL_PATH
 */
import { Model } from '../model';
import { native } from '../native';
import { now, procStatus } from './common';

async function main(): Promise<void> {
  const file = process.argv[2];
  if (!file) throw new Error('usage: load-child MODEL_PATH');
  native().runtimeInfo();
  const before = procStatus();
  const t0 = now();
  const model = await Model.load(file);
  const loadS = now() - t0;
  const after = procStatus();
  process.stdout.write(
    `${JSON.stringify({ loadS, baselineRss: before.rss, rss: after.rss, hwm: after.hwm, parameterBytes: model.info.parameterBytes })}\n`,
  );
  await model.dispose();
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
  process.exitCode = 1;
});
