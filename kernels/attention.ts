// Grouped-query causal attention over the KV cache with an online softmax; one kernel for prefill
// (many tokens, any starting position) and decode (one token).
import type { Gpu } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/attention.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { grid, makeDispatch, type Dispatch } from '../src/gpu/dispatch.ts';

/** Bytes of workgroup memory for merging the per-thread accumulators. */
const MERGE_BYTES = 4096;
export const MAX_HEAD_DIM = 256;

/** Element type of the KV cache: f32, or f16 packed two per u32 (half the memory and bytes read). */
export type KvDtype = 'f32' | 'f16';
export const KV_DTYPES: readonly KvDtype[] = ['f32', 'f16'];

/** Bytes of one cache (keys or values) of `numKv` heads over `maxContext` positions. */
export function kvCacheBytes(numKv: number, maxContext: number, headDim: number, dtype: KvDtype): number {
  return numKv * maxContext * headDim * (dtype === 'f16' ? 2 : 4);
}
/** With MERGE_BYTES, keeps workgroup memory at most 4 KiB + 8 bytes per thread (6 KiB). */
const MAX_WORKGROUP = 256;

export interface AttentionOptions {
  tokens: number;
  numQ: number;
  /** divides numQ; query head h reads KV head floor(h / (numQ / numKv)) */
  numKv: number;
  /** even, up to 256 */
  headDim: number;
  maxContext: number;
  /** f32[tokens, numQ, headDim] */
  q: GPUBuffer;
  /** [numKv, maxContext, headDim] of kvDtype (f16: two per u32, low half first) */
  kCache: GPUBuffer;
  /** [numKv, maxContext, headDim] of kvDtype */
  vCache: GPUBuffer;
  /** uniform, u32 at byte 0: absolute position of the first query token */
  position: GPUBuffer;
  /** f32[tokens, numQ, headDim] */
  out: GPUBuffer;
  label?: string;
  /** threads per (token, head) workgroup, 1..256; chosen from the adapter when omitted */
  workgroupSize?: number;
  /** default 'f32' */
  kvDtype?: KvDtype;
}

/** The checks both attention kernels make; returns HV's lane count (4: vec4, 2: vec2). */
export function checkAttentionShape(what: string, o: Pick<AttentionOptions, 'tokens' | 'numQ' | 'numKv' | 'headDim' | 'maxContext' | 'kvDtype'>): 2 | 4 {
  for (const k of ['tokens', 'numQ', 'numKv', 'headDim', 'maxContext'] as const) {
    if (!(Number.isInteger(o[k]) && o[k] >= 1)) throw new Error(`${what}: ${k} = ${o[k]} must be a positive integer`);
  }
  if (o.numQ % o.numKv !== 0) throw new Error(`${what}: numQ ${o.numQ} is not a multiple of numKv ${o.numKv}`);
  if (o.headDim % 2 !== 0 || o.headDim > MAX_HEAD_DIM) throw new Error(`${what}: headDim ${o.headDim} must be even and at most ${MAX_HEAD_DIM}`);
  if (o.kvDtype !== undefined && !KV_DTYPES.includes(o.kvDtype)) throw new Error(`${what}: kvDtype must be f32 or f16, got ${String(o.kvDtype)}`);
  return o.headDim % 4 === 0 ? 4 : 2;
}

export function attentionDispatch(gpu: Gpu, o: AttentionOptions): Dispatch {
  const lanes = checkAttentionShape('attention', o);
  const vec4 = lanes === 4;
  const hv = o.headDim / lanes;
  const wg = attentionWorkgroupSize(gpu, 'attention', o.workgroupSize);
  const ch = mergeVectors(hv, wg, lanes);
  const p = gpu.pipeline({
    label: 'attention',
    code: unrollHeadLoops(`const HV: u32 = ${hv}u;\n` + preprocess(shaderSource('attention', builtIn), { VEC4: vec4, KV_F16: o.kvDtype === 'f16' }), hv),
    bindings: ['uniform', 'read', 'read', 'read', 'uniform', 'write'],
    constants: { WG: wg, CH: ch },
  });
  const scale = Math.LOG2E / Math.sqrt(o.headDim);
  return makeDispatch(
    gpu,
    p,
    o.label ?? 'attention',
    [o.tokens, o.numQ, o.numQ / o.numKv, o.maxContext, { f: scale }],
    [o.q, o.kCache, o.vCache, o.position, o.out],
    grid(gpu, o.tokens * o.numQ),
  );
}

/**
 * Threads per (token, head). SwiftShader (the fallback adapter) runs 4-wide SIMD on CPU cores and
 * pays dearly for barriers in big workgroups: 4 threads measured fastest there for both decode
 * and prefill (64 threads: ~1.5x slower decode, 5-10x slower prefill). Elsewhere 64 threads give
 * a decode step enough parallelism while the merge stays cheap.
 */
function defaultWorkgroupSize(gpu: Gpu): number {
  return gpu.info.isFallback ? 4 : 64;
}

/** CH: accumulator vectors merged per round, one per thread, so CH <= WG; bounded by MERGE_BYTES. */
export function mergeVectors(hv: number, wg: number, lanes: number): number {
  return Math.max(1, Math.min(hv, wg, Math.floor(MERGE_BYTES / (wg * lanes * 4))));
}

/** Threads per workgroup: the caller's, else the adapter's default, within the device's limit. */
export function attentionWorkgroupSize(gpu: Gpu, what: string, asked?: number): number {
  const wg = Math.min(asked ?? defaultWorkgroupSize(gpu), MAX_WORKGROUP, gpu.limits.maxComputeInvocationsPerWorkgroup);
  if (!(Number.isInteger(wg) && wg >= 1)) throw new Error(`${what}: workgroupSize ${asked} must be a positive integer`);
  return wg;
}

const HEAD_LOOP = 'for (var d = 0u; d < HV; d++) {';

/** Replaces each `for (var d = 0u; d < HV; d++) { body }` with hv copies of body, d = 0u, 1u, ... */
export function unrollHeadLoops(code: string, hv: number): string {
  let out = '';
  let from = 0;
  for (let at = code.indexOf(HEAD_LOOP); at >= 0; at = code.indexOf(HEAD_LOOP, from)) {
    const start = at + HEAD_LOOP.length;
    const end = code.indexOf('}', start);
    const body = code.slice(start, end);
    if (end < 0 || body.includes('{')) throw new Error('unrollHeadLoops: loop bodies must be brace-free');
    out += code.slice(from, at) + '{';
    for (let d = 0; d < hv; d++) out += body.replace(/\bd\b/g, `${d}u`);
    out += '}';
    from = end + 1;
  }
  return out + code.slice(from);
}

/** CPU reference in float64. */
export function attentionRef(
  q: Float32Array,
  kCache: Float32Array,
  vCache: Float32Array,
  o: { tokens: number; numQ: number; numKv: number; headDim: number; maxContext: number; position: number },
): Float32Array {
  const { tokens: T, numQ: nq, numKv: nkv, headDim: hd, maxContext: ctx } = o;
  const group = nq / nkv;
  const scale = 1 / Math.sqrt(hd);
  const out = new Float32Array(T * nq * hd);
  for (let t = 0; t < T; t++) {
    const keys = Math.min(o.position + t + 1, ctx);
    for (let h = 0; h < nq; h++) {
      const qo = (t * nq + h) * hd;
      const kv = Math.floor(h / group) * ctx * hd;
      const s = new Float64Array(keys);
      let m = -Infinity;
      for (let j = 0; j < keys; j++) {
        let dot = 0;
        for (let d = 0; d < hd; d++) dot += q[qo + d] * kCache[kv + j * hd + d];
        s[j] = dot * scale;
        m = Math.max(m, s[j]);
      }
      let sum = 0;
      for (let j = 0; j < keys; j++) sum += s[j] = Math.exp(s[j] - m);
      for (let d = 0; d < hd; d++) {
        let a = 0;
        for (let j = 0; j < keys; j++) a += s[j] * vCache[kv + j * hd + d];
        out[qo + d] = a / sum;
      }
    }
  }
  return out;
}
