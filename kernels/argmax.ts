// Greedy decoding on the GPU: the index of the largest logit, so only 4 bytes are read back.
import type { Gpu } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/argmax.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { makeDispatch, type Dispatch } from '../src/gpu/dispatch.ts';

const WG = 256;

export interface ArgmaxOptions {
  n: number;
  /** element index of the first value in `logits` */
  offset: number;
  logits: GPUBuffer;
  /** u32; the index (relative to offset) is written at element 0 */
  out: GPUBuffer;
  label?: string;
}

export function argmaxDispatch(gpu: Gpu, o: ArgmaxOptions): Dispatch {
  if (!(Number.isInteger(o.n) && o.n >= 1 && Number.isInteger(o.offset) && o.offset >= 0)) {
    throw new Error(`argmax: n (${o.n}) must be a positive integer and offset (${o.offset}) a non-negative one`);
  }
  const wg = Math.min(WG, gpu.limits.maxComputeInvocationsPerWorkgroup);
  const p = gpu.pipeline({ label: 'argmax', code: preprocess(shaderSource('argmax', builtIn)), bindings: ['uniform', 'read', 'write'], constants: { WG: wg } });
  return makeDispatch(gpu, p, o.label ?? 'argmax', [o.n, o.offset], [o.logits, o.out], [1, 1, 1]);
}

/** CPU reference: lowest index of the maximum, NaN ignored, 0 when every value is NaN. */
export function argmaxRef(logits: Float32Array, n: number, offset = 0): number {
  let best = -1;
  for (let i = 0; i < n; i++) {
    const v = logits[offset + i];
    if (!Number.isNaN(v) && (best < 0 || v > logits[offset + best])) best = i;
  }
  return Math.max(best, 0);
}
