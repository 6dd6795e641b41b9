/** The HTTP service: createServer (a ready-to-run fastify app) and the fastify plugin it uses. */
export { createServer, type CreateServerOptions, type DfdetServer } from './server';
export { dfdetPlugin, type DfdetPluginOptions } from './plugin';
export { ServeController, type ServeOptions } from './controller';
export { readApiKeyFile } from './auth';
export type { ErrorBody, ServeErrorCode } from './errors';
