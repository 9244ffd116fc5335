// Speculative sampling's acceptance (accept draft j with probability min(1, P/Q), resample the
// first rejected position from norm(max(P - Q, 0)), or draw the bonus token from P after k
// acceptances) on the GPU, so a verification reads back 8 bytes. See shaders/spec_accept.wgsl.
import type { Gpu } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/spec_accept.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { makeDispatch, type Dispatch } from '../src/gpu/dispatch.ts';
import { drawRef, SAMPLE_WG } from './sample.ts';

export interface SpecAcceptOptions {
  n: number;
  /** Drafts verified (rows of q); p has k + 1 rows. */
  k: number;
  /** f32 [k + 1, n]: the main model's kept weights (the sampler's DIST output). */
  p: GPUBuffer;
  /** f32 [k, n]: the draft model's kept weights. */
  q: GPUBuffer;
  /** u32 [k]: the drafted ids. */
  drafts: GPUBuffer;
  /** f32 [k + 1]: uniforms in [0, 1): k acceptance tests, then the draw. */
  random: GPUBuffer;
  /** u32 [2]: drafts accepted, then the next token. */
  out: GPUBuffer;
  /** f32 [n] scratch. */
  scratch: GPUBuffer;
  label?: string;
}

export function specAcceptDispatch(gpu: Gpu, o: SpecAcceptOptions): Dispatch {
  const label = o.label ?? 'spec_accept';
  if (!(Number.isInteger(o.n) && o.n >= 1 && Number.isInteger(o.k) && o.k >= 1 && (o.k + 1) * o.n < 2 ** 32)) {
    throw new Error(`${label}: n (${o.n}) and k (${o.k}) must be positive integers`);
  }
  const need = (what: string, buf: GPUBuffer, bytes: number): void => {
    if (buf.size < bytes) throw new Error(`${label}: ${what} buffer holds ${buf.size} bytes, needs at least ${bytes}`);
  };
  need('p', o.p, (o.k + 1) * o.n * 4);
  need('q', o.q, o.k * o.n * 4);
  need('drafts', o.drafts, o.k * 4);
  need('random', o.random, (o.k + 1) * 4);
  need('out', o.out, 8);
  need('scratch', o.scratch, o.n * 4);
  const inputs = [o.p, o.q, o.drafts, o.random];
  if (o.out === o.scratch || inputs.includes(o.out) || inputs.includes(o.scratch)) {
    throw new Error(`${label}: out and scratch must be buffers of their own`);
  }
  const pipeline = gpu.pipeline({ label, code: preprocess(shaderSource('spec_accept', builtIn)), bindings: ['uniform', 'read', 'read', 'read', 'read', 'write', 'write'] });
  return makeDispatch(gpu, pipeline, label, [o.n, o.k, 0, 0], [o.p, o.q, o.drafts, o.random, o.out, o.scratch], [1, 1, 1]);
}

const f32 = Math.fround;

/** A row's sum as the kernel takes it: strided per thread, then a fixed tree. */
function rowSum(w: Float32Array, base: number, n: number): number {
  const part = new Float32Array(SAMPLE_WG);
  for (let t = 0; t < SAMPLE_WG; t++) {
    let acc = 0;
    for (let i = t; i < n; i += SAMPLE_WG) acc = f32(acc + w[base + i]);
    part[t] = acc;
  }
  for (let s = SAMPLE_WG / 2; s > 0; s >>= 1) for (let t = 0; t < s; t++) part[t] = part[t] + part[t + s];
  return part[0];
}

/** CPU reference, bit for bit: { accepted, id } for weights p [k+1, n], q [k, n], drafts and k + 1 uniforms. */
export function specAcceptRef(p: Float32Array, q: Float32Array, drafts: readonly number[], random: readonly number[], n: number): { accepted: number; id: number } {
  const k = drafts.length;
  if (p.length < (k + 1) * n || q.length < k * n || random.length < k + 1) throw new Error('specAcceptRef: p, q or random too short');
  let row = k;
  let zp = 0;
  let zq = 0;
  for (let j = 0; j < k; j++) {
    zp = rowSum(p, j * n, n);
    zq = rowSum(q, j * n, n);
    const d = drafts[j];
    if (!(f32(f32(f32(random[j]) * q[j * n + d]) * zp) < f32(p[j * n + d] * zq))) {
      row = j;
      break;
    }
  }
  const resid = new Float32Array(n);
  for (let i = 0; i < n; i++) resid[i] = row < k ? Math.max(f32(f32(p[row * n + i] * zq) - f32(q[row * n + i] * zp)), 0) : p[row * n + i];
  const u = f32(random[k]);
  if (!resid.some((v) => v > 0)) return { accepted: row, id: drawRef(p.subarray(row * n, row * n + n), u) };
  return { accepted: row, id: drawRef(resid, u) };
}
