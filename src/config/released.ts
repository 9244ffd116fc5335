// The config.json files of Apple's released OpenELM models (base and -Instruct share them), as
// save_pretrained writes them: sorted keys, with the expanded per-layer `num_query_heads`,
// `num_kv_heads` and `ffn_multipliers` lists (computed here by our own derivation).
import { parseConfig } from './config.ts';
import { derivePlan, layerMultipliers } from './plan.ts';

export const RELEASED_SIZES = ['270M', '450M', '1.1B', '3B'] as const;
export type ReleasedSize = (typeof RELEASED_SIZES)[number];

/** Layers, model_dim and head_dim of each size (Apple's OpenELM_CONFIGS); the rest is shared. */
const SHAPES: Record<ReleasedSize, { layers: number; modelDim: number; headDim: number }> = {
  '270M': { layers: 16, modelDim: 1280, headDim: 64 },
  '450M': { layers: 20, modelDim: 1536, headDim: 64 },
  '1.1B': { layers: 28, modelDim: 2048, headDim: 64 },
  '3B': { layers: 36, modelDim: 3072, headDim: 128 },
};

/** Hugging Face repository names (apple/OpenELM-1_1B, not 1.1B). */
export function releasedRepoName(size: ReleasedSize, instruct = false): string {
  return `apple/OpenELM-${size.replace('.', '_')}${instruct ? '-Instruct' : ''}`;
}

export function releasedConfig(size: ReleasedSize): Record<string, unknown> {
  const s = SHAPES[size];
  if (!s) throw new Error(`unknown OpenELM size "${size}", expected one of ${RELEASED_SIZES.join(', ')}`);
  const base = {
    activation_fn_name: 'swish',
    architectures: ['OpenELMForCausalLM'],
    auto_map: {
      AutoConfig: 'configuration_openelm.OpenELMConfig',
      AutoModelForCausalLM: 'modeling_openelm.OpenELMForCausalLM',
    },
    bos_token_id: 1,
    eos_token_id: 2,
    ffn_dim_divisor: 256,
    ffn_multipliers: layerMultipliers([0.5, 4.0], s.layers),
    ffn_with_glu: true,
    head_dim: s.headDim,
    initializer_range: 0.02,
    max_context_length: 2048,
    model_dim: s.modelDim,
    model_type: 'openelm',
    normalization_layer_name: 'rms_norm',
    normalize_qk_projections: true,
    num_gqa_groups: 4,
    num_kv_heads: [] as number[],
    num_query_heads: [] as number[],
    num_transformer_layers: s.layers,
    qkv_multipliers: [0.5, 1.0],
    rope_freq_constant: 10000,
    rope_max_length: 4096,
    share_input_output_layers: true,
    torch_dtype: 'float32',
    transformers_version: '4.39.3',
    use_cache: true,
    vocab_size: 32000,
  };
  const { num_kv_heads: _kv, num_query_heads: _q, ...unexpanded } = base;
  const plan = derivePlan(parseConfig(unexpanded, `OpenELM-${size} config.json`));
  base.num_query_heads = plan.layers.map((l) => l.numQueryHeads);
  base.num_kv_heads = plan.layers.map((l) => l.numKvHeads);
  return base;
}
