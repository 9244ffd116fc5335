// The matmul's correctness gate, shared by the doctor, the kernel lab (bench --kernel-variant) and
// the tests: the matmul as it is now compiled (built-in or a variant) on random shapes that divide
// no tile, in full, against the CPU product over the weights as stored, in every fused form the
// engine uses.
import type { Gpu } from '../gpu/gpu.ts';
import { releaseDispatches, runDispatches } from '../gpu/dispatch.ts';
import { matmulRef } from '../../kernels/matmul.ts';
import { foldColumnScale, interleaveGateUp, matmulDispatches, type GemvKernel, type MatmulOptions } from '../runtime/linear.ts';
import { dequantize } from '../weights/quant.ts';
import { destroyWeight, uploadWeight, type WeightFormat } from '../weights/gpu-weight.ts';

/** Fills an array with uniform values in [-scale, scale) from a xorshift stream (fast, seeded). */
export function randomFill(n: number, seed: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  const k = (2 * scale) / 4294967296;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s >>> 0) * k - scale;
  }
  return out;
}

/** A fused form of the product: folded means the norm weights are multiplied into W's columns (q8/q4 layers). */
export interface MatmulForm {
  accumulate?: boolean;
  norm?: boolean;
  folded?: boolean;
  gate?: boolean;
}

/** Every form the engine dispatches: plain, accumulating (residual add), norm in front, norm + gated SiLU, folded norm + gated SiLU. */
export const MATMUL_FORMS: readonly { name: string; form: MatmulForm }[] = [
  { name: 'plain', form: {} },
  { name: 'accumulate', form: { accumulate: true } },
  { name: 'norm', form: { norm: true } },
  { name: 'norm+silu-gate', form: { norm: true, gate: true } },
  { name: 'folded-norm+silu-gate', form: { norm: true, folded: true, gate: true } },
];

// T = 1 shapes in both kinds of K (the coalesced GEMV takes K in whole 32s, falls back otherwise)
// and T > 1 shapes (the tiled kernel), none dividing a tile. N even for the gated form's row pairs.
const SHAPES: readonly [number, number, number][] = [
  [1, 38, 70],
  [1, 66, 96],
  [5, 34, 257],
  [17, 130, 64],
];

/** Per-element tolerance: 1e-4 * (|reference| + 1), against the product over the stored (rounded) weights. */
export const MATMUL_TOL = 1e-4;

export interface MatmulCheck {
  /** Worst |error| / tolerance over every output (< 1 passes; Infinity for NaN). */
  ratio: number;
  /** Worst |error| (Infinity for NaN). */
  maxAbs: number;
}

/** The T > 1 kernel and the f16 weight read a check forces (default: what the engine would run by default). */
export type MatmulKernelChoice = Pick<MatmulOptions, 'prefill' | 'shaderF16'>;

/** Checks one fused form over every shape. */
export async function checkMatmulForm(gpu: Gpu, format: WeightFormat, gemv: GemvKernel, form: MatmulForm, kernel: MatmulKernelChoice = {}): Promise<MatmulCheck> {
  let ratio = 0;
  let maxAbs = 0;
  for (const [T, N, K] of SHAPES) {
    const seed = 7 * N + K;
    const raw = randomFill(N * K, seed, 1 / Math.sqrt(K));
    const xData = randomFill(T * K, 3 * T + 1, 1);
    const gData = randomFill(K, seed + 1, 0.5).map((v) => 1 + v);
    const scaled = form.folded ? foldColumnScale(raw, N, K, gData) : raw;
    const wData = form.gate ? interleaveGateUp(scaled, N, K) : scaled;
    const y0 = randomFill(T * N, seed + 2, 1);
    const eps = 1e-6;
    const outN = form.gate ? N / 2 : N;
    const w = uploadWeight(gpu, 'lab.w', wData, N, K, format, undefined, form.gate ? 2 : 1);
    const x = gpu.upload('lab.x', xData);
    const g = gpu.upload('lab.g', gData);
    const y = gpu.upload('lab.y', y0.subarray(0, T * outN));
    const ds = matmulDispatches(gpu, w, {
      tokens: T,
      x,
      y,
      gemv,
      ...kernel,
      accumulate: form.accumulate,
      norm: form.norm ? (form.folded ? { eps } : { weight: g, eps }) : undefined,
      activation: form.gate ? 'silu-gate' : undefined,
      label: 'lab check',
    });
    try {
      runDispatches(gpu, ds, 'lab check');
      const got = await gpu.readF32(y, T * outN);
      const want = matmulRef(xData, dequantize(wData, N, K, format), T, N, K, {
        acc: form.accumulate ? y0.subarray(0, T * outN) : undefined,
        norm: form.norm ? { weight: form.folded ? undefined : gData, eps } : undefined,
        activation: form.gate ? 'silu-gate' : undefined,
      });
      for (let i = 0; i < got.length; i++) {
        const err = Math.abs(got[i] - want[i]);
        const e = Number.isNaN(err) ? Infinity : err;
        maxAbs = Math.max(maxAbs, e);
        ratio = Math.max(ratio, e / (MATMUL_TOL * (Math.abs(want[i]) + 1)));
      }
    } finally {
      releaseDispatches(gpu, ds);
      destroyWeight(gpu, w);
      for (const b of [x, g, y]) gpu.destroyBuffer(b);
    }
  }
  return { ratio, maxAbs };
}

/**
 * The kernel lab's gate: every fused form on every shape; returns the worst |error| / tolerance
 * (< 1 passes).
 */
export async function checkMatmulFully(gpu: Gpu, format: WeightFormat, gemv: GemvKernel = 'rows'): Promise<number> {
  let worst = 0;
  for (const { form } of MATMUL_FORMS) worst = Math.max(worst, (await checkMatmulForm(gpu, format, gemv, form)).ratio);
  return worst;
}
