// What every kernel wrapper shares: a dispatch is a pipeline, its bind group and a grid, prepared
// once and encoded as often as needed. Kernels know nothing about models.
import type { Gpu, Pipeline } from './gpu.ts';
import { median, repeat } from '../util/stats.ts';

export interface Dispatch {
  label: string;
  pipeline: Pipeline;
  bindGroup: GPUBindGroup;
  workgroups: [number, number, number];
  /** Buffers this dispatch made for itself (its uniforms); freed by releaseDispatches. */
  owned: GPUBuffer[];
}

export function makeDispatch(
  gpu: Gpu,
  pipeline: Pipeline,
  label: string,
  params: readonly (number | { f: number })[] | null,
  buffers: readonly GPUBuffer[],
  workgroups: [number, number, number],
): Dispatch {
  const owned: GPUBuffer[] = [];
  const all = [...buffers];
  if (params) {
    const u = gpu.uniform(`${label}.params`, params);
    owned.push(u);
    all.unshift(u);
  }
  return { label, pipeline, bindGroup: gpu.bindGroup(pipeline, all, label), workgroups, owned };
}

export function encodeDispatches(pass: GPUComputePassEncoder, dispatches: readonly Dispatch[]): void {
  for (const d of dispatches) {
    pass.setPipeline(d.pipeline.pipeline);
    pass.setBindGroup(0, d.bindGroup);
    pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
  }
}

/** Encodes the dispatches in one compute pass of one command buffer and submits it. */
export function runDispatches(gpu: Gpu, dispatches: readonly Dispatch[], label = 'kernels'): void {
  const enc = gpu.device.createCommandEncoder({ label });
  const pass = enc.beginComputePass({ label });
  encodeDispatches(pass, dispatches);
  pass.end();
  gpu.device.queue.submit([enc.finish()]);
}

/** Median wall ms of `runs` submits of `ds`, each waited for, after one warm-up submit (which also compiles). */
export async function medianSubmitMs(gpu: Gpu, ds: readonly Dispatch[], runs: number, label = 'timed'): Promise<number> {
  const { samples } = await repeat(
    async () => {
      const t0 = performance.now();
      runDispatches(gpu, ds, label);
      await gpu.device.queue.onSubmittedWorkDone();
      return performance.now() - t0;
    },
    { warmup: 1, runs },
  );
  return median(samples);
}

export function releaseDispatches(gpu: Gpu, dispatches: readonly Dispatch[]): void {
  for (const d of dispatches) for (const b of d.owned) gpu.destroyBuffer(b);
}

/**
 * Workgroup grid for `count` workgroups, folded into y when x would pass the device's
 * per-dimension limit. Shaders recover the linear index as `wg.x + wg.y * num_workgroups.x`.
 */
export function grid(gpu: Gpu, count: number): [number, number, number] {
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (count <= max) return [Math.max(1, count), 1, 1];
  const y = Math.ceil(count / max);
  if (y > max) throw new Error(`dispatch of ${count} workgroups exceeds this GPU's grid limit`);
  return [Math.ceil(count / y), y, 1];
}
