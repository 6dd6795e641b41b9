/**
 * Video probing and frame sampling with the ffmpeg / ffprobe executables: the public surface of
 * lib/media/video. See ffmpeg.ts (process runner, pool, input hardening), probe.ts, plan.ts
 * (the pure sampling plan) and decode.ts.
 */
export { probeVideo, type ProbeOptions, type VideoProbe } from './probe';
export { frameCountRule, samplingRule, type SamplingStrategy } from './plan';
export { iterateFrames, sampleFrames, type SampleFramesOptions, type SampleResult, type SampleSummary, type VideoFrame } from './decode';
export { ALLOWED_DEMUXERS, ffmpegPool } from './ffmpeg';
