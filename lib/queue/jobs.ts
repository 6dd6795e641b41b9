/**
 * What travels through the queue: the job payload (a path on shared storage or small inline
 * bytes), deterministic job ids, and which errors are worth a retry. Pure, apart from the `stat`
 * that makes a file's id.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { DetectResult } from '../detector';
import { DfdetError, invalidParameter, type ErrorCode } from '../errors';

/** BullMQ job name of every dfdet job. */
export const JOB_NAME = 'detect';

/** Default largest inline input, bytes (4 MiB; base64 makes it ~5.3 MiB of job data in Redis). */
export const DEFAULT_MAX_INLINE_BYTES = 4 * 1024 * 1024;

/** Hard ceiling of inline inputs, bytes: larger media belong on shared storage. */
export const MAX_INLINE_BYTES_LIMIT = 64 * 1024 * 1024;

/** The job data, version 1. Exactly one of `path` and `bytes`. */
export interface QueueJobData {
  v: 1;
  /** Name reported as the result's `source`. */
  name: string;
  /** Absolute path of the input on storage that every worker sees at the same path. */
  path?: string;
  /** The input's bytes, base64. */
  bytes?: string;
  /** Skips detecting the kind from extension or bytes. */
  kind?: 'image' | 'video';
}

/** One input of {@link Producer.enqueue}: a path on shared storage, or small inline bytes. */
export type QueueInput = string | { path: string; name?: string; kind?: 'image' | 'video' } | { data: Uint8Array; name?: string; kind?: 'image' | 'video' };

/** A job ready to add: its deterministic id and its data. */
export interface PreparedJob {
  jobId: string;
  data: QueueJobData;
}

function sha256(...parts: (string | Uint8Array)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex');
}

/**
 * The job id of a file: sha256 of its absolute path, size and mtime. The same unchanged file gets
 * the same id, so submitting it again adds no work; an edited (or replaced) file gets a new one.
 * A missing file gets an id of its path alone (its job reports NOT_FOUND).
 */
export function fileJobId(absPath: string, st: Pick<fs.Stats, 'size' | 'mtimeMs'> | null): string {
  return st ? `file-${sha256('file', absPath, String(st.size), String(st.mtimeMs))}` : `missing-${sha256('missing', absPath)}`;
}

/** The job id of inline bytes: sha256 of the bytes (the name does not count). */
export function bytesJobId(bytes: Uint8Array): string {
  return `bytes-${sha256('bytes', bytes)}`;
}

/**
 * Turns an input into a job. Paths become absolute (workers resolve them on shared storage).
 * @throws DfdetError BAD_INPUT (a folder, bytes over `maxInlineBytes`, a value of another type).
 */
export async function prepareJob(input: QueueInput, maxInlineBytes = DEFAULT_MAX_INLINE_BYTES): Promise<PreparedJob> {
  const described = typeof input === 'string' ? { path: input } : input;
  if (typeof described !== 'object' || described === null) return invalidParameter('input', 'a path or {path|data, name?, kind?}', input);
  const kind = described.kind;
  if (kind !== undefined && kind !== 'image' && kind !== 'video') invalidParameter('kind', "'image' or 'video'", kind);
  if ('path' in described && typeof described.path === 'string') {
    const abs = path.resolve(described.path);
    const st = await fs.promises.stat(abs).catch(() => null);
    if (st?.isDirectory()) throw new DfdetError('BAD_INPUT', `${described.path} is a folder: enqueue its files (listMediaFiles, or dfdet submit expands folders)`);
    const data: QueueJobData = { v: 1, name: described.name ?? described.path, path: abs };
    if (kind) data.kind = kind;
    return { jobId: fileJobId(abs, st), data };
  }
  if ('data' in described && described.data instanceof Uint8Array) {
    const bytes = described.data;
    if (bytes.length > maxInlineBytes)
      throw new DfdetError('BAD_INPUT', `Expected at most ${maxInlineBytes} bytes for an inline input but received ${bytes.length} bytes: put larger media on shared storage and enqueue its path`);
    const data: QueueJobData = { v: 1, name: described.name ?? '<buffer>', bytes: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('base64') };
    if (kind) data.kind = kind;
    return { jobId: bytesJobId(bytes), data };
  }
  return invalidParameter('input', 'a path or {path|data, name?, kind?}', input);
}

/**
 * Checks job data read from Redis (any producer may have written it) and gives the Detector input.
 * @throws DfdetError BAD_INPUT when the data is not a version-1 dfdet job.
 */
export function jobInput(data: unknown): { path: string; name: string; kind?: 'image' | 'video' } | { data: Uint8Array; name: string; kind?: 'image' | 'video' } {
  const d = data as Partial<QueueJobData> | null;
  if (typeof d !== 'object' || d === null || d.v !== 1 || typeof d.name !== 'string')
    return invalidParameter('job data', 'a dfdet job {v: 1, name, path | bytes}', safeJson(data));
  const kind = d.kind === 'image' || d.kind === 'video' ? d.kind : undefined;
  if (typeof d.path === 'string' && d.bytes === undefined) {
    if (!path.isAbsolute(d.path)) invalidParameter('job path', 'an absolute path', d.path);
    return { path: d.path, name: d.name, kind };
  }
  if (typeof d.bytes === 'string' && d.path === undefined) return { data: Buffer.from(d.bytes, 'base64'), name: d.name, kind };
  return invalidParameter('job data', 'exactly one of path and bytes', safeJson(data));
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/**
 * Errors that say nothing about the input, so another attempt (maybe on another worker) may
 * succeed: memory, libtorch/device errors, time-outs, and a worker shutting down. Every other
 * code (DECODE_FAILED, NOT_FOUND, BAD_INPUT, ...) is a property of the input: it is final.
 */
export const TRANSIENT_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['OUT_OF_MEMORY', 'RUNTIME_ERROR', 'TIMEOUT', 'DISPOSED', 'ABORTED']);

/** True when a result's error is worth a retry. */
export function isTransient(code: ErrorCode): boolean {
  return TRANSIENT_CODES.has(code);
}

/** The `failedReason` a worker stores for a transient error: `CODE: message`. */
export function failedReasonOf(error: { code: ErrorCode; message: string }): string {
  return `${error.code}: ${error.message}`;
}

const CODE_PREFIX = /^([A-Z][A-Z_]+): ([\s\S]*)$/;

/**
 * The result of a job that failed for good (transient errors past the attempt limit, a worker lost
 * too often, malformed job data). The worker's model is unknown here: `model` fields are empty and
 * `threshold` is NaN (null in JSON).
 */
export function failedResult(index: number, source: string, failedReason: string): DetectResult {
  const m = CODE_PREFIX.exec(failedReason);
  const error = m ? { code: m[1] as ErrorCode, message: m[2]! } : { code: 'RUNTIME_ERROR' as ErrorCode, message: failedReason || 'the job failed' };
  return {
    index,
    source,
    kind: 'unknown',
    pFake: null,
    label: null,
    threshold: Number.NaN,
    noFace: false,
    faces: [],
    aggregate: 'none',
    model: { name: '', arch: '', sourceKind: 'unknown', sourceSha256: '', dtype: '' },
    timings: { decodeMs: 0, facesMs: 0, scoreMs: 0, totalMs: 0 },
    error,
  };
}
