// Weight matrices on the GPU: row-major [rows, cols], stored as f32 or as f16 packed two per u32
// (low half first, each row padded to a whole word). A matrix larger than one storage binding may
// hold is split by rows into chunks, each its own buffer; kernels run one dispatch per chunk.
import type { Gpu } from '../src/gpu/gpu.ts';
import { f32ToF16Bits } from '../src/io/dtype.ts';

export type WeightFormat = 'f32' | 'f16';

export interface WeightChunk {
  buffer: GPUBuffer;
  rowStart: number;
  rows: number;
}

export interface GpuWeight {
  label: string;
  format: WeightFormat;
  /** N: output features. */
  rows: number;
  /** K: input features. */
  cols: number;
  /** u32 words per row: K for f32, ceil(K/2) for f16 packed two per u32, low half first. */
  rowWords: number;
  chunks: WeightChunk[];
}

/** u32 words a row of `cols` values takes in `format`. */
export function weightRowWords(cols: number, format: WeightFormat): number {
  return format === 'f16' ? Math.ceil(cols / 2) : cols;
}

/** The largest chunk this device can bind as one storage buffer (a multiple of 16 bytes). */
export function maxWeightChunkBytes(gpu: Gpu): number {
  const lim = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
  return Math.floor(lim / 16) * 16;
}

/**
 * How `rows` rows of `rowBytes` bytes are split so that no chunk passes `maxChunkBytes`: as few
 * chunks as possible, of near-equal size. Returns [rowStart, rows] pairs.
 */
export function planChunks(rows: number, rowBytes: number, maxChunkBytes: number, label = 'weight'): [number, number][] {
  // Buffers are padded to 16 bytes, so only whole 16-byte units of the budget are usable.
  const budget = Math.floor(maxChunkBytes / 16) * 16;
  const maxRows = Math.floor(budget / rowBytes);
  if (maxRows < 1) {
    throw new Error(`${label}: one row takes ${rowBytes} bytes, more than a storage binding may hold here (${budget} bytes)`);
  }
  const count = Math.ceil(rows / maxRows);
  const per = Math.ceil(rows / count);
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
): GpuWeight {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) {
    throw new Error(`${label}: bad weight shape [${rows}, ${cols}]`);
  }
  if (data.length !== rows * cols) {
    throw new Error(`${label}: expected ${rows * cols} values for shape [${rows}, ${cols}], got ${data.length}`);
  }
  if (format !== 'f32' && format !== 'f16') throw new Error(`${label}: unknown weight format ${String(format)}`);
  const rowWords = weightRowWords(cols, format);
  const rowBytes = rowWords * 4;
  const chunks: WeightChunk[] = [];
  const plan = planChunks(rows, rowBytes, Math.min(maxChunkBytes, maxWeightChunkBytes(gpu)), label);
  const blockRows = Math.max(1, Math.floor(STAGE_BYTES / rowBytes));
  try {
    for (const [rowStart, n] of plan) {
      const name = plan.length > 1 ? `${label}[${chunks.length}]` : label;
      const buffer = gpu.createBuffer(name, n * rowBytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC);
      chunks.push({ buffer, rowStart, rows: n });
      for (let r = 0; r < n; r += blockRows) {
        const m = Math.min(blockRows, n - r);
        const src = data.subarray((rowStart + r) * cols, (rowStart + r + m) * cols);
        const words = format === 'f32' ? src : packF16Block(src, m, cols, rowWords);
        gpu.write(buffer, words, r * rowBytes);
      }
    }
  } catch (e) {
    for (const c of chunks) gpu.destroyBuffer(c.buffer);
    throw e;
  }
  return { label, format, rows, cols, rowWords, chunks };
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
