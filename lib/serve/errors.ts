/**
 * HTTP errors of the service: every error answer is JSON `{ error: { code, message }, requestId }`
 * with a dfdet error code (lib/errors.ts) or one of the few codes that exist only over HTTP.
 */
import { type ErrorCode, isDfdetError } from '../errors';

/** Codes that exist only over HTTP: no key, too busy, not ready or draining. */
export type HttpOnlyCode = 'UNAUTHORIZED' | 'OVERLOADED' | 'UNAVAILABLE';

/** The `error.code` of an HTTP error answer. */
export type ServeErrorCode = ErrorCode | HttpOnlyCode;

/** An error that becomes one HTTP answer. */
export class HttpError extends Error {
  readonly statusCode: number;
  readonly code: ServeErrorCode;
  /** Seconds for the Retry-After header (429, 503). */
  readonly retryAfter?: number;

  constructor(statusCode: number, code: ServeErrorCode, message: string, retryAfter?: number) {
    super(message);
    this.name = 'HttpError';
    this.statusCode = statusCode;
    this.code = code;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
  }
}

/** The JSON body of an error answer. */
export interface ErrorBody {
  error: { code: ServeErrorCode; message: string };
  requestId: string;
}

/** HTTP status for a detect result's error: the input's fault is 422, the server's 5xx. */
export function statusOfResultError(code: ErrorCode): number {
  switch (code) {
    case 'DECODE_FAILED':
    case 'BAD_INPUT':
    case 'UNSUPPORTED':
    case 'NOT_FOUND':
    case 'BAD_FORMAT':
      return 422;
    case 'ABORTED':
    case 'TIMEOUT':
      return 504;
    case 'DISPOSED':
    case 'OUT_OF_MEMORY':
      return 503;
    default:
      return 500;
  }
}

/** fastify's own errors (FST_*) by status: the input's fault, answered with a dfdet code. */
const FASTIFY_CODES: Record<number, ServeErrorCode> = { 400: 'BAD_INPUT', 404: 'NOT_FOUND', 406: 'BAD_INPUT', 413: 'BAD_INPUT', 415: 'UNSUPPORTED' };

/**
 * Any error thrown while answering → status and body. Errors fastify or its plugins raise for a
 * bad request keep their 4xx status (413 body too large, 415 content type, 400 malformed body or
 * query); a multipart parser error without a status is a malformed body (400). Anything else is
 * the server's fault (500), its message kept out of the answer.
 */
export function toHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (isDfdetError(e)) return new HttpError(statusOfResultError(e.code), e.code, scrubPaths(e.message));
  const err = e as { statusCode?: unknown; code?: unknown; message?: unknown; validation?: unknown };
  const message = typeof err?.message === 'string' ? scrubPaths(err.message) : 'error';
  const status = typeof err?.statusCode === 'number' ? err.statusCode : undefined;
  if (status === 406) return new HttpError(400, 'BAD_INPUT', `Expected a multipart/form-data body with a boundary but received another: ${message}`);
  if (status !== undefined && status >= 400 && status < 500) return new HttpError(status, FASTIFY_CODES[status] ?? 'BAD_INPUT', message);
  // busboy (multipart) reports a malformed body as a plain Error.
  if (status === undefined && /multipart|boundary|form|part|unexpected end/i.test(message)) return new HttpError(400, 'BAD_INPUT', `malformed multipart body: ${message}`);
  return new HttpError(500, 'RUNTIME_ERROR', 'internal error (see the server log)');
}

/**
 * Removes absolute paths (temporary files, model locations) from a message sent to clients: a
 * server path is none of their business. `a/b` words without a leading slash (image/png) stay.
 */
export function scrubPaths(message: string): string {
  return message.replace(/(?<![\w.])\/(?:[^\s/:'"]+\/)+[^\s/:'"]*/g, '<path>');
}
