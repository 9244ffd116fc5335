// A loaded model: plan + weights + engine (+ tokenizer) behind the public API: logits, generate,
// generateText, dispose.
import type { ModelPlan } from '../config/plan.ts';
import type { Gpu } from '../gpu/gpu.ts';
import type { TensorEntry } from '../io/safetensors.ts';
import { emptyStats, generateTokens, type Drafter, type GeneratedToken, type GenerationStats } from '../generate/generate.ts';
import { AssistantDrafter, PromptLookupDrafter } from '../generate/drafters.ts';
import { resolveGeneration, type GenerationConfig } from '../generate/options.ts';
import { StreamDecoder, type Tokenizer } from '../tokenizer/tokenizer.ts';
import { checkChatMessages, encodeChat, renderChat, type ChatMessage, type ChatTemplate } from '../tokenizer/chat.ts';
import { encodePair, scoreRequests, type ScoreOptions, type ScoreResult, type TokenRequest } from '../generate/score.ts';
import { WEIGHT_FORMATS, type GpuWeightFormat } from '../weights/gpu-weight.ts';
import { AFFINE_FORMATS, isAffineFormat } from '../weights/affine.ts';
import { resolveWeightFormat } from '../runtime/weight-format.ts';
import { choosePrefillMatmul, GEMV_KERNELS, PREFILL_KERNELS, tuneGemv, tunePrefillMatmul, type GemvKernel, type PrefillChoice, type PrefillKernel } from '../runtime/linear.ts';
import { prefillChunkSize } from '../runtime/fits.ts';
import { gpuTuningKey, tune, type Tuned } from '../runtime/tuning.ts';
import type { TuningStore } from '../io/tuning-store.ts';
import { Engine, type EngineOptions } from '../runtime/engine.ts';
import { checkModelFits } from '../runtime/fits.ts';
import { FifoLock } from './fifo-lock.ts';
import { perplexity, type PerplexityOptions, type PerplexityResult } from '../eval/perplexity.ts';
import { destroyWeights, loadWeights, type LoadProgress } from '../runtime/model-weights.ts';

/** A model's weight format: f32/f16/q8/q4 from a float checkpoint, mlx4/mlx8 an MLX one's own codes. */
export type DType = GpuWeightFormat;
/** What the dtype option takes: a format, or 'auto' (the checkpoint's own: mlx4/mlx8 for MLX, else f16). */
export const DTYPES: readonly string[] = ['auto', ...WEIGHT_FORMATS, ...AFFINE_FORMATS];

export interface ModelOptions extends Omit<EngineOptions, 'gemv' | 'prefillMatmul'> {
  /** Default 'auto': f16 for float checkpoints, mlx4/mlx8 for MLX-quantized ones (which take nothing else). */
  dtype?: DType | 'auto';
  onProgress?: LoadProgress;
  /**
   * The decode matmul kernel (see MatmulOptions.gemv). 'auto' (the default) times both on the
   * model's widest proj_1 after loading and keeps the faster (OpenElmModel.gemvTuning), or takes
   * the choice tuningStore remembers for this adapter and shape.
   */
  gemv?: GemvKernel | 'auto';
  /**
   * Where timed kernel choices are remembered per adapter and shape (see runtime/tuning.ts), so a
   * load does not time them again. Default: the entry point's (Node: <cache>/tuning.json; browser:
   * localStorage); null: remember nothing, time at every load.
   */
  tuningStore?: TuningStore | null;
  /**
   * The T > 1 matmul of prefill and scoring (MatmulOptions.prefill). 'auto' (the default) times
   * both on the widest proj_1 at the prefill chunk's length after loading, except on a fallback
   * adapter (OpenElmModel.prefillChoice says which and why).
   */
  prefillMatmul?: PrefillKernel | 'auto';
  /**
   * q8/q4 only: multiply each layer's RMSNorm gains into the columns of the product after it
   * (qkv_proj, proj_1) before rounding, so the kernel skips loading them. Off by default: gains
   * with outlier channels widen each group's range, and the rounding error grows with it.
   */
  foldNorms?: boolean;
}

/** An assistant model to load for speculative decoding: a folder, URL or hub id, and its format. */
export interface AssistantSpec {
  source: string;
  dtype?: DType | 'auto';
}

/** Loads another model on the same device (the entry point's loadModel; assistants use it). */
export type ModelLoader = (source: string, opts: { dtype: DType | 'auto'; gpu: Gpu; contextLength: number }) => Promise<OpenElmModel>;

export interface GenerateOptions extends Partial<GenerationConfig> {
  /**
   * Speculative decoding with a draft model of the same vocabulary: a loaded model, or one to
   * load (once, then kept with this model and disposed with it). Greedy output is unchanged.
   */
  assistant?: OpenElmModel | AssistantSpec;
  /** Overrides the config's eos_token_id, as Hugging Face's eos_token_id does. */
  eosTokenId?: number;
  signal?: AbortSignal;
  /** Filled in as generation goes. */
  stats?: GenerationStats;
}

export interface GenerateResult {
  ids: number[];
  text: string;
  stats: GenerationStats;
}

export class OpenElmModel {
  /** Serialises logits() and generate() on this model in call order (see README, Concurrency). */
  private readonly lock = new FifoLock();

  private constructor(
    readonly gpu: Gpu,
    readonly plan: ModelPlan,
    readonly engine: Engine,
    readonly dtype: DType,
    readonly tokenizer: Tokenizer | undefined,
    private readonly ownsGpu: boolean,
    /** What 'auto' chose: timed now, or remembered from an earlier load on this adapter. */
    readonly gemvTuning?: Tuned<GemvKernel>,
    private readonly loader?: ModelLoader,
    /** The prefill matmul chosen at load, and why. */
    readonly prefillChoice?: PrefillChoice,
    /** The chat template of tokenizer_config.json, when the model folder has one (Instruct models). */
    readonly chatTemplate?: ChatTemplate,
  ) {}

  /** Assistants loaded from an AssistantSpec, by source and dtype. */
  private readonly assistants = new Map<string, Promise<OpenElmModel>>();

  static async create(
    gpu: Gpu,
    plan: ModelPlan,
    tensors: Map<string, TensorEntry>,
    opts: ModelOptions & { ownsGpu?: boolean; tokenizer?: Tokenizer; chatTemplate?: ChatTemplate; loader?: ModelLoader } = {},
  ): Promise<OpenElmModel> {
    if (opts.dtype !== undefined && !DTYPES.includes(opts.dtype)) throw new Error(`dtype must be one of ${DTYPES.join(', ')}, got ${opts.dtype}`);
    const dtype = resolveWeightFormat(plan, opts.dtype);
    const gemvOpt = opts.gemv ?? 'auto';
    if (gemvOpt !== 'auto' && !GEMV_KERNELS.includes(gemvOpt)) throw new Error(`gemv must be auto, ${GEMV_KERNELS.join(' or ')}, got ${String(gemvOpt)}`);
    // Sizes first: nothing is allocated for a config or context the device cannot hold.
    const contextFrom = opts.contextLength === undefined ? 'max_context_length in config.json' : 'the context length (--context-length)';
    checkModelFits(plan, opts.contextLength ?? plan.maxContext, gpu.limits, contextFrom, opts.prefillChunk);
    const weights = await loadWeights(gpu, plan, tensors, dtype, opts.onProgress, { foldNorms: opts.foldNorms });
    try {
      let tuning: Tuned<GemvKernel> | undefined;
      if (gemvOpt === 'auto') {
        const widest = plan.layers.reduce((a, l) => (l.proj1Out > a.proj1Out ? l : a));
        const w = weights.layers[widest.index].proj1;
        const key = gpuTuningKey(gpu, 'gemv', `${w.format}:N=${w.rows}:K=${w.cols}`);
        tuning = await tune(opts.tuningStore ?? null, key, GEMV_KERNELS, async () => (await tuneGemv(gpu, w)).ms);
      }
      const widest = plan.layers.reduce((a, l) => (l.proj1Out > a.proj1Out ? l : a));
      const chunk = prefillChunkSize(plan.vocabSize, opts.contextLength ?? plan.maxContext, gpu.limits, opts.prefillChunk);
      const prefill = await choosePrefillMatmul(gpu, weights.layers[widest.index].proj1, chunk, opts.prefillMatmul ?? 'auto', (w, T) =>
        tune(opts.tuningStore ?? null, gpuTuningKey(gpu, 'prefill_matmul', `${w.format}:N=${w.rows}:K=${w.cols}:T=${T}`), PREFILL_KERNELS, async () => (await tunePrefillMatmul(gpu, w, T)).ms),
      );
      const engine = new Engine(gpu, plan, weights, { ...opts, gemv: tuning?.choice ?? (gemvOpt as GemvKernel), prefillMatmul: prefill.choice });
      return new OpenElmModel(gpu, plan, engine, dtype, opts.tokenizer, opts.ownsGpu ?? false, tuning, opts.loader, prefill, opts.chatTemplate);
    } catch (e) {
      destroyWeights(gpu, weights);
      throw e;
    }
  }

  /** Token ids of a prompt (bos first), checked against this model's vocabulary. */
  encode(prompt: string): number[] {
    if (!this.tokenizer) throw new Error('this model has no tokenizer: pass token ids, or load one with the tokenizer option');
    if (prompt.length === 0) throw new Error('the prompt is empty: give some text (or token ids)');
    const ids = this.tokenizer.encode(prompt);
    const bad = ids.find((id) => id >= this.plan.vocabSize);
    if (bad !== undefined) {
      throw new Error(
        `the tokenizer (${this.tokenizer.source}) produced token id ${bad}, outside this model's vocabulary of ${this.plan.vocabSize}; use the model's own tokenizer`,
      );
    }
    return ids;
  }

  /** Logits after the last id ([vocab]), or after every id ([ids.length][vocab]). Starts a new sequence. */
  logits(ids: readonly number[], opts: { allPositions?: boolean } = {}): Promise<Float32Array[]> {
    return this.lock.run(async () => {
      this.engine.reset();
      const V = this.plan.vocabSize;
      const flat = await this.engine.prefill(ids, opts.allPositions ? 'all' : 'last');
      const rows: Float32Array[] = [];
      for (let i = 0; i < flat.length / V; i++) rows.push(flat.subarray(i * V, (i + 1) * V));
      return rows;
    });
  }

  /**
   * Log-probability of `continuation` after `context`: the sum, each token's, and whether every
   * token was the greedy choice. Token ids are fed as they are (include BOS yourself); text is
   * tokenized as lm-evaluation-harness does (encodePair: BOS added, the continuation's tokens are
   * those of context+continuation after the context's). Starts a new sequence.
   */
  async score(context: string | readonly number[], continuation: string | readonly number[], opts: ScoreOptions = {}): Promise<ScoreResult> {
    const [r] = await this.scoreRequests([this.request(context, continuation)], opts);
    return r;
  }

  /** Token ids of a (context, continuation) pair, text encoded as `score` describes. */
  request(context: string | readonly number[], continuation: string | readonly number[]): TokenRequest {
    if (typeof context === 'string' && typeof continuation === 'string') {
      const tok = this.tokenizer;
      if (!tok) throw new Error('this model has no tokenizer: pass token ids, or load one with the tokenizer option');
      const r = encodePair(tok, context, continuation);
      const bad = [...r.context, ...r.continuation].find((id) => id >= this.plan.vocabSize);
      if (bad !== undefined) {
        throw new Error(`the tokenizer (${tok.source}) produced token id ${bad}, outside this model's vocabulary of ${this.plan.vocabSize}; use the model's own tokenizer`);
      }
      return r;
    }
    if (typeof context === 'string' || typeof continuation === 'string') throw new Error('score: give the context and the continuation both as text or both as token ids');
    return { context, continuation };
  }

  /** Sliding-window perplexity of `ids` (Hugging Face's rule, see eval/perplexity.ts). */
  perplexity(ids: readonly number[], opts: PerplexityOptions): Promise<PerplexityResult> {
    return this.lock.run(() => perplexity(this.engine, ids, opts));
  }

  /** Scores several requests; a token prefix they share runs once (see scoreRequests). */
  scoreRequests(requests: readonly TokenRequest[], opts: ScoreOptions = {}): Promise<ScoreResult[]> {
    return this.lock.run(() => scoreRequests(this.engine, requests, opts));
  }

  /**
   * Streams new tokens after a prompt (text, encoded with bos) or token ids (fed as they are).
   * Hugging Face generation options: maxNewTokens, doSample, temperature, topK, topP,
   * repetitionPenalty, seed, stopAtEos, stopStrings, maxLength; speculative decoding with
   * promptLookupNumTokens (and maxMatchingNgramSize) or `assistant` (and numAssistantTokens,
   * numAssistantTokensSchedule).
   */
  generate(prompt: string | readonly number[], opts: GenerateOptions = {}): AsyncGenerator<GeneratedToken> {
    const ids = typeof prompt === 'string' ? this.encode(prompt) : prompt;
    const cfg = resolveGeneration(opts);
    // A tokenizer made for another vocabulary would turn ids into confident-looking nonsense.
    const tok = this.tokenizer && this.tokenizer.vocabSize === this.plan.vocabSize ? this.tokenizer : undefined;
    const text = tok ? new StreamDecoder(tok, { stripLeadingSpace: false }) : undefined;
    if (cfg.stopStrings.length > 0 && !text) throw new Error("stop strings need a tokenizer for this model's vocabulary");
    if (cfg.promptLookupNumTokens !== undefined && opts.assistant) throw new Error('give prompt_lookup_num_tokens or an assistant model, not both');
    if (opts.assistant === this) throw new Error('the assistant must be another model (load the checkpoint again, e.g. in another dtype)');
    const eosTokenId = opts.eosTokenId ?? this.plan.eosTokenId;
    // Holds the model from the first next() to the end: a started generator blocks later calls.
    return this.lock.hold(() => this.generateWith(ids, cfg, opts, { eosTokenId, text, signal: opts.signal, stats: opts.stats }));
  }

  private async *generateWith(
    ids: readonly number[],
    cfg: GenerationConfig,
    opts: GenerateOptions,
    run: Omit<Parameters<typeof generateTokens>[3], 'drafter'>,
  ): AsyncGenerator<GeneratedToken> {
    const eos = cfg.stopAtEos ? run.eosTokenId : undefined;
    let drafter: Drafter | undefined;
    if (cfg.promptLookupNumTokens !== undefined) drafter = new PromptLookupDrafter(cfg.promptLookupNumTokens, cfg.maxMatchingNgramSize, eos);
    else if (opts.assistant) {
      const assistant = await this.assistantModel(opts.assistant);
      if (cfg.doSample && assistant.gpu.device !== this.gpu.device) throw new Error('sampling with an assistant model needs both models on one GPU device (load the assistant with the gpu option)');
      // The assistant's engine is driven directly: hold its lock too, so its own callers wait.
      const release = await assistant.lock.acquire();
      try {
        yield* generateTokens(this.engine, ids, cfg, { ...run, drafter: new AssistantDrafter(assistant.engine, cfg, ids, eos) });
      } finally {
        release();
      }
      return;
    }
    yield* generateTokens(this.engine, ids, cfg, { ...run, drafter });
  }

  /** The assistant model for `a`, loaded on this model's device the first time a spec names it. */
  private async assistantModel(a: OpenElmModel | AssistantSpec): Promise<OpenElmModel> {
    let model: OpenElmModel;
    if (a instanceof OpenElmModel) model = a;
    else {
      // An MLX model's own format says nothing about the assistant's checkpoint.
      const dtype = a.dtype ?? (isAffineFormat(this.dtype) ? 'auto' : this.dtype);
      if (!DTYPES.includes(dtype)) throw new Error(`assistant dtype must be one of ${DTYPES.join(', ')}, got ${String(dtype)}`);
      if (!this.loader) throw new Error('this model was created without a loader: pass a loaded model as the assistant');
      const key = `${dtype}:${a.source}`;
      let p = this.assistants.get(key);
      if (!p) {
        p = this.loader(a.source, { dtype, gpu: this.gpu, contextLength: this.engine.contextLength });
        this.assistants.set(key, p);
        p.catch(() => this.assistants.delete(key));
      }
      model = await p;
    }
    if (model.plan.vocabSize !== this.plan.vocabSize) {
      throw new Error(`the assistant model's vocabulary has ${model.plan.vocabSize} tokens but this model's has ${this.plan.vocabSize}: an assistant must share the vocabulary`);
    }
    return model;
  }

  /**
   * Token ids of a conversation rendered with the model's chat template, ending with the prompt
   * for the assistant's turn (add_generation_prompt), as Hugging Face's apply_chat_template.
   */
  chatIds(messages: readonly ChatMessage[]): number[] {
    checkChatMessages(messages);
    const t = this.chatTemplate;
    if (!t) throw new Error('this model has no chat template (tokenizer_config.json has no chat_template): use an -Instruct model, or pass chatTemplate when loading');
    if (!this.tokenizer) throw new Error('this model has no tokenizer: chat needs one to encode the rendered template');
    const ids = encodeChat(this.tokenizer, t, renderChat(t, messages));
    const bad = ids.find((id) => id >= this.plan.vocabSize);
    if (bad !== undefined) throw new Error(`the tokenizer (${this.tokenizer.source}) produced token id ${bad}, outside this model's vocabulary of ${this.plan.vocabSize}; use the model's own tokenizer`);
    return ids;
  }

  /** Streams the assistant's reply to a conversation (the template applied; options as generate). */
  chat(messages: readonly ChatMessage[], opts: GenerateOptions = {}): AsyncGenerator<GeneratedToken> {
    return this.generate(this.chatIds(messages), opts);
  }

  /** The whole reply to a conversation, as generateText. */
  chatText(messages: readonly ChatMessage[], opts: GenerateOptions = {}): Promise<GenerateResult> {
    return this.generateText(this.chatIds(messages), opts);
  }

  /** Generates to the end and returns the new ids, their text and the statistics. */
  async generateText(prompt: string | readonly number[], opts: GenerateOptions = {}): Promise<GenerateResult> {
    const stats = opts.stats ?? emptyStats();
    const ids: number[] = [];
    let text = '';
    for await (const t of this.generate(prompt, { ...opts, stats })) {
      ids.push(t.id);
      text += t.text;
    }
    return { ids, text, stats };
  }

  dispose(): void {
    for (const p of this.assistants.values()) p.then((m) => m.dispose(), () => {});
    this.assistants.clear();
    this.engine.dispose();
    destroyWeights(this.gpu, this.engine.weights);
    if (this.ownsGpu) this.gpu.destroy();
  }
}
