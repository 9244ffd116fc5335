// The scheduler: turns the layer plan into per-layer kernel dispatches over buffers allocated once,
// keeps the KV cache on the GPU, and runs prefill (in chunks) and single-token decode steps.
// A decode step's dispatches and bind groups are prepared once; a step writes the position,
// submits one command buffer and reads back 4 bytes (the id of the token chosen on the GPU).
import type { ModelPlan } from '../config/plan.ts';
import { fmtBytes, type Gpu } from '../gpu/gpu.ts';
import { argmaxDispatch } from '../../kernels/argmax.ts';
import { attentionDispatch } from '../../kernels/attention.ts';
import { embeddingDispatches } from '../../kernels/embedding.ts';
import { releaseDispatches, type Dispatch } from '../../kernels/kernel.ts';
import { matmulDispatches, type GemvKernel } from '../../kernels/matmul.ts';
import { prefillChunkSize } from './fits.ts';
import { qkvPrepareDispatch, ropeTable } from '../../kernels/qkv_prepare.ts';
import { sampleDispatch, validateSampling, type SamplingParams } from '../../kernels/sample.ts';
import { countDispatches, dispatchOps, encodeOps, type Op } from './ops.ts';
import type { ModelWeights } from './weights.ts';

export interface EngineOptions {
  /** KV cache length in tokens; defaults to the model's max_context_length. */
  contextLength?: number;
  /** Most tokens one prefill pass processes; longer prompts run in several passes. */
  prefillChunk?: number;
  /** The one-token (decode) matmul kernel; see MatmulOptions.gemv. Default 'rows'. */
  gemv?: GemvKernel;
}

export type LogitsMode = 'none' | 'last' | 'all';

interface Activations {
  ids: GPUBuffer; // u32 [chunk]
  x: GPUBuffer; // [chunk, model_dim] residual stream
  qkv: GPUBuffer; // [chunk, max qkv_out]
  q: GPUBuffer; // [chunk, max q heads * head_dim]
  attn: GPUBuffer; // [chunk, max q heads * head_dim]
  ffnAct: GPUBuffer; // [chunk, max ffn_dim]
  lastX: GPUBuffer; // [model_dim]: the last position's residual, for last-position logits
  logits: GPUBuffer; // [chunk, vocab]
  nextId: GPUBuffer; // u32: the token chosen after the last position
  seen: GPUBuffer; // u32 [vocab]: 1 where a token occurred (repetition penalty)
  random: GPUBuffer; // f32: this step's uniform random number (sampling)
  residuals: GPUBuffer; // [layers + 1, model_dim]: last-position residual stream, for bisecting
  position: GPUBuffer; // uniform u32: absolute position of the first token of a pass
  rope: GPUBuffer; // [context, head_dim / 2, 2] cos/sin
  staging: GPUBuffer[]; // MAP_READ, 4 bytes each, reused for token readback
}

export class Engine {
  readonly contextLength: number;
  readonly chunk: number;
  readonly gemv: GemvKernel;
  /** Tokens currently held in the KV cache. */
  length = 0;
  private readonly a: Activations;
  private readonly kCache: GPUBuffer[] = [];
  private readonly vCache: GPUBuffer[] = [];
  private readonly decodeDispatches: Dispatch[];
  private readonly decodeOps: Op[];
  /** Picks the next token from the last position's logits (argmax unless configured otherwise). */
  private chooser: Dispatch;
  private stagingIndex = 0;
  private disposed = false;

  constructor(
    readonly gpu: Gpu,
    readonly plan: ModelPlan,
    readonly weights: ModelWeights,
    opts: EngineOptions = {},
  ) {
    const { modelDim: D, headDim: hd, vocabSize: V } = plan;
    this.contextLength = opts.contextLength ?? plan.maxContext;
    this.gemv = opts.gemv ?? 'rows';
    if (!Number.isInteger(this.contextLength) || this.contextLength < 1) {
      throw new Error(`context length must be a positive integer, got ${opts.contextLength}`);
    }
    const bindLimit = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
    // The all-positions logits of one chunk must fit one binding.
    this.chunk = prefillChunkSize(V, this.contextLength, gpu.limits, opts.prefillChunk);
    const T = this.chunk;
    const maxQkv = Math.max(...plan.layers.map((l) => l.qkvOut));
    const maxQ = Math.max(...plan.layers.map((l) => l.numQueryHeads)) * hd;
    const maxFfn = Math.max(...plan.layers.map((l) => l.ffnDim));
    const S = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const f32 = (label: string, n: number) => gpu.createBuffer(label, n * 4, S);
    this.a = {
      ids: f32('ids', T),
      x: f32('x', T * D),
      qkv: f32('qkv', T * maxQkv),
      q: f32('q', T * maxQ),
      attn: f32('attn', T * maxQ),
      ffnAct: f32('ffn_act', T * maxFfn),
      lastX: f32('last_x', D),
      logits: f32('logits', T * V),
      nextId: f32('next_id', 1),
      seen: f32('seen', V),
      random: f32('random', 4),
      residuals: f32('residuals', (plan.numLayers + 1) * D),
      position: gpu.createBuffer('position', 16, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST),
      rope: gpu.upload('rope', ropeTable(hd, this.contextLength, plan.ropeTheta)),
      staging: [0, 1].map((i) => gpu.createBuffer(`staging${i}`, 16, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST)),
    };
    for (const l of plan.layers) {
      const bytes = l.numKvHeads * this.contextLength * hd * 4;
      if (bytes > bindLimit) {
        throw new Error(
          `layer ${l.index}'s KV cache needs ${fmtBytes(bytes)} but this GPU binds at most ${fmtBytes(bindLimit)}; use a shorter context length`,
        );
      }
      this.kCache.push(gpu.createBuffer(`layer${l.index}.k_cache`, bytes, S));
      this.vCache.push(gpu.createBuffer(`layer${l.index}.v_cache`, bytes, S));
    }
    this.chooser = this.makeChooser(null);
    this.decodeDispatches = [];
    this.decodeOps = this.buildPass(1, 'last', false, this.decodeDispatches);
  }

  private makeChooser(p: SamplingParams | null): Dispatch {
    const { gpu, a } = this;
    const n = this.plan.vocabSize;
    // Plain greedy needs no sampler state: the argmax kernel is the cheapest chooser.
    if (!p || (!p.doSample && p.repetitionPenalty === 1)) return argmaxDispatch(gpu, { n, offset: 0, logits: a.logits, out: a.nextId, label: 'argmax' });
    return sampleDispatch(gpu, { n, offset: 0, logits: a.logits, seen: a.seen, random: a.random, out: a.nextId, params: p, label: 'sample' });
  }

  /**
   * Sets how the next token is chosen for the following passes: greedy, repetition penalty over
   * `history` (the prompt; chosen tokens are added on the GPU), and sampling.
   */
  configureChooser(p: SamplingParams | null, history: readonly number[] = []): void {
    if (p) validateSampling(p);
    const next = this.makeChooser(p);
    releaseDispatches(this.gpu, [this.chooser]);
    this.chooser = next;
    const last = this.decodeOps[this.decodeOps.length - 1];
    if (last.kind === 'dispatch') last.d = next;
    if (p && p.repetitionPenalty !== 1) {
      const seen = new Uint32Array(this.plan.vocabSize);
      for (const id of history) if (id >= 0 && id < seen.length) seen[id] = 1;
      this.gpu.write(this.a.seen, seen);
    }
  }

  /** The uniform random number in [0, 1) the sampler uses in the next pass. */
  setRandom(u: number): void {
    this.gpu.write(this.a.random, new Float32Array([u, 0, 0, 0]));
  }

  /** Dispatches per decode step (one token). */
  get dispatchesPerToken(): number {
    return countDispatches(this.decodeOps);
  }

  reset(): void {
    this.length = 0;
  }

  /**
   * Forgets every token after the first `length` (speculative decoding's rejected drafts, scoring
   * several continuations of one context). Positions past it are overwritten by the next pass.
   */
  rollback(length: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.length) {
      throw new Error(`rollback: length must be an integer in [0, ${this.length}], got ${length}`);
    }
    this.length = length;
  }

  /**
   * The op list for one pass over `T` tokens starting at the position in the position buffer.
   * Every dispatch it creates is appended to `made` so the caller can release its uniforms.
   */
  private buildPass(T: number, logits: LogitsMode, captureResiduals: boolean, made: Dispatch[]): Op[] {
    const { plan, gpu, weights: w, a } = this;
    const { modelDim: D, headDim: hd, vocabSize: V } = plan;
    const gemv = this.gemv;
    const eps = plan.rmsNormEps;
    const ops: Op[] = [];
    const add = (...ds: Dispatch[]) => {
      made.push(...ds);
      ops.push(...dispatchOps(ds));
    };
    const captureRow = (row: number) => {
      if (captureResiduals) {
        ops.push({ kind: 'copy', src: a.x, srcOffset: (T - 1) * D * 4, dst: a.residuals, dstOffset: row * D * 4, size: D * 4 });
      }
    };
    add(...embeddingDispatches(gpu, w.embedding, { tokens: T, ids: a.ids, out: a.x, label: 'embedding' }));
    captureRow(0);
    plan.layers.forEach((l, i) => {
      const lw = w.layers[i];
      const n = `layer${i}`;
      // attn_norm fused into qkv_proj.
      add(...matmulDispatches(gpu, lw.qkv, { tokens: T, gemv, x: a.x, y: a.qkv, norm: { weight: lw.attnNorm, eps }, label: `${n}.qkv_proj` }));
      add(
        qkvPrepareDispatch(gpu, {
          tokens: T,
          numQ: l.numQueryHeads,
          numKv: l.numKvHeads,
          headDim: hd,
          maxContext: this.contextLength,
          eps: plan.rmsNormEps,
          normalize: plan.normalizeQk,
          qkv: a.qkv,
          qNorm: lw.qNorm,
          kNorm: lw.kNorm,
          rope: a.rope,
          position: a.position,
          q: a.q,
          kCache: this.kCache[i],
          vCache: this.vCache[i],
          label: `${n}.qkv_prepare`,
        }),
      );
      add(
        attentionDispatch(gpu, {
          tokens: T,
          numQ: l.numQueryHeads,
          numKv: l.numKvHeads,
          headDim: hd,
          maxContext: this.contextLength,
          q: a.q,
          kCache: this.kCache[i],
          vCache: this.vCache[i],
          position: a.position,
          out: a.attn,
          label: `${n}.attention`,
        }),
      );
      // Residual adds fused into out_proj and proj_2 (accumulate).
      add(...matmulDispatches(gpu, lw.outProj, { tokens: T, gemv, x: a.attn, y: a.x, accumulate: true, label: `${n}.out_proj` }));
      // ffn_norm and the (gated) SiLU fused into proj_1, whose gate/up rows are interleaved on load.
      const activation = plan.ffnWithGlu ? 'silu-gate' : 'silu';
      add(...matmulDispatches(gpu, lw.proj1, { tokens: T, gemv, x: a.x, y: a.ffnAct, norm: { weight: lw.ffnNorm, eps }, activation, label: `${n}.proj_1` }));
      add(...matmulDispatches(gpu, lw.proj2, { tokens: T, gemv, x: a.ffnAct, y: a.x, accumulate: true, label: `${n}.proj_2` }));
      captureRow(i + 1);
    });
    // The final norm is fused into the output layer.
    const finalNorm = { weight: w.finalNorm, eps };
    if (logits === 'all') {
      add(...matmulDispatches(gpu, w.lmHead, { tokens: T, gemv, x: a.x, y: a.logits, norm: finalNorm, label: 'lm_head' }));
      add(argmaxDispatch(gpu, { n: V, offset: (T - 1) * V, logits: a.logits, out: a.nextId, label: 'argmax' }));
    } else if (logits === 'last') {
      let src = a.x;
      if (T > 1) {
        ops.push({ kind: 'copy', src: a.x, srcOffset: (T - 1) * D * 4, dst: a.lastX, dstOffset: 0, size: D * 4 });
        src = a.lastX;
      }
      add(...matmulDispatches(gpu, w.lmHead, { tokens: 1, gemv, x: src, y: a.logits, norm: finalNorm, label: 'lm_head' }));
      // The chooser is shared by every pass and owned by the engine, so it is not in `made`.
      ops.push({ kind: 'dispatch', d: this.chooser });
    }
    return ops;
  }

  private checkIds(ids: readonly number[]): void {
    if (ids.length === 0) throw new Error('no input tokens: give at least one token id');
    ids.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.plan.vocabSize) {
        throw new Error(`token id ${id} at index ${i} is outside the vocabulary [0, ${this.plan.vocabSize})`);
      }
    });
    if (this.length + ids.length > this.contextLength) {
      throw new Error(
        `${this.length + ids.length} tokens do not fit the context of ${this.contextLength} tokens (${this.length} already in the cache, ${ids.length} new)`,
      );
    }
  }

  private writePosition(pos: number): void {
    this.gpu.write(this.a.position, new Uint32Array([pos, 0, 0, 0]));
  }

  /**
   * Appends `ids` to the sequence (prefill; one pass per chunk). Returns the logits asked for:
   * 'last' gives [vocab] for the last token, 'all' gives [ids.length * vocab], 'none' nothing
   * (the last position's logits are still computed, for the greedy choice).
   * The choice after the last token stays on the GPU for `decodeStep`.
   */
  async prefill(ids: readonly number[], mode: LogitsMode = 'last', opts: { residuals?: boolean } = {}): Promise<Float32Array> {
    this.checkLive();
    this.checkIds(ids);
    const V = this.plan.vocabSize;
    const out = new Float32Array(mode === 'all' ? ids.length * V : mode === 'last' ? V : 0);
    for (let start = 0; start < ids.length; start += this.chunk) {
      const part = ids.slice(start, start + this.chunk);
      const T = part.length;
      const last = start + T === ids.length;
      const passMode: LogitsMode = mode === 'all' ? 'all' : last ? 'last' : 'none';
      const made: Dispatch[] = [];
      try {
        const ops = this.buildPass(T, passMode, !!opts.residuals && last, made);
        this.writePosition(this.length);
        this.gpu.write(this.a.ids, new Uint32Array(part));
        const enc = this.gpu.device.createCommandEncoder({ label: `prefill@${this.length}` });
        encodeOps(enc, ops, 'prefill');
        if (last) enc.copyBufferToBuffer(this.a.nextId, 0, this.a.ids, 0, 4);
        this.gpu.device.queue.submit([enc.finish()]);
        this.length += T;
        if (mode === 'all') out.set(await this.gpu.readF32(this.a.logits, T * V), start * V);
        else if (mode === 'last' && last) out.set(await this.gpu.readF32(this.a.logits, V));
        else this.gpu.checkErrors();
      } finally {
        releaseDispatches(this.gpu, made);
      }
    }
    return out;
  }

  /** The last-position residual stream captured by the last `prefill(..., { residuals: true })`. */
  async residuals(): Promise<Float32Array> {
    return this.gpu.readF32(this.a.residuals, (this.plan.numLayers + 1) * this.plan.modelDim);
  }

  /** Feeds one known token and returns the next-token logits (teacher forcing, scoring). */
  async stepLogits(id: number): Promise<Float32Array> {
    this.checkLive();
    this.checkIds([id]);
    this.writePosition(this.length);
    this.gpu.write(this.a.ids, new Uint32Array([id]));
    this.submitDecode();
    this.length += 1;
    return this.gpu.readF32(this.a.logits, this.plan.vocabSize);
  }

  /**
   * One decode step: feeds the token the previous pass chose (already on the GPU) and returns the
   * id the chooser picks after it. Reads back 4 bytes.
   */
  async decodeStep(): Promise<number> {
    this.checkLive();
    if (this.length === 0) throw new Error('decodeStep needs a prefill first');
    if (this.length + 1 > this.contextLength) throw new Error(`the context of ${this.contextLength} tokens is full`);
    this.writePosition(this.length);
    const staging = this.a.staging[this.stagingIndex++ % this.a.staging.length];
    this.submitDecode(staging);
    this.length += 1;
    await staging.mapAsync(GPUMapMode.READ);
    const id = new Uint32Array(staging.getMappedRange(0, 4))[0];
    staging.unmap();
    this.gpu.checkErrors();
    return id;
  }

  /** The choice of the last pass (prefill or step), read back (4 bytes). */
  async lastChoice(): Promise<number> {
    return (await this.gpu.readU32(this.a.nextId, 1))[0];
  }

  private submitDecode(staging?: GPUBuffer): void {
    const enc = this.gpu.device.createCommandEncoder({ label: `decode@${this.length}` });
    encodeOps(enc, this.decodeOps, 'decode');
    // The chosen id becomes the next step's input without a trip through the CPU.
    enc.copyBufferToBuffer(this.a.nextId, 0, this.a.ids, 0, 4);
    if (staging) enc.copyBufferToBuffer(this.a.nextId, 0, staging, 0, 4);
    this.gpu.device.queue.submit([enc.finish()]);
  }

  private checkLive(): void {
    if (this.disposed) throw new Error('this model was disposed');
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    releaseDispatches(this.gpu, [...this.decodeDispatches, this.chooser]);
    for (const b of Object.values(this.a).flat() as GPUBuffer[]) this.gpu.destroyBuffer(b);
    for (const b of [...this.kCache, ...this.vCache]) this.gpu.destroyBuffer(b);
  }
}
