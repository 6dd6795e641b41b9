/**
 * Frame decoding: ffmpeg decodes the planned frames, and they come out as raw RGB
 * (`-f rawvideo -pix_fmt rgb24`) over a pipe, copied straight into one preallocated buffer per
 * frame. Frame selection happens inside ffmpeg's filter graph (`select`), so only the chosen frames
 * are converted and sent; every frame up to the last chosen one is still decoded (no seeking:
 * exact frame indices).
 */
import { DfdetError, invalidParameter } from '../../errors';
import { reserveDecodedBytes } from '../budget';
import { abortError, defaultName, type MediaData, waitInQueue } from '../file';
import { DEFAULT_MAX_PIXELS } from '../image';
import type { RgbImage } from '../rgb';
import { inputArgs, localInput, runTool, startTool } from './ffmpeg';
import { cleanLine, explainFfmpeg } from './messages';
import { makePlan, outputSize, samplingRule, type SamplingStrategy } from './plan';
import { checkTimeout, probeFile, rate, type VideoProbe } from './probe';

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
  /**
   * Source (probe) pixels per frame pixel: 1 at the video's own size, `probe.width / image.width`
   * when scaled down by `maxFrameSide`. Multiply frame coordinates by it to get source coordinates.
   */
  scale: number;
}

/** Options of {@link sampleFrames} / {@link iterateFrames}. */
export interface SampleFramesOptions {
  /** Which frames (default `{ kind: 'uniform', count: 32 }`). */
  strategy?: SamplingStrategy;
  /** Most frames returned (default 1000); sampling stops there. */
  maxFrames?: number;
  /** Kill ffmpeg and fail with `TIMEOUT` after this many milliseconds, probing and queueing included (default 300000). */
  timeoutMs?: number;
  /** Abort: kills ffmpeg (or cancels it while queued for the process pool) and fails with `ABORTED`. */
  signal?: AbortSignal;
  /**
   * Cancels the call only while it waits to start its first process (rejecting with this signal's
   * reason when a DfdetError, else ABORTED); once a process ran, the call goes on to its end. The
   * Detector passes its dispose signal: dispose() cancels queued videos instead of running them.
   */
  cancelQueued?: AbortSignal;
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
  /** Most bytes read from a stream input (default 2 GiB). */
  maxInputBytes?: number;
  /** A probe already made for this input (skips running ffprobe again). */
  probe?: VideoProbe;
  /** The input's name in messages (default: the path, or a description of the bytes). */
  name?: string;
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
const DEFAULT_MAX_FRAMES = 1000;
const DEFAULT_MAX_FRAME_SIDE = 1920;
const DEFAULT_MAX_TOTAL_BYTES = 2 ** 30;
const DEFAULT_MAX_INPUT_BYTES = 2 ** 31;

/**
 * Decode the frames a strategy picks, one by one, as they come out of ffmpeg.
 *
 * ffmpeg is killed (and reaped) when the loop ends early (`break`), on error, on timeout and on
 * abort. The generator's return value (`done: true`) is a {@link SampleSummary}. Bytes and streams
 * are written once to a temporary file (removed afterwards).
 *
 * @param input - Path of the video, its bytes, or a readable stream of them.
 * @param opts - See {@link SampleFramesOptions}.
 * @throws DfdetError `NOT_FOUND`, `DECODE_FAILED` (unreadable, a playlist, no video stream, no frame
 *   decodable, frame over `maxPixels`), `UNSUPPORTED` (ffmpeg missing), `TIMEOUT`, `ABORTED`, `BAD_INPUT`.
 */
export function iterateFrames(input: MediaData, opts: SampleFramesOptions = {}): AsyncGenerator<VideoFrame, SampleSummary, undefined> {
  return frameGenerator(input, opts, Infinity);
}

/**
 * Decode the frames a strategy picks and collect them.
 *
 * @param input - Path of the video, its bytes, or a readable stream of them.
 * @param opts - See {@link SampleFramesOptions}.
 * @returns Frames in presentation order plus the {@link SampleSummary} (`partial` for truncated or
 *   corrupt videos that still gave some frames).
 * @throws DfdetError as {@link iterateFrames}; also `DECODE_FAILED` when one frame is over
 *   `maxTotalBytes`, `BAD_INPUT` for a bad `maxTotalBytes`.
 */
export async function sampleFrames(input: MediaData, opts: SampleFramesOptions = {}): Promise<SampleResult> {
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

/** Frame-count and size limits of one decode. */
interface Limits {
  maxFrames: number;
  maxPixels: number;
  maxFrameSide: number;
  /** Most bytes of pixels delivered in total (Infinity: no limit). */
  maxTotalBytes: number;
}

function positiveInt(name: string, v: number, orInfinity = false): number {
  if (!(orInfinity && v === Infinity) && (!Number.isInteger(v) || v < 1)) invalidParameter(name, `a positive integer${orInfinity ? ' or Infinity' : ''}`, v);
  return v;
}

/** {@link iterateFrames} with a total-bytes budget (used by {@link sampleFrames}). */
async function* frameGenerator(input: MediaData, opts: SampleFramesOptions, maxTotalBytes: number): AsyncGenerator<VideoFrame, SampleSummary, undefined> {
  if (!opts || typeof opts !== 'object') invalidParameter('opts', 'an options object', opts);
  const strategy = samplingRule.check(opts.strategy ?? { kind: 'uniform', count: 32 }, 'strategy');
  const limits: Limits = {
    maxFrames: positiveInt('maxFrames', opts.maxFrames ?? DEFAULT_MAX_FRAMES),
    maxPixels: positiveInt('maxPixels', opts.maxPixels ?? DEFAULT_MAX_PIXELS),
    maxFrameSide: positiveInt('maxFrameSide', opts.maxFrameSide ?? DEFAULT_MAX_FRAME_SIDE, true),
    maxTotalBytes,
  };
  const maxInputBytes = positiveInt('maxInputBytes', opts.maxInputBytes ?? DEFAULT_MAX_INPUT_BYTES, true);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  checkTimeout('timeoutMs', timeoutMs);
  if (input === '') invalidParameter('input', 'a non-empty path, bytes or a stream', input);
  const name = opts.name ?? defaultName(input);
  const signal = opts.signal;
  const t0 = Date.now();
  // Bytes and streams become a temp file that must outlive the whole iteration.
  const local = await localInput(input, name, signal, maxInputBytes);
  try {
    const probe = opts.probe ?? (await probeFile(local.file, name, timeoutMs, signal, opts.cancelQueued));
    const left = timeoutMs - (Date.now() - t0);
    if (left <= 0) throw new DfdetError('TIMEOUT', `Decoding ${name} timed out after ${timeoutMs} ms`);
    // Once the probe ran, the call is under way: only the wait for its first process is cancelled.
    const cancelQueued = opts.probe ? opts.cancelQueued : undefined;
    return yield* decodeFrames(local.file, name, probe, strategy, limits, left, timeoutMs, { signal, cancelQueued });
  } finally {
    await local.release();
  }
}

const fpsModeArgs = new Map<string, Promise<string[]>>();

/** `-fps_mode passthrough` on ffmpeg >= 5.1, `-vsync passthrough` before (needed with `select`: no duplicated frames). */
function passthroughArgs(): Promise<string[]> {
  const key = process.env.DFDET_FFMPEG || 'ffmpeg';
  let p = fpsModeArgs.get(key);
  if (!p) {
    p = runTool('ffmpeg', ['-hide_banner', '-version'], { timeoutMs: 10_000, what: 'ffmpeg -version' }).then((r) => {
      const m = /ffmpeg version n?(\d+)\.(\d+)/.exec(r.stdout.toString('utf8'));
      const modern = !m || Number(m[1]) > 5 || (Number(m[1]) === 5 && Number(m[2]) >= 1);
      return modern ? ['-fps_mode', 'passthrough'] : ['-vsync', 'passthrough'];
    });
    p.catch(() => fpsModeArgs.delete(key));
    fpsModeArgs.set(key, p);
  }
  return p;
}

const SHOWINFO_RE = /\bn:\s*(\d+)\s+pts:\s*(-?\d+|NOPTS)\s+pts_time:(\S+)/;
/** showinfo's input time base, printed once before the frames. */
const SHOWINFO_TB_RE = /config in time_base:\s*(\d+)\/(\d+)/;

async function* decodeFrames(
  file: string,
  name: string,
  probe: VideoProbe,
  strategy: SamplingStrategy,
  limits: Limits,
  budgetMs: number,
  timeoutMs: number,
  stops: { signal?: AbortSignal; cancelQueued?: AbortSignal },
): AsyncGenerator<VideoFrame, SampleSummary, undefined> {
  const { signal, cancelQueued } = stops;
  const { maxPixels, maxFrameSide, maxTotalBytes } = limits;
  const fail = (why: string): DfdetError => new DfdetError('DECODE_FAILED', `Could not decode video ${name}: ${why}`, { details: { path: name } });
  if (probe.width * probe.height > maxPixels) {
    throw fail(`it is ${probe.width}x${probe.height} = ${probe.width * probe.height} pixels per frame, over the limit of ${maxPixels} (option maxPixels)`);
  }
  const { width, height, flags } = outputSize(probe.width, probe.height, maxFrameSide);
  const frameBytes = width * height * 3;
  const scale = probe.width / width;
  const plan = makePlan(strategy, probe, limits.maxFrames);
  if (plan.planned === 0) return { planned: 0, decoded: 0, partial: false, errors: [], probe };
  // The most frames that fit the byte budget; ffmpeg is told to stop there.
  const fit = Math.floor(maxTotalBytes / frameBytes);
  if (fit < 1) throw fail(`one ${width}x${height} RGB frame is ${frameBytes} bytes, over the limit of ${maxTotalBytes} (option maxTotalBytes)`);
  const toDecode = Math.min(plan.planned, fit);
  // Frames stream out a few at a time through iterateFrames, all at once through sampleFrames.
  const bytes = frameBytes * (maxTotalBytes === Infinity ? Math.min(toDecode, 8) : toDecode);
  const reserved = await waitInQueue(`Decoding ${name}`, stops, (s) => reserveDecodedBytes(bytes, `video ${name}`, s));
  try {
    const vf = `select='${plan.select}',showinfo,scale=${width}:${height}${flags},format=rgb24`;
    const args = [
      '-hide_banner', '-nostdin', '-nostats', '-loglevel', '+level+info',
      // -copyts: timestamps as stored in the file (ffmpeg would otherwise shift them by the
      // container's start time); they are made relative to the video stream's start below.
      '-copyts',
      // The demuxer the probe found (and allowed): nothing else may read this file.
      ...(probe.format ? ['-f', probe.format] : []),
      ...inputArgs(file),
      '-map', '0:v:0', '-an', '-sn', '-dn',
      '-vf', vf,
      ...(await passthroughArgs()),
      '-frames:v', String(toDecode),
      '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1',
    ];
    return yield* readFrames(args, { file, name, probe, strategy, plan, toDecode, width, height, scale, budgetMs, timeoutMs, signal, cancelQueued, limits });
  } finally {
    reserved();
  }
}

interface ReadSpec {
  file: string;
  name: string;
  probe: VideoProbe;
  strategy: SamplingStrategy;
  plan: ReturnType<typeof makePlan>;
  toDecode: number;
  width: number;
  height: number;
  scale: number;
  budgetMs: number;
  timeoutMs: number;
  signal: AbortSignal | undefined;
  cancelQueued: AbortSignal | undefined;
  limits: Limits;
}

/** Runs ffmpeg and hands out its frames as they arrive, each with its timestamp from `showinfo`. */
async function* readFrames(args: string[], s: ReadSpec): AsyncGenerator<VideoFrame, SampleSummary, undefined> {
  const { width, height, probe, plan, strategy, name, file } = s;
  const frameBytes = width * height * 3;
  // State shared with the event handlers; `wake` resumes the generator when something changed.
  const ready: Buffer[] = [];
  const times: number[] = [];
  const errors: string[] = [];
  let cur: Buffer | undefined;
  let filled = 0;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const proc = await startTool('ffmpeg', args, { timeoutMs: s.budgetMs, limitMs: s.timeoutMs, signal: s.signal, cancelQueued: s.cancelQueued, what: `Decoding ${name}`, onChange: notify });
  let exit: { code: number | null } | undefined;
  void proc.exited.then((r) => {
    exit = r;
    notify();
  });
  const stdout = proc.child.stdout!;
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
  proc.child.stderr!.on('data', (d: Buffer) => {
    const lines = (errTail + d.toString('utf8')).split('\n');
    errTail = lines.pop() ?? '';
    for (const line of lines) {
      if (line.includes('Parsed_showinfo')) {
        const m = SHOWINFO_RE.exec(line);
        // pts x time base: pts_time has only 6 significant digits (10 ms steps past 1000 s).
        if (m) times.push(m[2] === 'NOPTS' ? NaN : showinfoTb > 0 ? Number(m[2]) * showinfoTb : Number(m[3]));
        const tbm = m ? null : SHOWINFO_TB_RE.exec(line);
        if (tbm) showinfoTb = rate(`${tbm[1]}/${tbm[2]}`);
      } else if (/\[(error|fatal|panic)\]/.test(line) && errors.length < 20) {
        errors.push(cleanLine(line.replace(/^.*\[(error|fatal|panic)\]\s*/, ''), file, name));
      }
    }
    notify();
  });

  let decoded = 0;
  try {
    for (;;) {
      if (proc.failure) throw proc.failure;
      // A frame is handed out once its showinfo line (timestamp) arrived, or ffmpeg has exited.
      if (ready.length > 0 && (times.length > decoded || exit)) {
        const data = ready.shift()!;
        if (ready.length < 4 && stdout.isPaused()) stdout.resume();
        const pts = times[decoded];
        const tsKnown = pts !== undefined && Number.isFinite(pts);
        const timestampSec = tsKnown ? pts - probe.startTimeSec : NaN;
        let index: number;
        if (plan.indices) index = plan.indices[decoded]!;
        else if (strategy.kind === 'every') index = decoded * strategy.k;
        else index = tsKnown && probe.fps > 0 ? Math.max(0, Math.round(timestampSec * probe.fps)) : decoded;
        const image: RgbImage = { data: new Uint8Array(data.buffer, data.byteOffset, frameBytes), width, height };
        decoded++;
        yield { index, timestampSec: tsKnown ? Math.max(0, timestampSec) : NaN, image, scale: s.scale };
        continue;
      }
      if (exit && ready.length === 0) break;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
    if (proc.failure) throw proc.failure;
    if (s.signal?.aborted) throw abortError(`Decoding ${name}`, s.signal);
    const exitedBadly = exit!.code !== 0;
    // Stopped by the byte budget (not by the end of the video) before the plan was done.
    const overBudget = s.toDecode < plan.planned && decoded === s.toDecode;
    if (overBudget) {
      errors.push(
        `stopped after ${decoded} frames: ${width}x${height} RGB frames take ${frameBytes} bytes each and the limit is ${s.limits.maxTotalBytes} (option maxTotalBytes)`,
      );
    }
    if (decoded === 0) {
      const why = errors.length ? explainFfmpeg(errors, file, name) : exitedBadly ? `ffmpeg exited with code ${exit!.code}` : 'no frame could be decoded';
      throw new DfdetError('DECODE_FAILED', `Could not decode video ${name}: ${why}`, { details: { path: name, errors } });
    }
    // Fewer frames than planned means a short read, unless the plan itself was an estimate.
    const planExact = plan.indices !== undefined || (strategy.kind === 'every' && probe.frameCountExact);
    const partial = exitedBadly || errors.length > 0 || filled > 0 || overBudget || (decoded < plan.planned && planExact);
    return { planned: plan.planned, decoded, partial, errors, probe };
  } finally {
    await proc.stop();
  }
}
