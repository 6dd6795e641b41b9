/**
 * dfdet: deepfake face detection for Node, after "Unlocking the Hidden Potential of CLIP in
 * Generalizable Deepfake Detection" (Yermakov, Cech, Matas, 2025).
 *
 * @example
 * ```ts
 * import { Detector } from 'dfdet';
 * await using detector = await Detector.create({ model: 'model.pt' });
 * const result = await detector.detect('photo.jpg');
 * console.log(result.pFake, result.label);
 * ```
 * @packageDocumentation
 */
export {
  Detector,
  softmaxFake,
  type DetectorOptions,
  type DetectCallOptions,
  type DetectResult,
  type DetectorStats,
  type EmbedResult,
  type FaceEmbedding,
  type FaceResult,
  type FrameResult,
  type TrackResult,
  type ModelIdentity,
  type Box,
  type AggregateRule,
  type ResultError,
  prepareFaces,
  type PipelineContext,
  type PreparedFaces,
  type PreparedFace,
} from './detector';
export { DETECTOR_DEFAULTS, DETECTOR_RULES, resolveDetectorOptions, resolveCallOptions, type ResolvedDetectorOptions, type Rule } from './options';
export type { DetectInput, DescribedInput, MediaSource } from './inputs';
export { DfdetError, isDfdetError, type ErrorCode } from './errors';
export { Model, buildModule, chooseDType, setThreads, tensor, type DTypeOption, type ModelLoadOptions, type ModelDType, type RunOptions } from './model';
export { runtimeInfo } from './native';
export { cpuFeatures, type CpuFeatures } from './runtime/cpu';
export { preprocessBatch, type CropSpec, type PreprocessOptions } from './preprocess/native';
export { Batcher, type BatcherOptions, type BatchEvent, type BatchStats } from './batcher';
export { decodeImage, type RgbImage, type DecodeImageOptions } from './media/image';
export { sampleFrames, iterateFrames, probeVideo, type SamplingStrategy, type VideoProbe, type VideoFrame } from './media/video';
export { clipTransform } from './media/transform';
export { detectFaces, type DetectFacesOptions } from './faces/blazeface';
export type { Face, FaceBox, FaceKeypoints, Point } from './faces/types';
export { cropFace, type CropFaceOptions } from './faces/align';
export { trackFaces, mainTrack, type FaceTrack } from './faces/track';
export { convertModel, type ConvertOptions, type ConvertResult } from './convert';
export { initModel, type InitModelOptions } from './detector-model/init';
export { readDetectorMetadata, type DetectorMetadata } from './detector-model/metadata';
export { computeMetrics, auroc, averagePrecision, rocCurve, type BinaryMetrics } from './eval/metrics';
export { scanDataset, type DatasetItem } from './eval/dataset';
export { evaluate, type Prediction } from './eval/evaluate';
export { writeReport } from './eval/report';
export { train, type TrainOptions, type TrainEvent, type TrainSummary, type EpochRecord } from './train/loop';
export { pull, type PullOptions, type PullResult } from './pull';
export { loadRegistry, getModel, listModels, type RegistryEntry } from './registry';
export { cacheList, defaultCacheDir } from './cache';
export { createServer, dfdetPlugin, ServeController, type CreateServerOptions, type DfdetServer, type DfdetPluginOptions, type ServeOptions } from './serve';
export { Producer, QueueWorker, queueCounts, type ProducerOptions, type QueueWorkerOptions, type QueueWorkerStats, type Enqueued, type JobOutcome, type QueueCounts, type QueueInput, type QueueJobData } from './queue';
