// A loaded model: plan + weights + engine behind the small public API (logits, generate, dispose).
import type { ModelPlan } from '../config/plan.ts';
import type { Gpu } from '../gpu/gpu.ts';
import type { TensorEntry } from '../io/safetensors.ts';
import { emptyStats, greedyTokens, type GenerationStats } from '../generate/greedy.ts';
import type { WeightFormat } from '../../kernels/weight.ts';
import { Engine, type EngineOptions } from './engine.ts';
import { destroyWeights, loadWeights, type LoadProgress } from './weights.ts';

export type DType = WeightFormat;
export const DTYPES: readonly string[] = ['f32', 'f16'];

export interface ModelOptions extends EngineOptions {
  dtype?: DType;
  onProgress?: LoadProgress;
}

export interface GenerateOptions {
  maxNewTokens?: number;
  /** Stop at the model's eos token (default true). */
  stopAtEos?: boolean;
  signal?: AbortSignal;
}

export class OpenElmModel {
  private constructor(
    readonly gpu: Gpu,
    readonly plan: ModelPlan,
    readonly engine: Engine,
    readonly dtype: DType,
    private readonly ownsGpu: boolean,
  ) {}

  static async create(gpu: Gpu, plan: ModelPlan, tensors: Map<string, TensorEntry>, opts: ModelOptions & { ownsGpu?: boolean } = {}): Promise<OpenElmModel> {
    const dtype = opts.dtype ?? 'f16';
    if (!DTYPES.includes(dtype)) throw new Error(`dtype must be one of ${DTYPES.join(', ')}, got ${dtype}`);
    const weights = await loadWeights(gpu, plan, tensors, dtype, opts.onProgress);
    try {
      const engine = new Engine(gpu, plan, weights, opts);
      return new OpenElmModel(gpu, plan, engine, dtype, opts.ownsGpu ?? false);
    } catch (e) {
      destroyWeights(gpu, weights);
      throw e;
    }
  }

  /** Logits after the last id ([vocab]), or after every id ([ids.length][vocab]). Starts a new sequence. */
  async logits(ids: readonly number[], opts: { allPositions?: boolean } = {}): Promise<Float32Array[]> {
    this.engine.reset();
    const V = this.plan.vocabSize;
    const flat = await this.engine.prefill(ids, opts.allPositions ? 'all' : 'last');
    const rows: Float32Array[] = [];
    for (let i = 0; i < flat.length / V; i++) rows.push(flat.subarray(i * V, (i + 1) * V));
    return rows;
  }

  /** Streams new token ids (greedy). `stats` is filled in as generation goes. */
  generate(ids: readonly number[], opts: GenerateOptions = {}, stats: GenerationStats = emptyStats()): AsyncGenerator<number> {
    return greedyTokens(
      this.engine,
      ids,
      {
        maxNewTokens: opts.maxNewTokens ?? 32,
        eosTokenId: opts.stopAtEos === false ? undefined : this.plan.eosTokenId,
        signal: opts.signal,
      },
      stats,
    );
  }

  dispose(): void {
    this.engine.dispose();
    destroyWeights(this.gpu, this.engine.weights);
    if (this.ownsGpu) this.gpu.destroy();
  }
}
