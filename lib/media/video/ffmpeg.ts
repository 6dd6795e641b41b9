/**
 * The one place that starts ffmpeg / ffprobe: argument hardening, a process-wide pool that bounds
 * how many run at once, the kill/timeout/abort handling, and the temp file of in-memory inputs.
 *
 * Executables: `ffmpeg` / `ffprobe` from PATH, or the paths in `DFDET_FFMPEG` / `DFDET_FFPROBE`.
 *
 * Inputs are always single local media files: the tools get `file:<absolute path>`,
 * `-protocol_whitelist file` (no network, no `concat:`/`subfile:` protocols) and an explicit
 * demuxer allowlist (`-format_whitelist`), so a playlist or index disguised as a video (HLS,
 * ffconcat, ...) is refused instead of making ffmpeg open other local files.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { DfdetError, invalidParameter } from '../../errors';
import { Budget } from '../budget';
import { abortError, checkMediaFile, isReadable, type MediaData, waitInQueue } from '../file';

/**
 * Demuxers of media files. Anything else, notably playlist and index formats that name other files
 * (`hls`, `concat`, `dash`, `mpl2`, `image2` patterns, ...), is refused.
 */
export const ALLOWED_DEMUXERS: readonly string[] = [
  'mov', 'matroska', 'webm', 'avi', 'asf', 'flv', 'mpeg', 'mpegts', 'mpegvideo', 'ogg', 'yuv4mpegpipe',
  'h264', 'hevc', 'm4v', 'ivf', 'obu',
];

/** Input options plus the input itself: local file only, allowed demuxers only. */
export function inputArgs(file: string): string[] {
  // `file:` + absolute path: nothing in the name (a leading '-', a `proto:` prefix) is read as an
  // option or another protocol.
  return ['-protocol_whitelist', 'file', '-format_whitelist', ALLOWED_DEMUXERS.join(','), '-i', `file:${path.resolve(file)}`];
}

/** Which tool, and the environment variable that overrides its path. */
export type Tool = 'ffmpeg' | 'ffprobe';
const ENV: Record<Tool, string> = { ffmpeg: 'DFDET_FFMPEG', ffprobe: 'DFDET_FFPROBE' };

function toolPath(tool: Tool): string {
  return process.env[ENV[tool]] || tool;
}

function missingTool(tool: Tool, cause: unknown): DfdetError {
  return new DfdetError(
    'UNSUPPORTED',
    `${path.basename(toolPath(tool))} was not found (${(cause as Error)?.message ?? cause}). Install it (Debian/Ubuntu: apt-get install ffmpeg; ` +
      `macOS: brew install ffmpeg) or set ${ENV[tool]} to its path`,
    { cause },
  );
}

function defaultProcesses(): number {
  const env = Number(process.env.DFDET_FFMPEG_PROCESSES);
  if (Number.isInteger(env) && env >= 1) return env;
  return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
}

let pool: Budget | undefined;

/**
 * The process-wide pool of ffmpeg/ffprobe processes. Its size is `DFDET_FFMPEG_PROCESSES` when set
 * (a positive integer), else the number of CPU cores, read when the first process starts.
 */
export function ffmpegPool(): Budget {
  pool ??= new Budget(defaultProcesses());
  return pool;
}

/** A started tool: its child process and the one kill path (timeout, abort, caller). */
export interface ToolProcess {
  readonly child: ChildProcess;
  /** The first reason it was killed for, if any. */
  readonly failure: DfdetError | undefined;
  /** Kills the process; `e` becomes {@link ToolProcess.failure} unless one is already set. */
  fail(e: DfdetError): void;
  /** Settles when the process has exited and its pool slot is free. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Kills the process if still running, waits for it, and drops the timer and abort listener. */
  stop(): Promise<void>;
}

/** Options of {@link startTool}. */
export interface StartOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** Stops only the wait for a pool slot, never a running process (see media/file's waitInQueue). */
  cancelQueued?: AbortSignal;
  /** The limit named in the TIMEOUT message when `timeoutMs` is what is left of a larger one. */
  limitMs?: number;
  /** Words for messages: "ffprobe of <name>". */
  what: string;
  /** Called whenever the process state changes (failure or exit). */
  onChange?: () => void;
}

/** A pool slot, waited for at most `o.timeoutMs` (then `TIMEOUT`) and cancelled by `o.signal` (`ABORTED`). */
async function waitForSlot(o: StartOptions, timedOut: () => DfdetError): Promise<() => void> {
  const ac = new AbortController();
  const expired = Symbol('expired');
  const timer = setTimeout(() => ac.abort(expired), o.timeoutMs);
  const onAbort = (): void => ac.abort(o.signal?.reason);
  if (o.signal?.aborted) onAbort();
  else o.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await waitInQueue(o.what, { signal: ac.signal, cancelQueued: o.cancelQueued }, (s) => ffmpegPool().reserve(1, o.what, s));
  } catch (e) {
    throw ac.signal.reason === expired ? timedOut() : e;
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * Waits for a pool slot (cancelled by `signal` without ever starting a process), then starts the
 * tool with stdin closed and stdout/stderr piped. The timeout covers the wait in the queue.
 */
export async function startTool(tool: Tool, args: string[], o: StartOptions): Promise<ToolProcess> {
  const t0 = Date.now();
  const timedOut = (): DfdetError => new DfdetError('TIMEOUT', `${o.what} timed out after ${o.limitMs ?? o.timeoutMs} ms`);
  const release = await waitForSlot(o, timedOut);
  const left = o.timeoutMs - (Date.now() - t0);
  if (left <= 0) {
    release();
    throw timedOut();
  }
  const child = spawn(toolPath(tool), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let failure: DfdetError | undefined;
  let running = true;
  const kill = (): void => {
    if (!running) return;
    child.kill('SIGKILL');
    // Our ends of the pipes too: a process the tool started (a wrapper script's child) may hold
    // them open, and 'close' waits for them.
    child.stdout?.destroy();
    child.stderr?.destroy();
  };
  const fail = (e: DfdetError): void => {
    failure ??= e;
    kill();
    o.onChange?.();
  };
  const timer = setTimeout(() => fail(timedOut()), left);
  const onAbort = (): void => fail(abortError(o.what, o.signal));
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    const done = (code: number | null, sig: NodeJS.Signals | null): void => {
      if (!running) return;
      running = false;
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      release();
      resolve({ code, signal: sig });
      o.onChange?.();
    };
    child.once('error', (e: NodeJS.ErrnoException) => {
      fail(e.code === 'ENOENT' ? missingTool(tool, e) : new DfdetError('DECODE_FAILED', `${o.what} failed: ${e.message}`, { cause: e }));
      // A process that never started emits no 'close'.
      if (child.pid === undefined) done(null, null);
    });
    child.once('close', done);
  });
  return {
    child,
    get failure() {
      return failure;
    },
    fail,
    exited,
    async stop() {
      kill();
      await exited;
    },
  };
}

/** Output of {@link runTool}. */
export interface RunResult {
  stdout: Buffer;
  stderr: string;
  code: number | null;
}

/** Runs a short-lived tool to completion and collects its output (stderr capped at 1 MiB). */
export async function runTool(tool: Tool, args: string[], o: StartOptions): Promise<RunResult> {
  const p = await startTool(tool, args, o);
  const out: Buffer[] = [];
  let err = '';
  p.child.stdout!.on('data', (d: Buffer) => out.push(d));
  p.child.stderr!.on('data', (d: Buffer) => {
    if (err.length < 1 << 20) err += d.toString('utf8');
  });
  try {
    const { code } = await p.exited;
    if (p.failure) throw p.failure;
    return { stdout: Buffer.concat(out), stderr: err, code };
  } finally {
    await p.stop();
  }
}

/** A media input as a local file, and how to let go of it. */
export interface LocalInput {
  file: string;
  /** Removes the temp file, if one was made. */
  release(): Promise<void>;
}

/**
 * The file ffmpeg reads. A path is checked and used as is; bytes and streams are written once to a
 * private temp file (ffmpeg must seek in MP4/MOV, whose index may be at the end, so no stdin). A
 * stream is spooled straight to disk, at most `maxBytes`, and `signal` stops it at once.
 */
export async function localInput(input: MediaData, name: string, signal: AbortSignal | undefined, maxBytes = Infinity): Promise<LocalInput> {
  if (typeof input !== 'string' && !(input instanceof Uint8Array) && !isReadable(input)) {
    invalidParameter('input', 'a file path, bytes or a readable stream', input);
  }
  if (typeof input === 'string') {
    await checkMediaFile(input, 'Video', name);
    return { file: input, release: async () => undefined };
  }
  if (input instanceof Uint8Array && input.length === 0) throw new DfdetError('DECODE_FAILED', `Video ${name} is empty (0 bytes)`);
  if (signal?.aborted) throw abortError(`Reading ${name}`, signal);
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'dfdet-video-'));
  const release = (): Promise<void> => fs.promises.rm(dir, { recursive: true, force: true });
  const file = path.join(dir, 'input');
  try {
    if (input instanceof Uint8Array) await fs.promises.writeFile(file, input, { signal, mode: 0o600 });
    else if (isReadable(input)) await spool(input, file, name, signal, maxBytes);
    return { file, release };
  } catch (e) {
    await release();
    if (signal?.aborted) throw abortError(`Reading ${name}`, signal);
    throw e;
  }
}

async function spool(stream: NodeJS.ReadableStream, file: string, name: string, signal: AbortSignal | undefined, maxBytes: number): Promise<void> {
  let total = 0;
  async function* limited(source: AsyncIterable<Buffer | string>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      total += b.length;
      if (total > maxBytes) throw new DfdetError('DECODE_FAILED', `Video ${name} is larger than ${maxBytes} bytes`);
      yield b;
    }
  }
  try {
    await pipeline(stream, limited, fs.createWriteStream(file, { mode: 0o600 }), { signal });
  } catch (e) {
    if (e instanceof DfdetError) throw e;
    if (signal?.aborted) throw abortError(`Reading ${name}`, signal);
    throw new DfdetError('DECODE_FAILED', `Could not read video ${name}: ${(e as Error)?.message ?? e}`, { cause: e });
  }
  if (total === 0) throw new DfdetError('DECODE_FAILED', `Video ${name} is empty (0 bytes)`);
}
