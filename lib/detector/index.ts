/** The Detector and its types (`import { Detector } from './detector'`). */
export { Detector } from './detector';
export { aggregate, aggregateRule, labelOf, softmaxFake, type AggregateInput, type Aggregated, type FrameMeta, type ScoredFace } from './aggregate';
export { checkModelOutput, prepareFaces, type PipelineContext, type PrepareSettings, type PreparedFace, type PreparedFaces } from './run';
export type * from './types';
