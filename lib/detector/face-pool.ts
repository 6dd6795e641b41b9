/**
 * The detector's face models: a few instances of BlazeFace behind one queue, so that the inputs a
 * stream prepares at once find their faces in parallel, earliest input first.
 *
 * Why several: a Model runs one call at a time, and one BlazeFace run keeps only about one core
 * busy whatever the thread count (measured on 2 cores: 1.07 cores at 2 threads; two runs side by
 * side gave 1.7x the frames per second of one).
 *
 * Why earliest input first: detectFaces queues one run at a time per input, so with a plain FIFO
 * the runs of the videos a stream starts together interleave and all of them finish late (8
 * videos, tiled detection: the CLIP model waited 7-10 s for its first batch). Served by input
 * order, the first video's faces are ready after its own runs and the model starts while the
 * others are still being detected.
 */
import type { NativeTensor, NativeValue } from '../../binding';
import { loadFaceDetector, type TensorRunner } from '../faces/blazeface';
import type { Model } from '../model';

interface Job {
  lane: number;
  method: string;
  inputs: NativeTensor[];
  resolve: (v: NativeValue) => void;
  reject: (e: unknown) => void;
}

/** Instances of one face model; runs wait in one queue ordered by lane (input order). */
export class FaceModelPool {
  readonly #models: readonly Model[];
  readonly #idle: Model[];
  /** Waiting runs, by lane then arrival (stable insertion). */
  readonly #waiting: Job[] = [];
  #lanes = 0;

  private constructor(models: readonly Model[]) {
    this.#models = models;
    this.#idle = [...models];
  }

  /**
   * Loads `size` instances of the bundled face detector on `device` (all or none: instances
   * already loaded are freed when one fails).
   */
  static async load(size: number, device: string): Promise<FaceModelPool> {
    const loads = await Promise.allSettled(Array.from({ length: Math.max(1, size) }, () => loadFaceDetector({ device, cpuGate: 'shared' })));
    const models = loads.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = loads.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.all(models.map((m) => m.dispose()));
      throw failed.reason;
    }
    return new FaceModelPool(models);
  }

  /** The instances (to warm each up). */
  get models(): readonly Model[] {
    return this.#models;
  }

  /**
   * A runner for one input: its runs go before those of inputs whose lane was opened later. Open it
   * when the input starts (decoding included), so that lanes follow the order inputs started in.
   */
  lane(): TensorRunner {
    const lane = this.#lanes++;
    return { run: (method, inputs) => this.#submit(lane, method, inputs) };
  }

  #submit(lane: number, method: string, inputs: NativeTensor[]): Promise<NativeValue> {
    return new Promise<NativeValue>((resolve, reject) => {
      let at = this.#waiting.length;
      while (at > 0 && this.#waiting[at - 1]!.lane > lane) at--;
      this.#waiting.splice(at, 0, { lane, method, inputs, resolve, reject });
      this.#dispatch();
    });
  }

  #dispatch(): void {
    while (this.#idle.length > 0 && this.#waiting.length > 0) {
      const model = this.#idle.shift()!;
      const job = this.#waiting.shift()!;
      void model.run(job.method, job.inputs).then(job.resolve, job.reject).finally(() => {
        this.#idle.push(model);
        this.#dispatch();
      });
    }
  }

  /** Frees every instance (each after its run in flight). */
  async dispose(): Promise<void> {
    await Promise.all(this.#models.map((m) => m.dispose()));
  }
}
