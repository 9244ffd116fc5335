// The matrix product with q8/q4 weights (shaders/matmul_q.wgsl): groups of 32 along K with one f16
// scale each (layout in src/weights/quant.ts), decoded in registers; the thread-a-row layout of
// matmul.wgsl (a thread 4 weight rows, T > 1: 4 tokens) and the same fused forms (kernels/matmul.ts).
// Each weight is q d up to one f32 rounding, so the CPU reference of every form is matmulRef
// (kernels/matmul.ts) over the dequantized weights (dequantize in src/weights/quant.ts).
import type { Gpu } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/matmul_q.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { grid, type Dispatch } from '../src/gpu/dispatch.ts';
import type { GpuWeight } from '../src/weights/gpu-weight.ts';
import {
  checkMatmulInputs,
  chunkDispatch,
  fusionDefines,
  matmulBindings,
  threadRowsSizing,
  tokenTiles,
  variantName,
  yOffset,
  type MatmulOptions,
} from './matmul.ts';

export function matmulQuantDispatches(gpu: Gpu, w: GpuWeight, o: MatmulOptions): Dispatch[] {
  const label = o.label ?? `matmul ${w.label}`;
  if (w.format !== 'q8' && w.format !== 'q4') throw new Error(`${label}: the matmul_q kernel takes q8 or q4 weights, got ${w.format} (matmul takes f32/f16)`);
  const { gate, outCols } = checkMatmulInputs(w, o, label);
  const T = o.tokens;
  const K = w.cols;
  const defines = { Q4: w.format === 'q4', TAIL: K % 32 !== 0, VEC4: K % 4 === 0, TILE: T > 1, ...fusionDefines(o) };
  const code = preprocess(shaderSource('matmul_q', builtIn), defines);
  const tiles = tokenTiles(T);
  return w.chunks.map((c, i) => {
    const { WG, workgroups } = threadRowsSizing(c.rows, tiles, o.workgroupSize);
    const p = gpu.pipeline({ label: `matmul ${variantName(w.format, defines)}`, code, bindings: matmulBindings(o), constants: { WG } });
    const params = [T, c.rows, K, w.rowWords / 4, outCols, yOffset(c, gate), tiles, w.groups, c.scaleOffset / 4, w.scaleRowWords / 4];
    return chunkDispatch(gpu, p, w, i, label, params, o, grid(gpu, workgroups));
  });
}
