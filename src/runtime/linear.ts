// The model's linear layers: one entry point for every matrix product with a weight, which picks
// the kernel by weight format, token count and the `gemv` option (the fused forms are the same in
// all three; see kernels/matmul.ts):
//   f32/f16 weights -> matmul (a thread 4 rows; T > 1 register-tiled over 4 tokens)
//   q8/q4 weights   -> matmul_q (the same layout, quantized weights decoded in registers)
//   mlx4/mlx8 (MLX's affine codes, as stored) -> matmul_affine (the same layout), for every T
//   one token with gemv 'coalesced' and K a whole number of its units -> matmul_gemv
//   f32/f16 weights, T > 1 with prefill 'tiled' -> matmul_tiled (blocks in workgroup memory)
// and times the two one-token kernels (tuneGemv) and the two T > 1 ones (tunePrefillMatmul) on
// this device.
import type { Gpu } from '../gpu/gpu.ts';
import { medianSubmitMs, releaseDispatches, type Dispatch } from '../gpu/dispatch.ts';
import type { GpuWeight, GpuWeightFormat } from '../weights/gpu-weight.ts';
import { GEMV_KERNELS, matmulFloatDispatches, type GemvKernel, type MatmulOptions } from '../../kernels/matmul.ts';
import { matmulQuantDispatches } from '../../kernels/matmul_q.ts';
import { matmulAffineDispatches } from '../../kernels/matmul_affine.ts';
import { isAffineFormat } from '../weights/affine.ts';
import { gemvTakes, matmulGemvDispatches } from '../../kernels/matmul_gemv.ts';
import { matmulTiledDispatches, tiledTakes } from '../../kernels/matmul_tiled.ts';
import { PREFILL_KERNELS, type PrefillKernel } from '../../kernels/matmul.ts';

export { foldColumnScale, gateUpSourceRow, GEMV_KERNELS, interleaveGateUp, MATMUL_ROWS_PER_THREAD, MATMUL_TOKEN_TILE, PREFILL_KERNELS, type GemvKernel, type MatmulOptions, type PrefillKernel } from '../../kernels/matmul.ts';

export type MatmulKernelName = 'matmul' | 'matmul_q' | 'matmul_gemv' | 'matmul_tiled' | 'matmul_affine';

/** The weight formats each matmul kernel takes. */
export const MATMUL_KERNEL_FORMATS: Readonly<Record<MatmulKernelName, readonly GpuWeightFormat[]>> = {
  matmul: ['f32', 'f16'],
  matmul_q: ['q8', 'q4'],
  matmul_gemv: ['f32', 'f16', 'q8', 'q4'],
  matmul_tiled: ['f32', 'f16'],
  matmul_affine: ['mlx4', 'mlx8'],
};

/** The kernel (shaders/NAME.wgsl) a product with `weight` over `tokens` tokens runs. */
export function matmulKernel(weight: GpuWeight, tokens: number, gemv: GemvKernel = 'rows', prefill: PrefillKernel = 'register'): MatmulKernelName {
  if (isAffineFormat(weight.format)) return 'matmul_affine';
  if (tokens === 1 && gemv === 'coalesced' && gemvTakes(weight)) return 'matmul_gemv';
  if (tokens > 1 && prefill === 'tiled' && tiledTakes(weight)) return 'matmul_tiled';
  return weight.format === 'q8' || weight.format === 'q4' ? 'matmul_q' : 'matmul';
}

/** y (= or +=) the fused product of x with `weight`: one dispatch per weight chunk. */
export function matmulDispatches(gpu: Gpu, weight: GpuWeight, opts: MatmulOptions): Dispatch[] {
  switch (matmulKernel(weight, opts.tokens, opts.gemv, opts.prefill)) {
    case 'matmul_gemv':
      return matmulGemvDispatches(gpu, weight, opts);
    case 'matmul_tiled':
      return matmulTiledDispatches(gpu, weight, opts);
    case 'matmul_q':
      return matmulQuantDispatches(gpu, weight, opts);
    case 'matmul_affine':
      return matmulAffineDispatches(gpu, weight, opts);
    case 'matmul':
      return matmulFloatDispatches(gpu, weight, opts);
  }
}

export interface GemvTuning {
  choice: GemvKernel;
  /** Median ms of one product with `weight`, per kernel. */
  ms: Record<GemvKernel, number>;
}

/**
 * Times the one-token product with `weight` (plain, random input) in each GEMV kernel on this
 * device and picks the faster: a thread a row wins on CPU rasterizers like SwiftShader, coalesced
 * reads are what GPU memory systems want.
 */
export async function tuneGemv(gpu: Gpu, weight: GpuWeight, runs = 5): Promise<GemvTuning> {
  const x = gpu.upload('tune.x', new Float32Array(weight.cols).map((_, i) => Math.sin(i)));
  const y = gpu.createBuffer('tune.y', weight.rows * 4, GPUBufferUsage.STORAGE);
  const ms = {} as Record<GemvKernel, number>;
  try {
    for (const kind of GEMV_KERNELS) {
      const ds = matmulDispatches(gpu, weight, { tokens: 1, x, y, gemv: kind, label: `tune ${kind}` });
      try {
        ms[kind] = await medianSubmitMs(gpu, ds, runs, 'tune');
      } finally {
        releaseDispatches(gpu, ds);
      }
    }
  } finally {
    gpu.destroyBuffer(x);
    gpu.destroyBuffer(y);
  }
  gpu.checkErrors();
  return { choice: ms.coalesced < ms.rows ? 'coalesced' : 'rows', ms };
}

/** The T > 1 matmul a model runs, and why. */
export interface PrefillChoice {
  choice: PrefillKernel;
  why: string;
  /** When timed: median ms of one product per kernel, over `tokens` tokens. */
  ms?: Partial<Record<PrefillKernel, number>>;
  tokens?: number;
  /** The timing was remembered from an earlier load on this adapter (see runtime/tuning.ts). */
  remembered?: boolean;
}

/** Times both prefill kernels (or recalls their timing): the default measures them now. */
export type PrefillTimer = (weight: GpuWeight, tokens: number) => Promise<{ choice: PrefillKernel; ms: Partial<Record<PrefillKernel, number>>; remembered?: boolean }>;

/**
 * The prefill matmul for `option` ('auto' or a kernel) with `weight` (the model's widest proj_1)
 * at `tokens` tokens (the prefill chunk). 'auto' times both, except on a fallback adapter (a CPU
 * rasterizer like SwiftShader), where workgroup memory and barriers are slow and timing would only
 * slow the load: there the register-tiled kernel is kept untimed.
 */
export async function choosePrefillMatmul(
  gpu: Gpu,
  weight: GpuWeight,
  tokens: number,
  option: PrefillKernel | 'auto',
  time: PrefillTimer = (w, t) => tunePrefillMatmul(gpu, w, t),
): Promise<PrefillChoice> {
  if (option !== 'auto') {
    if (!PREFILL_KERNELS.includes(option)) throw new Error(`prefillMatmul must be auto, ${PREFILL_KERNELS.join(' or ')}, got ${String(option)}`);
    return { choice: option, why: 'set by the prefillMatmul option' };
  }
  if (!tiledTakes(weight)) return { choice: 'register', why: `${weight.format} weights: the tiled kernel takes f32 and f16 only` };
  if (tokens < 2) return { choice: 'register', why: 'prefill chunks of one token run the one-token kernels' };
  if (gpu.info.isFallback) return { choice: 'register', why: 'fallback adapter (a CPU rasterizer): workgroup memory and barriers are slow there, so the register-tiled kernel is kept without timing' };
  const t = await time(weight, tokens);
  const ms = (k: PrefillKernel) => (t.ms[k] ?? NaN).toFixed(3);
  const when = t.remembered ? 'when timed on this adapter before (remembered)' : 'timed now';
  return { choice: t.choice, ms: t.ms, tokens, remembered: !!t.remembered, why: `${t.choice} was faster at ${tokens} tokens, ${when} (register ${ms('register')} ms, tiled ${ms('tiled')} ms per product)` };
}

export interface PrefillTuning {
  choice: PrefillKernel;
  /** Median ms of one product with `weight` over `tokens` tokens, per kernel. */
  ms: Record<PrefillKernel, number>;
  tokens: number;
}

/**
 * Times the T-token product with `weight` (norm in front and gated SiLU behind, as proj_1 runs; x
 * random) in the register-tiled and the workgroup-tiled kernel on this device and picks the
 * faster. Weights the tiled kernel does not take (q8/q4) stay on 'register' untimed.
 */
export async function tunePrefillMatmul(gpu: Gpu, weight: GpuWeight, tokens: number, runs = 3): Promise<PrefillTuning> {
  if (!tiledTakes(weight) || tokens < 2) return { choice: 'register', ms: { register: NaN, tiled: NaN }, tokens };
  const K = weight.cols;
  const gate = weight.rows % 2 === 0 && weight.chunks.every((c) => c.rowStart % 2 === 0 && c.rows % 2 === 0);
  const x = gpu.upload('tune.x', new Float32Array(tokens * K).map((_, i) => Math.sin(i)));
  const g = gpu.upload('tune.g', new Float32Array(K).fill(1));
  const y = gpu.createBuffer('tune.y', tokens * weight.rows * 4, GPUBufferUsage.STORAGE);
  const ms = {} as Record<PrefillKernel, number>;
  try {
    for (const kind of PREFILL_KERNELS) {
      const ds = matmulDispatches(gpu, weight, { tokens, x, y, prefill: kind, norm: { weight: g, eps: 1e-6 }, activation: gate ? 'silu-gate' : undefined, label: `tune ${kind}` });
      try {
        ms[kind] = await medianSubmitMs(gpu, ds, runs, 'tune');
      } finally {
        releaseDispatches(gpu, ds);
      }
    }
  } finally {
    for (const b of [x, g, y]) gpu.destroyBuffer(b);
  }
  gpu.checkErrors();
  return { choice: ms.tiled < ms.register ? 'tiled' : 'register', ms, tokens };
}
