/**
 * `dfdet serve`: the HTTP service (lib/serve) over one Detector, until SIGTERM or SIGINT, which
 * drain it (requests in flight finish up to --drain-timeout), dispose the detector and exit 0.
 */
import type { Command } from 'commander';

import { Detector } from '../../detector';
import { readApiKeyFile } from '../../serve/auth';
import { createServer } from '../../serve/server';
import { DETECTOR_RULES } from '../../options';
import { addDetectorOptions, type DetectorFlags, detectorOptions, intOption, randomWeightsWarning, schemaOption } from '../options';

interface ServeFlags extends DetectorFlags {
  host: string;
  port: number;
  apiKeyFile?: string;
  authProbes?: boolean;
  maxRunning: number;
  maxQueue: number;
  maxQueueBytes?: number;
  maxBody: number;
  maxFiles: number;
  requestTimeout: number;
  drainTimeout: number;
  warmupInput?: string;
  corsOrigin?: string[];
  logLevel: string;
  maxPixels?: number;
  maxVideoBytes?: number;
}

const MiB = 2 ** 20;

/** Registers `serve`. */
export function registerServe(program: Command): void {
  const cmd = program
    .command('serve')
    .description('serve POST /v1/detect over HTTP (with /v1/models, /healthz, /readyz, /metrics, /openapi.json)')
    .option('--host <address>', 'address to bind (0.0.0.0 exposes the service to the network)', '127.0.0.1')
    .option('--port <n>', 'port (0 picks a free one)', intOption('--port', 0, 65535), 8080)
    .option('--api-key-file <file>', 'require Authorization: Bearer <key>; the file holds one key per line (# comments)')
    .option('--auth-probes', 'require the key for /healthz, /readyz, /metrics and /openapi.json too')
    .option('--max-running <n>', 'requests running in the detector at once (they share model batches face by face)', intOption('--max-running', 1, 1024), 4)
    .option('--max-queue <n>', 'requests admitted beyond those running; more get 429', intOption('--max-queue', 0, 100_000), 16)
    .option('--max-queue-bytes <n>', 'body bytes held by all admitted requests; more get 429 (default max(256 MiB, 4 x --max-body))', intOption('--max-queue-bytes', 1, Number.MAX_SAFE_INTEGER))
    .option('--max-body <bytes>', 'largest request body; larger gets 413', intOption('--max-body', 1, Number.MAX_SAFE_INTEGER), 64 * MiB)
    .option('--max-files <n>', 'most files in one multipart request', intOption('--max-files', 1, 1024), 16)
    .option('--request-timeout <ms>', 'a detect request over this gets 504 and its work is cancelled', intOption('--request-timeout', 1, 86_400_000), 60_000)
    .option('--drain-timeout <ms>', 'on SIGTERM/SIGINT, how long requests in flight may finish', intOption('--drain-timeout', 0, 86_400_000), 30_000)
    .option('--warmup-input <file>', 'an image scored through the whole pipeline before the service reports ready (default: a blank image)')
    .option('--cors-origin <origin...>', 'allow these origins (CORS is off without it)')
    .option('--max-pixels <n>', 'largest decoded image in pixels (decoded memory: 3 bytes a pixel per input running); larger gets 422', schemaOption('--max-pixels', DETECTOR_RULES.maxPixels))
    .option('--max-video-bytes <n>', 'most bytes of decoded frames held per video (then it is scored on the frames decoded)', schemaOption('--max-video-bytes', DETECTOR_RULES.maxVideoBytes))
    .option('--log-level <level>', 'pino log level (fatal, error, warn, info, debug, trace, silent)', 'info');
  addDetectorOptions(cmd, { faces: 'detect' });
  cmd.addHelpText(
    'after',
    `
Logs are JSON lines (pino) on stdout, each with its requestId. Examples:
  dfdet serve --model model.pt --port 8080
  curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8080/v1/detect
  curl -F file=@a.jpg -F file=@b.mp4 'http://127.0.0.1:8080/v1/detect?threshold=0.7'`,
  );
  cmd.action(async (flags: ServeFlags) => {
    process.exitCode = await runServe(flags);
  });
}

async function runServe(flags: ServeFlags): Promise<number> {
  const apiKeys = flags.apiKeyFile ? readApiKeyFile(flags.apiKeyFile) : undefined;
  const options = { ...detectorOptions(flags), maxPixels: flags.maxPixels, maxVideoBytes: flags.maxVideoBytes };
  const t0 = performance.now();
  const detector = await Detector.create(options);
  const modelLoadSeconds = (performance.now() - t0) / 1000;
  if (detector.identity.sourceKind === 'init') process.stderr.write(`${randomWeightsWarning(detector.identity.name)}\n`);
  const server = createServer({
    detector,
    disposeDetector: true,
    apiKeys,
    authProbes: flags.authProbes,
    maxRunning: flags.maxRunning,
    maxQueue: flags.maxQueue,
    maxQueueBytes: flags.maxQueueBytes,
    maxBody: flags.maxBody,
    maxFiles: flags.maxFiles,
    requestTimeoutMs: flags.requestTimeout,
    corsOrigins: flags.corsOrigin,
    warmup: flags.warmupInput,
    modelInfo: { device: options.device, dtype: options.dtype },
    modelLoadSeconds,
    logger: { level: flags.logLevel },
  });
  const stopped = new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`dfdet serve: ${signal}: draining (up to ${flags.drainTimeout} ms)\n`);
      server.close(flags.drainTimeout).then(resolve, (e: unknown) => {
        process.stderr.write(`dfdet serve: error while closing: ${(e as Error)?.message ?? String(e)}\n`);
        resolve();
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
  try {
    const url = await server.listen({ host: flags.host, port: flags.port });
    process.stderr.write(`dfdet serve: ready on ${url}\n`);
  } catch (e) {
    await server.close(0);
    throw e;
  }
  await stopped;
  process.stderr.write('dfdet serve: stopped\n');
  return 0;
}
