// Embedding gather: out[t, :] = table[ids[t], :] for a GpuWeight table (f32, packed f16, q8/q4
// dequantized exactly on the fly: quant * f16 group scale, or MLX's mlx4/mlx8: scale * code + bias),
// f32 output. One dispatch per table
// chunk; each writes only the tokens whose id falls in its rows.
// Ids past the end of the table give zero rows.
import type { Gpu } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/embedding.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { grid, makeDispatch, type Dispatch } from '../src/gpu/dispatch.ts';
import type { GpuWeight } from '../src/weights/gpu-weight.ts';
import { isAffineFormat } from '../src/weights/affine.ts';
import { affineDefines } from './matmul_affine.ts';

const WG = 64;

export interface EmbeddingOptions {
  tokens: number;
  /** u32 [T] token ids. */
  ids: GPUBuffer;
  /** f32 [T, cols]. */
  out: GPUBuffer;
  label?: string;
}

export function embeddingDispatches(gpu: Gpu, table: GpuWeight, o: EmbeddingOptions): Dispatch[] {
  const T = o.tokens;
  const label = o.label ?? `embedding ${table.label}`;
  if (!Number.isInteger(T) || T < 1) throw new Error(`${label}: tokens must be a positive integer, got ${T}`);
  if (o.ids.size < T * 4) throw new Error(`${label}: ids holds ${o.ids.size} bytes, needs ${T * 4} for ${T} u32 ids`);
  if (o.out.size < T * table.cols * 4) throw new Error(`${label}: out holds ${o.out.size} bytes, needs ${T * table.cols * 4} for [${T}, ${table.cols}] f32`);
  const f16 = table.format === 'f16';
  const quant = table.format === 'q8' || table.format === 'q4';
  const affine = isAffineFormat(table.format);
  const p = gpu.pipeline({
    label: `embedding ${table.format}${affine ? ` ${table.scaleDtype}` : ''}`,
    code: preprocess(shaderSource('embedding', builtIn), { QUANT: quant, Q4: table.format === 'q4', F16: f16, AFFINE: affine, ...affineDefines(table) }),
    bindings: ['uniform', 'read', 'read', 'write'],
    constants: { WG },
  });
  const last = table.chunks.length - 1;
  return table.chunks.map((c, i) => {
    const name = table.chunks.length > 1 ? `${label}[${i}]` : label;
    const params = [T, table.cols, table.rowWords, c.rowStart, c.rows, i === last ? 1 : 0, c.scaleOffset, table.scaleRowWords, ...(affine ? [table.groupSize!] : [])];
    return makeDispatch(gpu, p, name, params, [o.ids, c.buffer, o.out], grid(gpu, Math.ceil((T * table.rowWords) / WG)));
  });
}

/** CPU reference: rows of a row-major [rows, cols] table; ids past the table give zeros. */
export function embeddingRef(table: Float32Array, cols: number, ids: Uint32Array): Float32Array {
  const rows = table.length / cols;
  const out = new Float32Array(ids.length * cols);
  ids.forEach((id, t) => {
    if (id < rows) out.set(table.subarray(id * cols, (id + 1) * cols), t * cols);
  });
  return out;
}
