/**
 * Redis connections for the queue: a `redis://` URL turned into ioredis options that reconnect for
 * ever (capped backoff), so workers and submitters ride out a Redis restart.
 */
import type * as BullMQModule from 'bullmq';
import type { RedisOptions } from 'bullmq';

import { DfdetError, invalidParameter } from '../errors';

/** The BullMQ module. */
export type BullMQ = typeof BullMQModule;

/**
 * Loads BullMQ on first use: it adds ~0.4 s to start-up, which `dfdet detect` and library users
 * without a queue should not pay.
 */
export function loadBullmq(): Promise<BullMQ> {
  return import('bullmq');
}

/** Longest wait between two reconnection attempts, ms. */
const MAX_RECONNECT_DELAY_MS = 2000;

/** Reconnection delay after `times` failed attempts: 100 ms, 200 ms, ... capped at 2 s; never gives up. */
export function reconnectDelay(times: number): number {
  return Math.min(100 * Math.max(1, times), MAX_RECONNECT_DELAY_MS);
}

/**
 * ioredis options for a `redis://[user:password@]host[:port][/db]` (or `rediss://` for TLS) URL.
 * Commands wait for the connection to come back instead of failing (`maxRetriesPerRequest: null`,
 * which BullMQ requires for workers and which lets a waiting submitter survive a restart too).
 * Reconnection stops once `giveUp()` returns true.
 * @throws DfdetError BAD_INPUT for anything but such a URL.
 */
export function redisOptions(url: string, giveUp: () => boolean = () => false): RedisOptions {
  if (typeof url !== 'string') invalidParameter('redis', 'a redis:// URL', url);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return invalidParameter('redis', 'a redis:// URL (redis://host:6379)', url);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') invalidParameter('redis', 'a redis:// or rediss:// URL', url);
  const port = u.port === '' ? 6379 : Number(u.port);
  const dbText = u.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0) invalidParameter('redis database', 'a database number (redis://host:6379/0)', dbText);
  const o: RedisOptions = {
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port,
    db,
    maxRetriesPerRequest: null,
    // null stops reconnecting: used when the caller gave up at start-up.
    retryStrategy: (times: number) => (giveUp() ? null : reconnectDelay(times)),
  };
  if (u.username) o.username = decodeURIComponent(u.username);
  if (u.password) o.password = decodeURIComponent(u.password);
  if (u.protocol === 'rediss:') o.tls = {};
  return o;
}

/** The URL without its password, for logs. */
export function describeRedis(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<invalid redis URL>';
  }
}

/** Checks a queue name: BullMQ uses it inside Redis keys, where `:` separates parts. */
export function checkQueueName(name: unknown): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,200}$/.test(name)) invalidParameter('queue', 'a queue name of letters, digits, _ . - (at most 200)', name);
  return name;
}

/** Logs connection loss and recovery of an ioredis-like client once per outage. */
export function watchConnection(client: { on(event: string, listener: () => void): unknown }, label: string, log: (line: string) => void): void {
  let lost = false;
  client.on('reconnecting', () => {
    if (!lost) log(`${label}: lost the Redis connection, reconnecting`);
    lost = true;
  });
  client.on('ready', () => {
    if (lost) log(`${label}: reconnected to Redis`);
    lost = false;
  });
}


/** An 'error' listener that logs each distinct message at most once every 10 s (a Redis outage repeats them). */
export function dedupedErrorLog(label: string, log: (line: string) => void): (e: Error) => void {
  const last = new Map<string, number>();
  return (e: Error) => {
    const now = Date.now();
    const key = e.message;
    if ((last.get(key) ?? -Infinity) > now - 10_000) return;
    last.set(key, now);
    log(`${label}: ${e.message}`);
  };
}

/**
 * Waits for `ready` (a connection), at most `ms` (undefined: as long as it takes).
 * @throws DfdetError TIMEOUT when Redis did not answer in time.
 */
export async function connectWithin<T>(ready: Promise<T>, ms: number | undefined, url: string): Promise<T> {
  if (ms === undefined) return ready;
  // The losing promise must not become an unhandled rejection.
  ready.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DfdetError('TIMEOUT', `Redis at ${describeRedis(url)} did not answer within ${ms} ms (is it running? is the URL right?)`)), ms);
  });
  try {
    return await Promise.race([ready, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for `p` at most `ms` (closing connections that never opened may never settle). */
export async function settleWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}
