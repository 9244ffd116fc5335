// MLX's affine group quantization (mx.quantize, mode "affine"; nn.QuantizedLinear and
// QuantizedEmbedding store it), read as it is stored, and its GPU layout.
//
// A row of K weights is cut into K / G groups of G (32, 64 or 128; K must be a multiple of G).
// Each group has a scale s and a bias b (float16, bfloat16 or float32, the dtype the model had
// when it was quantized) and each weight a B-bit unsigned code q (B = 4 or 8): w = s * q + b.
// The codes of a row are packed into K * B / 32 uint32 words, the first code in the lowest bits
// (4-bit: weight 8j + i is bits 4i..4i+3 of word j; 8-bit: weight 4j + i is byte i of word j).
//
// Quantizing (MLX's rule, all in f32; used by the checkpoint writer for tests and the harness):
//   min, max over the group; scale = max((max - min) / (2^B - 1), 1e-7); the edge is the one of
//   larger magnitude (min when |min| > |max|, then the scale stays positive; else max, and the
//   scale turns negative); q0 = round(edge / scale); when q0 != 0 the scale becomes edge / q0 and
//   the bias edge (so the edge is stored exactly), else the bias is 0. Each code is
//   clamp(round((w - bias) / scale), 0, 2^B - 1), round halves away from zero, computed with the
//   f32 scale and bias; the stored scale and bias are then rounded to the scale dtype.
//
// GPU layout of a chunk of `rows` rows (one buffer; all offsets in u32 words):
//   codes at word 0: the checkpoint's words unchanged, rowWords = K * B / 32 a row (a multiple of
//     4, since G >= 32).
//   scales and biases at scaleOffset = rows * rowWords, scaleRowWords words a row, group g of row
//     r at r * scaleRowWords + g * (f32 ? 2 : 1): f16/bf16 pairs share one word (scale in the low
//     half, bias in the high half, the checkpoint's bits unchanged); f32 takes two words (scale,
//     bias). Every stored value is thus kept exactly, in its own dtype; no weight is ever turned
//     into floats on the way (w = s * q + b is evaluated in the kernels).
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../util/half.ts';

export type AffineFormat = 'mlx4' | 'mlx8';
export const AFFINE_FORMATS: readonly AffineFormat[] = ['mlx4', 'mlx8'];
export type AffineBits = 4 | 8;
export const AFFINE_BITS: readonly AffineBits[] = [4, 8];
export const AFFINE_GROUP_SIZES: readonly number[] = [32, 64, 128];
/** The dtype of a checkpoint's scales and biases (safetensors names). */
export type ScaleDtype = 'F16' | 'BF16' | 'F32';
export const SCALE_DTYPES: readonly ScaleDtype[] = ['F16', 'BF16', 'F32'];

export function isAffineFormat(format: string): format is AffineFormat {
  return format === 'mlx4' || format === 'mlx8';
}

export function affineFormat(bits: AffineBits): AffineFormat {
  return bits === 4 ? 'mlx4' : 'mlx8';
}

export function affineBits(format: AffineFormat): AffineBits {
  return format === 'mlx4' ? 4 : 8;
}

/** uint32 words of codes a row of `cols` weights takes (as MLX stores it, and on the GPU). */
export function affineRowWords(cols: number, bits: AffineBits): number {
  return (cols * bits) / 32;
}

/** u32 words of scales and biases a row takes on the GPU. */
export function affineScaleRowWords(cols: number, groupSize: number, scaleDtype: ScaleDtype): number {
  return (cols / groupSize) * (scaleDtype === 'F32' ? 2 : 1);
}

/** One quantized matrix as a checkpoint stores it: codes, and the raw bits of scales and biases. */
export interface AffineTensor {
  rows: number;
  cols: number;
  bits: AffineBits;
  groupSize: number;
  scaleDtype: ScaleDtype;
  /** [rows, cols * bits / 32] packed codes. */
  codes: Uint32Array;
  /** [rows, cols / groupSize]: f16/bf16 bits (Uint16Array) or f32 bits (Uint32Array). */
  scales: Uint16Array | Uint32Array;
  biases: Uint16Array | Uint32Array;
}

/** The value of stored scale/bias bits in their dtype. */
export function scaleValue(bits: number, dtype: ScaleDtype): number {
  if (dtype === 'F16') return f16BitsToF32(bits);
  if (dtype === 'BF16') return bf16BitsToF32(bits);
  const u = new Uint32Array([bits]);
  return new Float32Array(u.buffer)[0];
}

function storeScale(v: number, dtype: ScaleDtype): number {
  if (dtype === 'F16') return f32ToF16Bits(v);
  if (dtype === 'BF16') return f32ToBf16Bits(v);
  return new Uint32Array(new Float32Array([v]).buffer)[0];
}

/** Code i (0-based, along the row) of a row starting at word `base`. */
export function affineCode(codes: Uint32Array, base: number, i: number, bits: AffineBits): number {
  const per = 32 / bits;
  return (codes[base + Math.floor(i / per)] >>> ((i % per) * bits)) & ((1 << bits) - 1);
}

/** The weights a quantized matrix stands for, s * q + b in float64 (the parity reference). */
export function dequantizeAffine(t: AffineTensor): Float64Array {
  const { rows, cols, bits, groupSize, scaleDtype } = t;
  const rw = affineRowWords(cols, bits);
  const G = cols / groupSize;
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let g = 0; g < G; g++) {
      const s = scaleValue(t.scales[r * G + g], scaleDtype);
      const b = scaleValue(t.biases[r * G + g], scaleDtype);
      for (let i = g * groupSize; i < (g + 1) * groupSize; i++) out[r * cols + i] = s * affineCode(t.codes, r * rw, i, bits) + b;
    }
  return out;
}

const fround = Math.fround;
/** round half away from zero (C's roundf, Metal's round). */
const roundAway = (v: number) => (v < 0 ? -Math.round(-v) : Math.round(v));

/** MLX's affine quantization of a row-major [rows, cols] matrix (rule at the top of this file). */
export function quantizeAffine(w: ArrayLike<number>, rows: number, cols: number, bits: AffineBits, groupSize: number, scaleDtype: ScaleDtype): AffineTensor {
  checkAffineShape(cols, bits, groupSize, 'quantizeAffine');
  if (w.length !== rows * cols) throw new Error(`quantizeAffine: ${w.length} values for [${rows}, ${cols}]`);
  const nBins = (1 << bits) - 1;
  const G = cols / groupSize;
  const rw = affineRowWords(cols, bits);
  const codes = new Uint32Array(rows * rw);
  const scales = scaleDtype === 'F32' ? new Uint32Array(rows * G) : new Uint16Array(rows * G);
  const biases = scaleDtype === 'F32' ? new Uint32Array(rows * G) : new Uint16Array(rows * G);
  const per = 32 / bits;
  for (let r = 0; r < rows; r++)
    for (let g = 0; g < G; g++) {
      const off = r * cols + g * groupSize;
      let min = fround(w[off]);
      let max = min;
      for (let i = 1; i < groupSize; i++) {
        const v = fround(w[off + i]);
        if (v < min) min = v;
        if (v > max) max = v;
      }
      let scale = Math.max(fround(fround(max - min) / nBins), fround(1e-7));
      const minEdge = Math.abs(min) > Math.abs(max);
      if (!minEdge) scale = -scale;
      const edge = minEdge ? min : max;
      const q0 = roundAway(fround(edge / scale));
      let bias = 0;
      if (q0 !== 0) {
        scale = fround(edge / q0);
        bias = edge;
      }
      scales[r * G + g] = storeScale(scale, scaleDtype);
      biases[r * G + g] = storeScale(bias, scaleDtype);
      for (let i = 0; i < groupSize; i++) {
        const q = Math.min(nBins, Math.max(0, roundAway(fround(fround(fround(w[off + i]) - bias) / scale))));
        const k = g * groupSize + i;
        codes[r * rw + Math.floor(k / per)] |= q << ((k % per) * bits);
      }
    }
  return { rows, cols, bits, groupSize, scaleDtype, codes, scales, biases };
}

/** Throws one line when `cols` cannot be quantized in groups of `groupSize` with `bits` bits. */
export function checkAffineShape(cols: number, bits: number, groupSize: number, what: string): void {
  if (!(AFFINE_BITS as readonly number[]).includes(bits)) throw new Error(`${what}: bits must be ${AFFINE_BITS.join(' or ')}, got ${bits}`);
  if (!AFFINE_GROUP_SIZES.includes(groupSize)) throw new Error(`${what}: group size must be ${AFFINE_GROUP_SIZES.join(', ')}, got ${groupSize}`);
  if (cols % groupSize !== 0) throw new Error(`${what}: ${cols} columns are not a multiple of the group size ${groupSize}`);
}

/**
 * Writes rows [r0, r0 + n) of `t`, taken in the order `srcRow` gives (output row i <- source row
 * srcRow(r0 + i)), into the GPU layout: codes into `codes` (rowWords a row) and scale/bias words
 * into `sb` (scaleRowWords a row), both from word 0.
 */
export function packAffineRows(t: AffineTensor, r0: number, n: number, srcRow: (r: number) => number, codes: Uint32Array, sb: Uint32Array): void {
  const rw = affineRowWords(t.cols, t.bits);
  const G = t.cols / t.groupSize;
  const f32 = t.scaleDtype === 'F32';
  const sw = G * (f32 ? 2 : 1);
  for (let i = 0; i < n; i++) {
    const s = srcRow(r0 + i);
    codes.set(t.codes.subarray(s * rw, (s + 1) * rw), i * rw);
    for (let g = 0; g < G; g++) {
      const sc = t.scales[s * G + g];
      const bi = t.biases[s * G + g];
      if (f32) {
        sb[i * sw + 2 * g] = sc;
        sb[i * sw + 2 * g + 1] = bi;
      } else sb[i * sw + g] = (sc | (bi << 16)) >>> 0;
    }
  }
}
