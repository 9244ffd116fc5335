// The matrix product with MLX affine-quantized weights (mlx4 / mlx8; shaders/matmul_affine.wgsl):
// codes and per-group scale and bias as MLX stores them (src/weights/affine.ts), decoded in
// registers; the thread-a-row layout of matmul_q (a thread 4 weight rows, T > 1: 4 tokens) and the
// fused forms of kernels/matmul.ts. It serves one-token and T > 1 products alike. Each weight is
// s q + b up to f32 roundings, so the CPU reference of every form is matmulRef (kernels/matmul.ts)
// over the dequantized weights (affineWeightsRef).
import type { Gpu } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/matmul_affine.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { grid, type Dispatch } from '../src/gpu/dispatch.ts';
import type { GpuWeight } from '../src/weights/gpu-weight.ts';
import { dequantizeAffine, isAffineFormat, type AffineTensor } from '../src/weights/affine.ts';
import { checkMatmulInputs, chunkDispatch, fusionDefines, matmulBindings, threadRowsSizing, tokenTiles, variantName, yOffset, type MatmulOptions } from './matmul.ts';

/** The affine weight's defines: code width and scale dtype. */
export function affineDefines(w: GpuWeight): { BITS8: boolean; SB_BF16: boolean; SB_F32: boolean } {
  return { BITS8: w.format === 'mlx8', SB_BF16: w.scaleDtype === 'BF16', SB_F32: w.scaleDtype === 'F32' };
}

/** vec4u of codes a group: G weights of 4 (8) bits are G / 32 (G / 16) vec4u. */
function groupVecs(w: GpuWeight): number {
  return (w.groupSize! * (w.format === 'mlx8' ? 8 : 4)) / 128;
}

export function matmulAffineDispatches(gpu: Gpu, w: GpuWeight, o: MatmulOptions): Dispatch[] {
  const label = o.label ?? `matmul ${w.label}`;
  if (!isAffineFormat(w.format) || !w.groupSize || !w.scaleDtype) throw new Error(`${label}: the matmul_affine kernel takes mlx4 or mlx8 weights, got ${w.format}`);
  const { gate, outCols } = checkMatmulInputs(w, o, label);
  const T = o.tokens;
  const defines = { ...affineDefines(w), TILE: T > 1, ...fusionDefines(o) };
  const code = preprocess(shaderSource('matmul_affine', builtIn), defines);
  const tiles = tokenTiles(T);
  return w.chunks.map((c, i) => {
    const { WG, workgroups } = threadRowsSizing(c.rows, tiles, o.workgroupSize);
    const p = gpu.pipeline({ label: `matmul ${variantName(w.format, defines)}`, code, bindings: matmulBindings(o), constants: { WG } });
    const params = [T, c.rows, w.cols, w.rowWords / 4, outCols, yOffset(c, gate), tiles, w.groups, c.scaleOffset, w.scaleRowWords, groupVecs(w)];
    return chunkDispatch(gpu, p, w, i, label, params, o, grid(gpu, workgroups));
  });
}

/**
 * The weights the kernel multiplies by, as f32 for matmulRef: s q + b of each weight, rows in the
 * order `srcRow` gives (as uploaded; e.g. the gate/up interleave).
 */
export function affineWeightsRef(t: AffineTensor, srcRow: (r: number) => number = (r) => r): Float32Array {
  const d = dequantizeAffine(t);
  const out = new Float32Array(t.rows * t.cols);
  for (let r = 0; r < t.rows; r++) {
    const s = srcRow(r);
    for (let k = 0; k < t.cols; k++) out[r * t.cols + k] = d[s * t.cols + k];
  }
  return out;
}
