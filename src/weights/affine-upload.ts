// Uploads an MLX affine-quantized matrix (affine.ts) to the GPU as it is stored: the packed code
// words are copied unchanged, the scale and bias bits are only interleaved, in row blocks, split
// into chunks by rows like every GpuWeight (gpu-weight.ts).
import type { Gpu } from '../gpu/gpu.ts';
import { affineFormat, affineRowWords, affineScaleRowWords, checkAffineShape, packAffineRows, type AffineTensor } from './affine.ts';
import { maxWeightChunkBytes, planChunks, type GpuWeight, type WeightChunk } from './gpu-weight.ts';

// Rows are copied in blocks of about this many bytes (one staging block, reused).
const STAGE_BYTES = 4 << 20;

/**
 * `srcRow` reorders rows (output row r is source row srcRow(r); e.g. the gate/up interleave), and
 * `rowMultiple` keeps that many rows in one chunk, as in uploadWeight.
 */
export function uploadAffineWeight(
  gpu: Gpu,
  label: string,
  t: AffineTensor,
  opts: { srcRow?: (r: number) => number; rowMultiple?: number; maxChunkBytes?: number } = {},
): GpuWeight {
  const { rows, cols, bits, groupSize, scaleDtype } = t;
  checkAffineShape(cols, bits, groupSize, label);
  const rowWords = affineRowWords(cols, bits);
  const scaleRowWords = affineScaleRowWords(cols, groupSize, scaleDtype);
  const groups = cols / groupSize;
  if (t.codes.length !== rows * rowWords) throw new Error(`${label}: ${t.codes.length} code words for [${rows}, ${cols}] at ${bits} bits, expected ${rows * rowWords}`);
  if (t.scales.length !== rows * groups || t.biases.length !== rows * groups) throw new Error(`${label}: scales/biases must hold ${rows * groups} values (${rows} rows x ${groups} groups)`);
  const srcRow = opts.srcRow ?? ((r: number) => r);
  const rowBytes = (rowWords + scaleRowWords) * 4;
  const plan = planChunks(rows, rowBytes, Math.min(opts.maxChunkBytes ?? Infinity, maxWeightChunkBytes(gpu)), label, opts.rowMultiple ?? 1);
  const blockRows = Math.max(1, Math.floor(STAGE_BYTES / rowBytes));
  const cStage = new Uint32Array(Math.min(blockRows, rows) * rowWords);
  const sStage = new Uint32Array(Math.min(blockRows, rows) * scaleRowWords);
  const chunks: WeightChunk[] = [];
  try {
    for (const [rowStart, n] of plan) {
      const name = plan.length > 1 ? `${label}[${chunks.length}]` : label;
      const buffer = gpu.createBuffer(name, n * rowBytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC);
      const scaleOffset = n * rowWords;
      chunks.push({ buffer, rowStart, rows: n, scaleOffset });
      for (let r = 0; r < n; r += blockRows) {
        const m = Math.min(blockRows, n - r);
        const c = cStage.subarray(0, m * rowWords);
        const s = sStage.subarray(0, m * scaleRowWords);
        packAffineRows(t, rowStart + r, m, srcRow, c, s);
        gpu.write(buffer, c, r * rowWords * 4);
        gpu.write(buffer, s, (scaleOffset + r * scaleRowWords) * 4);
      }
    }
  } catch (e) {
    for (const c of chunks) gpu.destroyBuffer(c.buffer);
    throw e;
  }
  return { label, format: affineFormat(bits), rows, cols, rowWords, groups, scaleRowWords, groupSize, scaleDtype, chunks };
}
