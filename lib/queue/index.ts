/**
 * Scale-out on a BullMQ queue in Redis: {@link Producer} enqueues inputs and reads results,
 * {@link QueueWorker} runs jobs through the shared Detector pipeline.
 */
export { Producer, queueCounts, type ProducerOptions, type Enqueued, type JobOutcome, type QueueCounts } from './producer';
export { QueueWorker, type QueueWorkerOptions, type QueueWorkerStats } from './worker';
export {
  bytesJobId,
  fileJobId,
  isTransient,
  TRANSIENT_CODES,
  DEFAULT_MAX_INLINE_BYTES,
  MAX_INLINE_BYTES_LIMIT,
  type QueueInput,
  type QueueJobData,
  type PreparedJob,
} from './jobs';
