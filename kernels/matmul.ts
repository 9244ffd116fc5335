// Matrix products with a weight: y[t, n] (= or +=) sum_k x[t, k] * W[n, k]. x is f32 [T, K], y is
// f32 [T, N], W a GpuWeight (f32, packed f16, or q8/q4 groups of 32 with f16 scales). f32
// accumulation throughout. Accumulate mode (y +=) fuses a residual add; `norm` fuses an RMSNorm
// in front and `activation` a SiLU (gated or not) behind, so a layer needs fewer dispatches.
// One dispatch per weight chunk; each writes its rows' outputs at column offset chunk.rowStart.
import type { BindingKind, Gpu, Pipeline } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/matmul.wgsl';
import gemvBuiltIn from '../shaders/matmul_gemv.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { grid, makeDispatch, medianSubmitMs, releaseDispatches, type Dispatch } from '../src/gpu/dispatch.ts';
import type { GpuWeight, WeightChunk } from '../src/weights/gpu-weight.ts';

export interface MatmulOptions {
  tokens: number;
  x: GPUBuffer;
  y: GPUBuffer;
  accumulate?: boolean;
  label?: string;
  /** Threads per workgroup (each owns 4 weight rows). Default: 64, less when N is small. */
  workgroupSize?: number;
  /**
   * RMSNorm in front: the product's input is rmsnorm(x) = x * g / sqrt(mean(x^2) + eps) (as
   * rmsnorm.ts computes it), each token's scale found while reading x. Without `weight`, g is
   * taken as folded into W's columns already (W[n, k] * g[k] stored; see foldColumnScale).
   */
  norm?: { weight?: GPUBuffer; eps: number };
  /**
   * 'silu': y = silu(product). 'silu-gate': weight rows come in (gate, up) pairs (see
   * interleaveGateUp) and y[t, p] = silu(gate_p . x) * (up_p . x): y is [T, N / 2].
   */
  activation?: 'silu' | 'silu-gate';
  /**
   * One-token products only: 'rows' (the default: a thread a row, matmul.wgsl) or 'coalesced' (a
   * workgroup a block of 4 rows, its threads striding over K, matmul_gemv.wgsl; with subgroups
   * where the device has them). Which is faster depends on the device: tuneGemv measures it.
   * 'coalesced' falls back to 'rows' for K it cannot take (f32: K % 4, f16: K % 8, q8/q4: K % 32
   * not 0).
   */
  gemv?: GemvKernel;
  /** 'coalesced' only: use subgroup operations if the device has them (default true). */
  subgroups?: boolean;
}

export type GemvKernel = 'rows' | 'coalesced';
export const GEMV_KERNELS: readonly GemvKernel[] = ['rows', 'coalesced'];

/** W[n, k] * g[k] for a row-major [rows, cols] W: folds a norm's weights into the product after it. */
export function foldColumnScale(w: Float32Array, rows: number, cols: number, g: Float32Array): Float32Array {
  if (g.length !== cols) throw new Error(`column scale has ${g.length} values for ${cols} columns`);
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) out[r * cols + k] = w[r * cols + k] * g[k];
  return out;
}

/**
 * Row order the 'silu-gate' activation expects: [gate; up] ([2F, K], gate rows first, as
 * checkpoints store them) becomes pairs gate 0, up 0, gate 1, up 1, ...
 */
export function interleaveGateUp(w: Float32Array, rows: number, cols: number): Float32Array {
  if (rows % 2 !== 0) throw new Error(`gate/up weight has ${rows} rows; expected an even count (gate rows, then as many up rows)`);
  const F = rows / 2;
  const out = new Float32Array(w.length);
  for (let p = 0; p < F; p++) {
    out.set(w.subarray(p * cols, (p + 1) * cols), 2 * p * cols);
    out.set(w.subarray((F + p) * cols, (F + p + 1) * cols), (2 * p + 1) * cols);
  }
  return out;
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
  const gate = o.activation === 'silu-gate';
  if (gate) {
    const odd = w.chunks.find((c) => c.rowStart % 2 !== 0 || c.rows % 2 !== 0);
    if (w.rows % 2 !== 0 || odd) throw new Error(`${label}: the gated activation needs (gate, up) row pairs, but rows or a chunk's rows are odd (upload with rowMultiple 2)`);
  }
  const outCols = gate ? w.rows / 2 : w.rows;
  if (o.y.size < T * outCols * 4) throw new Error(`${label}: y holds ${o.y.size} bytes, needs ${T * outCols * 4} for [${T}, ${outCols}] f32`);
  if (o.norm) {
    const { weight, eps } = o.norm;
    if (weight && weight.size < K * 4) throw new Error(`${label}: norm weight holds ${weight.size} bytes, needs ${K * 4} for [${K}] f32`);
    if (!(Number.isFinite(eps) && eps >= 0)) throw new Error(`${label}: norm eps must be a finite number >= 0, got ${eps}`);
  }
  const f16 = w.format === 'f16';
  const quant = w.format === 'q8' || w.format === 'q4';
  const unit = quant ? 32 : f16 ? 8 : 4;
  if (T === 1 && o.gemv === 'coalesced' && K % unit === 0) {
    return gemvDispatches(gpu, w, o, label, gate);
  }
  const tile = T > 1;
  const defines = {
    QUANT: quant,
    Q4: w.format === 'q4',
    TAIL: quant && K % 32 !== 0,
    F16: f16,
    VEC4: f16 ? K % 8 === 0 : K % 4 === 0,
    TILE: tile,
    ...fusionDefines(o),
  };
  const code = preprocess(shaderSource('matmul', builtIn), defines);
  const flags = Object.entries(defines).filter(([k, v]) => v && k !== 'QUANT' && k !== 'Q4' && k !== 'F16');
  const variant = [w.format, ...flags.map(([k]) => k.toLowerCase())].join(' ');
  const tiles = tile ? Math.ceil(T / MATMUL_TOKEN_TILE) : T;
  const R = MATMUL_ROWS_PER_THREAD;
  return w.chunks.map((c, i) => {
    let WG = o.workgroupSize ?? DEFAULT_WG;
    if (o.workgroupSize === undefined) while (WG > MIN_WG && Math.ceil(c.rows / (R * WG)) * tiles < MIN_WORKGROUPS) WG >>= 1;
    const p = gpu.pipeline({ label: `matmul ${variant}`, code, bindings: bindingsFor(o), constants: { WG } });
    const params = quant
      ? [T, c.rows, K, w.rowWords / 4, outCols, yOffset(c, gate), tiles, w.groups, c.scaleOffset / 4, w.scaleRowWords / 4]
      : [T, c.rows, K, w.rowWords, outCols, yOffset(c, gate), tiles];
    return chunkDispatch(gpu, p, w, i, label, params, o, grid(gpu, Math.ceil(c.rows / (R * WG)) * tiles));
  });
}

/** The fusion defines both kernels share (see the top of matmul.wgsl). */
function fusionDefines(o: MatmulOptions): Record<string, boolean> {
  return { ACC: !!o.accumulate, NORM: !!o.norm, NORMW: !!o.norm?.weight, SILU: o.activation === 'silu', GLU: o.activation === 'silu-gate' };
}

function bindingsFor(o: MatmulOptions): BindingKind[] {
  return o.norm?.weight ? ['uniform', 'read', 'read', 'write', 'read'] : ['uniform', 'read', 'read', 'write'];
}

/** Column of y where a chunk's outputs start: the gated activation writes one a row pair. */
function yOffset(c: WeightChunk, gate: boolean): number {
  return gate ? c.rowStart / 2 : c.rowStart;
}

/** The dispatch of chunk i: x, the chunk, y (and the norm's eps and weights when fused). */
function chunkDispatch(gpu: Gpu, p: Pipeline, w: GpuWeight, i: number, label: string, params: number[], o: MatmulOptions, workgroups: [number, number, number]): Dispatch {
  const name = w.chunks.length > 1 ? `${label}[${i}]` : label;
  const words: (number | { f: number })[] = o.norm ? [...params, { f: o.norm.eps }] : params;
  const buffers = o.norm?.weight ? [o.x, w.chunks[i].buffer, o.y, o.norm.weight] : [o.x, w.chunks[i].buffer, o.y];
  return makeDispatch(gpu, p, name, words, buffers, workgroups);
}

const GEMV_WG = 64;

function gemvDispatches(gpu: Gpu, w: GpuWeight, o: MatmulOptions, label: string, gate: boolean): Dispatch[] {
  const quant = w.format === 'q8' || w.format === 'q4';
  const subgroups = (o.subgroups ?? true) && gpu.features.subgroups;
  const defines = {
    SUBGROUPS: subgroups,
    QUANT: quant,
    Q4: w.format === 'q4',
    F16: w.format === 'f16',
    ...fusionDefines(o),
  };
  const code = preprocess(shaderSource('matmul_gemv', gemvBuiltIn), defines);
  const flags = Object.entries(defines).filter(([k, v]) => v && k !== 'QUANT' && k !== 'Q4' && k !== 'F16');
  const variant = ['gemv', w.format, ...flags.map(([k]) => k.toLowerCase())].join(' ');
  const p = gpu.pipeline({ label: `matmul ${variant}`, code, bindings: bindingsFor(o), constants: { WG: GEMV_WG } });
  return w.chunks.map((c, i) => {
    const params = [c.rows, w.cols, w.rowWords / 4, yOffset(c, gate), c.scaleOffset / 4, w.scaleRowWords / 4];
    return chunkDispatch(gpu, p, w, i, label, params, o, grid(gpu, Math.ceil(c.rows / 4)));
  });
}

export interface GemvTuning {
  choice: GemvKernel;
  /** Median ms of one product with `weight`, per kernel. */
  ms: Record<GemvKernel, number>;
}

/**
 * Times the one-token product with `weight` (plain, random input) in each GEMV kernel on this
 * device and picks the faster: a thread a row wins on CPU rasterizers like SwiftShader, coalesced
 * reads are what GPU memory systems want.
 */
export async function tuneGemv(gpu: Gpu, weight: GpuWeight, runs = 5): Promise<GemvTuning> {
  const x = gpu.upload('tune.x', new Float32Array(weight.cols).map((_, i) => Math.sin(i)));
  const y = gpu.createBuffer('tune.y', weight.rows * 4, GPUBufferUsage.STORAGE);
  const ms = {} as Record<GemvKernel, number>;
  try {
    for (const kind of GEMV_KERNELS) {
      const ds = matmulDispatches(gpu, weight, { tokens: 1, x, y, gemv: kind, label: `tune ${kind}` });
      try {
        ms[kind] = await medianSubmitMs(gpu, ds, runs, 'tune');
      } finally {
        releaseDispatches(gpu, ds);
      }
    }
  } finally {
    gpu.destroyBuffer(x);
    gpu.destroyBuffer(y);
  }
  gpu.checkErrors();
  return { choice: ms.coalesced < ms.rows ? 'coalesced' : 'rows', ms };
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
