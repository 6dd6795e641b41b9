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
} from './detector';
export type { DetectInput, DescribedInput, MediaSource } from './inputs';
export { DfdetError, isDfdetError, type ErrorCode } from './errors';
export { Model, buildModule, setThreads, tensor, type ModelLoadOptions, type ModelDType, type RunOptions } from './model';
export { Batcher, type BatcherOptions, type BatchStats } from './batcher';
export { native } from './native';
export { decodeImage, type RgbImage, type DecodeImageOptions } from './media/image';
export { sampleFrames, iterateFrames, probeVideo, type SamplingStrategy, type VideoProbe, type VideoFrame } from './media/video';
export { clipTransform } from './media/transform';
export { detectFaces, type Face, type DetectFacesOptions } from './faces/blazeface';
export { cropFace, type CropFaceOptions } from './faces/align';
export { trackFaces, mainTrack, type FaceTrack } from './faces/track';
export { convertModel, type ConvertOptions, type ConvertResult } from './convert';
export { initModel, type InitModelOptions } from './detector-model/init';
export { readDetectorMetadata, type DetectorMetadata } from './detector-model/metadata';
export { computeMetrics, auroc, averagePrecision, rocCurve, type BinaryMetrics } from './eval/metrics';
export { scanDataset, type DatasetItem } from './eval/dataset';
export { evaluate, writeReport, type Prediction } from './eval/report';
export { pull, type PullOptions, type PullResult } from './pull';
export { loadRegistry, getModel, listModels, type RegistryEntry } from './registry';
export { cacheList, defaultCacheDir } from './cache';
