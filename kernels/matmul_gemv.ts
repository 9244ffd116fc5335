// The one-token product, coalesced (shaders/matmul_gemv.wgsl): a workgroup a block of 4 weight
// rows, its threads striding over K in 16-byte units, summed with subgroup operations where the
// device has them (else a tree in workgroup memory). Every weight format and fused form of
// kernels/matmul.ts; K must be a whole number of units (f32: 4, f16: 8, q8/q4: 32), which
// src/runtime/linear.ts checks before choosing this kernel (gemvTakes). The CPU reference of every
// form is matmulRef (kernels/matmul.ts) over the weights as stored (dequantize).
import type { Gpu } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/matmul_gemv.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { grid, type Dispatch } from '../src/gpu/dispatch.ts';
import type { GpuWeight, GpuWeightFormat } from '../src/weights/gpu-weight.ts';
import { checkMatmulInputs, chunkDispatch, fusionDefines, matmulBindings, variantName, yOffset, type MatmulOptions } from './matmul.ts';

const GEMV_WG = 64;

/** Weights a unit (16 bytes of weights; a q8/q4 group of 32) of the kernel's K loop. */
function unitOf(format: GpuWeightFormat): number {
  return format === 'q8' || format === 'q4' ? 32 : format === 'f16' ? 8 : 4;
}

/** Whether the coalesced kernel takes a weight: K a whole number of its units. */
export function gemvTakes(w: GpuWeight): boolean {
  // MLX's affine codes (mlx4/mlx8) run matmul_affine for every T.
  if (w.format === 'mlx4' || w.format === 'mlx8') return false;
  return w.cols % unitOf(w.format) === 0;
}

export function matmulGemvDispatches(gpu: Gpu, w: GpuWeight, o: MatmulOptions): Dispatch[] {
  const label = o.label ?? `matmul ${w.label}`;
  if (o.tokens !== 1) throw new Error(`${label}: the coalesced GEMV computes one token, got tokens = ${o.tokens}`);
  if (!gemvTakes(w)) throw new Error(`${label}: the coalesced GEMV needs K a multiple of ${unitOf(w.format)} for ${w.format} weights, got ${w.cols}`);
  const { gate } = checkMatmulInputs(w, o, label);
  const quant = w.format === 'q8' || w.format === 'q4';
  const subgroups = (o.subgroups ?? true) && gpu.features.subgroups;
  const defines = { SUBGROUPS: subgroups, QUANT: quant, Q4: w.format === 'q4', F16: w.format === 'f16', ...fusionDefines(o) };
  const code = preprocess(shaderSource('matmul_gemv', builtIn), defines);
  const p = gpu.pipeline({ label: `matmul gemv ${variantName(w.format, defines)}`, code, bindings: matmulBindings(o), constants: { WG: GEMV_WG } });
  return w.chunks.map((c, i) => {
    const params = [c.rows, w.cols, w.rowWords / 4, yOffset(c, gate), c.scaleOffset / 4, w.scaleRowWords / 4];
    return chunkDispatch(gpu, p, w, i, label, params, o, grid(gpu, Math.ceil(c.rows / 4)));
  });
}
