// SiLU, optionally gated: out = silu(y[:, :dim]) * y[:, dim:] (GLU) or silu(y).
import type { Gpu } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/silu_gate.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { grid, makeDispatch, type Dispatch } from '../src/gpu/dispatch.ts';

const WG = 64;

export interface SiluGateOptions {
  tokens: number;
  dim: number;
  /** gated: y holds the gate then the up projection */
  glu: boolean;
  /** f32[tokens, glu ? 2 * dim : dim] */
  y: GPUBuffer;
  /** f32[tokens, dim] */
  out: GPUBuffer;
  label?: string;
}

export function siluGateDispatch(gpu: Gpu, o: SiluGateOptions): Dispatch {
  if (!(Number.isInteger(o.tokens) && o.tokens >= 1 && Number.isInteger(o.dim) && o.dim >= 1)) {
    throw new Error(`silu_gate: tokens (${o.tokens}) and dim (${o.dim}) must be positive integers`);
  }
  const count = o.tokens * o.dim;
  const p = gpu.pipeline({
    label: o.glu ? 'silu_gate' : 'silu',
    code: preprocess(shaderSource('silu_gate', builtIn), { GLU: o.glu }),
    bindings: ['uniform', 'read', 'write'],
    constants: { WG },
  });
  return makeDispatch(gpu, p, o.label ?? (o.glu ? 'silu_gate' : 'silu'), [count, o.dim], [o.y, o.out], grid(gpu, Math.ceil(count / WG)));
}

export function silu(a: number): number {
  return a >= 0 ? a / (1 + Math.exp(-a)) : (a * Math.exp(a)) / (1 + Math.exp(a));
}

/** CPU reference. */
export function siluGateRef(y: Float32Array, tokens: number, dim: number, glu: boolean): Float32Array {
  const out = new Float32Array(tokens * dim);
  const width = glu ? 2 * dim : dim;
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < dim; i++) {
      const a = silu(y[t * width + i]);
      out[t * dim + i] = glu ? a * y[t * width + dim + i] : a;
    }
  }
  return out;
}
