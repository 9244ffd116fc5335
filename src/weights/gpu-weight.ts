// Weight matrices on the GPU: row-major [rows, cols], stored as f32, as f16 packed two per u32
// (low half first, each row padded to a whole word), or quantized in groups of 32 along cols with
// one f16 scale a group like llama.cpp's Q8_0 / Q4_0 (q8 / q4; layout in quant.ts: each chunk's
// buffer holds its rows' quants, then their scales). A matrix larger than one storage binding may
// hold is split by rows into chunks, each its own buffer; kernels run one dispatch per chunk.
import type { Gpu } from '../gpu/gpu.ts';
import { f32ToF16Bits } from '../util/half.ts';
import { isQuantFormat, packQuantRows, quantGroups, quantRowWords, quantScaleRowWords } from './quant.ts';
import type { AffineFormat, ScaleDtype } from './affine.ts';

/** The formats a float checkpoint is converted to while loading. */
export type WeightFormat = 'f32' | 'f16' | 'q8' | 'q4';
/** Every format a weight may have on the GPU: also MLX's affine codes, uploaded as stored (affine.ts). */
export type GpuWeightFormat = WeightFormat | AffineFormat;

export const WEIGHT_FORMATS: readonly WeightFormat[] = ['f32', 'f16', 'q8', 'q4'];

export interface WeightChunk {
  buffer: GPUBuffer;
  rowStart: number;
  rows: number;
  /** q8/q4/mlx: u32 word offset of the scales in `buffer` (= rows * rowWords, a multiple of 4); else 0. */
  scaleOffset: number;
}

export interface GpuWeight {
  label: string;
  format: GpuWeightFormat;
  /** N: output features. */
  rows: number;
  /** K: input features. */
  cols: number;
  /**
   * u32 words per row: K for f32, ceil(K/2) for f16 packed two per u32, low half first; for q8/q4
   * the quant words only (groups * 8 or groups * 4).
   */
  rowWords: number;
  /** q8/q4: groups of 32 per row, ceil(K/32); mlx4/mlx8: K / groupSize; else 0. */
  groups: number;
  /** q8/q4: u32 words of f16 scales per row, ceil(groups/8) * 4; mlx4/mlx8: of scales and biases (affine.ts); else 0. */
  scaleRowWords: number;
  /** mlx4/mlx8 only: weights a group, and the dtype its scale and bias are stored in. */
  groupSize?: number;
  scaleDtype?: ScaleDtype;
  chunks: WeightChunk[];
}

/** u32 words a row of `cols` values takes in `format` (for q8/q4: its quants, without scales). */
export function weightRowWords(cols: number, format: WeightFormat): number {
  if (isQuantFormat(format)) return quantRowWords(cols, format);
  return format === 'f16' ? Math.ceil(cols / 2) : cols;
}

/** Bytes a row of `cols` values takes on the GPU in `format`, scales included. */
export function weightRowBytes(cols: number, format: WeightFormat): number {
  return (weightRowWords(cols, format) + (isQuantFormat(format) ? quantScaleRowWords(cols) : 0)) * 4;
}

/** The largest chunk this device can bind as one storage buffer (a multiple of 16 bytes). */
export function maxWeightChunkBytes(gpu: Gpu): number {
  const lim = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
  return Math.floor(lim / 16) * 16;
}

/**
 * How `rows` rows of `rowBytes` bytes are split so that no chunk passes `maxChunkBytes`: as few
 * chunks as possible, of near-equal size, each starting at a multiple of `rowMultiple` rows (row
 * groups a kernel must see whole, like gate/up pairs). Returns [rowStart, rows] pairs.
 */
export function planChunks(rows: number, rowBytes: number, maxChunkBytes: number, label = 'weight', rowMultiple = 1): [number, number][] {
  // Buffers are padded to 16 bytes, so only whole 16-byte units of the budget are usable.
  const budget = Math.floor(maxChunkBytes / 16) * 16;
  const maxRows = Math.floor(budget / rowBytes / rowMultiple) * rowMultiple;
  if (maxRows < 1) {
    throw new Error(
      `${label}: ${rowMultiple > 1 ? `${rowMultiple} rows that must stay together take ${rowBytes * rowMultiple}` : `one row takes ${rowBytes}`} bytes, more than a storage binding may hold here (${budget} bytes)`,
    );
  }
  const count = Math.ceil(rows / maxRows);
  const per = Math.ceil(rows / count / rowMultiple) * rowMultiple;
  const out: [number, number][] = [];
  for (let start = 0; start < rows; start += per) out.push([start, Math.min(per, rows - start)]);
  return out;
}

// Rows are converted and written in blocks of about this many bytes, so the only CPU copy made is
// one block, never a whole chunk or tensor.
const STAGE_BYTES = 4 << 20;

export function uploadWeight(
  gpu: Gpu,
  label: string,
  data: Float32Array,
  rows: number,
  cols: number,
  format: WeightFormat,
  maxChunkBytes: number = maxWeightChunkBytes(gpu),
  rowMultiple = 1,
): GpuWeight {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) {
    throw new Error(`${label}: bad weight shape [${rows}, ${cols}]`);
  }
  if (data.length !== rows * cols) {
    throw new Error(`${label}: expected ${rows * cols} values for shape [${rows}, ${cols}], got ${data.length}`);
  }
  if (!(WEIGHT_FORMATS as readonly string[]).includes(format)) throw new Error(`${label}: unknown weight format ${String(format)}`);
  const quant = isQuantFormat(format);
  const rowWords = weightRowWords(cols, format);
  const scaleRowWords = quant ? quantScaleRowWords(cols) : 0;
  // Quants and scales of a chunk share its buffer, so a row costs both.
  const rowBytes = (rowWords + scaleRowWords) * 4;
  const chunks: WeightChunk[] = [];
  const plan = planChunks(rows, rowBytes, Math.min(maxChunkBytes, maxWeightChunkBytes(gpu)), label, rowMultiple);
  const blockRows = Math.max(1, Math.floor(STAGE_BYTES / rowBytes));
  // Staging for one block of quantized rows, reused (writeBuffer copies at once).
  const qStage = quant ? new Uint32Array(Math.min(blockRows, rows) * rowWords) : undefined;
  const sStage = quant ? new Uint32Array(Math.min(blockRows, rows) * scaleRowWords) : undefined;
  try {
    for (const [rowStart, n] of plan) {
      const name = plan.length > 1 ? `${label}[${chunks.length}]` : label;
      const buffer = gpu.createBuffer(name, n * rowBytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC);
      const scaleOffset = quant ? n * rowWords : 0;
      chunks.push({ buffer, rowStart, rows: n, scaleOffset });
      for (let r = 0; r < n; r += blockRows) {
        const m = Math.min(blockRows, n - r);
        const src = data.subarray((rowStart + r) * cols, (rowStart + r + m) * cols);
        if (qStage && sStage) {
          const q = qStage.subarray(0, m * rowWords);
          const sc = sStage.subarray(0, m * scaleRowWords);
          packQuantRows(src, m, cols, format as 'q8' | 'q4', q, sc);
          gpu.write(buffer, q, r * rowWords * 4);
          gpu.write(buffer, sc, (scaleOffset + r * scaleRowWords) * 4);
        } else {
          const words = format === 'f32' ? src : packF16Block(src, m, cols, rowWords);
          gpu.write(buffer, words, r * rowWords * 4);
        }
      }
    }
  } catch (e) {
    for (const c of chunks) gpu.destroyBuffer(c.buffer);
    throw e;
  }
  return { label, format, rows, cols, rowWords, groups: quant ? quantGroups(cols) : 0, scaleRowWords, chunks };
}

export function destroyWeight(gpu: Gpu, w: GpuWeight): void {
  for (const c of w.chunks) gpu.destroyBuffer(c.buffer);
  w.chunks = [];
}

function packF16Block(src: Float32Array, rows: number, cols: number, rowWords: number): Uint32Array {
  const out = new Uint32Array(rows * rowWords);
  const pairs = cols >> 1;
  for (let r = 0; r < rows; r++) {
    const s = r * cols;
    const d = r * rowWords;
    for (let i = 0; i < pairs; i++) {
      out[d + i] = (f32ToF16Bits(src[s + 2 * i]) | (f32ToF16Bits(src[s + 2 * i + 1]) << 16)) >>> 0;
    }
    if (cols & 1) out[d + pairs] = f32ToF16Bits(src[s + cols - 1]);
  }
  return out;
}
