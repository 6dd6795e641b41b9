/**
 * JSON schemas of the routes (fastify validates the query strings with them) and the OpenAPI
 * document built from the routes as registered, so /openapi.json never drifts from the code.
 */

import type { FastifySchema } from 'fastify';

/** A JSON schema (loose: the subset these routes use). */
export type JsonSchema = Record<string, unknown>;

const num = { type: 'number' };
const box = { type: 'object', properties: { x: num, y: num, width: num, height: num } };
const point = { type: 'array', items: num, minItems: 2, maxItems: 2 };
const face = {
  type: 'object',
  properties: {
    box,
    score: num,
    keypoints: { type: 'object', additionalProperties: point },
    track: { type: 'integer' },
    pFake: num,
  },
};

/** The error answer of every route. */
export const errorSchema: JsonSchema = {
  type: 'object',
  required: ['error', 'requestId'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', description: 'dfdet error code (BAD_INPUT, DECODE_FAILED, TIMEOUT, ...) or UNAUTHORIZED, OVERLOADED, UNAVAILABLE' },
        message: { type: 'string' },
      },
    },
    requestId: { type: 'string' },
  },
};

/** One DetectResult, the same object the API returns and the CLI prints. */
export const detectResultSchema: JsonSchema = {
  type: 'object',
  properties: {
    index: { type: 'integer' },
    source: { type: 'string', description: "the upload's file name, or the request id for a raw body" },
    kind: { type: 'string', enum: ['image', 'video', 'unknown'] },
    pFake: { type: ['number', 'null'] },
    label: { type: ['string', 'null'], enum: ['real', 'fake', null] },
    threshold: num,
    noFace: { type: 'boolean' },
    faces: { type: 'array', items: face },
    frames: {
      type: 'array',
      items: { type: 'object', properties: { index: { type: 'integer' }, timestampSec: num, pFake: { type: ['number', 'null'] }, faces: { type: 'array', items: face } } },
    },
    tracks: { type: 'array', items: { type: 'object', properties: { id: { type: 'integer' }, frames: { type: 'integer' }, pFake: num, main: { type: 'boolean' } } } },
    partial: { type: 'boolean' },
    aggregate: { type: 'string' },
    model: { type: 'object', properties: { name: { type: 'string' }, arch: { type: 'string' }, sourceKind: { type: 'string' }, sourceSha256: { type: 'string' } } },
    timings: { type: 'object', properties: { decodeMs: num, facesMs: num, scoreMs: num, totalMs: num } },
    error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } },
  },
};

/** Per-request options of POST /v1/detect (query string). */
export const detectQuerySchema: JsonSchema = {
  type: 'object',
  properties: {
    threshold: { type: 'number', minimum: 0, maximum: 1, description: 'pFake at or above which the label is fake' },
    frames: { type: 'integer', minimum: 1, maximum: 1000, description: 'videos: frames sampled uniformly' },
    allFaces: { type: 'boolean', description: 'videos: score every face track, not only the main subject' },
  },
};

/** Answers every route may give besides its own. */
const commonErrors = {
  401: { description: 'missing or wrong API key (UNAUTHORIZED)', ...errorSchema },
};

/** Route schemas by route (fastify's keys plus OpenAPI's summary, description, consumes, produces). */
export const routeSchemas: Record<'detect' | 'models' | 'healthz' | 'readyz' | 'metrics' | 'openapi', FastifySchema & Record<string, unknown>> = {
  detect: {
    summary: 'Score an image or video for deepfaked faces',
    description:
      'Body: the raw bytes of one image or video (image/*, video/*, application/octet-stream), answered with one DetectResult; ' +
      'or multipart/form-data with one or more files, answered with {requestId, results} in file order (a file that fails carries `error`).',
    consumes: ['image/*', 'video/*', 'application/octet-stream', 'multipart/form-data'],
    querystring: detectQuerySchema,
    response: {
      200: { description: 'the result (raw body) or {requestId, results} (multipart)', oneOf: [detectResultSchema, { type: 'object', properties: { requestId: { type: 'string' }, results: { type: 'array', items: detectResultSchema } } }] },
      400: { description: 'malformed multipart body or bad option (BAD_INPUT)', ...errorSchema },
      413: { description: 'body over --max-body (BAD_INPUT)', ...errorSchema },
      415: { description: 'unsupported content type (UNSUPPORTED)', ...errorSchema },
      422: { description: 'the input could not be decoded (DECODE_FAILED)', ...errorSchema },
      429: { description: 'the admission queue is full (OVERLOADED); see Retry-After', ...errorSchema },
      503: { description: 'not ready or draining (UNAVAILABLE); see Retry-After', ...errorSchema },
      504: { description: 'over --request-timeout (TIMEOUT); the work was cancelled', ...errorSchema },
      ...commonErrors,
    },
  },
  models: {
    summary: 'The detector model: identity, architecture, dtype, device, metadata',
    response: { 200: { type: 'object', additionalProperties: true }, ...commonErrors },
  },
  healthz: { summary: 'The process is alive', response: { 200: { type: 'object', properties: { status: { type: 'string' } } } } },
  readyz: {
    summary: 'Ready: the model is loaded and warmed up, and the service is not draining',
    response: { 200: { type: 'object', properties: { status: { type: 'string' } } }, 503: { description: 'warming up or draining (UNAVAILABLE)', ...errorSchema } },
  },
  metrics: { summary: 'Prometheus metrics (text format)', produces: ['text/plain'] },
  openapi: { summary: 'This document' },
};

/** A registered route, as the OpenAPI builder needs it. */
export interface RouteInfo {
  method: string | string[];
  url: string;
  schema?: JsonSchema;
}

/** Builds an OpenAPI 3.0 document from the routes' schemas. */
export function openApiDocument(routes: readonly RouteInfo[], info: { version: string; auth: boolean }): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const s = r.schema ?? {};
    const methods = (Array.isArray(r.method) ? r.method : [r.method]).filter((m) => m !== 'HEAD' && m !== 'OPTIONS');
    for (const m of methods) {
      const op: Record<string, unknown> = { summary: s.summary };
      if (s.description) op.description = s.description;
      const q = s.querystring as { properties?: Record<string, JsonSchema> } | undefined;
      if (q?.properties) op.parameters = Object.entries(q.properties).map(([name, schema]) => ({ name, in: 'query', required: false, schema, description: schema.description }));
      if (Array.isArray(s.consumes)) {
        const content: Record<string, unknown> = {};
        for (const c of s.consumes as string[]) {
          content[c] =
            c === 'multipart/form-data'
              ? { schema: { type: 'object', properties: { file: { type: 'array', items: { type: 'string', format: 'binary' } } } } }
              : { schema: { type: 'string', format: 'binary' } };
        }
        op.requestBody = { required: true, content };
      }
      const responses: Record<string, unknown> = {};
      const declared = (s.response ?? { 200: {} }) as Record<string, JsonSchema>;
      for (const [code, schema] of Object.entries(declared)) {
        const { description, ...body } = schema;
        const produces = Array.isArray(s.produces) ? (s.produces as string[]) : ['application/json'];
        responses[code] = { description: typeof description === 'string' ? description : code === '200' ? 'OK' : 'error', content: Object.fromEntries(produces.map((p) => [p, { schema: body }])) };
      }
      op.responses = responses;
      (paths[r.url] ??= {})[m.toLowerCase()] = op;
    }
  }
  const doc: JsonSchema = { openapi: '3.0.3', info: { title: 'dfdet', version: info.version, description: 'Deepfake face detection service (dfdet serve)' }, paths };
  if (info.auth) {
    doc.components = { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } };
    doc.security = [{ bearer: [] }];
  }
  return doc;
}
