/**
 * One gate for the CPU work of the models in this process: a large model's run goes alone, small
 * models' runs may overlap each other.
 *
 * Why: libtorch parallelises each run over every core (OpenMP), and a team of OpenMP threads is
 * only as fast as its slowest thread: every parallel region ends at a barrier. When a second run
 * takes one of the cores, the large model's run waits at each barrier for its descheduled thread,
 * so it loses about twice the CPU share the other run takes. Measured on 2 cores with a ViT-B/16
 * and BlazeFace on 16-frame videos: the ViT ran 26% slower per face beside the face detector than
 * alone. Taking turns costs the face detector's own time instead, which is a few percent of the
 * ViT's. (On CUDA the models run on the device, so only CPU models take the gate.)
 *
 * Order is first come, first served: a waiting exclusive run holds back shared runs that arrive
 * after it, so neither kind starves the other.
 */

/** How a model's runs share the CPU: 'exclusive' runs alone, 'shared' runs overlap each other. */
export type CpuGateMode = 'exclusive' | 'shared';

interface Waiter {
  mode: CpuGateMode;
  grant: () => void;
}

/** A first-come, first-served readers/writer gate ('shared' = readers, 'exclusive' = writer). */
export class CpuGate {
  #exclusive = false;
  #shared = 0;
  readonly #waiting: Waiter[] = [];

  /** Runs `work` once the gate lets a run of `mode` in; the gate reopens when it settles. */
  async run<T>(mode: CpuGateMode, work: () => Promise<T>): Promise<T> {
    await new Promise<void>((grant) => {
      this.#waiting.push({ mode, grant });
      this.#admit();
    });
    try {
      return await work();
    } finally {
      if (mode === 'exclusive') this.#exclusive = false;
      else this.#shared--;
      this.#admit();
    }
  }

  /** Runs going now, and waiting (for tests and stats). */
  get state(): { exclusive: boolean; shared: number; waiting: number } {
    return { exclusive: this.#exclusive, shared: this.#shared, waiting: this.#waiting.length };
  }

  #admit(): void {
    while (this.#waiting.length > 0 && !this.#exclusive) {
      const next = this.#waiting[0]!;
      if (next.mode === 'exclusive') {
        if (this.#shared > 0) return;
        this.#exclusive = true;
      } else this.#shared++;
      this.#waiting.shift();
      next.grant();
    }
  }
}

/** The process's gate, taken by CPU models loaded with a `cpuGate` mode. */
export const cpuGate = new CpuGate();
