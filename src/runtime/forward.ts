// The forward pass of OpenELM over T tokens, as GPU work: one line a step of the model, each
// step's output shape beside it. Which kernel runs a step, and what it is fused with, is decided
// in the step functions below the pass, not in it.
import type { LayerPlan, ModelPlan } from '../config/plan.ts';
import type { Gpu } from '../gpu/gpu.ts';
import type { Dispatch } from '../gpu/dispatch.ts';
import type { GpuWeight } from '../weights/gpu-weight.ts';
import { attentionDispatch, type KvDtype } from '../../kernels/attention.ts';
import { attentionSplitDispatches } from '../../kernels/attention_split.ts';
import { embeddingDispatches } from '../../kernels/embedding.ts';
import { matmulDispatches, type GemvKernel, type MatmulOptions, type PrefillKernel } from './linear.ts';
import { qkvPrepareDispatch } from '../../kernels/qkv_prepare.ts';
import { SPLIT_ROWS, type Activations, type KvCache } from './activations.ts';
import type { LayerWeights, ModelWeights } from './model-weights.ts';
import { dispatchOps, type Op } from './ops.ts';

/** What the engine's passes share: the model, its weights and run state, and kernel choices. */
export interface ForwardModel {
  gpu: Gpu;
  plan: ModelPlan;
  weights: ModelWeights;
  a: Activations;
  cache: KvCache;
  contextLength: number;
  gemv: GemvKernel;
  /** 'split': one-token and verify passes run split-K attention (a.attnSplit is sized for it). */
  attention: 'single' | 'split';
  kvDtype: KvDtype;
  /** The T > 1 matmul of prefill and scoring passes (verify passes keep 'register'; see forwardPass). */
  prefillMatmul: PrefillKernel;
}

/**
 * How a pass ends: 'none' (hidden states only; a prefill chunk that is not the last), 'last'
 * (logits of the last position, then `chooser`), 'all' (every position's logits, then argmax of
 * the last: prefill with all logits), 'rows' (every position's logits, no chooser: verify passes
 * add one per row).
 */
export type PassEnd = 'none' | 'last' | 'all' | 'rows';

export interface PassOptions {
  /** Copy the last position's residual stream after the embedding and every layer (bisecting). */
  captureResiduals?: boolean;
  /** The next-token chooser of 'last' passes (owned by the caller, not added to `made`). */
  chooser?: Dispatch;
  /** The argmax over the last row of 'all' passes. */
  lastRowArgmax?: (offset: number) => Dispatch;
}

/**
 * The op list of one pass over `T` tokens starting at the position in the position buffer. Every
 * dispatch it creates is appended to `made`, so the caller can release their uniforms.
 */
export function forwardPass(m: ForwardModel, T: number, end: PassEnd, made: Dispatch[], o: PassOptions = {}): Op[] {
  // A verify pass's rows must equal decode steps bit for bit; only the register-tiled kernel sums
  // in the one-token kernel's order.
  const s = new Steps(m, T, made, !!o.captureResiduals, end, end === 'rows' ? 'register' : m.prefillMatmul);
  s.embed(); //                        x [T, D] = embedding[ids]
  s.captureResidual(0);
  for (const l of m.plan.layers) {
    s.normQkv(l); //                   qkv [T, (Hq + 2 Hkv) hd] = W_qkv · rmsnorm(x, attn_norm)
    s.qkNormRopeCache(l); //           q [T, Hq hd]; k, v [T, Hkv hd] -> cache (q/k norm, RoPE)
    s.attention(l); //                 attn [T, Hq hd] = softmax(q kᵀ / √hd, causal) v   (GQA)
    s.outProjResidual(l); //           x [T, D] += W_o · attn
    s.normFfnUp(l); //                 h [T, F] = silu(W_gate · n) ⊙ (W_up · n), n = rmsnorm(x, ffn_norm)
    s.ffnDownResidual(l); //           x [T, D] += W_2 · h
    s.captureResidual(l.index + 1);
  }
  if (end === 'none') return s.ops;
  if (end === 'last') {
    s.finalNormLmHead('last'); //      logits [V] = W_head · rmsnorm(x[T - 1], norm)
    s.ops.push({ kind: 'dispatch', d: required(o.chooser, 'chooser') }); // next id
  } else {
    s.finalNormLmHead('all'); //       logits [T, V] = W_head · rmsnorm(x, norm)
    if (end === 'all') s.add(required(o.lastRowArgmax, 'lastRowArgmax')((T - 1) * m.plan.vocabSize));
  }
  return s.ops;
}

function required<V>(v: V | undefined, what: string): V {
  if (v === undefined) throw new Error(`forwardPass: this pass end needs ${what}`);
  return v;
}

/** What a product can be fused with: a norm in front, an activation behind, a residual add. */
type Fusions = Pick<MatmulOptions, 'norm' | 'activation' | 'accumulate'>;

/** The model's steps as dispatches: each picks its kernel and its fusions. */
class Steps {
  readonly ops: Op[] = [];
  private readonly eps: number;

  constructor(
    private readonly m: ForwardModel,
    private readonly T: number,
    private readonly made: Dispatch[],
    private readonly capture: boolean,
    private readonly end: PassEnd,
    private readonly prefill: PrefillKernel,
  ) {
    this.eps = m.plan.rmsNormEps;
  }

  add(...ds: Dispatch[]): void {
    this.made.push(...ds);
    this.ops.push(...dispatchOps(ds));
  }

  private layer(l: LayerPlan): LayerWeights {
    return this.m.weights.layers[l.index];
  }

  /** A product with a weight; `y` is written, or added to with `accumulate` (a fused residual). */
  private linear(w: GpuWeight, x: GPUBuffer, y: GPUBuffer, label: string, fused: Fusions = {}, tokens = this.T): void {
    this.add(...matmulDispatches(this.m.gpu, w, { tokens, gemv: this.m.gemv, prefill: this.prefill, x, y, label, ...fused }));
  }

  embed(): void {
    const { gpu, weights, a } = this.m;
    this.add(...embeddingDispatches(gpu, weights.embedding, { tokens: this.T, ids: a.ids, out: a.x, label: 'embedding' }));
  }

  captureResidual(row: number): void {
    if (!this.capture) return;
    const D = this.m.plan.modelDim;
    const a = this.m.a;
    this.ops.push({ kind: 'copy', src: a.x, srcOffset: (this.T - 1) * D * 4, dst: a.residuals, dstOffset: row * D * 4, size: D * 4 });
  }

  /** attn_norm runs inside the qkv product (or is folded into its columns for q8/q4). */
  normQkv(l: LayerPlan): void {
    const lw = this.layer(l);
    this.linear(lw.qkv, this.m.a.x, this.m.a.qkv, `layer${l.index}.qkv_proj`, { norm: { weight: lw.attnNorm, eps: this.eps } });
  }

  /** q/k RMSNorm, RoPE at the pass's positions, and the write of k and v into the cache: one kernel. */
  qkNormRopeCache(l: LayerPlan): void {
    const { gpu, plan, a, cache, contextLength } = this.m;
    const lw = this.layer(l);
    this.add(
      qkvPrepareDispatch(gpu, {
        tokens: this.T,
        numQ: l.numQueryHeads,
        numKv: l.numKvHeads,
        headDim: plan.headDim,
        maxContext: contextLength,
        eps: plan.rmsNormEps,
        normalize: plan.normalizeQk,
        qkv: a.qkv,
        qNorm: lw.qNorm,
        kNorm: lw.kNorm,
        rope: a.rope,
        position: a.position,
        q: a.q,
        kCache: cache.k[l.index],
        vCache: cache.v[l.index],
        label: `layer${l.index}.qkv_prepare`,
        kvDtype: this.m.kvDtype,
      }),
    );
  }

  /**
   * Split-K attention serves the passes whose rows must equal one-token steps (decode, `steps`,
   * and verify passes: 'rows'), so a verify row gets bit for bit what a decode step gets; prefill
   * and scoring keep the single-pass kernel, which has T * numQ workgroups to fill the GPU.
   */
  attention(l: LayerPlan): void {
    const { gpu, plan, a, cache, contextLength } = this.m;
    const o = {
      tokens: this.T,
      numQ: l.numQueryHeads,
      numKv: l.numKvHeads,
      headDim: plan.headDim,
      maxContext: contextLength,
      q: a.q,
      kCache: cache.k[l.index],
      vCache: cache.v[l.index],
      position: a.position,
      out: a.attn,
      label: `layer${l.index}.attention`,
      kvDtype: this.m.kvDtype,
    };
    if (this.m.attention === 'split' && (this.T === 1 || this.end === 'rows')) {
      this.add(...attentionSplitDispatches(gpu, { ...o, scratch: a.attnSplit, scratchRows: SPLIT_ROWS }));
    } else {
      this.add(attentionDispatch(gpu, o));
    }
  }

  /** The residual add is the product's accumulate mode. */
  outProjResidual(l: LayerPlan): void {
    this.linear(this.layer(l).outProj, this.m.a.attn, this.m.a.x, `layer${l.index}.out_proj`, { accumulate: true });
  }

  /** ffn_norm in front of proj_1 and the (gated) SiLU behind it; gate/up rows are interleaved on load. */
  normFfnUp(l: LayerPlan): void {
    const lw = this.layer(l);
    const activation = this.m.plan.ffnWithGlu ? 'silu-gate' : 'silu';
    this.linear(lw.proj1, this.m.a.x, this.m.a.ffnAct, `layer${l.index}.proj_1`, { norm: { weight: lw.ffnNorm, eps: this.eps }, activation });
  }

  ffnDownResidual(l: LayerPlan): void {
    this.linear(this.layer(l).proj2, this.m.a.ffnAct, this.m.a.x, `layer${l.index}.proj_2`, { accumulate: true });
  }

  /** The final norm runs inside the output product; 'last' copies the last row out first (T > 1). */
  finalNormLmHead(rows: 'last' | 'all'): void {
    const { weights: w, a, plan } = this.m;
    const norm = { weight: w.finalNorm, eps: this.eps };
    if (rows === 'all') {
      this.linear(w.lmHead, a.x, a.logits, 'lm_head', { norm });
      return;
    }
    let src = a.x;
    if (this.T > 1) {
      const D = plan.modelDim;
      this.ops.push({ kind: 'copy', src: a.x, srcOffset: (this.T - 1) * D * 4, dst: a.lastX, dstOffset: 0, size: D * 4 });
      src = a.lastX;
    }
    this.linear(w.lmHead, src, a.logits, 'lm_head', { norm }, 1);
  }
}
