// The tensors of a compact checkpoint (`openelm convert`): the engine's q8/q4 GPU layout (quant.ts)
// stored row by row, so loading copies bytes instead of quantizing. Device-independent: a row's
// bytes do not depend on how a device splits a matrix into chunks.
//   NAME.weight  U8  [rows, groups * 32] (q8) or [rows, groups * 16] (q4): each row's quant words
//                of the GPU layout, little-endian (q8: int8 quants in order; q4: llama.cpp's
//                block_q4_0 nibble bytes), groups = ceil(cols / 32).
//   NAME.scales  F16 [rows, groups]: each group's scale (the GPU pads a row's scales to whole
//                vec4s of 8 halves on upload).
//   vectors (RMSNorm gains) are kept in the source's float dtype; with fold_norms the layers'
//   attn_norm / ffn_norm are multiplied into qkv_proj / proj_1 and not stored.
// proj_1 keeps the checkpoint's row order [gate; up]: the loader interleaves rows as it uploads.
import type { ModelPlan } from '../config/plan.ts';
import type { StoredFormatEntry } from '../config/stored-format.ts';
import { quantGroups, quantRowWords, type QuantFormat } from './quant.ts';

export interface CompactTensorSpec {
  name: string;
  /** U8 quants, F16 scales, or 'float' (F32, F16 or BF16, as the source stored it). */
  dtype: 'U8' | 'F16' | 'float';
  shape: number[];
  /** The model tensor this one stores (plan name and [out, in] shape). */
  of: { name: string; shape: number[] };
}

/** `X.weight` -> `X.scales` (the naming MLX's quantized checkpoints use too). */
export function scalesName(weightName: string): string {
  return weightName.replace(/\.weight$/, '') + '.scales';
}

/** Bytes of quants a row of `cols` weights takes. */
export function compactRowBytes(cols: number, format: QuantFormat): number {
  return quantRowWords(cols, format) * 4;
}

/** Norms that fold_norms multiplies into the next product's columns (and so does not store). */
export function isFoldedNorm(name: string): boolean {
  return /\.(attn_norm|ffn_norm)\.weight$/.test(name);
}

/** Every tensor a compact checkpoint of `plan` in `stored` holds, in the order convert writes them. */
export function compactTensors(plan: ModelPlan, stored: Pick<StoredFormatEntry, 'format' | 'fold_norms'>): CompactTensorSpec[] {
  const out: CompactTensorSpec[] = [];
  for (const t of plan.tensors) {
    const of = { name: t.name, shape: t.shape };
    if (t.shape.length === 1) {
      if (!(stored.fold_norms && isFoldedNorm(t.name))) out.push({ name: t.name, dtype: 'float', shape: t.shape, of });
      continue;
    }
    const [rows, cols] = t.shape;
    out.push({ name: t.name, dtype: 'U8', shape: [rows, compactRowBytes(cols, stored.format)], of });
    out.push({ name: scalesName(t.name), dtype: 'F16', shape: [rows, quantGroups(cols)], of });
  }
  return out;
}
