/**
 * createServer: a fastify app with the dfdet plugin, pino JSON logs with request ids, a listen()
 * that binds 127.0.0.1 by default, warm-up before ready, and a graceful close (drain).
 */
import * as crypto from 'node:crypto';

import fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';

import { ServeController, type ServeOptions } from './controller';
import { HttpError } from './errors';
import { dfdetPlugin } from './plugin';

/** Options of {@link createServer}. */
export interface CreateServerOptions extends ServeOptions {
  /** pino logger options, or false for none. Default: JSON logs at 'info' on stdout. */
  logger?: FastifyServerOptions['logger'];
  /** Whether close() also disposes the detector. Default false (the caller made it). */
  disposeDetector?: boolean;
}

/** A running (or ready to run) dfdet service. */
export interface DfdetServer {
  /** The fastify app (add routes, inject requests). */
  readonly app: FastifyInstance;
  /** Readiness, admission, metrics. */
  readonly controller: ServeController;
  /**
   * Listens (default 127.0.0.1, port 8080; port 0 picks a free one), then warms the detector up:
   * /healthz answers at once, /readyz and /v1/detect once warm. Resolves with the base URL once ready.
   */
  listen(options?: { host?: string; port?: number }): Promise<string>;
  /**
   * Graceful stop: detect requests get 503 from now on, /readyz says 503, the listener closes, and
   * requests in flight may finish until `deadlineMs` (default 30000); those still running then are
   * cancelled (503). Disposes the detector when `disposeDetector` was set. Idempotent.
   */
  close(deadlineMs?: number): Promise<void>;
}

/**
 * Creates the HTTP service over one Detector.
 *
 * @example
 * ```ts
 * const detector = await Detector.create({ model: 'model.pt' });
 * const server = createServer({ detector, apiKeys: ['a long random key'], disposeDetector: true });
 * console.log(await server.listen({ port: 8080 }));
 * process.once('SIGTERM', () => void server.close());
 * ```
 */
export function createServer(options: CreateServerOptions): DfdetServer {
  const controller = new ServeController(options);
  const app = fastify({
    logger: options.logger ?? { level: 'info' },
    genReqId: () => crypto.randomUUID(),
    // Request ids are ours (logged as reqId): a client's header would let it forge log lines' ids.
    requestIdHeader: false,
    // Draining answers are the plugin's (JSON, with a dfdet code), not fastify's.
    return503OnClosing: false,
    // A body that trickles in slower than this gets 408 from Node itself.
    requestTimeout: controller.options.requestTimeoutMs + 5_000,
  });
  void app.register(dfdetPlugin, { controller });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` }, requestId: req.id }));

  let closing: Promise<void> | undefined;
  return {
    app,
    controller,
    async listen(o = {}) {
      const url = await app.listen({ host: o.host ?? '127.0.0.1', port: o.port ?? 8080 });
      await controller.warmup();
      app.log.info({ url }, 'ready');
      return url;
    },
    close(deadlineMs = 30_000) {
      closing ??= (async () => {
        controller.startDraining();
        const timer = setTimeout(() => {
          app.log.warn({ inFlight: controller.inFlight.size }, 'drain deadline passed: cancelling the requests still running');
          controller.abortAll(new HttpError(503, 'UNAVAILABLE', 'the server shut down before the request finished'));
          // Answers are on their way; connections still open after a grace second are cut.
          setTimeout(() => app.server.closeAllConnections(), 1000).unref();
        }, deadlineMs);
        try {
          await app.close();
        } finally {
          clearTimeout(timer);
          if (options.disposeDetector) await controller.detector.dispose();
        }
      })();
      return closing;
    },
  };
}
