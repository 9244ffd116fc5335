// The scheduler: turns the layer plan into per-layer kernel dispatches over buffers allocated once,
// keeps the KV cache on the GPU, and runs prefill (in chunks) and single-token decode steps.
// A decode step's dispatches and bind groups are prepared once; a step writes the position,
// submits one command buffer and reads back 4 bytes (the id of the token chosen on the GPU).
import type { ModelPlan } from '../config/plan.ts';
import type { Gpu } from '../gpu/gpu.ts';
import { releaseDispatches, type Dispatch } from '../gpu/dispatch.ts';
import { argmaxDispatch } from '../../kernels/argmax.ts';
import { logprobDispatch } from '../../kernels/logprob.ts';
import type { GemvKernel, PrefillKernel } from './linear.ts';
import { KV_DTYPES, type KvDtype } from '../../kernels/attention.ts';
import { chooseAttention, type AttentionChoice } from './attention-choice.ts';
import { sampleDispatch, validateSampling, type SamplingParams } from '../../kernels/sample.ts';
import { specAcceptDispatch } from '../../kernels/spec_accept.ts';
import { allocateActivations, allocateKvCache, type Activations, type KvCache } from './activations.ts';
import { prefillChunkSize } from './fits.ts';
import { forwardPass, type ForwardModel, type PassEnd } from './forward.ts';
import { countDispatches, encodeOps, type Op } from './ops.ts';
import type { ModelWeights } from './model-weights.ts';
import { checkTokenIds } from '../util/token-ids.ts';

export interface EngineOptions {
  /** KV cache length in tokens; defaults to the model's max_context_length. */
  contextLength?: number;
  /** Most tokens one prefill pass processes; longer prompts run in several passes. */
  prefillChunk?: number;
  /** The one-token (decode) matmul kernel; see MatmulOptions.gemv. Default 'rows'. */
  gemv?: GemvKernel;
  /**
   * Attention of one-token and verify passes: 'single' (one workgroup per head walks the whole
   * cache), 'split' (split-K: partial softmaxes over slices of the cache, then a combine), or
   * 'auto' (the default; see attention-choice.ts).
   */
  attention?: AttentionChoice;
  /** KV cache element type: 'f32' (default) or 'f16' (half the memory and bytes read). */
  kvDtype?: KvDtype;
  /** The T > 1 matmul of prefill and scoring (verify passes keep 'register'). Default 'register'. */
  prefillMatmul?: PrefillKernel;
}

/** The logits a prefill returns: none, the last position's, or every position's. */
export type LogitsMode = Exclude<PassEnd, 'rows'>;

/** A verify pass over T tokens: the forward pass, then a chooser per row; prepared once per T. */
interface VerifyPass {
  body: Op[];
  rows: Dispatch[];
  made: Dispatch[];
  /** Speculative sampling's acceptance over these rows, for one draft model's weights buffer. */
  accept?: { q: GPUBuffer; d: Dispatch };
}

/** Buffers of speculative sampling (allocated the first time distributions are asked for). */
interface SamplingBuffers {
  dist: GPUBuffer; // f32 [vocab]: the decode chooser's kept weights
  dists: GPUBuffer; // f32 [steps, vocab]: kept weights per verify row or per draft step
  drafts: GPUBuffer; // u32 [steps]: the drafts being verified
  acceptRandoms: GPUBuffer; // f32 [steps + 1]
  accept: GPUBuffer; // u32 [2]: drafts accepted, next token
  scratch: GPUBuffer; // f32 [vocab]
  one: GPUBuffer; // u32 1, copied into `seen` to mark a draft
}

export class Engine {
  readonly contextLength: number;
  readonly chunk: number;
  readonly gemv: GemvKernel;
  /** The attention kernel of one-token and verify passes, resolved from EngineOptions.attention. */
  readonly attention: 'single' | 'split';
  readonly kvDtype: KvDtype;
  readonly prefillMatmul: PrefillKernel;
  /** Most tokens one verify pass, and most choices one `steps` submission, handles. */
  readonly maxSteps: number;
  private len = 0;
  /**
   * The ids at cache positions [0, length), for reusing a shared prefix across calls; -1 where a
   * token was fed on the GPU and its id never read back. Kept in step with `length` everywhere.
   */
  private held: number[] = [];
  /** The id of the choice waiting in `a.ids` for the next decodeStep, when it was read back; else -1. */
  private pending = -1;
  /** Whether `a.ids` holds the last pass's choice (prefill, score and decode passes copy it there). */
  private pendingReadable = false;
  private readonly a: Activations;
  private readonly cache: KvCache;
  /** What forwardPass needs: the model, its weights, this engine's run state and kernel choice. */
  private readonly model: ForwardModel;
  private readonly decodeDispatches: Dispatch[];
  private readonly decodeOps: Op[];
  /** Picks the next token from the last position's logits (argmax unless configured otherwise). */
  private chooser: Dispatch;
  private sampling: SamplingParams | null = null;
  /** Verify passes by token count, prepared once per count and per chooser configuration. */
  private readonly verifyPasses = new Map<number, VerifyPass>();
  /** Choosers also write their kept weights (speculative sampling with a draft model). */
  private distributions = false;
  private sb?: SamplingBuffers;
  private stagingIndex = 0;
  private disposed = false;
  /** Targets (u32 [chunk]) and results (f32 [chunk, 2]) of scoreTokens, made on first use. */
  private scoreBuffers?: { targets: GPUBuffer; out: GPUBuffer };

  constructor(
    readonly gpu: Gpu,
    readonly plan: ModelPlan,
    readonly weights: ModelWeights,
    opts: EngineOptions = {},
  ) {
    this.contextLength = opts.contextLength ?? plan.maxContext;
    this.gemv = opts.gemv ?? 'rows';
    this.prefillMatmul = opts.prefillMatmul ?? 'register';
    if (!Number.isInteger(this.contextLength) || this.contextLength < 1) {
      throw new Error(`context length must be a positive integer, got ${opts.contextLength}`);
    }
    this.kvDtype = opts.kvDtype ?? 'f32';
    if (!KV_DTYPES.includes(this.kvDtype)) throw new Error(`kvDtype must be ${KV_DTYPES.join(' or ')}, got ${String(opts.kvDtype)}`);
    this.attention = chooseAttention(gpu, opts.attention ?? 'auto', this.contextLength);
    // The all-positions logits of one chunk must fit one binding.
    this.chunk = prefillChunkSize(plan.vocabSize, this.contextLength, gpu.limits, opts.prefillChunk);
    this.maxSteps = this.chunk;
    this.cache = allocateKvCache(gpu, plan, this.contextLength, this.kvDtype);
    this.a = allocateActivations(gpu, plan, this.chunk, this.contextLength, this.attention === 'split');
    const { gemv, attention, kvDtype, prefillMatmul } = this;
    this.model = { gpu, plan, weights, a: this.a, cache: this.cache, contextLength: this.contextLength, gemv, attention, kvDtype, prefillMatmul };
    this.chooser = this.makeChooser(null);
    this.decodeDispatches = [];
    this.decodeOps = this.buildPass(1, 'last', false, this.decodeDispatches);
  }

  /** Whether the chooser is the sampler (which reads `seen` and a random number), not argmax. */
  private static usesSampler(p: SamplingParams | null): p is SamplingParams {
    return !!p && (p.doSample || p.repetitionPenalty !== 1);
  }

  /**
   * The chooser over the logits row at element `offset`, writing its id to nextId (and, with
   * distributions, its kept weights to `dist` at element `distAt`).
   */
  private makeChooser(p: SamplingParams | null, offset = 0, dist?: { buffer: GPUBuffer; offset: number }): Dispatch {
    const { gpu, a } = this;
    const n = this.plan.vocabSize;
    // Plain greedy needs no sampler state: the argmax kernel is the cheapest chooser.
    if (!Engine.usesSampler(p)) return argmaxDispatch(gpu, { n, offset, logits: a.logits, out: a.nextId, label: 'argmax' });
    const withDist = this.distributions && p.doSample ? dist : undefined;
    return sampleDispatch(gpu, { n, offset, logits: a.logits, seen: a.seen, random: a.random, out: a.nextId, params: p, dist: withDist, label: 'sample' });
  }

  private samplingBuffers(): SamplingBuffers {
    if (!this.sb) {
      const { gpu } = this;
      const V = this.plan.vocabSize;
      const T = this.maxSteps;
      const S = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
      this.sb = {
        dist: gpu.createBuffer('dist', V * 4, S),
        dists: gpu.createBuffer('dists', T * V * 4, S),
        drafts: gpu.createBuffer('drafts', T * 4, S),
        acceptRandoms: gpu.createBuffer('accept_randoms', (T + 1) * 4, S),
        accept: gpu.createBuffer('accept', 16, S),
        scratch: gpu.createBuffer('accept_scratch', V * 4, S),
        one: gpu.upload('one', new Uint32Array([1])),
      };
    }
    return this.sb;
  }

  /**
   * The kept weights behind the last `steps` call's choices, f32 [count, vocab] (configured with
   * distributions): a draft model's Q for another engine's `verifySampled`.
   */
  get draftDistributions(): GPUBuffer {
    if (!this.distributions) throw new Error('draftDistributions: configure the chooser with distributions first');
    return this.samplingBuffers().dists;
  }

  get vocabSize(): number {
    return this.plan.vocabSize;
  }

  /**
   * Sets how the next token is chosen for the following passes: greedy, repetition penalty over
   * `history` (the prompt; chosen tokens are added on the GPU), and sampling.
   */
  configureChooser(p: SamplingParams | null, history: readonly number[] = [], opts: { distributions?: boolean } = {}): void {
    if (p) validateSampling(p);
    this.distributions = !!opts.distributions && !!p?.doSample;
    const next = this.makeChooser(p, 0, this.distributions ? { buffer: this.samplingBuffers().dist, offset: 0 } : undefined);
    releaseDispatches(this.gpu, [this.chooser]);
    this.chooser = next;
    this.sampling = p;
    const last = this.decodeOps[this.decodeOps.length - 1];
    if (last.kind === 'dispatch') last.d = next;
    this.dropVerifyPasses();
    if (p && p.repetitionPenalty !== 1) this.setSeen(history);
  }

  /** Rewrites the repetition penalty's set of seen tokens (after rolling back rejected drafts). */
  setSeen(history: readonly number[]): void {
    const seen = new Uint32Array(this.plan.vocabSize);
    for (const id of history) if (id >= 0 && id < seen.length) seen[id] = 1;
    this.gpu.write(this.a.seen, seen);
  }

  private dropVerifyPasses(): void {
    for (const p of this.verifyPasses.values()) releaseDispatches(this.gpu, [...p.made, ...p.rows, ...(p.accept ? [p.accept.d] : [])]);
    this.verifyPasses.clear();
  }

  private verifyPass(T: number): VerifyPass {
    let pass = this.verifyPasses.get(T);
    if (!pass) {
      const made: Dispatch[] = [];
      const body = this.buildPass(T, 'rows', false, made);
      const V = this.plan.vocabSize;
      const dists = this.distributions ? this.samplingBuffers().dists : undefined;
      const rows = Array.from({ length: T }, (_, j) => this.makeChooser(this.sampling, j * V, dists && { buffer: dists, offset: j * V }));
      pass = { body, rows, made };
      this.verifyPasses.set(T, pass);
    }
    return pass;
  }

  /** The uniform random number in [0, 1) the sampler uses in the next pass. */
  setRandom(u: number): void {
    this.gpu.write(this.a.random, new Float32Array([u, 0, 0, 0]));
  }

  /**
   * The decode step's dispatches in order, each labelled (`embedding`, `layer3.qkv_proj`, ...,
   * `lm_head`, the chooser), for timing them one by one. Read-only: running them needs the
   * position buffer a decodeStep wrote, and a rerun rewrites that position's cache entry.
   */
  get decodeStepDispatches(): readonly Dispatch[] {
    return this.decodeOps.flatMap((o) => (o.kind === 'dispatch' ? [o.d] : []));
  }

  /** Dispatches per decode step (one token). */
  get dispatchesPerToken(): number {
    return countDispatches(this.decodeOps);
  }

  /** Tokens currently held in the KV cache. */
  get length(): number {
    return this.len;
  }

  /** Sets the position directly (benchmarks time steps at a given context): the ids there are unknown. */
  set length(n: number) {
    this.len = n;
    this.held = new Array<number>(n).fill(-1);
    this.pending = -1;
    this.pendingReadable = false;
  }

  reset(): void {
    this.len = 0;
    this.held = [];
    this.pending = -1;
    this.pendingReadable = false;
  }

  /**
   * How many leading ids of `ids` the KV cache already holds at the same positions (the longest
   * common prefix with what was fed since the last reset), so a caller can roll back to it and
   * prefill only the rest. Positions fed on the GPU whose id was never read back end the prefix.
   */
  cachedPrefix(ids: readonly number[]): number {
    const n = Math.min(ids.length, this.length);
    let i = 0;
    while (i < n && this.held[i] === ids[i]) i++;
    return i;
  }

  /** Records that `ids` were appended at the end of the cache. */
  private append(ids: readonly number[]): void {
    for (const id of ids) this.held.push(id);
    this.len += ids.length;
  }

  /**
   * Forgets every token after the first `length` (speculative decoding's rejected drafts, scoring
   * several continuations of one context). Positions past it are overwritten by the next pass.
   */
  rollback(length: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.length) {
      throw new Error(`rollback: length must be an integer in [0, ${this.length}], got ${length}`);
    }
    this.len = length;
    this.held.length = length;
    this.pending = -1;
    this.pendingReadable = false;
  }

  /** One forward pass over `T` tokens; its dispatches are appended to `made` for release. */
  private buildPass(T: number, end: PassEnd, captureResiduals: boolean, made: Dispatch[]): Op[] {
    const { gpu, a } = this;
    const n = this.plan.vocabSize;
    return forwardPass(this.model, T, end, made, {
      captureResiduals,
      chooser: this.chooser,
      lastRowArgmax: (offset) => argmaxDispatch(gpu, { n, offset, logits: a.logits, out: a.nextId, label: 'argmax' }),
    });
  }

  private checkIds(ids: readonly number[]): void {
    if (ids.length === 0) throw new Error('no input tokens: give at least one token id');
    checkTokenIds(ids, this.plan.vocabSize);
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
    this.pending = -1;
    this.pendingReadable = false;
    const from = this.length;
    try {
      await this.prefillChunks(ids, mode, out, opts);
      this.pendingReadable = true;
    } catch (e) {
      // A pass that failed half-way leaves the cache's later positions unknown: keep what precedes.
      this.rollback(from);
      throw e;
    }
    return out;
  }

  private async prefillChunks(ids: readonly number[], mode: LogitsMode, out: Float32Array, opts: { residuals?: boolean }): Promise<void> {
    const V = this.plan.vocabSize;
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
        this.append(part);
        if (mode === 'all') out.set(await this.gpu.readF32(this.a.logits, T * V), start * V);
        else if (mode === 'last' && last) out.set(await this.gpu.readF32(this.a.logits, V));
        else this.gpu.checkErrors();
      } finally {
        releaseDispatches(this.gpu, made);
      }
    }
  }

  /**
   * Appends `ids` like prefill and scores them: entry i is the log-probability of `targets[i]`
   * under the logits after `ids[i]`, and whether it is the greedy choice (argmax, lowest id on
   * ties). Log-softmax and the gather run on the GPU; a chunk reads back 8 bytes a position.
   */
  async scoreTokens(ids: readonly number[], targets: readonly number[]): Promise<{ logprobs: number[]; greedy: boolean[] }> {
    this.checkLive();
    this.checkIds(ids);
    const V = this.plan.vocabSize;
    if (targets.length !== ids.length) throw new Error(`scoreTokens: ${targets.length} targets for ${ids.length} tokens; give one target per token`);
    targets.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new Error(`target id ${t} at index ${i} is outside the vocabulary [0, ${V})`);
    });
    const S = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.scoreBuffers ??= { targets: this.gpu.createBuffer('score_targets', this.chunk * 4, S), out: this.gpu.createBuffer('score_out', this.chunk * 8, S) };
    const sb = this.scoreBuffers;
    const logprobs: number[] = [];
    const greedy: boolean[] = [];
    for (let start = 0; start < ids.length; start += this.chunk) {
      const part = ids.slice(start, start + this.chunk);
      const T = part.length;
      const made: Dispatch[] = [];
      try {
        const ops = this.buildPass(T, 'all', false, made);
        const lp = logprobDispatch(this.gpu, { n: V, rows: T, offset: 0, logits: this.a.logits, targets: sb.targets, out: sb.out, label: 'logprob' });
        made.push(lp);
        ops.push({ kind: 'dispatch', d: lp });
        this.writePosition(this.length);
        this.gpu.write(this.a.ids, new Uint32Array(part));
        this.gpu.write(sb.targets, new Uint32Array(targets.slice(start, start + T)));
        const enc = this.gpu.device.createCommandEncoder({ label: `score@${this.length}` });
        encodeOps(enc, ops, 'score');
        // As after prefill: the greedy choice after the last token is the next decode step's input.
        if (start + T === ids.length) enc.copyBufferToBuffer(this.a.nextId, 0, this.a.ids, 0, 4);
        this.gpu.device.queue.submit([enc.finish()]);
        this.append(part);
        this.pending = -1;
        this.pendingReadable = start + T === ids.length;
        const out = await this.gpu.readF32(sb.out, T * 2);
        for (let i = 0; i < T; i++) {
          logprobs.push(out[2 * i]);
          greedy.push(out[2 * i + 1] === 1);
        }
      } finally {
        releaseDispatches(this.gpu, made);
      }
    }
    return { logprobs, greedy };
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
    this.append([id]);
    this.pending = -1;
    this.pendingReadable = true;
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
    this.append([this.pendingReadable ? this.pending : -1]);
    this.pending = -1;
    this.pendingReadable = true;
    await staging.mapAsync(GPUMapMode.READ);
    const id = new Uint32Array(staging.getMappedRange(0, 4))[0];
    staging.unmap();
    this.gpu.checkErrors();
    this.pending = id;
    return id;
  }

  /**
   * Appends `tokens` in one pass (speculative decoding's verification) and returns the id the
   * chooser picks after each of them, reading back 4 bytes a token. `randoms[j]` is the sampler's
   * random number at row j. Each choice equals what a decode step at that position would choose.
   */
  async verify(tokens: readonly number[], randoms: readonly number[] = []): Promise<number[]> {
    const pass = this.prepareVerify(tokens, 1, 'verify');
    const { a } = this;
    const T = tokens.length;
    // Row j's choice is what a decode step after token j would choose: the same chooser over the
    // same logits (the multi-token matmul sums in the one-token kernel's order), with row j's
    // random number; the sampler marks each choice seen, so row j + 1 sees it when it was right.
    const sampler = Engine.usesSampler(this.sampling);
    const ops: Op[] = [...pass.body];
    pass.rows.forEach((d, j) => {
      if (sampler) ops.push({ kind: 'copy', src: a.stepRandoms, srcOffset: j * 4, dst: a.random, dstOffset: 0, size: 4 });
      ops.push({ kind: 'dispatch', d }, { kind: 'copy', src: a.nextId, srcOffset: 0, dst: a.choices, dstOffset: j * 4, size: 4 });
    });
    this.writeRandoms(randoms, T);
    return this.submitVerify(tokens, ops, 'verify', T);
  }

  /** What both verifications check and prepare first: live engine, ids, size, the pass for T tokens. */
  private prepareVerify(tokens: readonly number[], minDrafts: number, what: string): VerifyPass {
    this.checkLive();
    this.checkIds(tokens);
    const T = tokens.length;
    if (T < minDrafts || T > this.maxSteps) throw new Error(`${what}: ${minDrafts} to ${this.maxSteps} tokens a pass, got ${T}`);
    return this.verifyPass(T);
  }

  /** Writes the pass's position and ids, encodes `ops`, appends the tokens, reads `n` choices. */
  private submitVerify(tokens: readonly number[], ops: readonly Op[], label: string, n: number, finish?: (enc: GPUCommandEncoder) => void): Promise<number[]> {
    this.writePosition(this.length);
    this.gpu.write(this.a.ids, new Uint32Array(tokens));
    const enc = this.gpu.device.createCommandEncoder({ label: `${label}@${this.length}` });
    encodeOps(enc, ops, 'verify');
    finish?.(enc);
    this.append(tokens);
    this.pending = -1;
    this.pendingReadable = false;
    return this.readChoices(enc, n);
  }

  /**
   * Speculative sampling's verification: appends `tokens` (the last token, then k drafts) in one
   * pass, takes the main model's kept weights P at every row (row j sees the drafts before it as
   * seen tokens), and applies the acceptance rule on the GPU against the draft model's weights Q
   * (`draftDists`, [k, vocab], on this device). `randoms`: k + 1 uniforms. Reads back 8 bytes.
   */
  async verifySampled(tokens: readonly number[], draftDists: GPUBuffer, randoms: readonly number[]): Promise<{ accepted: number; next: number }> {
    this.checkLive();
    if (!this.distributions) throw new Error('verifySampled: configure the chooser for sampling with distributions first');
    const pass = this.prepareVerify(tokens, 2, 'verifySampled');
    const T = tokens.length;
    const k = T - 1;
    if (randoms.length < T) throw new Error(`verifySampled: ${T} random numbers needed, got ${randoms.length}`);
    const sb = this.samplingBuffers();
    const V = this.plan.vocabSize;
    if (pass.accept?.q !== draftDists) {
      if (pass.accept) releaseDispatches(this.gpu, [pass.accept.d]);
      const d = specAcceptDispatch(this.gpu, { n: V, k, p: sb.dists, q: draftDists, drafts: sb.drafts, random: sb.acceptRandoms, out: sb.accept, scratch: sb.scratch });
      pass.accept = { q: draftDists, d };
    }
    const penalty = this.sampling!.repetitionPenalty !== 1;
    const ops: Op[] = [...pass.body];
    pass.rows.forEach((d, j) => {
      // The DIST sampler leaves `seen` alone: mark draft j before the row after it.
      if (penalty && j > 0) ops.push({ kind: 'copy', src: sb.one, srcOffset: 0, dst: this.a.seen, dstOffset: tokens[j] * 4, size: 4 });
      ops.push({ kind: 'dispatch', d });
    });
    ops.push({ kind: 'dispatch', d: pass.accept.d });
    this.gpu.write(sb.drafts, new Uint32Array(tokens.slice(1)));
    this.gpu.write(sb.acceptRandoms, new Float32Array(randoms.slice(0, T)));
    const [accepted, next] = await this.submitVerify(tokens, ops, 'verify-sampled', 2, (enc) => enc.copyBufferToBuffer(sb.accept, 0, this.a.choices, 0, 8));
    return { accepted, next };
  }

  /**
   * Several decode steps in one submission: feeds `known` one token a step, then `count - 1`
   * more steps that each feed the previous step's choice on the GPU. Returns the `count` choices
   * made after the last known token and after each fed choice, in one readback (a draft model's
   * k proposals). `randoms[c]` is the sampler's random number for choice c.
   */
  async steps(known: readonly number[], count: number, randoms: readonly number[] = []): Promise<number[]> {
    this.checkLive();
    if (!Number.isInteger(count) || count < 1 || count > this.maxSteps) throw new Error(`steps: count must be an integer in [1, ${this.maxSteps}], got ${count}`);
    const passes = known.length + count - 1;
    if (known.length > this.maxSteps) throw new Error(`steps: at most ${this.maxSteps} known tokens, got ${known.length}`);
    this.checkIds(known);
    if (this.length + passes > this.contextLength) throw new Error(`the context of ${this.contextLength} tokens is full`);
    const { a } = this;
    const V = this.plan.vocabSize;
    const positions = new Uint32Array(passes * 4);
    for (let i = 0; i < passes; i++) positions[i * 4] = this.length + i;
    this.gpu.write(a.stepPositions, positions);
    this.gpu.write(a.stepIds, new Uint32Array(known));
    this.writeRandoms(randoms, count);
    const sampler = Engine.usesSampler(this.sampling);
    // With distributions, each draft's kept weights go to its row of `dists` (the Q of verifySampled).
    const sb = this.distributions ? this.samplingBuffers() : undefined;
    const ops: Op[] = [];
    const copy = (src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number) =>
      ops.push({ kind: 'copy', src, srcOffset, dst, dstOffset, size });
    for (let i = 0; i < passes; i++) {
      const c = i - (known.length - 1); // index of this step's choice, negative while catching up
      copy(a.stepPositions, i * 16, a.position, 0, 16);
      if (i < known.length) copy(a.stepIds, i * 4, a.ids, 0, 4);
      else copy(a.nextId, 0, a.ids, 0, 4);
      if (sampler && c >= 0) copy(a.stepRandoms, c * 4, a.random, 0, 4);
      ops.push(...this.decodeOps);
      if (c >= 0) copy(a.nextId, 0, a.choices, c * 4, 4);
      if (c >= 0 && sb) copy(sb.dist, 0, sb.dists, c * V * 4, V * 4);
    }
    // As after a decode step: the last choice is the input of a decodeStep that follows.
    copy(a.nextId, 0, a.ids, 0, 4);
    const enc = this.gpu.device.createCommandEncoder({ label: `steps@${this.length}` });
    encodeOps(enc, ops, 'steps');
    // Fed: the known tokens, then every choice but the last (filled in once read back).
    const at = this.length;
    this.append([...known, ...new Array<number>(count - 1).fill(-1)]);
    this.pending = -1;
    this.pendingReadable = true;
    const choices = await this.readChoices(enc, count);
    if (this.held.length >= at + passes) {
      for (let c = 0; c < count - 1; c++) this.held[at + known.length + c] = choices[c];
      this.pending = choices[count - 1];
    }
    return choices;
  }

  private writeRandoms(randoms: readonly number[], n: number): void {
    if (!Engine.usesSampler(this.sampling) || !this.sampling.doSample) return;
    if (randoms.length < n) throw new Error(`sampling needs ${n} random numbers, got ${randoms.length}`);
    this.gpu.write(this.a.stepRandoms, new Float32Array(randoms.slice(0, n)));
  }

  /** Finishes `enc` with a copy of the first `n` choices to the staging buffer, submits it, reads them. */
  private async readChoices(enc: GPUCommandEncoder, n: number): Promise<number[]> {
    const staging = this.a.stepStaging;
    enc.copyBufferToBuffer(this.a.choices, 0, staging, 0, n * 4);
    this.gpu.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ, 0, n * 4);
    const ids = Array.from(new Uint32Array(staging.getMappedRange(0, n * 4)));
    staging.unmap();
    this.gpu.checkErrors();
    return ids;
  }

  /** The choice of the last pass (prefill or step), read back (4 bytes). */
  async lastChoice(): Promise<number> {
    const id = (await this.gpu.readU32(this.a.nextId, 1))[0];
    // After a prefill, score or decode step, a.ids holds this same choice for the next decodeStep.
    if (this.pendingReadable) this.pending = id;
    return id;
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
    this.dropVerifyPasses();
    for (const b of Object.values(this.sb ?? {})) this.gpu.destroyBuffer(b);
    for (const b of Object.values(this.a).flat() as GPUBuffer[]) this.gpu.destroyBuffer(b);
    for (const b of [...this.cache.k, ...this.cache.v]) this.gpu.destroyBuffer(b);
    if (this.scoreBuffers) for (const b of Object.values(this.scoreBuffers)) this.gpu.destroyBuffer(b);
  }
}
