// Bytes one decode step reads, per kind of kernel: weights (the sizes of their GPU buffers),
// activations, norm gains and the KV cache as read at the given context. What a step must move
// at the least, so bytes / time against the adapter's copy bandwidth is its roofline fraction.
// Browser-safe (no node: imports).
import type { ModelPlan } from '../src/config/plan.ts';
import type { ModelWeights } from '../src/runtime/model-weights.ts';
import type { GpuWeight } from '../src/weights/gpu-weight.ts';

/** The kind of a decode dispatch: its label without the layer prefix and the chunk index. */
export function dispatchKind(label: string): string {
  // Split-K attention's two dispatches (attention.split, attention.combine) are one kind.
  return label.replace(/^layer\d+\./, '').replace(/\[\d+\]$/, '').replace(/^attention\.(split|combine)$/, 'attention');
}

function weightBytes(w: GpuWeight): number {
  return w.chunks.reduce((s, c) => s + c.buffer.size, 0);
}

/**
 * Bytes read per kind by one decode step with `context` keys in the cache (the new one included).
 * `kvBytes`: bytes an element of the KV cache takes (4: the engine's f32 cache).
 */
export function decodeStepBytes(plan: ModelPlan, w: ModelWeights, context: number, kvBytes = 4): Record<string, number> {
  const D = plan.modelDim;
  const hd = plan.headDim;
  const f = 4;
  const norm = (b: GPUBuffer | undefined) => b?.size ?? 0;
  const out: Record<string, number> = {
    // One row of the table, and the id.
    embedding: (w.embedding.rowWords + w.embedding.scaleRowWords) * 4 + 4,
    qkv_proj: 0,
    qkv_prepare: 0,
    attention: 0,
    out_proj: 0,
    proj_1: 0,
    proj_2: 0,
    // Its weights, the residual row and the final norm's gains.
    lm_head: weightBytes(w.lmHead) + D * f + norm(w.finalNorm),
    // Both choosers read the logits row; the sampler also its seen flags.
    argmax: plan.vocabSize * f,
    sample: plan.vocabSize * f * 2,
  };
  for (const l of plan.layers) {
    const lw = w.layers[l.index];
    const q = l.numQueryHeads * hd;
    out.qkv_proj += weightBytes(lw.qkv) + D * f + norm(lw.attnNorm);
    // The new q, k, v; the q/k norm gains; one RoPE row (cos, sin).
    out.qkv_prepare += l.qkvOut * f + 2 * hd * f + hd * f;
    // The query, then every cached key and value of each KV head.
    out.attention += q * f + 2 * l.numKvHeads * context * hd * kvBytes;
    // The accumulating products read the residual they add to.
    out.out_proj += weightBytes(lw.outProj) + q * f + D * f;
    out.proj_1 += weightBytes(lw.proj1) + D * f + norm(lw.ffnNorm);
    out.proj_2 += weightBytes(lw.proj2) + l.ffnDim * f + D * f;
  }
  return out;
}
