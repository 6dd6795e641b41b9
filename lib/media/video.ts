/**
 * Video probing and frame sampling with the ffmpeg / ffprobe executables.
 *
 * Frames come out of ffmpeg as raw RGB (`-f rawvideo -pix_fmt rgb24`) over a pipe and are copied
 * straight into one preallocated buffer per frame (no concatenation of chunks). Frame selection
 * happens inside ffmpeg's filter graph (`select`), so only the chosen frames are converted to RGB
 * and sent; every frame up to the last chosen one is still decoded (no seeking: exact frame indices).
 *
 * Executables: `ffmpeg` / `ffprobe` from PATH, or the paths in the environment variables
 * `DFDET_FFMPEG` / `DFDET_FFPROBE`.
 *
 * Inputs are always local files: the tools get `file:<absolute path>` and `-protocol_whitelist file`,
 * so neither an odd file name (`http:x.mp4`, `concat:a|b`, `-x.mp4`) nor a playlist inside the file
 * (HLS `.m3u8`, ffconcat) can make ffmpeg open a network or other non-file protocol.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DfdetError, invalidParameter } from '../errors';
import type { RgbImage } from './image';
import { DEFAULT_MAX_PIXELS } from './image';
import { checkMediaFile } from './file';

/** What {@link probeVideo} finds out about the first video stream. */
export interface VideoProbe {
  /** Duration in seconds (container duration, else stream duration; 0 when unknown). */
  durationSec: number;
  /** Average frame rate (frames per second); `r_frame_rate` when the average is unknown. */
  fps: number;
  /** Number of frames: the container's count, else counted packets, else `round(duration * fps)`. */
  frameCount: number;
  /** False when {@link VideoProbe.frameCount} is an estimate from duration and fps. */
  frameCountExact: boolean;
  /** Width of the decoded (display-rotated) frames in pixels (before any `maxFrameSide` scaling). */
  width: number;
  /** Height of the decoded (display-rotated) frames in pixels (before any `maxFrameSide` scaling). */
  height: number;
  /** Codec name as ffprobe reports it (`h264`, `vp9`, ...). */
  codec: string;
  /** Display-matrix rotation in degrees as ffprobe reports it (0 when none). ffmpeg applies it when decoding. */
  rotation: number;
  /** Presentation time of the stream's first frame in seconds (0 when unknown). */
  startTimeSec: number;
}

/** How to choose frames. */
export type SamplingStrategy =
  /**
   * `count` frames at indices `floor(linspace(0, frameCount - 1, count))` (numpy's
   * `np.linspace(0, n - 1, count).astype(int)`, the usual "uniform sampling" of deepfake video
   * benchmarks); all frames when the video has fewer than `count`.
   */
  | { kind: 'uniform'; count: number }
  /** The first frame of every `1/fps` second interval, measured from the first frame's timestamp. */
  | { kind: 'fps'; fps: number }
  /** Frames 0, k, 2k, ... */
  | { kind: 'every'; k: number };

/** A decoded frame. */
export interface VideoFrame {
  /**
   * Index of the frame among the decoded frames, from 0. Exact for `uniform` and `every`; for
   * `fps` it is `round((timestamp - start) * fps)`, exact for constant-frame-rate video.
   */
  index: number;
  /** Presentation timestamp in seconds, relative to the stream's first frame. */
  timestampSec: number;
  /** The RGB pixels (its own buffer), scaled down when the video is larger than `maxFrameSide`. */
  image: RgbImage;
}

/** Options of {@link probeVideo}. */
export interface ProbeOptions {
  /** Kill ffprobe and reject with `TIMEOUT` after this many milliseconds (default 30000). */
  timeoutMs?: number;
  /** Abort: kills ffprobe and rejects with `ABORTED`. */
  signal?: AbortSignal;
}

/** Options of {@link sampleFrames} / {@link iterateFrames}. */
export interface SampleFramesOptions {
  /** Which frames (default `{ kind: 'uniform', count: 32 }`). */
  strategy?: SamplingStrategy;
  /** Most frames returned (default 1000); sampling stops there. */
  maxFrames?: number;
  /** Kill ffmpeg and fail with `TIMEOUT` after this many milliseconds, probing included (default 300000). */
  timeoutMs?: number;
  /** Abort: kills ffmpeg and fails with `ABORTED`. */
  signal?: AbortSignal;
  /** Largest accepted `width * height` of a frame (default 100e6, as images); larger fails with `DECODE_FAILED`. */
  maxPixels?: number;
  /**
   * Frames whose longer side is over this many pixels are scaled down by ffmpeg (area averaging),
   * keeping the aspect ratio, so that the longer side is this value (default 1920: a 3840x2160 video
   * gives 1920x1080 frames). `Infinity` disables scaling (frames at the video's own size).
   */
  maxFrameSide?: number;
  /**
   * {@link sampleFrames} only: most bytes of decoded RGB pixels it keeps in total (default 1 GiB).
   * Sampling stops at the last frame that fits; the result is then `partial`, with a message in
   * `errors` that names this option. Fails with `DECODE_FAILED` when not even one frame fits.
   * `Infinity` disables the limit. ({@link iterateFrames} holds only a few frames at a time and
   * ignores it.)
   */
  maxTotalBytes?: number;
  /** A probe already made for this input (skips running ffprobe again). */
  probe?: VideoProbe;
}

/** What {@link iterateFrames} returns when done, and part of {@link SampleResult}. */
export interface SampleSummary {
  /** Frames the strategy planned (an estimate for `fps`, and for `every` when the count is estimated). */
  planned: number;
  /** Frames delivered. */
  decoded: number;
  /**
   * True when the video ended early or ffmpeg reported decoding errors (truncated/corrupt input),
   * or {@link sampleFrames} stopped at `maxTotalBytes`: the frames delivered are good, but fewer or
   * different from what was planned.
   */
  partial: boolean;
  /** ffmpeg's error messages, when any (at most 20), and the reason when sampling stopped at `maxTotalBytes`. */
  errors: string[];
  /** The probe used. */
  probe: VideoProbe;
}

/** Result of {@link sampleFrames}. */
export interface SampleResult extends SampleSummary {
  /** The frames, in presentation order. */
  frames: VideoFrame[];
}

const DEFAULT_TIMEOUT_MS = 300_000;
const DEFAULT_PROBE_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_FRAMES = 1000;
const DEFAULT_MAX_FRAME_SIDE = 1920;
const DEFAULT_MAX_TOTAL_BYTES = 2 ** 30;

/**
 * A path as ffmpeg must see it: absolute with the `file:` protocol, so that nothing in the name
 * (a leading '-', a `proto:` prefix) is read as an option or another protocol.
 */
function ffInput(file: string): string {
  return `file:${path.resolve(file)}`;
}

/** Input options that keep ffmpeg/ffprobe (and any playlist they open) on local files. */
const LOCAL_ONLY = ['-protocol_whitelist', 'file'];

function ffmpegPath(): string {
  return process.env.DFDET_FFMPEG || 'ffmpeg';
}
function ffprobePath(): string {
  return process.env.DFDET_FFPROBE || 'ffprobe';
}

function missingTool(tool: string, envVar: string, cause: unknown): DfdetError {
  return new DfdetError(
    'UNSUPPORTED',
    `${tool} was not found (${(cause as Error)?.message ?? cause}). Install it (Debian/Ubuntu: apt-get install ffmpeg; ` +
      `macOS: brew install ffmpeg) or set ${envVar} to its path`,
    { cause },
  );
}

interface RunResult {
  stdout: Buffer;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Wait for a child to exit (and be reaped). */
function closed(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('close', () => resolve()));
}

/**
 * Run a short-lived tool to completion, collecting its output; kill it on timeout/abort, and
 * settle only once the child has exited.
 */
async function runTool(
  cmd: string,
  args: string[],
  envVar: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  what: string,
): Promise<RunResult> {
  if (signal?.aborted) throw new DfdetError('ABORTED', `${what} aborted`, { cause: signal.reason });
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let err = '';
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => {
    if (err.length < 1 << 20) err += d.toString('utf8');
  });
  let failure: DfdetError | undefined;
  const kill = (e: DfdetError) => {
    failure ??= e;
    child.kill('SIGKILL');
  };
  const timer = setTimeout(() => kill(new DfdetError('TIMEOUT', `${what} timed out after ${timeoutMs} ms`)), timeoutMs);
  const onAbort = () => kill(new DfdetError('ABORTED', `${what} aborted`, { cause: signal?.reason }));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const res = await new Promise<RunResult>((resolve, reject) => {
      child.once('error', (e: NodeJS.ErrnoException) => {
        reject(e.code === 'ENOENT' ? missingTool(path.basename(cmd), envVar, e) : e);
      });
      child.once('close', (code, sig) => resolve({ stdout: Buffer.concat(out), stderr: err, code, signal: sig }));
    });
    if (failure) throw failure;
    return res;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await closed(child);
    }
  }
}

function checkTimeout(name: string, v: unknown): void {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) invalidParameter(name, 'a positive finite number of milliseconds', v);
}

function rate(s: unknown): number {
  if (typeof s !== 'string') return 0;
  const [n, d] = s.split('/').map(Number);
  const v = d === undefined ? n : n / d;
  return Number.isFinite(v) && v > 0 ? v : 0;
}

function num(s: unknown): number {
  const v = typeof s === 'number' ? s : typeof s === 'string' ? Number(s) : NaN;
  return Number.isFinite(v) ? v : NaN;
}

/** Last meaningful line of a tool's stderr, for error messages. */
function lastLine(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.length ? lines[lines.length - 1] : 'no message';
}

/**
 * Probe the first video stream of a file with ffprobe. Cover art in audio files (an `attached_pic`
 * stream) does not count as video.
 *
 * @param file - Path of the video.
 * @param opts - Timeout and abort signal.
 * @throws DfdetError `NOT_FOUND`, `DECODE_FAILED` (not a media file, no video stream),
 *   `UNSUPPORTED` (ffprobe missing), `TIMEOUT`, `ABORTED`.
 */
export async function probeVideo(file: string, opts: ProbeOptions = {}): Promise<VideoProbe> {
  if (typeof file !== 'string' || file === '') invalidParameter('file', 'a non-empty path string', file);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  checkTimeout('timeoutMs', timeoutMs);
  await checkMediaFile(file, 'Video');
  const deadline = Date.now() + timeoutMs;
  const res = await runTool(
    ffprobePath(),
    ['-v', 'error', ...LOCAL_ONLY, '-print_format', 'json', '-show_streams', '-show_format', '-i', ffInput(file)],
    'DFDET_FFPROBE',
    timeoutMs,
    opts.signal,
    `ffprobe of ${file}`,
  );
  if (res.code !== 0) {
    throw new DfdetError('DECODE_FAILED', `Could not read video ${file}: ${lastLine(res.stderr)}`, { details: { path: file } });
  }
  let info: { streams?: Record<string, unknown>[]; format?: Record<string, unknown> };
  try {
    info = JSON.parse(res.stdout.toString('utf8'));
  } catch (e) {
    throw new DfdetError('DECODE_FAILED', `Could not read video ${file}: unparsable ffprobe output`, { cause: e });
  }
  const streams = info.streams ?? [];
  const v = streams.find(
    (s) => s.codec_type === 'video' && !((s.disposition as Record<string, number> | undefined)?.attached_pic === 1),
  );
  if (!v) {
    const kinds = streams.map((s) => String(s.codec_type)).join(', ') || 'none';
    throw new DfdetError('DECODE_FAILED', `No video stream in ${file} (streams: ${kinds})`, { details: { path: file } });
  }
  let rotation = 0;
  for (const sd of (v.side_data_list as Record<string, unknown>[] | undefined) ?? []) {
    if (typeof sd.rotation === 'number') rotation = sd.rotation;
  }
  const tagRotate = num((v.tags as Record<string, unknown> | undefined)?.rotate);
  if (rotation === 0 && Number.isFinite(tagRotate)) rotation = tagRotate;
  const codedW = num(v.width);
  const codedH = num(v.height);
  if (!(codedW > 0 && codedH > 0)) {
    throw new DfdetError('DECODE_FAILED', `Video stream of ${file} has no frame size (corrupt or unsupported codec)`);
  }
  const quarter = Math.abs(Math.round(rotation / 90)) % 2 === 1;
  const fps = rate(v.avg_frame_rate) || rate(v.r_frame_rate);
  const fmtDur = num(info.format?.duration);
  const streamDur = num(v.duration);
  const durationSec = Number.isFinite(fmtDur) && fmtDur > 0 ? fmtDur : Number.isFinite(streamDur) ? streamDur : 0;
  let frameCount = num(v.nb_frames);
  let frameCountExact = frameCount > 0;
  if (!frameCountExact) {
    // Containers such as Matroska/WebM do not store a count: count packets (no decoding, fast).
    const left = deadline - Date.now();
    if (left <= 0) throw new DfdetError('TIMEOUT', `ffprobe of ${file} timed out after ${timeoutMs} ms`);
    const c = await runTool(
      ffprobePath(),
      ['-v', 'error', ...LOCAL_ONLY, '-select_streams', String(v.index ?? 'v:0'), '-count_packets', '-show_entries', 'stream=nb_read_packets', '-of', 'csv=p=0', '-i', ffInput(file)],
      'DFDET_FFPROBE',
      left,
      opts.signal,
      `ffprobe of ${file}`,
    );
    const n = parseInt(c.stdout.toString('utf8').trim(), 10);
    if (c.code === 0 && n > 0) {
      frameCount = n;
      frameCountExact = true;
    } else {
      frameCount = Math.max(1, Math.round(durationSec * fps));
    }
  }
  // start_pts x time_base is the exact value ffmpeg computes for the first frame's `t`
  // (start_time is printed with 6 decimals only).
  const startPts = num(v.start_pts);
  const tb = rate(v.time_base);
  const start = Number.isInteger(startPts) && tb > 0 ? startPts * tb : num(v.start_time);
  return {
    durationSec,
    fps,
    frameCount,
    frameCountExact,
    width: quarter ? codedH : codedW,
    height: quarter ? codedW : codedH,
    codec: String(v.codec_name ?? 'unknown'),
    rotation,
    startTimeSec: Number.isFinite(start) ? start : 0,
  };
}

function checkStrategy(s: unknown): SamplingStrategy {
  const st = s as SamplingStrategy;
  if (!st || typeof st !== 'object') invalidParameter('strategy', 'an object with kind uniform|fps|every', s);
  switch (st.kind) {
    case 'uniform':
      if (!Number.isInteger(st.count) || st.count < 1) invalidParameter('strategy.count', 'a positive integer', st.count);
      return st;
    case 'fps':
      if (typeof st.fps !== 'number' || !(st.fps > 0) || !Number.isFinite(st.fps)) invalidParameter('strategy.fps', 'a positive number', st.fps);
      return st;
    case 'every':
      if (!Number.isInteger(st.k) || st.k < 1) invalidParameter('strategy.k', 'a positive integer', st.k);
      return st;
    default:
      return invalidParameter('strategy.kind', "one of 'uniform', 'fps', 'every'", (st as { kind: unknown }).kind);
  }
}

/**
 * Frame indices the `uniform` strategy picks: `np.linspace(0, frameCount - 1, count).astype(int)`,
 * duplicates removed (fewer than `count` only when the video has fewer frames).
 */
export function uniformIndices(frameCount: number, count: number): number[] {
  if (frameCount <= 0) return [];
  if (count === 1) return [0];
  const stop = frameCount - 1;
  const step = stop / (count - 1);
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const v = i === count - 1 ? stop : Math.floor(i * step);
    if (out.length === 0 || out[out.length - 1] !== v) out.push(v);
  }
  return out;
}

/** `select` expression for sorted indices, runs of consecutive indices merged into `between`. */
function selectIndices(idx: number[]): string {
  const terms: string[] = [];
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j + 1 < idx.length && idx[j + 1] === idx[j] + 1) j++;
    terms.push(i === j ? `eq(n\\,${idx[i]})` : `between(n\\,${idx[i]}\\,${idx[j]})`);
    i = j + 1;
  }
  return terms.join('+');
}

interface Plan {
  select: string;
  planned: number;
  indices?: number[];
}

function makePlan(strategy: SamplingStrategy, probe: VideoProbe, maxFrames: number): Plan {
  switch (strategy.kind) {
    case 'uniform': {
      const indices = uniformIndices(probe.frameCount, strategy.count).slice(0, maxFrames);
      return { select: selectIndices(indices), planned: indices.length, indices };
    }
    case 'every': {
      const planned = Math.min(maxFrames, Math.ceil(probe.frameCount / strategy.k));
      return { select: `not(mod(n\\,${strategy.k}))`, planned };
    }
    case 'fps': {
      const r = strategy.fps;
      const t0 = probe.startTimeSec;
      const buckets = probe.durationSec > 0 ? Math.ceil(probe.durationSec * r - 1e-9) : probe.frameCount;
      const planned = Math.min(maxFrames, Math.min(probe.frameCount, Math.max(1, buckets)));
      // First frame of each 1/r-second bucket since the stream start (t is the file's own
      // timestamp: ffmpeg runs with -copyts).
      return {
        // (+1 ns: a frame exactly on a bucket boundary stays there despite rounding in t - t0.)
        select: `isnan(prev_selected_t)+gt(floor((t-(${t0})+1e-9)*${r})\\,floor((prev_selected_t-(${t0})+1e-9)*${r}))`,
        planned,
      };
    }
  }
}

const fpsModeArgs = new Map<string, Promise<string[]>>();

/** `-fps_mode passthrough` on ffmpeg >= 5.1, `-vsync passthrough` before (needed with `select`: no duplicated frames). */
function passthroughArgs(cmd: string): Promise<string[]> {
  let p = fpsModeArgs.get(cmd);
  if (!p) {
    p = runTool(cmd, ['-hide_banner', '-version'], 'DFDET_FFMPEG', 10_000, undefined, 'ffmpeg -version').then((r) => {
      const m = /ffmpeg version n?(\d+)\.(\d+)/.exec(r.stdout.toString('utf8'));
      const modern = !m || Number(m[1]) > 5 || (Number(m[1]) === 5 && Number(m[2]) >= 1);
      return modern ? ['-fps_mode', 'passthrough'] : ['-vsync', 'passthrough'];
    });
    p.catch(() => fpsModeArgs.delete(cmd));
    fpsModeArgs.set(cmd, p);
  }
  return p;
}

/** Temp file for Buffer inputs: ffmpeg needs to seek in MP4/MOV (index at the end), so no stdin. */
async function withInputFile<T>(input: string | Uint8Array, fn: (file: string) => Promise<T>): Promise<T> {
  if (typeof input === 'string') return fn(input);
  if (!(input instanceof Uint8Array)) invalidParameter('input', 'a file path or a Buffer', input);
  if (input.length === 0) throw new DfdetError('DECODE_FAILED', 'Video data is empty (0 bytes)');
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'dfdet-video-'));
  try {
    const file = path.join(dir, 'input');
    await fs.promises.writeFile(file, input);
    return await fn(file);
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}

/**
 * Decode the frames a strategy picks, one by one, as they come out of ffmpeg.
 *
 * ffmpeg is killed (and reaped) when the loop ends early (`break`), on error, on timeout and on
 * abort. The generator's return value (`done: true`) is a {@link SampleSummary}.
 *
 * Buffer inputs are written to a temporary file first (removed afterwards).
 *
 * @param input - Path of the video, or its bytes.
 * @param opts - See {@link SampleFramesOptions}.
 * @throws DfdetError `NOT_FOUND`, `DECODE_FAILED` (unreadable, no video stream, no frame decodable,
 *   frame over `maxPixels`), `UNSUPPORTED` (ffmpeg missing), `TIMEOUT`, `ABORTED`, `BAD_INPUT`.
 */
export function iterateFrames(input: string | Uint8Array, opts: SampleFramesOptions = {}): AsyncGenerator<VideoFrame, SampleSummary, undefined> {
  return frameGenerator(input, opts, Infinity);
}

/** Frame-count and size limits of one decode. */
interface Limits {
  maxFrames: number;
  maxPixels: number;
  maxFrameSide: number;
  /** Most bytes of pixels delivered in total (Infinity: no limit). */
  maxTotalBytes: number;
}

/** {@link iterateFrames} with a total-bytes budget (used by {@link sampleFrames}). */
async function* frameGenerator(
  input: string | Uint8Array,
  opts: SampleFramesOptions,
  maxTotalBytes: number,
): AsyncGenerator<VideoFrame, SampleSummary, undefined> {
  if (!opts || typeof opts !== 'object') invalidParameter('opts', 'an options object', opts);
  const strategy = checkStrategy(opts.strategy ?? { kind: 'uniform', count: 32 });
  const maxFrames = opts.maxFrames ?? DEFAULT_MAX_FRAMES;
  if (!Number.isInteger(maxFrames) || maxFrames < 1) invalidParameter('maxFrames', 'a positive integer', maxFrames);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  checkTimeout('timeoutMs', timeoutMs);
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!Number.isInteger(maxPixels) || maxPixels < 1) invalidParameter('maxPixels', 'a positive integer', maxPixels);
  const maxFrameSide = opts.maxFrameSide ?? DEFAULT_MAX_FRAME_SIDE;
  if (maxFrameSide !== Infinity && (!Number.isInteger(maxFrameSide) || maxFrameSide < 1)) {
    invalidParameter('maxFrameSide', 'a positive integer or Infinity', maxFrameSide);
  }
  const signal = opts.signal;
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) invalidParameter('input', 'a file path or a Buffer', input);

  // A Buffer becomes a temp file that must outlive the whole iteration, so manage it here.
  let tmpDir: string | undefined;
  let file: string;
  if (typeof input === 'string') {
    file = input;
  } else {
    if (input.length === 0) throw new DfdetError('DECODE_FAILED', 'Video data is empty (0 bytes)');
    tmpDir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'dfdet-video-'));
    file = path.join(tmpDir, 'input');
    await fs.promises.writeFile(file, input);
  }
  try {
    const t0 = Date.now();
    const probe = opts.probe ?? (await probeVideo(file, { timeoutMs, signal }));
    const left = timeoutMs - (Date.now() - t0);
    if (left <= 0) throw new DfdetError('TIMEOUT', `Decoding ${file} timed out after ${timeoutMs} ms`);
    return yield* decodeFrames(file, probe, strategy, { maxFrames, maxPixels, maxFrameSide, maxTotalBytes }, left, timeoutMs, signal);
  } finally {
    if (tmpDir) await fs.promises.rm(tmpDir, { recursive: true, force: true });
  }
}

/**
 * Size of the delivered frames: the video's own, or scaled down so that the longer side is
 * `maxSide` (aspect kept, each side at least 1). `flags` is the scale filter's option suffix.
 */
function outputSize(w: number, h: number, maxSide: number): { width: number; height: number; flags: string } {
  const long = Math.max(w, h);
  if (long <= maxSide) return { width: w, height: h, flags: '' };
  const f = maxSide / long;
  // Area averaging: no aliasing when shrinking by large factors.
  return { width: Math.max(1, Math.round(w * f)), height: Math.max(1, Math.round(h * f)), flags: ':flags=area' };
}

const SHOWINFO_RE = /\bn:\s*(\d+)\s+pts:\s*(-?\d+|NOPTS)\s+pts_time:(\S+)/;
/** showinfo's input time base, printed once before the frames. */
const SHOWINFO_TB_RE = /config in time_base:\s*(\d+)\/(\d+)/;

async function* decodeFrames(
  file: string,
  probe: VideoProbe,
  strategy: SamplingStrategy,
  limits: Limits,
  budgetMs: number,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): AsyncGenerator<VideoFrame, SampleSummary, undefined> {
  const { maxPixels, maxFrameSide, maxTotalBytes } = limits;
  if (probe.width * probe.height > maxPixels) {
    throw new DfdetError(
      'DECODE_FAILED',
      `Video ${file} is ${probe.width}x${probe.height} = ${probe.width * probe.height} pixels per frame, over the limit of ${maxPixels} (option maxPixels)`,
    );
  }
  const { width, height, flags } = outputSize(probe.width, probe.height, maxFrameSide);
  const frameBytes = width * height * 3;
  const plan = makePlan(strategy, probe, limits.maxFrames);
  if (plan.planned === 0) return { planned: 0, decoded: 0, partial: false, errors: [], probe };
  // The most frames that fit the byte budget; ffmpeg is told to stop there.
  const fit = Math.floor(maxTotalBytes / frameBytes);
  if (fit < 1) {
    throw new DfdetError(
      'DECODE_FAILED',
      `One ${width}x${height} RGB frame of ${file} is ${frameBytes} bytes, over the limit of ${maxTotalBytes} (option maxTotalBytes)`,
    );
  }
  const toDecode = Math.min(plan.planned, fit);
  if (signal?.aborted) throw new DfdetError('ABORTED', `Decoding ${file} aborted`, { cause: signal.reason });
  const cmd = ffmpegPath();
  const vf = `select='${plan.select}',showinfo,scale=${width}:${height}${flags},format=rgb24`;
  const args = [
    '-hide_banner', '-nostdin', '-nostats', '-loglevel', '+level+info',
    // -copyts: timestamps as stored in the file (ffmpeg would otherwise shift them by the
    // container's start time); they are made relative to the video stream's start below.
    ...LOCAL_ONLY, '-copyts',
    '-i', ffInput(file),
    '-map', '0:v:0', '-an', '-sn', '-dn',
    '-vf', vf,
    ...(await passthroughArgs(cmd)),
    '-frames:v', String(toDecode),
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1',
  ];
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });

  // State shared with the event handlers; `wake` resumes the generator when something changed.
  const ready: Buffer[] = [];
  const times: number[] = [];
  const errors: string[] = [];
  let cur: Buffer | undefined;
  let filled = 0;
  let exited = false;
  let exitCode: number | null = null;
  let failure: DfdetError | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const fail = (e: DfdetError) => {
    failure ??= e;
    child.kill('SIGKILL');
    notify();
  };

  const stdout = child.stdout!;
  stdout.on('data', (chunk: Buffer) => {
    let off = 0;
    while (off < chunk.length) {
      cur ??= Buffer.allocUnsafe(frameBytes);
      const n = Math.min(frameBytes - filled, chunk.length - off);
      chunk.copy(cur, filled, off, off + n);
      filled += n;
      off += n;
      if (filled === frameBytes) {
        ready.push(cur);
        cur = undefined;
        filled = 0;
      }
    }
    // Backpressure: a slow consumer holds at most a few frames in memory.
    if (ready.length >= 4) stdout.pause();
    notify();
  });
  let errTail = '';
  let showinfoTb = 0;
  child.stderr!.on('data', (d: Buffer) => {
    const text = errTail + d.toString('utf8');
    const lines = text.split('\n');
    errTail = lines.pop() ?? '';
    for (const line of lines) {
      if (line.includes('Parsed_showinfo')) {
        const m = SHOWINFO_RE.exec(line);
        // pts x time base: pts_time has only 6 significant digits (10 ms steps past 1000 s).
        if (m) times.push(m[2] === 'NOPTS' ? NaN : showinfoTb > 0 ? Number(m[2]) * showinfoTb : Number(m[3]));
        const tbm = m ? null : SHOWINFO_TB_RE.exec(line);
        if (tbm) showinfoTb = rate(`${tbm[1]}/${tbm[2]}`);
      } else if (/\[(error|fatal|panic)\]/.test(line) && errors.length < 20) {
        errors.push(line.replace(/^.*\[(error|fatal|panic)\]\s*/, '').trim());
      }
    }
    notify();
  });
  child.once('error', (e: NodeJS.ErrnoException) => {
    fail(e.code === 'ENOENT' ? missingTool('ffmpeg', 'DFDET_FFMPEG', e) : new DfdetError('DECODE_FAILED', `ffmpeg failed: ${e.message}`, { cause: e }));
  });
  child.once('close', (code) => {
    exited = true;
    exitCode = code;
    notify();
  });
  const timer = setTimeout(() => fail(new DfdetError('TIMEOUT', `Decoding ${file} timed out after ${timeoutMs} ms`)), budgetMs);
  const onAbort = () => fail(new DfdetError('ABORTED', `Decoding ${file} aborted`, { cause: signal?.reason }));
  signal?.addEventListener('abort', onAbort, { once: true });

  let decoded = 0;
  try {
    for (;;) {
      if (failure) throw failure;
      // A frame is handed out once its showinfo line (timestamp) arrived, or ffmpeg has exited.
      if (ready.length > 0 && (times.length > decoded || exited)) {
        const data = ready.shift()!;
        if (ready.length < 4 && stdout.isPaused()) stdout.resume();
        const pts = times[decoded];
        const tsKnown = pts !== undefined && Number.isFinite(pts);
        const timestampSec = tsKnown ? pts - probe.startTimeSec : NaN;
        let index: number;
        if (plan.indices) index = plan.indices[decoded];
        else if (strategy.kind === 'every') index = decoded * strategy.k;
        else index = tsKnown && probe.fps > 0 ? Math.max(0, Math.round(timestampSec * probe.fps)) : decoded;
        const image: RgbImage = { data: new Uint8Array(data.buffer, data.byteOffset, frameBytes), width, height };
        decoded++;
        yield { index, timestampSec: tsKnown ? Math.max(0, timestampSec) : NaN, image };
        continue;
      }
      if (exited && ready.length === 0) break;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
    if (failure) throw failure;
    const exitedBadly = exitCode !== 0;
    // Stopped by the byte budget (not by the end of the video) before the plan was done.
    const overBudget = toDecode < plan.planned && decoded === toDecode;
    if (overBudget) {
      errors.push(`stopped after ${decoded} frames: ${width}x${height} RGB frames take ${frameBytes} bytes each and the limit is ${maxTotalBytes} (option maxTotalBytes)`);
    }
    if (decoded === 0) {
      const why = errors.length ? errors[errors.length - 1] : exitedBadly ? `ffmpeg exited with code ${exitCode}` : 'no frame could be decoded';
      throw new DfdetError('DECODE_FAILED', `Could not decode video ${file}: ${why}`, { details: { path: file, errors } });
    }
    // Fewer frames than planned means a short read, unless the plan itself was an estimate.
    const planExact = plan.indices !== undefined || (strategy.kind === 'every' && probe.frameCountExact);
    const partial = exitedBadly || errors.length > 0 || filled > 0 || overBudget || (decoded < plan.planned && planExact);
    return { planned: plan.planned, decoded, partial, errors, probe };
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    if (!exited) {
      child.kill('SIGKILL');
      await closed(child);
    }
  }
}

/**
 * Decode the frames a strategy picks and collect them.
 *
 * @param input - Path of the video, or its bytes (written to a temporary file).
 * @param opts - See {@link SampleFramesOptions}.
 * @returns Frames in presentation order plus the {@link SampleSummary} (`partial` for truncated or
 *   corrupt videos that still gave some frames).
 * @throws DfdetError as {@link iterateFrames}; also `DECODE_FAILED` when one frame is over
 *   `maxTotalBytes`, `BAD_INPUT` for a bad `maxTotalBytes`.
 */
export async function sampleFrames(input: string | Uint8Array, opts: SampleFramesOptions = {}): Promise<SampleResult> {
  const maxTotalBytes = (opts && typeof opts === 'object' ? opts.maxTotalBytes : undefined) ?? DEFAULT_MAX_TOTAL_BYTES;
  if (maxTotalBytes !== Infinity && (!Number.isInteger(maxTotalBytes) || maxTotalBytes < 1)) {
    invalidParameter('maxTotalBytes', 'a positive integer or Infinity', maxTotalBytes);
  }
  const frames: VideoFrame[] = [];
  const it = frameGenerator(input, opts, maxTotalBytes);
  for (;;) {
    const r = await it.next();
    if (r.done === true) return { frames, ...r.value };
    frames.push(r.value);
  }
}

/** Probe a video given as bytes (written to a temporary file). */
export async function probeVideoBuffer(input: Uint8Array, opts: ProbeOptions = {}): Promise<VideoProbe> {
  return withInputFile(input, (f) => probeVideo(f, opts));
}
