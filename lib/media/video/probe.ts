/**
 * What a video file holds, from ffprobe: the first video stream's size, rate, frame count,
 * rotation and start time, and the container format (checked against the demuxer allowlist).
 */
import { DfdetError, invalidParameter } from '../../errors';
import { defaultName, type MediaData } from '../file';
import { ALLOWED_DEMUXERS, inputArgs, localInput, runTool } from './ffmpeg';
import { explainFfmpeg } from './messages';

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
  /** The container's demuxer (`mov`, `matroska`, ...), one of the allowed ones; decoding uses the same. */
  format: string;
}

/** Options of {@link probeVideo}. */
export interface ProbeOptions {
  /** Kill ffprobe and reject with `TIMEOUT` after this many milliseconds (default 30000). */
  timeoutMs?: number;
  /** Abort: kills ffprobe (or cancels it while queued) and rejects with `ABORTED`. */
  signal?: AbortSignal;
  /** The input's name in messages (default: the path, or a description of the bytes). */
  name?: string;
}

const DEFAULT_PROBE_TIMEOUT_MS = 30_000;

/** Throws BAD_INPUT unless `v` is a positive finite number of milliseconds. */
export function checkTimeout(name: string, v: unknown): void {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) invalidParameter(name, 'a positive finite number of milliseconds', v);
}

/** `"30000/1001"` or `"25"` as a positive number, else 0. */
export function rate(s: unknown): number {
  if (typeof s !== 'string') return 0;
  const [n, d] = s.split('/').map(Number);
  const v = d === undefined ? n! : n! / d;
  return Number.isFinite(v) && v > 0 ? v : 0;
}

function finite(s: unknown): number {
  const v = typeof s === 'number' ? s : typeof s === 'string' ? Number(s) : NaN;
  return Number.isFinite(v) ? v : NaN;
}

/**
 * Probe the first video stream of a video with ffprobe. Cover art in audio files (an
 * `attached_pic` stream) does not count as video. Bytes and streams are written to a temp file
 * first (removed afterwards).
 *
 * @param input - Path of the video, its bytes, or a readable stream of them.
 * @param opts - Timeout, abort signal and name.
 * @throws DfdetError `NOT_FOUND`, `DECODE_FAILED` (not a media file, a playlist, no video stream),
 *   `UNSUPPORTED` (ffprobe missing), `TIMEOUT`, `ABORTED`, `BAD_INPUT`.
 */
export async function probeVideo(input: MediaData, opts: ProbeOptions = {}): Promise<VideoProbe> {
  if (!opts || typeof opts !== 'object') invalidParameter('opts', 'an options object', opts);
  if (input === '') invalidParameter('input', 'a non-empty path, bytes or a stream', input);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  checkTimeout('timeoutMs', timeoutMs);
  const name = opts.name ?? defaultName(input);
  const local = await localInput(input, name, opts.signal);
  try {
    return await probeFile(local.file, name, timeoutMs, opts.signal);
  } finally {
    await local.release();
  }
}

/** {@link probeVideo} of a checked local file; messages say `name`, never `file`. */
export async function probeFile(file: string, name: string, timeoutMs: number, signal: AbortSignal | undefined, cancelQueued?: AbortSignal): Promise<VideoProbe> {
  const deadline = Date.now() + timeoutMs;
  const what = `ffprobe of ${name}`;
  const res = await runTool('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_streams', '-show_format', ...inputArgs(file)], { timeoutMs, signal, cancelQueued, what });
  const fail = (why: string): DfdetError => new DfdetError('DECODE_FAILED', `Could not read video ${name}: ${why}`, { details: { path: name } });
  if (res.code !== 0) throw fail(explainFfmpeg(res.stderr, file, name));
  let info: { streams?: Record<string, unknown>[]; format?: Record<string, unknown> };
  try {
    info = JSON.parse(res.stdout.toString('utf8'));
  } catch (e) {
    throw new DfdetError('DECODE_FAILED', `Could not read video ${name}: unparsable ffprobe output`, { cause: e });
  }
  // The format first: an index of other files is never an input (the allowlist already refuses them).
  const formats = String(info.format?.format_name ?? '').split(',');
  if (!formats.some((f) => ALLOWED_DEMUXERS.includes(f))) {
    throw fail(`its container format '${formats.join(',')}' is not a video file format dfdet reads (playlists and indexes are refused)`);
  }
  const streams = info.streams ?? [];
  const v = streams.find((s) => s.codec_type === 'video' && !((s.disposition as Record<string, number> | undefined)?.attached_pic === 1));
  if (!v) {
    const kinds = streams.map((s) => String(s.codec_type ?? 'unknown')).join(', ') || 'none';
    throw new DfdetError('DECODE_FAILED', `No video stream in ${name} (streams: ${kinds})`, { details: { path: name } });
  }
  let rotation = 0;
  for (const sd of (v.side_data_list as Record<string, unknown>[] | undefined) ?? []) {
    if (typeof sd.rotation === 'number') rotation = sd.rotation;
  }
  const tagRotate = finite((v.tags as Record<string, unknown> | undefined)?.rotate);
  if (rotation === 0 && Number.isFinite(tagRotate)) rotation = tagRotate;
  const codedW = finite(v.width);
  const codedH = finite(v.height);
  if (!(codedW > 0 && codedH > 0)) throw fail('its video stream has no frame size (corrupt header or unsupported codec)');
  const quarter = Math.abs(Math.round(rotation / 90)) % 2 === 1;
  const fps = rate(v.avg_frame_rate) || rate(v.r_frame_rate);
  const fmtDur = finite(info.format?.duration);
  const streamDur = finite(v.duration);
  const durationSec = Number.isFinite(fmtDur) && fmtDur > 0 ? fmtDur : Number.isFinite(streamDur) ? streamDur : 0;
  let frameCount = finite(v.nb_frames);
  let frameCountExact = frameCount > 0;
  if (!frameCountExact) {
    // Containers such as Matroska/WebM do not store a count: count packets (no decoding, fast).
    const left = deadline - Date.now();
    if (left <= 0) throw new DfdetError('TIMEOUT', `${what} timed out after ${timeoutMs} ms`);
    const c = await runTool(
      'ffprobe',
      ['-v', 'error', '-select_streams', String(v.index ?? 'v:0'), '-count_packets', '-show_entries', 'stream=nb_read_packets', '-of', 'csv=p=0', ...inputArgs(file)],
      { timeoutMs: left, limitMs: timeoutMs, signal, cancelQueued, what },
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
  const startPts = finite(v.start_pts);
  const tb = rate(v.time_base);
  const start = Number.isInteger(startPts) && tb > 0 ? startPts * tb : finite(v.start_time);
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
    format: formats.find((f) => ALLOWED_DEMUXERS.includes(f))!,
  };
}
