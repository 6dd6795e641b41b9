/**
 * POST /v1/detect: admission (before the body is read), body parsing (raw bytes or multipart
 * files), one Detector call under the request's AbortSignal, and the answer.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import type { DetectCallOptions, DetectResult } from '../detector';
import type { DescribedInput } from '../inputs';
import { HttpError, scrubPaths, statusOfResultError } from './errors';
import type { ServeController } from './controller';
import type { Ticket } from './admission';
import { routeSchemas } from './schemas';

/** Per-request options a client may set in the query string (validated by the route schema). */
const QUERY_OPTIONS = new Set(['threshold', 'frames', 'allFaces']);

interface RequestState {
  ticket: Ticket;
  controller: AbortController;
  /** The detector call, while it runs (the ticket is released only once it settled). */
  work?: Promise<unknown>;
}

/** Registers POST /v1/detect. */
export function registerDetectRoute(app: FastifyInstance, c: ServeController): void {
  const states = new WeakMap<FastifyRequest, RequestState>();
  const { maxBody, maxFiles, requestTimeoutMs } = c.options;

  const admit = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const unavailable = c.unavailable();
    if (unavailable) {
      c.metrics.refused(c.draining ? 'draining' : 'not_ready');
      throw unavailable;
    }
    const declared = Number(req.headers['content-length']);
    const known = req.headers['content-length'] !== undefined && Number.isSafeInteger(declared) && declared >= 0;
    if (known && declared > maxBody) throw tooLarge(maxBody, declared);
    // A body of unknown length (chunked) may bring up to maxBody bytes: reserve that much.
    const ticket = c.admission.enter(known ? declared : maxBody);
    const controller = new AbortController();
    const state: RequestState = { ticket, controller };
    states.set(req, state);
    const flight = { controller };
    c.inFlight.add(flight);
    const timer = setTimeout(
      () => controller.abort(new HttpError(504, 'TIMEOUT', `the request took longer than ${requestTimeoutMs} ms (--request-timeout); its work was cancelled`)),
      requestTimeoutMs,
    );
    // The answer is done or the client went away: cancel what still runs, give the reservation back.
    reply.raw.once('close', () => {
      clearTimeout(timer);
      c.inFlight.delete(flight);
      if (!controller.signal.aborted) controller.abort(new HttpError(499, 'ABORTED', 'the client closed the connection'));
      const release = (): void => ticket.release();
      if (state.work) void state.work.then(release, release);
      else release();
    });
  };

  app.post('/v1/detect', { schema: routeSchemas.detect, bodyLimit: maxBody, onRequest: admit }, async (req, reply) => {
    const state = states.get(req)!;
    const { signal } = state.controller;
    const unknown = Object.keys((req.query as object) ?? {}).filter((k) => !QUERY_OPTIONS.has(k));
    if (unknown.length) throw new HttpError(400, 'BAD_INPUT', `Expected only ${[...QUERY_OPTIONS].join(', ')} in the query but received ${unknown.join(', ')}`);
    const options: DetectCallOptions = { ...(req.query as object), signal };

    let inputs: DescribedInput[];
    const multipart = req.isMultipart();
    if (multipart) inputs = await abortable(readFiles(req, maxBody, maxFiles), signal);
    else {
      const body = req.body;
      if (!Buffer.isBuffer(body) || body.length === 0) throw new HttpError(400, 'BAD_INPUT', 'Expected the bytes of an image or video in the body but received an empty body');
      inputs = [{ data: body, name: req.id }];
    }
    state.ticket.shrink(inputs.reduce((n, i) => n + (i.data as Buffer).length, 0));

    const work = state.ticket.run(signal, () => (multipart ? c.detector.detect(inputs, options) : c.detector.detect(inputs[0]!, options).then((r) => [r])));
    state.work = work;
    // Outcomes count whether or not the client still waits (ABORTED after a timeout).
    work.then((r) => c.metrics.observeResults(r), () => undefined);
    // Answer at the deadline; the cancelled work ends on its own and then frees its slot.
    const results = await abortable(work, signal);
    if (signal.aborted) throw signal.reason;
    const shown = results.map((r, i) => publicResult(r, inputs[i]!.name!, c));
    if (!multipart) {
      const r = shown[0]!;
      if (r.error) throw new HttpError(statusOfResultError(r.error.code), r.error.code, r.error.message);
      return reply.send(r);
    }
    const failed = shown.filter((r) => r.error);
    // Every file failed: answer with the first error's status; otherwise each result says.
    if (failed.length === shown.length) {
      const e = failed[0]!.error!;
      throw new HttpError(statusOfResultError(e.code), e.code, shown.length === 1 ? e.message : `all ${shown.length} files failed; the first: ${e.message}`);
    }
    return reply.send({ requestId: req.id, results: shown });
  });
}

/** Reads every file of a multipart body into memory (bounded by maxBody in all and maxFiles). */
async function readFiles(req: FastifyRequest, maxBody: number, maxFiles: number): Promise<DescribedInput[]> {
  const files: DescribedInput[] = [];
  let total = 0;
  for await (const part of req.parts({ limits: { fileSize: maxBody, files: maxFiles, fields: 64, fieldSize: 4096 } })) {
    if (part.type !== 'file') continue;
    const data = await part.toBuffer();
    total += data.length;
    if (total > maxBody) throw tooLarge(maxBody, total);
    files.push({ data, name: uploadName(part.filename, `${req.id}#${files.length}`) });
  }
  if (files.length === 0) throw new HttpError(400, 'BAD_INPUT', 'Expected at least one file in the multipart body but received none');
  return files;
}

function tooLarge(maxBody: number, bytes: number): HttpError {
  return new HttpError(413, 'BAD_INPUT', `Expected a body of at most ${maxBody} bytes (--max-body) but received ${bytes} or more`);
}

/** The client's file name without folders or control characters; `fallback` when empty. */
export function uploadName(filename: string | undefined, fallback: string): string {
  const base = (filename ?? '').split(/[/\\]/).pop()!.replace(/[\x00-\x1f\x7f]/g, '').slice(0, 200);
  return base === '' || base === '.' || base === '..' ? fallback : base;
}

/** A result as clients see it: named by the upload, no server path in the model name or in messages. */
function publicResult(r: DetectResult, source: string, c: ServeController): DetectResult {
  const out: DetectResult = { ...r, source, model: { ...r.model, name: c.publicModelName() } };
  if (r.error) out.error = { code: r.error.code, message: scrubPaths(r.error.message) };
  return out;
}

/** `p`, or the signal's reason as soon as it aborts. */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
