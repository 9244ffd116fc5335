// Matrix products with a weight: y[t, n] (= or +=) sum_k x[t, k] * W[n, k]. x is f32 [T, K], y is
// f32 [T, N], W a GpuWeight (f32, packed f16, or q8/q4 groups of 32 with f16 scales). f32
// accumulation throughout. Accumulate mode (y +=) fuses a residual add.
// One dispatch per weight chunk; each writes its rows' outputs at column offset chunk.rowStart.
import type { Gpu } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/matmul.wgsl';
import { shaderSource } from './variants.ts';
import { grid, makeDispatch, type Dispatch } from './kernel.ts';
import type { GpuWeight } from './weight.ts';

export interface MatmulOptions {
  tokens: number;
  x: GPUBuffer;
  y: GPUBuffer;
  accumulate?: boolean;
  label?: string;
  /** Threads per workgroup (each owns 4 weight rows). Default: 64, less when N is small. */
  workgroupSize?: number;
}

/** Rows a thread owns and tokens a thread owns in the tiled (T > 1) variant; fixed by the shader. */
export const MATMUL_ROWS_PER_THREAD = 4;
export const MATMUL_TOKEN_TILE = 4;

const DEFAULT_WG = 64;
const MIN_WG = 16;
// Below this many workgroups per chunk the default workgroup size is halved (down to MIN_WG), so
// small matrices still spread over the GPU's cores.
const MIN_WORKGROUPS = 8;

export function matmulDispatches(gpu: Gpu, w: GpuWeight, o: MatmulOptions): Dispatch[] {
  const T = o.tokens;
  const K = w.cols;
  const label = o.label ?? `matmul ${w.label}`;
  if (!Number.isInteger(T) || T < 1) throw new Error(`${label}: tokens must be a positive integer, got ${T}`);
  if (o.x.size < T * K * 4) throw new Error(`${label}: x holds ${o.x.size} bytes, needs ${T * K * 4} for [${T}, ${K}] f32`);
  if (o.y.size < T * w.rows * 4) throw new Error(`${label}: y holds ${o.y.size} bytes, needs ${T * w.rows * 4} for [${T}, ${w.rows}] f32`);
  const f16 = w.format === 'f16';
  const quant = w.format === 'q8' || w.format === 'q4';
  const tile = T > 1;
  const defines = {
    QUANT: quant,
    Q4: w.format === 'q4',
    TAIL: quant && K % 32 !== 0,
    F16: f16,
    VEC4: f16 ? K % 8 === 0 : K % 4 === 0,
    TILE: tile,
    ACC: !!o.accumulate,
  };
  const code = preprocess(shaderSource('matmul', builtIn), defines);
  const flags = Object.entries(defines).filter(([k, v]) => v && k !== 'QUANT' && k !== 'Q4' && k !== 'F16');
  const variant = [w.format, ...flags.map(([k]) => k.toLowerCase())].join(' ');
  const tiles = tile ? Math.ceil(T / MATMUL_TOKEN_TILE) : T;
  const R = MATMUL_ROWS_PER_THREAD;
  return w.chunks.map((c, i) => {
    let WG = o.workgroupSize ?? DEFAULT_WG;
    if (o.workgroupSize === undefined) while (WG > MIN_WG && Math.ceil(c.rows / (R * WG)) * tiles < MIN_WORKGROUPS) WG >>= 1;
    const p = gpu.pipeline({ label: `matmul ${variant}`, code, bindings: ['uniform', 'read', 'read', 'write'], constants: { WG } });
    const name = w.chunks.length > 1 ? `${label}[${i}]` : label;
    const params = quant
      ? [T, c.rows, K, w.rowWords / 4, w.rows, c.rowStart, tiles, w.groups, c.scaleOffset / 4, w.scaleRowWords / 4]
      : [T, c.rows, K, w.rowWords, w.rows, c.rowStart, tiles];
    return makeDispatch(gpu, p, name, params, [o.x, c.buffer, o.y], grid(gpu, Math.ceil(c.rows / (R * WG)) * tiles));
  });
}

/** CPU reference: y = x W^T (+ acc), x [T, K], w [N, K] row-major. */
export function matmulRef(x: Float32Array, w: Float32Array, T: number, N: number, K: number, acc?: Float32Array): Float32Array {
  const y = new Float32Array(T * N);
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[t * K + k] * w[n * K + k];
      y[t * N + n] = (acc ? acc[t * N + n] : 0) + s;
    }
  }
  return y;
}
