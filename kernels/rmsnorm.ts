// RMSNorm over rows: y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight.
import type { Gpu } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/rmsnorm.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { grid, makeDispatch, type Dispatch } from '../src/gpu/dispatch.ts';

export interface RmsNormOptions {
  rows: number;
  dim: number;
  eps: number;
  /** f32[rows, dim] */
  x: GPUBuffer;
  /** f32[dim] */
  weight: GPUBuffer;
  /** f32[rows, dim]; may not alias x */
  y: GPUBuffer;
  label?: string;
  /** threads per row; chosen from the adapter when omitted */
  workgroupSize?: number;
}

export function rmsNormDispatch(gpu: Gpu, o: RmsNormOptions): Dispatch {
  if (!(o.rows >= 1 && o.dim >= 1 && Number.isInteger(o.rows) && Number.isInteger(o.dim))) {
    throw new Error(`rmsnorm: rows (${o.rows}) and dim (${o.dim}) must be positive integers`);
  }
  const vec4 = o.dim % 4 === 0;
  // SwiftShader (the fallback adapter) runs 4-wide SIMD per CPU core and barriers in big
  // workgroups cost it dearly: 4 threads per row measured ~4x faster than 64 for 100 rows of 1280.
  const wg = Math.min(o.workgroupSize ?? (gpu.info.isFallback ? 4 : 64), gpu.limits.maxComputeInvocationsPerWorkgroup);
  const p = gpu.pipeline({
    label: 'rmsnorm',
    code: preprocess(shaderSource('rmsnorm', builtIn), { VEC4: vec4 }),
    bindings: ['uniform', 'read', 'read', 'write'],
    constants: { WG: wg },
  });
  const label = o.label ?? 'rmsnorm';
  return makeDispatch(gpu, p, label, [o.rows, o.dim, { f: o.eps }], [o.x, o.weight, o.y], grid(gpu, o.rows));
}

/** CPU reference (sum accumulated in f32 like the kernel). */
export function rmsNormRef(x: Float32Array, w: Float32Array, rows: number, dim: number, eps: number): Float32Array {
  const y = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss = Math.fround(ss + Math.fround(x[r * dim + i] * x[r * dim + i]));
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i] * inv * w[i];
  }
  return y;
}
