// A loaded model: plan + weights + engine (+ tokenizer) behind the public API: logits, generate,
// generateText, dispose.
import type { ModelPlan } from '../config/plan.ts';
import type { Gpu } from '../gpu/gpu.ts';
import type { TensorEntry } from '../io/safetensors.ts';
import { emptyStats, generateTokens, type GeneratedToken, type GenerationStats } from '../generate/generate.ts';
import { resolveGeneration, type GenerationConfig } from '../generate/options.ts';
import { StreamDecoder, type Tokenizer } from '../tokenizer/tokenizer.ts';
import { WEIGHT_FORMATS, type WeightFormat } from '../../kernels/weight.ts';
import { GEMV_KERNELS, tuneGemv, type GemvKernel, type GemvTuning } from '../../kernels/matmul.ts';
import { Engine, type EngineOptions } from './engine.ts';
import { checkModelFits } from './fits.ts';
import { FifoLock } from './fifo-lock.ts';
import { destroyWeights, loadWeights, type LoadProgress } from './weights.ts';

export type DType = WeightFormat;
export const DTYPES: readonly string[] = WEIGHT_FORMATS;

export interface ModelOptions extends Omit<EngineOptions, 'gemv'> {
  dtype?: DType;
  onProgress?: LoadProgress;
  /**
   * The decode matmul kernel (see MatmulOptions.gemv). 'auto' (the default) times both on the
   * model's widest proj_1 after loading and keeps the faster (OpenElmModel.gemvTuning).
   */
  gemv?: GemvKernel | 'auto';
}

export interface GenerateOptions extends Partial<GenerationConfig> {
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
    /** What 'auto' measured, when it ran. */
    readonly gemvTuning?: GemvTuning,
  ) {}

  static async create(
    gpu: Gpu,
    plan: ModelPlan,
    tensors: Map<string, TensorEntry>,
    opts: ModelOptions & { ownsGpu?: boolean; tokenizer?: Tokenizer } = {},
  ): Promise<OpenElmModel> {
    const dtype = opts.dtype ?? 'f16';
    if (!DTYPES.includes(dtype)) throw new Error(`dtype must be one of ${DTYPES.join(', ')}, got ${dtype}`);
    const gemvOpt = opts.gemv ?? 'auto';
    if (gemvOpt !== 'auto' && !GEMV_KERNELS.includes(gemvOpt)) throw new Error(`gemv must be auto, ${GEMV_KERNELS.join(' or ')}, got ${String(gemvOpt)}`);
    // Sizes first: nothing is allocated for a config or context the device cannot hold.
    const contextFrom = opts.contextLength === undefined ? 'max_context_length in config.json' : 'the context length (--context-length)';
    checkModelFits(plan, opts.contextLength ?? plan.maxContext, gpu.limits, contextFrom, opts.prefillChunk);
    const weights = await loadWeights(gpu, plan, tensors, dtype, opts.onProgress);
    try {
      let tuning: GemvTuning | undefined;
      if (gemvOpt === 'auto') {
        const widest = plan.layers.reduce((a, l) => (l.proj1Out > a.proj1Out ? l : a));
        tuning = await tuneGemv(gpu, weights.layers[widest.index].proj1);
      }
      const engine = new Engine(gpu, plan, weights, { ...opts, gemv: tuning?.choice ?? (gemvOpt as GemvKernel) });
      return new OpenElmModel(gpu, plan, engine, dtype, opts.tokenizer, opts.ownsGpu ?? false, tuning);
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
   * Streams new tokens after a prompt (text, encoded with bos) or token ids (fed as they are).
   * Hugging Face generation options: maxNewTokens, doSample, temperature, topK, topP,
   * repetitionPenalty, seed, stopAtEos, stopStrings.
   */
  generate(prompt: string | readonly number[], opts: GenerateOptions = {}): AsyncGenerator<GeneratedToken> {
    const ids = typeof prompt === 'string' ? this.encode(prompt) : prompt;
    const cfg = resolveGeneration(opts);
    // A tokenizer made for another vocabulary would turn ids into confident-looking nonsense.
    const tok = this.tokenizer && this.tokenizer.vocabSize === this.plan.vocabSize ? this.tokenizer : undefined;
    const text = tok ? new StreamDecoder(tok, { stripLeadingSpace: false }) : undefined;
    if (cfg.stopStrings.length > 0 && !text) throw new Error("stop strings need a tokenizer for this model's vocabulary");
    // Holds the model from the first next() to the end: a started generator blocks later calls.
    return this.lock.hold(() => generateTokens(this.engine, ids, cfg, { eosTokenId: opts.eosTokenId ?? this.plan.eosTokenId, text, signal: opts.signal, stats: opts.stats }));
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
    this.engine.dispose();
    destroyWeights(this.gpu, this.engine.weights);
    if (this.ownsGpu) this.gpu.destroy();
  }
}
