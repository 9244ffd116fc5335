// Our matmul alone on one shape, as the Node harness and the demo's benchmark page both time it:
// the model's biggest shapes, random weights in a format, the timed runs, and a check of a few
// outputs against the CPU. Browser-safe: no node: imports here; the Node harness layers load
// sampling on top (kernels.ts).
import type { ModelPlan } from '../src/config/plan.ts';
import type { Gpu } from '../src/gpu/gpu.ts';
import { releaseDispatches } from '../src/gpu/dispatch.ts';
import { matmulDispatches, type GemvKernel } from '../src/runtime/linear.ts';
import { randomFill } from '../src/doctor/matmul-check.ts';
import { destroyWeight, uploadWeight, type WeightFormat } from '../src/weights/gpu-weight.ts';
import { timeRepeated, type AroundTiming, type GpuTimer, type Timed } from './gpu-timer.ts';
import type { Stat } from './stats.ts';

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

export interface MatmulFigures {
  /** Bytes of weights the kernel reads (f16: 2 per value; quantized formats include their scales). */
  weight_bytes: number;
  flops: number;
  /** Weight bytes read per second, at the median time. */
  gb_s: number;
  gflop_s: number;
  /** gb_s over the adapter's copy bandwidth, when it was measured. */
  fraction_of_copy?: number;
}

/** Bytes, flops and rates of a matmul timed at `ms`. */
export function matmulFigures(shape: Pick<KernelShape, 'T' | 'N' | 'K'>, weightBytes: number, ms: Stat, copyGbs?: number): MatmulFigures {
  const flops = 2 * shape.T * shape.N * shape.K;
  const gb_s = weightBytes / (ms.median / 1000) / 1e9;
  return {
    weight_bytes: weightBytes,
    flops,
    gb_s,
    gflop_s: flops / (ms.median / 1000) / 1e9,
    // Absent rather than undefined: the figure goes to JSON as it is.
    ...(copyGbs ? { fraction_of_copy: gb_s / copyGbs } : {}),
  };
}

/** Checks outputs (t, n) of y = x W^T against the CPU; returns max |err| / tolerance. */
export function checkMatmul(y: Float32Array, x: Float32Array, w: Float32Array, shape: Pick<KernelShape, 'T' | 'N' | 'K'>, relTol: number): number {
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
export const MATMUL_REL_TOL: Readonly<Record<WeightFormat, number>> = { f32: 1e-5, f16: 2e-3, q8: 2e-2, q4: 0.2 };

/** Our matmul timed on one shape. */
export interface MatmulTiming extends Timed, MatmulFigures {
  /** GEMV shapes: which one-token kernel ran (MatmulOptions.gemv). */
  gemv?: GemvKernel;
  dispatches: number;
  /** Largest |error| / tolerance of a few outputs checked against the CPU (< 1 passes). */
  check: number;
}

/**
 * Times our matmul kernel alone on one shape, with random weights in `format`, and checks a few
 * of its outputs against the CPU (`check` < 1 passes: the caller decides what a failure means).
 */
export async function timeOurMatmul(
  gpu: Gpu,
  timer: GpuTimer,
  shape: KernelShape,
  format: WeightFormat,
  o: { runs: number; budgetMs: number; copyGbs?: number; gemv?: GemvKernel; around?: AroundTiming },
): Promise<MatmulTiming> {
  const { T, N, K } = shape;
  // Seeds from the shape: the same weights for every engine and run (tfjs.ts uses them too).
  const wData = randomFill(N * K, 0x9e3779b9 ^ (N * 31 + K), 1 / Math.sqrt(K));
  const xData = randomFill(T * K, 12345 + T, 1);
  const w = uploadWeight(gpu, `bench.${shape.name}`, wData, N, K, format);
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const x = gpu.upload('bench.x', xData);
  const y = gpu.createBuffer('bench.y', T * N * 4, usage);
  const gemv = shape.kind === 'gemv' ? (o.gemv ?? 'rows') : undefined;
  const dispatches = matmulDispatches(gpu, w, { tokens: T, x, y, gemv, label: `bench ${shape.name}` });
  try {
    const timed = () => timeRepeated(() => timer.timeDispatches(dispatches, shape.name), o.runs, o.budgetMs);
    const t = await (o.around ? o.around(timed) : timed());
    const check = checkMatmul(await gpu.readF32(y, T * N), xData, wData, shape, MATMUL_REL_TOL[format]);
    return {
      ...t,
      ...(gemv ? { gemv } : {}),
      dispatches: dispatches.length,
      // Every byte of the weight's buffers (values, and the scales of quantized formats) is read once.
      ...matmulFigures(shape, w.chunks.reduce((a, c) => a + c.buffer.size, 0), t.ms, o.copyGbs),
      check,
    };
  } finally {
    releaseDispatches(gpu, dispatches);
    destroyWeight(gpu, w);
    gpu.destroyBuffer(x);
    gpu.destroyBuffer(y);
  }
}
