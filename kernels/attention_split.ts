// Split-K attention for passes whose rows must match one-token decode steps: each row's keys are
// cut into splits that run as separate workgroups (partial softmax), then one combine dispatch
// merges them into attention.wgsl's output layout. See shaders/attention_split.wgsl.
import type { Gpu } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/attention_split.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { grid, makeDispatch, type Dispatch } from '../src/gpu/dispatch.ts';
import { attentionWorkgroupSize, checkAttentionShape, mergeVectors, unrollHeadLoops, type AttentionOptions } from './attention.ts';

/**
 * Fewest keys a split gets. A split's fixed costs (loading q, the workgroup merge, writing HV + 1
 * vectors that the combine reads back) are about those of 32 keys' work, so smaller splits cost
 * more than they parallelise; at or below this many keys a row is one split, computed exactly as
 * attention.wgsl computes it.
 */
export const MIN_SPLIT_KEYS = 32;

/**
 * Workgroups a one-token attention should run to keep the adapter busy. WebGPU does not say how
 * many compute units a GPU has; 512 workgroups of 64 threads cover the largest (80+ units, several
 * workgroups each to hide memory latency) and cost small GPUs only a few more combine reads.
 * SwiftShader runs workgroups on the CPU's cores (a handful), so a few dozen are enough there.
 */
function targetWorkgroups(gpu: Gpu): number {
  return gpu.info.isFallback ? 32 : 512;
}

/** Most splits a row of a layer with `numQ` query heads gets over a cache of `maxContext` keys. */
export function splitCount(gpu: Gpu, numQ: number, maxContext: number, minKeys = MIN_SPLIT_KEYS): number {
  return Math.max(1, Math.min(Math.ceil(targetWorkgroups(gpu) / numQ), Math.ceil(maxContext / minKeys)));
}

/** How a row with `keys` keys is cut: split s covers [s * chunk, min((s + 1) * chunk, keys)). */
export function splitPlan(keys: number, splits: number, minKeys: number): { chunk: number; active: number } {
  const chunk = Math.max(minKeys, Math.ceil(keys / splits));
  return { chunk, active: Math.ceil(keys / chunk) };
}

/** Bytes of scratch for `rows` rows: per (row, head, split) HV accumulator vectors and one of stats. */
export function splitScratchBytes(o: { rows: number; numQ: number; headDim: number; splits: number }): number {
  const lanes = o.headDim % 4 === 0 ? 4 : 2;
  return o.rows * o.numQ * o.splits * (o.headDim / lanes + 1) * lanes * 4;
}

export interface AttentionSplitOptions extends AttentionOptions {
  /** f32 scratch of at least splitScratchBytes({ rows: scratchRows, ... }) */
  scratch: GPUBuffer;
  /** rows of partials the scratch holds; a pass of more tokens runs as several dispatch pairs */
  scratchRows: number;
  /** most splits a row gets (default splitCount(gpu, numQ, maxContext, minKeys)) */
  splits?: number;
  /** fewest keys a split gets (default MIN_SPLIT_KEYS) */
  minKeys?: number;
}

/** The split and combine dispatches, a pair per block of scratchRows rows, in order. */
export function attentionSplitDispatches(gpu: Gpu, o: AttentionSplitOptions): Dispatch[] {
  const lanes = checkAttentionShape('attention_split', o);
  const minKeys = o.minKeys ?? MIN_SPLIT_KEYS;
  const splits = o.splits ?? splitCount(gpu, o.numQ, o.maxContext, minKeys);
  for (const [k, v] of [['scratchRows', o.scratchRows], ['splits', splits], ['minKeys', minKeys]] as const) {
    if (!(Number.isInteger(v) && v >= 1)) throw new Error(`attention_split: ${k} = ${v} must be a positive integer`);
  }
  const rows = Math.min(o.scratchRows, o.tokens);
  const need = splitScratchBytes({ rows, numQ: o.numQ, headDim: o.headDim, splits });
  if (o.scratch.size < need) throw new Error(`attention_split: scratch of ${o.scratch.size} bytes, ${need} needed for ${rows} rows of ${splits} splits`);
  const hv = o.headDim / lanes;
  const wg = attentionWorkgroupSize(gpu, 'attention_split', o.workgroupSize);
  const code = unrollHeadLoops(`const HV: u32 = ${hv}u;\n` + preprocess(shaderSource('attention_split', builtIn), { VEC4: lanes === 4, KV_F16: o.kvDtype === 'f16' }), hv);
  const spec = { code, bindings: ['uniform', 'read', 'read', 'read', 'uniform', 'write', 'write'] as const, constants: { WG: wg, CH: mergeVectors(hv, wg, lanes) } };
  const split = gpu.pipeline({ label: 'attention_split', ...spec });
  const combine = gpu.pipeline({ label: 'attention_split.combine', entryPoint: 'combine', ...spec });
  const scale = Math.LOG2E / Math.sqrt(o.headDim);
  const label = o.label ?? 'attention';
  const buffers = [o.q, o.kCache, o.vCache, o.position, o.scratch, o.out];
  const out: Dispatch[] = [];
  for (let base = 0; base < o.tokens; base += rows) {
    const n = Math.min(rows, o.tokens - base);
    const params = [n, base, o.numQ, o.numQ / o.numKv, o.maxContext, splits, minKeys, { f: scale }];
    out.push(makeDispatch(gpu, split, `${label}.split`, params, buffers, grid(gpu, n * o.numQ * splits)));
    out.push(makeDispatch(gpu, combine, `${label}.combine`, params, buffers, grid(gpu, Math.ceil((n * o.numQ * hv) / wg))));
  }
  return out;
}

/**
 * CPU reference in float64, computed the way the kernel is: per row, partial softmaxes over the
 * splits of splitPlan, then their combination. Mathematically attentionRef; kept separate so the
 * partition (every key in exactly one split) is what is checked.
 */
export function attentionSplitRef(
  q: Float32Array,
  kCache: Float32Array,
  vCache: Float32Array,
  o: { tokens: number; numQ: number; numKv: number; headDim: number; maxContext: number; position: number; splits: number; minKeys: number },
): Float32Array {
  const { tokens: T, numQ: nq, numKv: nkv, headDim: hd, maxContext: ctx } = o;
  const group = nq / nkv;
  const scale = 1 / Math.sqrt(hd);
  const out = new Float32Array(T * nq * hd);
  for (let t = 0; t < T; t++) {
    const keys = Math.min(o.position + t + 1, ctx);
    const { chunk, active } = splitPlan(keys, o.splits, o.minKeys);
    for (let h = 0; h < nq; h++) {
      const qo = (t * nq + h) * hd;
      const kv = Math.floor(h / group) * ctx * hd;
      const parts: { m: number; l: number; acc: Float64Array }[] = [];
      for (let s = 0; s < active; s++) {
        const sc: number[] = [];
        for (let j = s * chunk; j < Math.min((s + 1) * chunk, keys); j++) {
          let dot = 0;
          for (let d = 0; d < hd; d++) dot += q[qo + d] * kCache[kv + j * hd + d];
          sc.push(dot * scale);
        }
        const m = Math.max(...sc);
        const acc = new Float64Array(hd);
        let l = 0;
        sc.forEach((x, i) => {
          const p = Math.exp(x - m);
          l += p;
          const j = s * chunk + i;
          for (let d = 0; d < hd; d++) acc[d] += p * vCache[kv + j * hd + d];
        });
        parts.push({ m, l, acc });
      }
      const M = Math.max(...parts.map((p) => p.m));
      let L = 0;
      const acc = new Float64Array(hd);
      for (const p of parts) {
        const w = Math.exp(p.m - M);
        L += p.l * w;
        for (let d = 0; d < hd; d++) acc[d] += p.acc[d] * w;
      }
      for (let d = 0; d < hd; d++) out[qo + d] = acc[d] / L;
    }
  }
  return out;
}
