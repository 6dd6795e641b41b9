/**
 * The dfdet fastify plugin: routes, auth, CORS, error answers, metrics and request ids for one
 * {@link ServeController}. Encapsulated: its content-type parsers, hooks and error handler apply to
 * its own routes only, so it can live next to other routes (and under a prefix) in an app.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';

import { packageRoot } from '../native';
import { ServeController, type ServeOptions } from './controller';
import { registerDetectRoute } from './detect-route';
import { HttpError, toHttpError } from './errors';
import { openApiDocument, routeSchemas, type RouteInfo } from './schemas';

/** Options of {@link dfdetPlugin}: the service options, or a controller made by the caller. */
export type DfdetPluginOptions = ServeOptions | { controller: ServeController };

/**
 * Registers the dfdet routes. With plain options the plugin makes its own controller and warms
 * the detector up before the app is ready (fastify's onReady).
 *
 * @example
 * ```ts
 * const app = fastify({ logger: true });
 * await app.register(dfdetPlugin, { detector, apiKeys: ['...'] });
 * await app.listen({ host: '127.0.0.1', port: 8080 });
 * ```
 */
export const dfdetPlugin: FastifyPluginAsync<DfdetPluginOptions> = async (app, opts) => {
  const own = !('controller' in opts);
  const c = 'controller' in opts ? opts.controller : new ServeController(opts);
  if (own) app.addHook('onReady', () => c.warmup());

  const routes: RouteInfo[] = [];
  app.addHook('onRoute', (r) => {
    routes.push({ method: r.method, url: r.url, schema: r.schema as Record<string, unknown> | undefined });
  });
  // Response schemas document the answers (OpenAPI); answers are sent as they are, never filtered.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  // Only the body types POST /v1/detect takes; anything else is 415.
  app.removeAllContentTypeParsers();
  // fastify tests the header with its parameters (image/png; charset=binary).
  app.addContentTypeParser(/^(?:image\/[\w.+-]+|video\/[\w.+-]+|application\/octet-stream)\s*(?:;|$)/i, { parseAs: 'buffer', bodyLimit: c.options.maxBody }, (_req, body, done) => done(null, body));
  await app.register(multipart, { throwFileSizeLimit: true, limits: { fileSize: c.options.maxBody, files: c.options.maxFiles } });

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
    cors(c, req, reply);
    if (req.method === 'OPTIONS') return;
    const probe = (req.routeOptions.config as { probe?: boolean } | undefined)?.probe === true;
    if (c.checkAuth && (!probe || c.options.authProbes) && !c.checkAuth(req.headers.authorization)) {
      throw new HttpError(401, 'UNAUTHORIZED', 'Expected an API key in an Authorization: Bearer header but received none or a wrong one');
    }
  });
  // While draining, every answer closes its connection: a keep-alive socket left idle after the
  // last answer would otherwise hold the close up until the drain deadline (fastify keeps idle
  // sockets 72 s; only those idle when the close began are cut).
  app.addHook('onSend', async (_req, reply) => {
    if (c.draining) reply.header('connection', 'close');
  });
  app.addHook('onResponse', async (req, reply) => {
    c.metrics.observeRequest(req.routeOptions.url ?? 'unmatched', req.method, reply.statusCode, reply.elapsedTime / 1000);
  });
  app.setErrorHandler((err, req, reply) => {
    const h = toHttpError(err);
    if (h.statusCode >= 500 && h.code === 'RUNTIME_ERROR') req.log.error({ err }, 'internal error');
    else req.log.info({ code: h.code, statusCode: h.statusCode }, h.message);
    if (h.retryAfter !== undefined) reply.header('retry-after', String(h.retryAfter));
    if (h.statusCode === 401) reply.header('www-authenticate', 'Bearer');
    return reply.code(h.statusCode).send({ error: { code: h.code, message: h.message }, requestId: req.id });
  });

  registerDetectRoute(app, c);
  registerInfoRoutes(app, c, routes);
  if (c.corsOrigins.length > 0) app.options('/*', async (_req, reply) => reply.code(204).send());
};

/** GET /v1/models, /healthz, /readyz, /metrics, /openapi.json. */
function registerInfoRoutes(app: FastifyInstance, c: ServeController, routes: RouteInfo[]): void {
  const probe = { probe: true };
  app.get('/v1/models', { schema: routeSchemas.models }, async () => {
    const d = c.detector;
    const m = d.metadata;
    return {
      models: [
        {
          name: c.publicModelName(),
          arch: d.identity.arch,
          architecture: m.arch,
          device: c.modelInfo.device ?? null,
          dtype: d.identity.dtype,
          input: m.input,
          labels: m.labels,
          source: { kind: m.source.kind, file: m.source.file, sha256: m.source.sha256 },
          createdBy: m.createdBy,
          randomWeights: m.source.kind === 'init',
        },
      ],
    };
  });
  app.get('/healthz', { schema: routeSchemas.healthz, config: probe }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: routeSchemas.readyz, config: probe }, async () => {
    const e = c.unavailable();
    if (e) throw e;
    return { status: 'ready' };
  });
  app.get('/metrics', { schema: routeSchemas.metrics, config: probe }, async (_req, reply) => {
    const { contentType, body } = await c.metrics.render();
    return reply.type(contentType).send(body);
  });
  let doc: unknown;
  app.get('/openapi.json', { schema: routeSchemas.openapi, config: probe }, async () => (doc ??= openApiDocument(routes, { version: version(), auth: c.checkAuth !== undefined })));
}

function cors(c: ServeController, req: FastifyRequest, reply: FastifyReply): void {
  const origin = req.headers.origin;
  if (!origin || c.corsOrigins.length === 0 || !(c.corsOrigins.includes(origin) || c.corsOrigins.includes('*'))) return;
  reply.header('access-control-allow-origin', origin);
  reply.header('vary', 'Origin');
  if (req.method === 'OPTIONS') {
    reply.header('access-control-allow-methods', 'GET, POST');
    reply.header('access-control-allow-headers', 'authorization, content-type');
    reply.header('access-control-max-age', '600');
  }
}

function version(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}
