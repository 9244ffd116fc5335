// Attention-input preparation: split a fused QKV projection into heads, optional per-head RMSNorm
// of queries and keys, rotate-half RoPE, and the key/value cache writes, in one dispatch.
import type { Gpu } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/qkv_prepare.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { grid, makeDispatch, type Dispatch } from '../src/gpu/dispatch.ts';
import { roundF16 } from '../src/util/half.ts';
import type { KvDtype } from './attention.ts';

const WG = 64;

export interface QkvPrepareOptions {
  tokens: number;
  numQ: number;
  numKv: number;
  /** even, up to 256 */
  headDim: number;
  /** rows per KV head in the caches */
  maxContext: number;
  eps: number;
  /** RMS-normalise query and key heads (the weights are bound either way) */
  normalize: boolean;
  /** f32[tokens, (numQ + 2 numKv) * headDim]: query heads, then key heads, then value heads */
  qkv: GPUBuffer;
  /** f32[headDim], shared by all query heads */
  qNorm: GPUBuffer;
  /** f32[headDim], shared by all key heads */
  kNorm: GPUBuffer;
  /** ropeTable(headDim, >= maxContext, theta), uploaded once */
  rope: GPUBuffer;
  /** uniform, u32 at byte 0: absolute position of the first token */
  position: GPUBuffer;
  /** f32[tokens, numQ, headDim] */
  q: GPUBuffer;
  /** [numKv, maxContext, headDim] of kvDtype (f16: two per u32, low half first) */
  kCache: GPUBuffer;
  /** [numKv, maxContext, headDim] of kvDtype */
  vCache: GPUBuffer;
  label?: string;
  /** default 'f32' */
  kvDtype?: KvDtype;
}

export function qkvPrepareDispatch(gpu: Gpu, o: QkvPrepareOptions): Dispatch {
  for (const k of ['tokens', 'numQ', 'numKv', 'headDim', 'maxContext'] as const) {
    if (!(Number.isInteger(o[k]) && o[k] >= 1)) throw new Error(`qkv_prepare: ${k} = ${o[k]} must be a positive integer`);
  }
  if (o.headDim % 2 !== 0) throw new Error(`qkv_prepare: headDim ${o.headDim} must be even for rotate-half RoPE`);
  if (o.kvDtype !== undefined && o.kvDtype !== 'f32' && o.kvDtype !== 'f16') throw new Error(`qkv_prepare: kvDtype must be f32 or f16, got ${String(o.kvDtype)}`);
  const p = gpu.pipeline({
    label: 'qkv_prepare',
    code: preprocess(shaderSource('qkv_prepare', builtIn), { KV_F16: o.kvDtype === 'f16' }),
    bindings: ['uniform', 'read', 'read', 'read', 'read', 'uniform', 'write', 'write', 'write'],
    constants: { WG },
  });
  const threads = o.tokens * (o.numQ + 2 * o.numKv);
  return makeDispatch(
    gpu,
    p,
    o.label ?? 'qkv_prepare',
    [o.tokens, o.numQ, o.numKv, o.headDim, o.maxContext, o.normalize ? 1 : 0, { f: o.eps }],
    [o.qkv, o.qNorm, o.kNorm, o.rope, o.position, o.q, o.kCache, o.vCache],
    grid(gpu, Math.ceil(threads / WG)),
  );
}

/**
 * RoPE cos/sin table, [maxPositions, headDim/2, 2] as (cos, sin), for rotate-half RoPE with
 * inv_freq_i = theta^(-2i/headDim). Computed in float64, stored as f32.
 */
export function ropeTable(headDim: number, maxPositions: number, theta: number): Float32Array {
  const half = headDim / 2;
  const out = new Float32Array(maxPositions * half * 2);
  for (let i = 0; i < half; i++) {
    const invFreq = Math.pow(theta, (-2 * i) / headDim);
    for (let p = 0; p < maxPositions; p++) {
      const a = p * invFreq;
      out[(p * half + i) * 2] = Math.cos(a);
      out[(p * half + i) * 2 + 1] = Math.sin(a);
    }
  }
  return out;
}

export interface QkvPrepareRefResult {
  /** [tokens, numQ, headDim] */
  q: Float32Array;
  /** [numKv, tokens, headDim]: the rows written at positions position..position+tokens-1 */
  k: Float32Array;
  /** [numKv, tokens, headDim] */
  v: Float32Array;
}

/** CPU reference; `rope` is the same table the kernel reads. */
export function qkvPrepareRef(
  qkv: Float32Array,
  qNorm: Float32Array,
  kNorm: Float32Array,
  rope: Float32Array,
  o: { tokens: number; numQ: number; numKv: number; headDim: number; eps: number; normalize: boolean; position: number; kvDtype?: KvDtype },
): QkvPrepareRefResult {
  const { tokens: T, numQ: nq, numKv: nkv, headDim: hd } = o;
  const half = hd / 2;
  const heads = nq + 2 * nkv;
  const q = new Float32Array(T * nq * hd);
  const k = new Float32Array(nkv * T * hd);
  const v = new Float32Array(nkv * T * hd);
  for (let t = 0; t < T; t++) {
    const p = o.position + t;
    for (let h = 0; h < heads; h++) {
      const src = (t * heads + h) * hd;
      if (h >= nq + nkv) {
        v.set(qkv.subarray(src, src + hd), ((h - nq - nkv) * T + t) * hd);
        continue;
      }
      const isQ = h < nq;
      const x = Array.from(qkv.subarray(src, src + hd));
      if (o.normalize) {
        const w = isQ ? qNorm : kNorm;
        let ss = 0;
        for (const e of x) ss += e * e;
        const inv = 1 / Math.sqrt(ss / hd + o.eps);
        for (let i = 0; i < hd; i++) x[i] = x[i] * inv * w[i];
      }
      const out = isQ ? q : k;
      const dst = isQ ? (t * nq + h) * hd : ((h - nq) * T + t) * hd;
      for (let i = 0; i < half; i++) {
        const c = rope[(p * half + i) * 2];
        const s = rope[(p * half + i) * 2 + 1];
        out[dst + i] = x[i] * c - x[i + half] * s;
        out[dst + i + half] = x[i + half] * c + x[i] * s;
      }
    }
  }
  // An f16 cache stores each key and value rounded to nearest even (the queries stay f32).
  if (o.kvDtype === 'f16') for (const a of [k, v]) for (let i = 0; i < a.length; i++) a[i] = roundF16(a[i]);
  return { q, k, v };
}
