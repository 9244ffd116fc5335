// Group-wise weight quantization matching llama.cpp's Q8_0 and Q4_0 reference quantizers
// (quantize_row_q8_0_ref / quantize_row_q4_0_ref, what llama-quantize uses without an importance
// matrix), so both engines read identical quantized values.
//
// A row of K weights is cut into groups of 32 along K (a last partial group is padded with zeros).
// Each group has one scale d, computed and applied in f32 and then stored as f16 (round to nearest
// even):
//   Q8_0: amax = max |x|; d = amax / 127; id = d ? 1/d : 0; q = roundf(x * id) in [-127, 127]
//         (round half away from zero); value = q * d16.
//   Q4_0: max = the x of largest magnitude, sign kept (the first one on ties); d = max / -8;
//         id = d ? 1/d : 0; q = min(15, trunc(x * id + 8.5)) in [0, 15]; value = (q - 8) * d16.
// Every step is rounded to f32 as in C (Math.fround); the quants use the f32 d, not the stored f16.
//
// GPU layout of a chunk of `rows` rows (one buffer, read as vec4<u32>; all offsets in u32 words):
//   quants at word 0: rowWords = groups * 8 (q8) or groups * 4 (q4) words a row; group g of a row
//     is words [g * 8, g * 8 + 8) (q8) or [g * 4, g * 4 + 4) (q4), i.e. 2 or 1 vec4<u32>.
//     q8: the 32 int8 quants in order, 4 a word, little-endian (weight 32g + i is byte i).
//     q4: llama.cpp's block_q4_0 `qs` bytes: byte i (0..15) holds weight 32g + i in its low nibble
//       and weight 32g + 16 + i in its high nibble. So word j (0..3) of a group holds weights
//       32g + 4j + b (low nibbles of byte b) and 32g + 16 + 4j + b (high nibbles): its low nibbles
//       pair with the 4 activations x[32g + 4j ..] and its high nibbles with x[32g + 16 + 4j ..],
//       both vec4 loads. XOR 0x88888888 turns each nibble q into the 4-bit two's complement of
//       q - 8, so one shift left and one arithmetic shift right of a vec4<i32> decode 4 weights.
//   scales at word scaleOffset = rows * rowWords: scaleRowWords = ceil(groups / 8) * 4 words a row
//     (whole vec4<u32>s of 8 halves), group g of row r at half r * scaleRowWords * 2 + g, two f16
//     a word, low half first; unused halves are zero. (OpenELM's K are multiples of 256, so no
//     row is padded.)
// Bytes per weight: q8 (32 + 2) / 32 = 8.5 bits, q4 (16 + 2) / 32 = 4.5 bits (plus the row
// padding of K to a multiple of 32 and of the scales to a multiple of 8 groups).
import { f16BitsToF32, f32ToF16Bits, roundF16 } from '../util/half.ts';

export type QuantFormat = 'q8' | 'q4';

/** Weights per quantization group (llama.cpp's QK8_0 = QK4_0 = 32). */
export const QUANT_GROUP = 32;

const fround = Math.fround;

export function isQuantFormat(format: string): format is QuantFormat {
  return format === 'q8' || format === 'q4';
}

/** Groups of 32 a row of `cols` weights takes (the last one zero-padded). */
export function quantGroups(cols: number): number {
  return Math.ceil(cols / QUANT_GROUP);
}

/** u32 words of quants a row takes in the GPU layout. */
export function quantRowWords(cols: number, format: QuantFormat): number {
  return quantGroups(cols) * (format === 'q8' ? 8 : 4);
}

/** u32 words of f16 scales a row takes in the GPU layout (whole vec4s of 8 scales). */
export function quantScaleRowWords(cols: number): number {
  return Math.ceil(quantGroups(cols) / 8) * 4;
}

/** C's roundf: to nearest, halves away from zero. */
function roundf(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

// The scale of one group of n values (n <= 32; the rest is zero padding, which changes neither
// max). Returns the f32 d.
function q8Scale(src: ArrayLike<number>, off: number, n: number): number {
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const a = Math.abs(fround(src[off + i]));
    if (a > amax) amax = a;
  }
  return fround(amax / 127);
}

function q4Scale(src: ArrayLike<number>, off: number, n: number): number {
  let amax = 0;
  let max = 0;
  for (let i = 0; i < n; i++) {
    const v = fround(src[off + i]);
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  return fround(max / -8);
}

/** Q8_0 quant of one value given the f32 inverse scale id. */
function q8Value(v: number, id: number): number {
  return roundf(fround(fround(v) * id));
}

/** Q4_0 quant (0..15) of one value given the f32 inverse scale id. */
function q4Value(v: number, id: number): number {
  return Math.min(15, Math.trunc(fround(fround(fround(v) * id) + 8.5)));
}

function inverse(d: number): number {
  return d !== 0 ? fround(1 / d) : 0;
}

export interface Q8Row {
  /** f16 bits of each group's scale. */
  d: Uint16Array;
  /** groups * 32 quants in [-127, 127] (padding quants are 0). */
  q: Int8Array;
}

export interface Q4Row {
  /** f16 bits of each group's scale. */
  d: Uint16Array;
  /** groups * 32 unsigned quants in [0, 15], in weight order (value = (q - 8) * d). */
  q: Uint8Array;
}

/** llama.cpp Q8_0 of one row (any length; the last group is zero-padded). */
export function quantizeQ8Row(x: ArrayLike<number>): Q8Row {
  const G = quantGroups(x.length);
  const d = new Uint16Array(G);
  const q = new Int8Array(G * QUANT_GROUP);
  for (let g = 0; g < G; g++) {
    const off = g * QUANT_GROUP;
    const n = Math.min(QUANT_GROUP, x.length - off);
    const df = q8Scale(x, off, n);
    const id = inverse(df);
    d[g] = f32ToF16Bits(df);
    for (let i = 0; i < n; i++) q[off + i] = q8Value(x[off + i], id);
  }
  return { d, q };
}

/** llama.cpp Q4_0 of one row (any length; the last group is zero-padded). */
export function quantizeQ4Row(x: ArrayLike<number>): Q4Row {
  const G = quantGroups(x.length);
  const d = new Uint16Array(G);
  const q = new Uint8Array(G * QUANT_GROUP);
  for (let g = 0; g < G; g++) {
    const off = g * QUANT_GROUP;
    const n = Math.min(QUANT_GROUP, x.length - off);
    const df = q4Scale(x, off, n);
    const id = inverse(df);
    d[g] = f32ToF16Bits(df);
    for (let i = 0; i < QUANT_GROUP; i++) q[off + i] = q4Value(i < n ? x[off + i] : 0, id);
  }
  return { d, q };
}

/** The first `cols` values a Q8_0 row stands for: q * d (exact in f32). */
export function dequantizeQ8Row(row: Q8Row, cols: number): Float32Array {
  const out = new Float32Array(cols);
  for (let k = 0; k < cols; k++) out[k] = row.q[k] * f16BitsToF32(row.d[k >> 5]);
  return out;
}

/** The first `cols` values a Q4_0 row stands for: (q - 8) * d (exact in f32). */
export function dequantizeQ4Row(row: Q4Row, cols: number): Float32Array {
  const out = new Float32Array(cols);
  for (let k = 0; k < cols; k++) out[k] = (row.q[k] - 8) * f16BitsToF32(row.d[k >> 5]);
  return out;
}

/**
 * What a row-major [rows, cols] matrix becomes when stored in `format`: the values the GPU kernels
 * multiply by (f32: unchanged; f16: rounded; q8/q4: quantized then dequantized, per row).
 */
export function dequantize(data: ArrayLike<number>, rows: number, cols: number, format: 'f32' | 'f16' | QuantFormat): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const src = data instanceof Float32Array ? data.subarray(r * cols, (r + 1) * cols) : Float32Array.from({ length: cols }, (_, k) => data[r * cols + k]);
    if (format === 'f32') out.set(src, r * cols);
    else if (format === 'f16') out.set(src.map(roundF16), r * cols);
    else if (format === 'q8') out.set(dequantizeQ8Row(quantizeQ8Row(src), cols), r * cols);
    else out.set(dequantizeQ4Row(quantizeQ4Row(src), cols), r * cols);
  }
  return out;
}

/**
 * Quantizes `rows` rows of `src` (row-major, `cols` a row) into the GPU layout: quant words into
 * `quants` (rowWords a row, from word 0) and f16 scale pairs into `scales` (scaleRowWords a row,
 * from word 0). Both arrays must be zeroed or fully overwritten: every word of every row is written.
 */
export function packQuantRows(
  src: Float32Array,
  rows: number,
  cols: number,
  format: QuantFormat,
  quants: Uint32Array,
  scales: Uint32Array,
): void {
  const G = quantGroups(cols);
  const rowWords = quantRowWords(cols, format);
  const sWords = quantScaleRowWords(cols);
  if (src.length < rows * cols) throw new Error(`packQuantRows: ${src.length} values for ${rows} rows of ${cols}`);
  if (quants.length < rows * rowWords || scales.length < rows * sWords) throw new Error('packQuantRows: output arrays too small');
  const padded = new Float32Array(QUANT_GROUP);
  for (let r = 0; r < rows; r++) {
    const qw = r * rowWords;
    const sw = r * sWords;
    scales.fill(0, sw, sw + sWords);
    for (let g = 0; g < G; g++) {
      let off = r * cols + g * QUANT_GROUP;
      const n = Math.min(QUANT_GROUP, cols - g * QUANT_GROUP);
      let x: Float32Array = src;
      if (n < QUANT_GROUP) {
        padded.fill(0);
        padded.set(src.subarray(off, off + n));
        x = padded;
        off = 0;
      }
      let df: number;
      if (format === 'q8') {
        df = q8Scale(x, off, n);
        const id = inverse(df);
        const base = qw + g * 8;
        for (let j = 0; j < 8; j++) {
          const o = off + 4 * j;
          quants[base + j] =
            ((q8Value(x[o], id) & 0xff) | ((q8Value(x[o + 1], id) & 0xff) << 8) | ((q8Value(x[o + 2], id) & 0xff) << 16) | ((q8Value(x[o + 3], id) & 0xff) << 24)) >>> 0;
        }
      } else {
        df = q4Scale(x, off, n);
        const id = inverse(df);
        const base = qw + g * 4;
        for (let j = 0; j < 4; j++) {
          let word = 0;
          for (let b = 0; b < 4; b++) {
            const i = 4 * j + b;
            word |= (q4Value(x[off + i], id) | (q4Value(x[off + 16 + i], id) << 4)) << (8 * b);
          }
          quants[base + j] = word >>> 0;
        }
      }
      const h = f32ToF16Bits(df);
      scales[sw + (g >> 1)] |= g & 1 ? h << 16 : h;
    }
  }
}

/** Decodes `rows` rows of the GPU layout back to f32 [rows, cols] (a test reference). */
export function unpackQuantRows(quants: Uint32Array, scales: Uint32Array, rows: number, cols: number, format: QuantFormat): Float32Array {
  const rowWords = quantRowWords(cols, format);
  const sWords = quantScaleRowWords(cols);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let k = 0; k < cols; k++) {
      const g = k >> 5;
      const sw = scales[r * sWords + (g >> 1)];
      const d = f16BitsToF32(g & 1 ? sw >>> 16 : sw & 0xffff);
      let q: number;
      if (format === 'q8') {
        const word = quants[r * rowWords + (k >> 2)];
        q = ((word >>> (8 * (k & 3))) << 24) >> 24;
      } else {
        const i = k & 31;
        const word = quants[r * rowWords + g * 4 + ((i & 15) >> 2)];
        q = ((word >>> (8 * (i & 3) + (i >= 16 ? 4 : 0))) & 15) - 8;
      }
      out[r * cols + k] = q * d;
    }
  return out;
}

/**
 * ggml's block bytes for whole groups of 32 (a row, or rows of a multiple of 32 back to back), as
 * a GGUF file stores a Q8_0 or Q4_0 tensor: per group the f16 scale (little-endian) then 32 int8
 * quants (Q8_0, 34 bytes) or 16 nibble-pair bytes (Q4_0, 18 bytes). The GGUF writer of the
 * llama.cpp peer uses this, so both engines run on the same values.
 */
export function ggmlBlocks(x: ArrayLike<number>, format: QuantFormat): Uint8Array {
  if (x.length % QUANT_GROUP !== 0) throw new Error(`ggmlBlocks: row length ${x.length} is not a multiple of ${QUANT_GROUP}`);
  const G = x.length / QUANT_GROUP;
  const size = format === 'q8' ? 34 : 18;
  const out = new Uint8Array(G * size);
  if (format === 'q8') {
    const { d, q } = quantizeQ8Row(x);
    for (let g = 0; g < G; g++) {
      out[g * size] = d[g] & 0xff;
      out[g * size + 1] = d[g] >> 8;
      for (let i = 0; i < 32; i++) out[g * size + 2 + i] = q[g * 32 + i] & 0xff;
    }
  } else {
    const { d, q } = quantizeQ4Row(x);
    for (let g = 0; g < G; g++) {
      out[g * size] = d[g] & 0xff;
      out[g * size + 1] = d[g] >> 8;
      for (let i = 0; i < 16; i++) out[g * size + 2 + i] = q[g * 32 + i] | (q[g * 32 + 16 + i] << 4);
    }
  }
  return out;
}
