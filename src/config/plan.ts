// Derives the per-layer plan (heads, FFN widths, tensor list) from a validated config, with the
// exact arithmetic of Hugging Face's OpenELMConfig (numpy float64 semantics). Browser-safe.
import type { OpenElmConfig } from './config.ts';
import type { StoredFormatEntry } from './stored-format.ts';
import type { MlxQuantization } from './mlx-quant.ts';

export interface LayerPlan {
  index: number;
  numQueryHeads: number;
  numKvHeads: number;
  ffnDim: number;
  /** (numQueryHeads + 2 * numKvHeads) * headDim: rows of qkv_proj. */
  qkvOut: number;
  /** ffnWithGlu ? 2 * ffnDim : ffnDim: rows of proj_1. */
  proj1Out: number;
}

export interface TensorSpec {
  name: string;
  shape: number[];
}

export interface ModelPlan {
  numLayers: number;
  modelDim: number;
  headDim: number;
  numGqaGroups: number;
  vocabSize: number;
  maxContext: number;
  ropeTheta: number;
  ropeMaxLength: number;
  tiedEmbeddings: boolean;
  normalizeQk: boolean;
  ffnWithGlu: boolean;
  /** Always 1e-6 (not a config field). */
  rmsNormEps: number;
  bosTokenId: number;
  eosTokenId: number;
  layers: LayerPlan[];
  /** Every tensor the checkpoint must hold: Hugging Face names, [out, in] shapes. */
  tensors: TensorSpec[];
  paramCount: number;
  /** A converted checkpoint (`openelm convert`): its matrices are stored in this format, ready to upload. */
  stored?: StoredFormatEntry;
  /** MLX affine quantization of every matrix (config.json's `quantization`); absent for float checkpoints. */
  quantization?: MlxQuantization;
}

export const RMS_NORM_EPS = 1e-6;

/**
 * Hugging Face / TF `make_divisible`: `max(d, int(v + d/2) // d * d)`, plus `d` if that is
 * below `0.9 * v`. Evaluated in float64 in the same order as Python.
 */
export function makeDivisible(v: number, divisor: number): number {
  let n = Math.max(divisor, Math.floor(Math.trunc(v + divisor / 2) / divisor) * divisor);
  if (n < 0.9 * v) n += divisor;
  return n;
}

/** numpy.linspace(start, stop, num) in float64: `i * step + start`, last value exactly stop. */
export function linspace(start: number, stop: number, num: number): number[] {
  if (num <= 0) return [];
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out: number[] = [];
  for (let i = 0; i < num; i++) out.push(i * step + start);
  out[num - 1] = stop;
  return out;
}

/** Round to the nearest integer, ties to even (numpy.rint). */
export function rintHalfEven(x: number): number {
  const r = Math.round(x); // ties toward +infinity
  if (r - x === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

/**
 * `round(v, 2)` as Hugging Face evaluates it. The values come from iterating a numpy array, so
 * they are numpy.float64 and round() dispatches to numpy.around: `rint(v * 100) / 100`, with the
 * product rounded to float64 first. This is NOT Python's correctly rounded float round(): e.g.
 * linspace(0.5, 4.0, 21)[13] = 2.775 (stored as 2.77499999999999991...) gives 2.78 here, 2.77 in
 * plain Python.
 */
export function roundTo2(v: number): number {
  return rintHalfEven(v * 100) / 100;
}

/** Per-layer multipliers from a number, [lo, hi], or an already per-layer list. */
export function layerMultipliers(m: number | number[], numLayers: number): number[] {
  if (typeof m === 'number') return new Array<number>(numLayers).fill(m);
  if (m.length === 2) return linspace(m[0], m[1], numLayers).map(roundTo2);
  if (m.length !== numLayers) throw new Error(`multiplier list has ${m.length} values, expected 2 or ${numLayers}`);
  return m.slice();
}

const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Derives the layer plan and the tensor list. Stored head lists that disagree are an error. */
export function derivePlan(cfg: OpenElmConfig, file = 'config.json'): ModelPlan {
  const L = cfg.num_transformer_layers;
  const D = cfg.model_dim;
  const hd = cfg.head_dim;
  const g = cfg.num_gqa_groups;
  const qkvMult = layerMultipliers(typeof cfg.qkv_multipliers === 'number' ? cfg.qkv_multipliers : [...cfg.qkv_multipliers], L);
  const ffnMult = layerMultipliers(cfg.ffn_multipliers, L);

  const layers: LayerPlan[] = [];
  for (let l = 0; l < L; l++) {
    const qDim = makeDivisible(D * qkvMult[l], hd * g);
    const numQueryHeads = qDim / hd; // exact: qDim is a multiple of hd * g
    const numKvHeads = Math.floor(numQueryHeads / g);
    const ffnDim = makeDivisible(D * ffnMult[l], cfg.ffn_dim_divisor);
    const storedQ = cfg.num_query_heads?.[l];
    if (storedQ !== undefined && storedQ !== numQueryHeads) {
      throw new Error(
        `${file}: num_query_heads[${l}] is ${storedQ}, but qkv_multipliers ${JSON.stringify(cfg.qkv_multipliers)} with model_dim ${D}, head_dim ${hd}, num_gqa_groups ${g} give ${numQueryHeads} query heads for layer ${l}`,
      );
    }
    const storedKv = cfg.num_kv_heads?.[l];
    if (storedKv !== undefined && storedKv !== numKvHeads) {
      throw new Error(
        `${file}: num_kv_heads[${l}] is ${storedKv}, but ${numQueryHeads} query heads / num_gqa_groups ${g} give ${numKvHeads} KV heads for layer ${l}`,
      );
    }
    layers.push({
      index: l,
      numQueryHeads,
      numKvHeads,
      ffnDim,
      qkvOut: (numQueryHeads + 2 * numKvHeads) * hd,
      proj1Out: cfg.ffn_with_glu ? 2 * ffnDim : ffnDim,
    });
  }

  const tensors: TensorSpec[] = [{ name: 'transformer.token_embeddings.weight', shape: [cfg.vocab_size, D] }];
  for (const lp of layers) {
    const p = `transformer.layers.${lp.index}.`;
    tensors.push({ name: p + 'attn_norm.weight', shape: [D] });
    tensors.push({ name: p + 'attn.qkv_proj.weight', shape: [lp.qkvOut, D] });
    if (cfg.normalize_qk_projections) {
      tensors.push({ name: p + 'attn.q_norm.weight', shape: [hd] });
      tensors.push({ name: p + 'attn.k_norm.weight', shape: [hd] });
    }
    tensors.push({ name: p + 'attn.out_proj.weight', shape: [D, lp.numQueryHeads * hd] });
    tensors.push({ name: p + 'ffn_norm.weight', shape: [D] });
    tensors.push({ name: p + 'ffn.proj_1.weight', shape: [lp.proj1Out, D] });
    tensors.push({ name: p + 'ffn.proj_2.weight', shape: [D, lp.ffnDim] });
  }
  tensors.push({ name: 'transformer.norm.weight', shape: [D] });
  if (!cfg.share_input_output_layers) tensors.push({ name: 'lm_head.weight', shape: [cfg.vocab_size, D] });

  return {
    numLayers: L,
    modelDim: D,
    headDim: hd,
    numGqaGroups: g,
    vocabSize: cfg.vocab_size,
    maxContext: cfg.max_context_length,
    ropeTheta: cfg.rope_freq_constant,
    ropeMaxLength: cfg.rope_max_length,
    tiedEmbeddings: cfg.share_input_output_layers,
    normalizeQk: cfg.normalize_qk_projections,
    ffnWithGlu: cfg.ffn_with_glu,
    rmsNormEps: RMS_NORM_EPS,
    bosTokenId: cfg.bos_token_id,
    eosTokenId: cfg.eos_token_id,
    layers,
    tensors,
    paramCount: tensors.reduce((a, t) => a + prod(t.shape), 0),
    ...(cfg.openelm_webgpu ? { stored: cfg.openelm_webgpu } : {}),
    ...(cfg.quantization ? { quantization: { ...cfg.quantization } } : {}),
  };
}
