// The attention kernel alone, as a decode step runs it: one query token against a KV cache of
// `context` positions, at the head counts of the model's layers. Its cost grows with the context
// while the matmuls' does not, so it is timed at a few context lengths. Random q and cache; every
// output is checked against the CPU reference. Browser-safe (no node: imports).
import type { ModelPlan } from '../src/config/plan.ts';
import type { Gpu } from '../src/gpu/gpu.ts';
import { releaseDispatches } from '../src/gpu/dispatch.ts';
import { attentionDispatch, attentionRef } from '../kernels/attention.ts';
import { randomFill } from '../src/doctor/matmul-check.ts';
import { timeRepeated, type AroundTiming, type GpuTimer, type Timed } from './gpu-timer.ts';

export interface AttentionShape {
  /** e.g. "attention 12/3 heads ctx 512". */
  name: string;
  /** The layers with these head counts. */
  layers: number[];
  numQ: number;
  numKv: number;
  headDim: number;
  /** Keys the query attends to: the decode step's position + 1. */
  context: number;
  /** Rows the cache holds per head (the engine's context length), the stride between heads. */
  maxContext: number;
}

/** Context lengths timed by default (capped at the model's maximum context). */
export const ATTENTION_CONTEXTS = [128, 512, 2048] as const;

/** One shape per distinct (query heads, KV heads) pair of the model's layers, at each context. */
export function attentionShapes(plan: ModelPlan, contexts: readonly number[] = ATTENTION_CONTEXTS): AttentionShape[] {
  const heads = new Map<string, { numQ: number; numKv: number; layers: number[] }>();
  for (const l of plan.layers) {
    const key = `${l.numQueryHeads}/${l.numKvHeads}`;
    const h = heads.get(key) ?? { numQ: l.numQueryHeads, numKv: l.numKvHeads, layers: [] };
    h.layers.push(l.index);
    heads.set(key, h);
  }
  const ctxs = [...new Set(contexts.map((c) => Math.min(c, plan.maxContext)))].filter((c) => c >= 1).sort((a, b) => a - b);
  return [...heads.values()].flatMap((h) =>
    ctxs.map((context) => ({
      name: `attention ${h.numQ}/${h.numKv} heads ctx ${context}`,
      layers: h.layers,
      numQ: h.numQ,
      numKv: h.numKv,
      headDim: plan.headDim,
      context,
      maxContext: plan.maxContext,
    })),
  );
}

/**
 * Tolerance of the check, |err| <= ATOL + RTOL |want|: float32 against the float64 reference over
 * a few thousand keys is off by ~1e-7; a skipped key or head is off by ~1e-2.
 */
const ATOL = 1e-4;
const RTOL = 1e-3;

export interface AttentionTiming extends Timed {
  dispatches: number;
  /** Bytes of K and V cache rows one decode step reads (f32). */
  kv_bytes: number;
  /** kv_bytes per second at the median time. */
  gb_s: number;
  /** Largest |error| / tolerance over every output, against attentionRef (< 1 passes). */
  check: number;
}

/** Times one decode step of the attention kernel on `shape` and checks its outputs. */
export async function timeAttention(gpu: Gpu, timer: GpuTimer, shape: AttentionShape, o: { runs: number; budgetMs: number; around?: AroundTiming }): Promise<AttentionTiming> {
  const { numQ, numKv, headDim: hd, context, maxContext } = shape;
  const q = randomFill(numQ * hd, 0x51ed27 + context, 1);
  const kCache = randomFill(numKv * maxContext * hd, 0x2545f491 ^ context, 1);
  const vCache = randomFill(numKv * maxContext * hd, 0x6a09e667 ^ context, 1);
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const bufs = {
    q: gpu.upload('bench.attn.q', q),
    kCache: gpu.upload('bench.attn.k', kCache),
    vCache: gpu.upload('bench.attn.v', vCache),
    position: gpu.uniform('bench.attn.position', [context - 1]),
    out: gpu.createBuffer('bench.attn.out', numQ * hd * 4, usage),
  };
  const d = attentionDispatch(gpu, { tokens: 1, numQ, numKv, headDim: hd, maxContext, ...bufs, label: `bench ${shape.name}` });
  try {
    const timed = () => timeRepeated(() => timer.timeDispatches([d], shape.name), o.runs, o.budgetMs);
    const t = await (o.around ? o.around(timed) : timed());
    const got = await gpu.readF32(bufs.out, numQ * hd);
    const want = attentionRef(q, kCache, vCache, { tokens: 1, numQ, numKv, headDim: hd, maxContext, position: context - 1 });
    let check = 0;
    for (let i = 0; i < want.length; i++) {
      const err = Math.abs(got[i] - want[i]) / (ATOL + RTOL * Math.abs(want[i]));
      check = Math.max(check, Number.isNaN(err) ? Infinity : err);
    }
    const kvBytes = 2 * numKv * context * hd * 4;
    return { ...t, dispatches: 1, kv_bytes: kvBytes, gb_s: kvBytes / (t.ms.median / 1000) / 1e9, check };
  } finally {
    releaseDispatches(gpu, [d]);
    for (const b of Object.values(bufs)) gpu.destroyBuffer(b);
  }
}
