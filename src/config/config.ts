// Parses and validates a Hugging Face OpenELM config.json. Pure data, no I/O: browser-safe.
//
// Every error is one line: `<file>: <key> must be <expected>, got <what it was>`.
import { describeValue, isObject, parseJson } from '../util/json.ts';
import { parseStoredFormat, type StoredFormatEntry } from './stored-format.ts';
import { parseMlxQuantization, type MlxQuantization } from './mlx-quant.ts';

/** A validated OpenELM config, Hugging Face key names, optional keys filled with defaults. */
export interface OpenElmConfig {
  num_transformer_layers: number;
  model_dim: number;
  head_dim: number;
  num_gqa_groups: number;
  /** A number (every layer) or [lo, hi] (layer-wise scaling). */
  qkv_multipliers: number | [number, number];
  /** A number, [lo, hi], or one value per layer (used as it is). */
  ffn_multipliers: number | number[];
  ffn_dim_divisor: number;
  ffn_with_glu: boolean;
  normalize_qk_projections: boolean;
  share_input_output_layers: boolean;
  vocab_size: number;
  max_context_length: number;
  rope_freq_constant: number;
  rope_max_length: number;
  bos_token_id: number;
  eos_token_id: number;
  /** Stored per-layer head counts (save_pretrained writes them); checked against the derivation. */
  num_query_heads?: number[];
  num_kv_heads?: number[];
  /** Set by `openelm convert`: the matrices are stored quantized (see stored-format.ts). */
  openelm_webgpu?: StoredFormatEntry;
  /** MLX's affine quantization of the checkpoint's matrices (mlx-quant.ts); absent for float checkpoints. */
  quantization?: MlxQuantization;
}

/**
 * Defaults for optional keys. Note: Hugging Face's OpenELMConfig constructor defaults
 * normalize_qk_projections and share_input_output_layers to false; every released config (and
 * anything save_pretrained writes) stores both explicitly, so these defaults only matter for
 * hand-written configs, where true matches all released models.
 */
export const CONFIG_DEFAULTS = {
  ffn_with_glu: true,
  normalize_qk_projections: true,
  share_input_output_layers: true,
  rope_max_length: 4096,
  bos_token_id: 1,
  eos_token_id: 2,
} as const;

/**
 * Upper bounds on the sizes a config may ask for, far above every released OpenELM (3B: 36
 * layers, model_dim 3072, context 2048, vocab 32000) yet low enough that deriving the plan and
 * the CPU-side tables stays cheap: a corrupt or hostile config.json fails here, by key, before
 * anything is allocated. Whether a valid size fits the GPU is checked later (runtime/fits.ts).
 */
export const CONFIG_BOUNDS = {
  num_transformer_layers: 1024,
  model_dim: 65536,
  head_dim: 4096,
  num_gqa_groups: 1024,
  ffn_dim_divisor: 65536,
  vocab_size: 1 << 24,
  max_context_length: 1 << 20,
  rope_max_length: 1 << 24,
} as const;
/** Largest qkv / ffn multiplier (released models use at most 4). */
export const MAX_MULTIPLIER = 64;


function isPosInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isPosFinite(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0;
}

/**
 * Parses a config.json object (already JSON.parse'd). `file` names the file in error messages.
 *
 * Multiplier lists follow Hugging Face's OpenELMConfig: `qkv_multipliers` is a number or
 * [lo, hi]; `ffn_multipliers` is a number, a list of exactly 2 values (always read as [lo, hi],
 * even when there are 2 layers: that is what HF does, and for 2 layers both readings give the
 * same multipliers once rounded to 2 decimals), or a list of exactly num_transformer_layers values
 * (used as it is).
 */
export function parseConfig(json: unknown, file: string): OpenElmConfig {
  const fail = (msg: string): never => {
    throw new Error(`${file}: ${msg}`);
  };
  if (!isObject(json)) fail(`expected a JSON object with the OpenELM config keys, got ${Array.isArray(json) ? 'an array' : describeValue(json)}`);
  const o = json as Record<string, unknown>;

  const required = (key: string, expected: string): unknown => {
    if (!(key in o) || o[key] === undefined) fail(`missing required key "${key}" (expected ${expected})`);
    return o[key];
  };
  const bounded = (key: string, v: number): number => {
    const max = (CONFIG_BOUNDS as Record<string, number>)[key];
    if (max !== undefined && v > max) fail(`${key} must be at most ${max}, got ${v}`);
    return v;
  };
  const posInt = (key: string): number => {
    const v = required(key, 'a positive integer');
    if (!isPosInt(v)) fail(`${key} must be a positive integer, got ${describeValue(v)}`);
    return bounded(key, v as number);
  };
  const multiplier = (key: string, v: number): number => {
    if (v > MAX_MULTIPLIER) fail(`${key} must be at most ${MAX_MULTIPLIER}, got ${v}`);
    return v;
  };
  const optional = <T>(key: string, def: T, check: (v: unknown) => boolean, expected: string): T => {
    const v = o[key];
    if (v === undefined || v === null) return def;
    if (!check(v)) fail(`${key} must be ${expected}, got ${describeValue(v)}`);
    return v as T;
  };

  const num_transformer_layers = posInt('num_transformer_layers');
  const model_dim = posInt('model_dim');
  const headDimRaw = required('head_dim', 'a positive even integer');
  if (!isPosInt(headDimRaw) || headDimRaw % 2 !== 0) fail(`head_dim must be a positive even integer, got ${describeValue(headDimRaw)}`);
  const head_dim = bounded('head_dim', headDimRaw as number);
  const num_gqa_groups = posInt('num_gqa_groups');

  const qkvRaw = required('qkv_multipliers', 'a positive number or a list [lo, hi]');
  let qkv_multipliers: number | [number, number];
  if (isPosFinite(qkvRaw)) {
    qkv_multipliers = multiplier('qkv_multipliers', qkvRaw);
  } else if (Array.isArray(qkvRaw) && qkvRaw.length === 2 && qkvRaw.every(isPosFinite)) {
    qkv_multipliers = [multiplier('qkv_multipliers[0]', qkvRaw[0] as number), multiplier('qkv_multipliers[1]', qkvRaw[1] as number)];
  } else {
    qkv_multipliers = fail(`qkv_multipliers must be a positive number or a list [lo, hi] of two positive numbers, got ${describeValue(qkvRaw)}`);
  }

  const L = num_transformer_layers;
  const ffnExpected = `a positive number, a list [lo, hi], or a list of ${L} per-layer positive numbers (num_transformer_layers is ${L})`;
  const ffnRaw = required('ffn_multipliers', ffnExpected);
  let ffn_multipliers: number | number[];
  if (isPosFinite(ffnRaw)) {
    ffn_multipliers = multiplier('ffn_multipliers', ffnRaw);
  } else if (Array.isArray(ffnRaw) && (ffnRaw.length === 2 || ffnRaw.length === L)) {
    const bad = ffnRaw.findIndex((v) => !isPosFinite(v));
    if (bad >= 0) fail(`ffn_multipliers[${bad}] must be a positive number, got ${describeValue(ffnRaw[bad])}`);
    ffn_multipliers = (ffnRaw as number[]).map((v, i) => multiplier(`ffn_multipliers[${i}]`, v));
  } else if (Array.isArray(ffnRaw)) {
    ffn_multipliers = fail(`ffn_multipliers must be ${ffnExpected}, got a list of ${ffnRaw.length} values`);
  } else {
    ffn_multipliers = fail(`ffn_multipliers must be ${ffnExpected}, got ${describeValue(ffnRaw)}`);
  }

  const ffn_dim_divisor = posInt('ffn_dim_divisor');
  const vocab_size = posInt('vocab_size');
  const max_context_length = posInt('max_context_length');
  const ropeRaw = required('rope_freq_constant', 'a positive number');
  if (!isPosFinite(ropeRaw)) fail(`rope_freq_constant must be a positive number, got ${describeValue(ropeRaw)}`);
  const rope_freq_constant = ropeRaw as number;

  const isBool = (v: unknown) => typeof v === 'boolean';
  const ffn_with_glu = optional('ffn_with_glu', CONFIG_DEFAULTS.ffn_with_glu as boolean, isBool, 'true or false');
  const normalize_qk_projections = optional('normalize_qk_projections', CONFIG_DEFAULTS.normalize_qk_projections as boolean, isBool, 'true or false');
  const share_input_output_layers = optional('share_input_output_layers', CONFIG_DEFAULTS.share_input_output_layers as boolean, isBool, 'true or false');
  const rope_max_length = bounded('rope_max_length', optional('rope_max_length', CONFIG_DEFAULTS.rope_max_length as number, isPosInt, 'a positive integer'));
  const bos_token_id = optional('bos_token_id', CONFIG_DEFAULTS.bos_token_id as number, isNonNegInt, 'a non-negative integer');
  const eos_token_id = optional('eos_token_id', CONFIG_DEFAULTS.eos_token_id as number, isNonNegInt, 'a non-negative integer');
  if (bos_token_id >= vocab_size) fail(`bos_token_id must be below vocab_size (${vocab_size}), got ${bos_token_id}`);
  if (eos_token_id >= vocab_size) fail(`eos_token_id must be below vocab_size (${vocab_size}), got ${eos_token_id}`);

  const cfg: OpenElmConfig = {
    num_transformer_layers,
    model_dim,
    head_dim,
    num_gqa_groups,
    qkv_multipliers,
    ffn_multipliers,
    ffn_dim_divisor,
    ffn_with_glu,
    normalize_qk_projections,
    share_input_output_layers,
    vocab_size,
    max_context_length,
    rope_freq_constant,
    rope_max_length,
    bos_token_id,
    eos_token_id,
  };

  // Stored per-layer head lists. Hugging Face recomputes them and ignores what is stored; a bare
  // integer (the constructor's fallback) is ignored here too. Lists must be L positive integers;
  // whether they agree with the derivation is checked by derivePlan.
  for (const key of ['num_query_heads', 'num_kv_heads'] as const) {
    const v = o[key];
    if (v === undefined || v === null || typeof v === 'number') continue;
    if (!Array.isArray(v)) fail(`${key} must be a list of ${L} positive integers (one per layer), got ${describeValue(v)}`);
    const list = v as unknown[];
    if (list.length !== L) fail(`${key} must be a list of ${L} positive integers (one per layer, num_transformer_layers is ${L}), got a list of ${list.length}`);
    const bad = list.findIndex((x) => !isPosInt(x));
    if (bad >= 0) fail(`${key}[${bad}] must be a positive integer, got ${describeValue(list[bad])}`);
    cfg[key] = list.slice() as number[];
  }
  const stored = parseStoredFormat(o, file);
  if (stored) cfg.openelm_webgpu = stored;
  const quantization = parseMlxQuantization(o, file);
  if (quantization) cfg.quantization = quantization;
  if (stored && quantization) throw new Error(`${file}: both openelm_webgpu (openelm convert) and quantization (MLX) are set; a checkpoint is stored in one format: remove the one that does not describe its tensors`);
  return cfg;
}

/** Parses config.json text; JSON syntax errors name the file too. */
export function parseConfigText(text: string, file: string): OpenElmConfig {
  return parseConfig(parseJson(text, file), file);
}
