// Whether a model plan and a context length fit the device, checked before anything is allocated
// (on the CPU or the GPU): the engine's RoPE table, KV caches and per-chunk activations are sized
// from the context length and the config's dims, and a size past a binding limit used to surface
// as an allocation failure (or an out-of-memory RoPE table) deep inside the engine.
import type { ModelPlan } from '../config/plan.ts';
import { fmtBytes } from '../gpu/gpu.ts';
import { MAX_HEAD_DIM } from '../../kernels/attention.ts';

export interface BufferLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

/** Default number of prompt tokens a prefill pass handles at once. */
export const DEFAULT_PREFILL_CHUNK = 128;

/** The largest buffer the engine may bind. */
export function bindLimit(limits: BufferLimits): number {
  return Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
}

/** Prompt tokens per prefill pass: the requested chunk, capped so one chunk's logits fit a binding. */
export function prefillChunkSize(vocabSize: number, contextLength: number, limits: BufferLimits, requested = DEFAULT_PREFILL_CHUNK): number {
  const byLogits = Math.floor(bindLimit(limits) / (vocabSize * 4));
  return Math.max(1, Math.min(requested, contextLength, byLogits));
}

/**
 * Throws one line naming the config key (or `contextFrom`, the option that set the context
 * length) when the engine's buffers for this plan would not fit the device's limits.
 */
export function checkModelFits(plan: ModelPlan, contextLength: number, limits: BufferLimits, contextFrom: string, prefillChunk?: number): void {
  const limit = bindLimit(limits);
  const hd = plan.headDim;
  const over = (what: string, bytes: number, key: string): never => {
    throw new Error(`${key}: ${what} needs ${fmtBytes(bytes)}, but this GPU binds at most ${fmtBytes(limit)} (maxStorageBufferBindingSize)`);
  };
  if (!Number.isSafeInteger(contextLength) || contextLength < 1) throw new Error(`${contextFrom} must be a positive integer, got ${contextLength}`);
  if (hd > MAX_HEAD_DIM) throw new Error(`head_dim in config.json is ${hd}; the attention kernel supports at most ${MAX_HEAD_DIM}`);
  if (plan.vocabSize * 4 > limit) over(`one row of logits (vocab_size ${plan.vocabSize})`, plan.vocabSize * 4, 'vocab_size in config.json');
  // The RoPE table holds cos and sin for every position: [context, head_dim / 2, 2] floats.
  if (contextLength * hd * 4 > limit) over(`the RoPE table for ${contextLength} positions`, contextLength * hd * 4, contextFrom);
  for (const l of plan.layers) {
    const kv = l.numKvHeads * contextLength * hd * 4;
    if (kv > limit) over(`layer ${l.index}'s KV cache for ${contextLength} positions`, kv, `${contextFrom} (use a shorter context)`);
  }
  const T = prefillChunkSize(plan.vocabSize, contextLength, limits, prefillChunk);
  const widest = Math.max(plan.modelDim, ...plan.layers.map((l) => Math.max(l.qkvOut, l.proj1Out, l.numQueryHeads * hd)));
  if (T * widest * 4 > limit) over(`a prefill chunk of ${T} tokens (${widest} values each)`, T * widest * 4, 'model_dim / ffn_multipliers / qkv_multipliers in config.json');
}
