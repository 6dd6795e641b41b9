/** ffmpeg for tests that make their own videos. */
import { spawnSync } from 'node:child_process';

/** True when ffmpeg and ffprobe both run (dfdet probes every video before decoding it). */
export const haveFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0 && spawnSync('ffprobe', ['-version']).status === 0;

/** Runs ffmpeg quietly, overwriting outputs; throws with its stderr when it fails. */
export function ffmpeg(...args: string[]): void {
  const r = spawnSync('ffmpeg', ['-hide_banner', '-v', 'error', '-y', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ffmpeg ${args.join(' ')} failed: ${r.stderr}`);
}
