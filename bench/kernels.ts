// Kernel-level figures: our matmul alone at the decode (GEMV, one token) and prefill (GEMM, one
// chunk of tokens) shapes of the model's biggest layers, and the adapter's copy bandwidth, which
// is the ceiling a weight-streaming kernel can hope for on this device.
import type { ModelPlan } from '../src/config/plan.ts';
import type { Gpu } from '../src/gpu/gpu.ts';
import { releaseDispatches } from '../src/gpu/dispatch.ts';
import { matmulDispatches, type GemvKernel } from '../src/runtime/linear.ts';
import { randomFill } from '../src/doctor/matmul-check.ts';
import { destroyWeight, uploadWeight, type WeightFormat } from '../src/weights/gpu-weight.ts';
import { primaryMs, type GpuTime, type GpuTimer, type TimingMethod } from './gpu-timer.ts';
import { withLoad, type LoadSample } from './machine.ts';
import { repeat, summarize, type Stat } from './stats.ts';

export interface KernelShape {
  /** e.g. "proj_1 GEMV". */
  name: string;
  /** Which weight of which layer the shape is taken from. */
  source: string;
  kind: 'gemv' | 'gemm';
  T: number;
  N: number;
  K: number;
}

/**
 * The shapes of the model's biggest matrices: the widest proj_1 (gate and up, model_dim in),
 * the widest proj_2 (ffn_dim in), both as GEMV and as a GEMM of `gemmTokens` tokens (one prefill
 * chunk), and the tied lm_head as GEMV (prefill computes logits for the last token only).
 */
export function kernelShapes(plan: ModelPlan, gemmTokens: number): KernelShape[] {
  const D = plan.modelDim;
  const p1 = plan.layers.reduce((a, l) => (l.proj1Out > a.proj1Out ? l : a));
  const p2 = plan.layers.reduce((a, l) => (l.ffnDim > a.ffnDim ? l : a));
  const shapes: KernelShape[] = [
    { name: 'proj_1 GEMV', source: `layer ${p1.index} ffn.proj_1`, kind: 'gemv', T: 1, N: p1.proj1Out, K: D },
    { name: 'proj_2 GEMV', source: `layer ${p2.index} ffn.proj_2`, kind: 'gemv', T: 1, N: D, K: p2.ffnDim },
    { name: 'lm_head GEMV', source: plan.tiedEmbeddings ? 'token_embeddings (tied lm_head)' : 'lm_head', kind: 'gemv', T: 1, N: plan.vocabSize, K: D },
  ];
  if (gemmTokens > 1) {
    shapes.push(
      { name: `proj_1 GEMM T=${gemmTokens}`, source: `layer ${p1.index} ffn.proj_1`, kind: 'gemm', T: gemmTokens, N: p1.proj1Out, K: D },
      { name: `proj_2 GEMM T=${gemmTokens}`, source: `layer ${p2.index} ffn.proj_2`, kind: 'gemm', T: gemmTokens, N: D, K: p2.ffnDim },
    );
  }
  return shapes;
}

export interface MatmulResult {
  engine: 'ours' | 'tfjs';
  /** The kernel lab: the WGSL file that replaced the built-in kernel for this figure. */
  variant?: string;
  /** Ours, GEMV shapes: which one-token kernel (MatmulOptions.gemv). */
  gemv?: GemvKernel;
  name: string;
  kind: 'gemv' | 'gemm';
  dtype: string;
  /** Weight layout: "NK" ([out, in], ours and tfjs with transposeB) or "KN". */
  layout: string;
  T: number;
  N: number;
  K: number;
  dispatches: number;
  /** Bytes of weights the kernel reads (f16: 2 per value; quantized formats include their scales). */
  weight_bytes: number;
  flops: number;
  method: TimingMethod;
  ms: Stat;
  wall_ms: Stat;
  /** Weight bytes read per second, at the median time. */
  gb_s: number;
  gflop_s: number;
  /** gb_s over the adapter's copy bandwidth (copy_gb_s). */
  fraction_of_copy?: number;
  /** The only sample is the first run (compilation included): the kernel was too slow to repeat. */
  warmup_used: boolean;
  /** Largest |error| / tolerance of a few outputs checked against the CPU (< 1 passes). */
  check: number;
  load: LoadSample;
}

export interface CopyResult {
  bytes: number;
  method: TimingMethod;
  ms: Stat;
  wall_ms: Stat;
  /** Bytes copied per second at the median time (each byte is read once and written once). */
  gb_s: number;
  load: LoadSample;
}

interface Timed {
  samples: GpuTime[];
  warmupUsed: boolean;
}

async function timeRepeated(run: () => Promise<GpuTime>, runs: number, budgetMs: number): Promise<Timed> {
  const samples: GpuTime[] = [];
  const r = await repeat(
    async () => {
      const t = await run();
      samples.push(t);
      return primaryMs(t);
    },
    { warmup: 1, runs, budgetMs },
  );
  // repeat() collected warm-up samples too; keep the measured ones (the last n).
  return { samples: samples.slice(samples.length - r.samples.length), warmupUsed: r.warmupUsed };
}

export async function benchCopy(gpu: Gpu, timer: GpuTimer, o: { bytes: number; runs: number }): Promise<CopyResult> {
  const lim = gpu.limits.maxBufferSize;
  const bytes = Math.max(16, Math.floor(Math.min(o.bytes, lim) / 16) * 16);
  const usage = GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | GPUBufferUsage.STORAGE;
  const src = gpu.createBuffer('bench.copy-src', bytes, usage);
  const dst = gpu.createBuffer('bench.copy-dst', bytes, usage);
  try {
    // Touch both buffers first so that page faults are not timed.
    const enc = gpu.device.createCommandEncoder();
    enc.clearBuffer(src);
    enc.clearBuffer(dst);
    gpu.device.queue.submit([enc.finish()]);
    await gpu.device.queue.onSubmittedWorkDone();
    const { value: t, load } = await withLoad(() => timeRepeated(() => timer.timeCopy(src, dst, bytes), Math.max(3, o.runs), 5000));
    const ms = summarize(t.samples.map(primaryMs));
    return {
      bytes,
      method: t.samples.some((s) => s.gpuMs !== undefined) ? 'timestamp-query' : 'wall-clock',
      ms,
      wall_ms: summarize(t.samples.map((s) => s.wallMs)),
      gb_s: bytes / (ms.median / 1000) / 1e9,
      load,
    };
  } finally {
    gpu.destroyBuffer(src);
    gpu.destroyBuffer(dst);
  }
}

export function matmulFigures(shape: KernelShape, weightBytes: number, ms: Stat, copyGbs?: number) {
  const flops = 2 * shape.T * shape.N * shape.K;
  const gb_s = weightBytes / (ms.median / 1000) / 1e9;
  return {
    weight_bytes: weightBytes,
    flops,
    gb_s,
    gflop_s: flops / (ms.median / 1000) / 1e9,
    fraction_of_copy: copyGbs ? gb_s / copyGbs : undefined,
  };
}

/** Checks outputs (t, n) of y = x W^T against the CPU; returns max |err| / tolerance. */
export function checkMatmul(y: Float32Array, x: Float32Array, w: Float32Array, shape: KernelShape, relTol: number): number {
  const { T, N, K } = shape;
  let worst = 0;
  for (const t of [0, T - 1]) {
    for (const n of [0, Math.floor(N / 2), N - 1]) {
      let s = 0;
      let mag = 0;
      for (let k = 0; k < K; k++) {
        const p = x[t * K + k] * w[n * K + k];
        s += p;
        mag += p * p;
      }
      const tol = relTol * Math.sqrt(mag) + 1e-4;
      const err = Math.abs(y[t * N + n] - s);
      worst = Math.max(worst, Number.isNaN(err) ? Infinity : err / tol);
    }
  }
  return worst;
}

/**
 * Tolerance of the result check, relative to the norm of the products: loose enough for the
 * format's rounding (q4 steps are 1/8 of a group's largest weight), tight enough to catch a
 * dispatch that did nothing or read the wrong rows.
 */
const REL_TOL: Record<string, number> = { f32: 1e-5, f16: 2e-3, q8: 2e-2, q4: 0.2 };

/** Times our matmul kernel alone on one shape, with random weights in `format`. */
export async function benchOurMatmul(
  gpu: Gpu,
  timer: GpuTimer,
  shape: KernelShape,
  format: WeightFormat,
  o: { runs: number; budgetMs: number; copyGbs?: number; gemv?: GemvKernel },
): Promise<MatmulResult> {
  const { T, N, K } = shape;
  const wData = randomFill(N * K, 0x9e3779b9 ^ (N * 31 + K), 1 / Math.sqrt(K));
  const xData = randomFill(T * K, 12345 + T, 1);
  const w = uploadWeight(gpu, `bench.${shape.name}`, wData, N, K, format);
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const x = gpu.upload('bench.x', xData);
  const y = gpu.createBuffer('bench.y', T * N * 4, usage);
  const gemv = shape.kind === 'gemv' ? (o.gemv ?? 'rows') : undefined;
  const dispatches = matmulDispatches(gpu, w, { tokens: T, x, y, gemv, label: `bench ${shape.name}` });
  try {
    const { value: t, load } = await withLoad(() => timeRepeated(() => timer.timeDispatches(dispatches, shape.name), o.runs, o.budgetMs));
    const yData = await gpu.readF32(y, T * N);
    const check = checkMatmul(yData, xData, wData, shape, REL_TOL[format] ?? 0.2);
    if (!(check < 1)) throw new Error(`our ${format} matmul ${shape.name} gave wrong results (error ${check.toFixed(1)}x the tolerance): not timing a broken kernel`);
    const ms = summarize(t.samples.map(primaryMs));
    return {
      engine: 'ours',
      ...(gemv ? { gemv } : {}),
      name: shape.name,
      kind: shape.kind,
      dtype: format,
      layout: 'NK',
      T,
      N,
      K,
      dispatches: dispatches.length,
      // Every byte of the weight's buffers (values, and the scales of quantized formats) is read once.
      ...matmulFigures(shape, w.chunks.reduce((a, c) => a + c.buffer.size, 0), ms, o.copyGbs),
      method: t.samples.some((s) => s.gpuMs !== undefined) ? 'timestamp-query' : 'wall-clock',
      ms,
      wall_ms: summarize(t.samples.map((s) => s.wallMs)),
      warmup_used: t.warmupUsed,
      check,
      load,
    };
  } finally {
    releaseDispatches(gpu, dispatches);
    destroyWeight(gpu, w);
    gpu.destroyBuffer(x);
    gpu.destroyBuffer(y);
  }
}

/** How a matmul figure is labelled in tables and charts: engine, format, kernel kind, lab variant. */
export function matmulLabel(m: Pick<MatmulResult, 'engine' | 'dtype' | 'gemv' | 'variant'>): string {
  return `${m.engine} ${m.dtype}${m.gemv === 'coalesced' ? ' coalesced' : ''}${m.variant ? ` [${m.variant.split('/').pop()}]` : ''}`;
}
