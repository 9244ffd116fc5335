// Where one decode step's time goes: every dispatch of a real decode step timed on its own
// (a compute pass each, with timestamp queries at its start and end), summed per kind of kernel
// (embedding, qkv_proj, ..., lm_head, the chooser) over the layers, beside the bytes each kind
// reads; and the step as a whole (all dispatches in one pass, as the engine encodes them)
// against the adapter's copy bandwidth. Without 'timestamp-query' each kind is timed as a group
// in one pass, wall clock from submit to onSubmittedWorkDone. Browser-safe (no node: imports).
import type { Engine } from '../src/runtime/engine.ts';
import type { Dispatch } from '../src/gpu/dispatch.ts';
import type { Gpu } from '../src/gpu/gpu.ts';
import { median } from '../src/util/stats.ts';
import { GpuTimer, primaryMs, type TimingMethod } from './gpu-timer.ts';
import { decodeStepBytes, dispatchKind } from './step-bytes.ts';

export interface KindFigure {
  /** embedding, qkv_proj, qkv_prepare, attention, out_proj, proj_1, proj_2, lm_head, argmax or sample. */
  kind: string;
  dispatches: number;
  /** Summed over the kind's dispatches (median over runs). */
  ms: number;
  bytes: number;
  gb_s: number;
  /** ms over the sum of every kind's ms. */
  share: number;
}

export interface StepBreakdown {
  /** Keys the step's attention reads (the cached tokens and the new one). */
  context_tokens: number;
  /** 'timestamp-query': a pass per dispatch, timed on the GPU; 'wall-clock': a pass per kind. */
  method: TimingMethod;
  runs: number;
  kinds: KindFigure[];
  /** Sum of the kinds' ms. */
  sum_ms: number;
  /** The whole step in one compute pass (as the engine encodes it), same method; median. */
  step_ms: number;
  bytes: number;
  /** bytes / step_ms. */
  gb_s: number;
  /** The adapter's buffer-to-buffer copy bandwidth, when measured. */
  copy_gb_s?: number;
  /** gb_s / copy_gb_s: how close the step comes to reading its bytes at copy speed. */
  roofline_fraction?: number;
}

/** Times each dispatch in its own pass with timestamps; one submission of up to 2048 dispatches. */
async function timeEach(gpu: Gpu, ds: readonly Dispatch[]): Promise<number[]> {
  const { device } = gpu;
  const out: number[] = [];
  const per = 2048; // a query set holds at most 4096 timestamps
  for (let start = 0; start < ds.length; start += per) {
    const part = ds.slice(start, start + per);
    const n = part.length * 2;
    const qs = device.createQuerySet({ label: 'bench.step-ts', type: 'timestamp', count: n });
    const resolve = device.createBuffer({ label: 'bench.step-resolve', size: n * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const read = device.createBuffer({ label: 'bench.step-read', size: n * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    try {
      const enc = device.createCommandEncoder({ label: 'bench.step-each' });
      part.forEach((d, i) => {
        const pass = enc.beginComputePass({ label: d.label, timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
        pass.setPipeline(d.pipeline.pipeline);
        pass.setBindGroup(0, d.bindGroup);
        pass.dispatchWorkgroups(...d.workgroups);
        pass.end();
      });
      enc.resolveQuerySet(qs, 0, n, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, read, 0, n * 8);
      device.queue.submit([enc.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const ts = new BigUint64Array(read.getMappedRange().slice(0));
      read.unmap();
      gpu.checkErrors();
      for (let i = 0; i < part.length; i++) out.push(ts[2 * i + 1] > ts[2 * i] ? Number(ts[2 * i + 1] - ts[2 * i]) / 1e6 : 0);
    } finally {
      qs.destroy();
      resolve.destroy();
      read.destroy();
    }
  }
  return out;
}

/**
 * The breakdown of the engine's next decode step. Runs one real decodeStep first (it writes the
 * position the dispatches read), then reruns that step's dispatches: one warm-up, `runs` timed.
 * The reruns rewrite the step's cache entry from the next token, so the engine's state after
 * this is only good for more timing, not for output.
 */
export async function stepBreakdown(engine: Engine, timer: GpuTimer, o: { runs: number; copyGbs?: number; kvBytes?: number }): Promise<StepBreakdown> {
  const { gpu } = engine;
  await engine.decodeStep();
  const context = engine.length;
  const ds = engine.decodeStepDispatches;
  const kinds = [...new Set(ds.map((d) => dispatchKind(d.label)))];
  const byKind = new Map(kinds.map((k) => [k, ds.filter((d) => dispatchKind(d.label) === k)]));
  const runs = Math.max(1, o.runs);
  const kindSamples = new Map<string, number[]>(kinds.map((k) => [k, []]));
  const stepSamples: number[] = [];
  const method: TimingMethod = timer.method;
  for (let r = 0; r <= runs; r++) {
    const step = primaryMs(await timer.timeDispatches(ds, 'bench.step'));
    if (method === 'timestamp-query') {
      const each = await timeEach(gpu, ds);
      if (r === 0) continue; // warm-up
      for (const k of kinds) kindSamples.get(k)!.push(ds.reduce((s, d, i) => s + (dispatchKind(d.label) === k ? each[i] : 0), 0));
    } else {
      const group: number[] = [];
      for (const k of kinds) group.push(primaryMs(await timer.timeDispatches(byKind.get(k)!, `bench.${k}`)));
      if (r === 0) continue;
      kinds.forEach((k, i) => kindSamples.get(k)!.push(group[i]));
    }
    stepSamples.push(step);
  }
  const bytes = decodeStepBytes(engine.plan, engine.weights, context, o.kvBytes ?? (engine.kvDtype === 'f16' ? 2 : 4));
  const ms = kinds.map((k) => median(kindSamples.get(k)!));
  const sum = ms.reduce((a, b) => a + b, 0);
  const figures: KindFigure[] = kinds.map((kind, i) => {
    const b = bytes[kind] ?? 0;
    return { kind, dispatches: byKind.get(kind)!.length, ms: ms[i], bytes: b, gb_s: ms[i] > 0 ? b / (ms[i] * 1e6) : 0, share: sum > 0 ? ms[i] / sum : 0 };
  });
  const stepMs = median(stepSamples);
  const total = figures.reduce((s, f) => s + f.bytes, 0);
  const gbs = total / (stepMs * 1e6);
  const out: StepBreakdown = { context_tokens: context, method, runs, kinds: figures, sum_ms: sum, step_ms: stepMs, bytes: total, gb_s: gbs };
  if (o.copyGbs && o.copyGbs > 0) {
    out.copy_gb_s = o.copyGbs;
    out.roofline_fraction = gbs / o.copyGbs;
  }
  return out;
}
