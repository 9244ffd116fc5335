// Times GPU work two ways at once: timestamp queries written at the start and end of the compute
// pass (when the device has 'timestamp-query'; Dawn quantizes them, here to 65.5 us), and the
// wall clock from queue.submit to onSubmittedWorkDone. Figures use the timestamps when there are
// any, else the wall clock; both are recorded.
import type { Gpu } from '../src/gpu/gpu.ts';
import { encodeDispatches, type Dispatch } from '../src/gpu/dispatch.ts';
import { summarize, type Stat } from './stats.ts';
import { repeat } from '../src/util/stats.ts';

export type TimingMethod = 'timestamp-query' | 'wall-clock';

export interface GpuTime {
  /** Timestamp-query time, when available. */
  gpuMs?: number;
  /** submit -> onSubmittedWorkDone. */
  wallMs: number;
}

export class GpuTimer {
  readonly method: TimingMethod;
  private readonly querySet?: GPUQuerySet;
  private readonly resolve?: GPUBuffer;
  private readonly readback?: GPUBuffer;

  constructor(readonly gpu: Gpu) {
    this.method = gpu.features.timestampQuery ? 'timestamp-query' : 'wall-clock';
    if (this.method === 'timestamp-query') {
      const d = gpu.device;
      this.querySet = d.createQuerySet({ label: 'bench.timestamps', type: 'timestamp', count: 2 });
      this.resolve = d.createBuffer({ label: 'bench.ts-resolve', size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      this.readback = d.createBuffer({ label: 'bench.ts-read', size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    }
  }

  private async submit(enc: GPUCommandEncoder): Promise<GpuTime> {
    const { device } = this.gpu;
    if (this.querySet) {
      enc.resolveQuerySet(this.querySet, 0, 2, this.resolve!, 0);
      enc.copyBufferToBuffer(this.resolve!, 0, this.readback!, 0, 16);
    }
    const cb = enc.finish();
    const t0 = performance.now();
    device.queue.submit([cb]);
    await device.queue.onSubmittedWorkDone();
    const wallMs = performance.now() - t0;
    this.gpu.checkErrors();
    if (!this.querySet) return { wallMs };
    await this.readback!.mapAsync(GPUMapMode.READ);
    const ts = new BigUint64Array(this.readback!.getMappedRange().slice(0));
    this.readback!.unmap();
    const gpuMs = Number(ts[1] - ts[0]) / 1e6;
    // A driver that does not really implement timestamps returns zeros: fall back to the wall clock.
    return gpuMs > 0 ? { gpuMs, wallMs } : { wallMs };
  }

  /** Times the dispatches, encoded in one compute pass of one command buffer. */
  timeDispatches(dispatches: readonly Dispatch[], label = 'bench'): Promise<GpuTime> {
    const enc = this.gpu.device.createCommandEncoder({ label });
    const pass = enc.beginComputePass({
      label,
      timestampWrites: this.querySet ? { querySet: this.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } : undefined,
    });
    encodeDispatches(pass, dispatches);
    pass.end();
    return this.submit(enc);
  }

  /**
   * Times a buffer-to-buffer copy. Timestamps can only be written by passes, so the copy sits
   * between an empty pass that stamps its end and one that stamps its beginning.
   */
  timeCopy(src: GPUBuffer, dst: GPUBuffer, size: number): Promise<GpuTime> {
    const enc = this.gpu.device.createCommandEncoder({ label: 'bench.copy' });
    if (this.querySet) enc.beginComputePass({ timestampWrites: { querySet: this.querySet, endOfPassWriteIndex: 0 } }).end();
    enc.copyBufferToBuffer(src, 0, dst, 0, size);
    if (this.querySet) enc.beginComputePass({ timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: 1 } }).end();
    return this.submit(enc);
  }

  destroy(): void {
    this.querySet?.destroy();
    this.resolve?.destroy();
    this.readback?.destroy();
  }
}

/** The figure a timing contributes: timestamps when present, else the wall clock. */
export function primaryMs(t: GpuTime): number {
  return t.gpuMs ?? t.wallMs;
}

/** Timings of repeated runs: the figure's method, its times and the wall clock beside them. */
export interface Timed {
  method: TimingMethod;
  ms: Stat;
  wall_ms: Stat;
  /** The only sample is the first run (compilation included): the work was too slow to repeat. */
  warmup_used: boolean;
}

/**
 * Runs `run` once unmeasured (pipeline compilation), then up to `runs` times measured within
 * `budgetMs` (see stats.ts repeat), and summarizes the measured runs.
 */
export async function timeRepeated(run: () => Promise<GpuTime>, runs: number, budgetMs: number): Promise<Timed> {
  const all: GpuTime[] = [];
  const r = await repeat(
    async () => {
      const t = await run();
      all.push(t);
      return primaryMs(t);
    },
    { warmup: 1, runs, budgetMs },
  );
  // repeat() saw the warm-up run too; the measured ones are the last n.
  const samples = all.slice(all.length - r.samples.length);
  return {
    method: samples.some((s) => s.gpuMs !== undefined) ? 'timestamp-query' : 'wall-clock',
    ms: summarize(samples.map(primaryMs)),
    wall_ms: summarize(samples.map((s) => s.wallMs)),
    warmup_used: r.warmupUsed,
  };
}

/** Wraps the timed runs alone (not set-up or checks): the Node harness samples the machine's load there. */
export type AroundTiming = (fn: () => Promise<Timed>) => Promise<Timed>;
