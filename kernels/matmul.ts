// The matrix product with f32 / f16 weights (shaders/matmul.wgsl): y[t, n] (= or +=) sum_k x[t, k]
// * W[n, k], a thread 4 weight rows and (T > 1: register-tiled) 4 tokens. x is f32 [T, K], y f32
// [T, N]; f32 accumulation. Accumulate mode (y +=) fuses a residual add; `norm` fuses an RMSNorm in
// front and `activation` a SiLU (gated or not) behind, so a layer needs fewer dispatches. One
// dispatch per weight chunk; each writes its rows' outputs at column offset chunk.rowStart.
//
// This module also defines what the three matmul kernels share: the fused forms (MatmulOptions),
// their validation, bindings and per-chunk dispatch, the weight layouts the forms expect, and the
// CPU reference of every form (matmulRef). matmul_q.ts (q8/q4, same thread layout) and
// matmul_gemv.ts (one token, coalesced) import them; src/runtime/linear.ts picks the kernel.
import type { BindingKind, Gpu, Pipeline } from '../src/gpu/gpu.ts';
import { preprocess, type Defines } from '../src/gpu/shader.ts';
import builtIn from '../shaders/matmul.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { grid, makeDispatch, type Dispatch } from '../src/gpu/dispatch.ts';
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
   * rmsNormRef computes it), each token's scale found while reading x. Without `weight`, g is
   * taken as folded into W's columns already (W[n, k] * g[k] stored; see foldColumnScale).
   */
  norm?: { weight?: GPUBuffer; eps: number };
  /**
   * 'silu': y = silu(product). 'silu-gate': weight rows come in (gate, up) pairs (see
   * interleaveGateUp) and y[t, p] = silu(gate_p . x) * (up_p . x): y is [T, N / 2].
   */
  activation?: 'silu' | 'silu-gate';
  /**
   * One-token products only: 'rows' (the default: a thread a row, matmul.wgsl / matmul_q.wgsl) or
   * 'coalesced' (a workgroup a block of 4 rows, its threads striding over K, matmul_gemv.wgsl;
   * with subgroups where the device has them). Which is faster depends on the device: tuneGemv
   * (src/runtime/linear.ts) measures it. 'coalesced' falls back to 'rows' for K it cannot take
   * (f32: K % 4, f16: K % 8, q8/q4: K % 32 not 0).
   */
  gemv?: GemvKernel;
  /** 'coalesced' only: use subgroup operations if the device has them (default true). */
  subgroups?: boolean;
  /**
   * T > 1 products with f32/f16 weights: 'register' (the default: matmul.wgsl, register-tiled,
   * summing each row in the one-token kernel's order) or 'tiled' (matmul_tiled.wgsl, blocks staged
   * in workgroup memory). tunePrefillMatmul (src/runtime/linear.ts) measures which is faster.
   */
  prefill?: PrefillKernel;
  /** 'tiled' only: its block sizes (default: tiledSizes in kernels/matmul_tiled.ts, from the device's limits). */
  tiles?: TiledSizes;
  /** f16 weights: read them as f16 values where the device has shader-f16 (default true). */
  shaderF16?: boolean;
}

export type PrefillKernel = 'register' | 'tiled';

/** Block sizes of the tiled kernel: threads along N (4 rows each), along T (4 tokens each), vec4 slots of K a step. */
export interface TiledSizes {
  WG: number;
  TT: number;
  KS: number;
}
export const PREFILL_KERNELS: readonly PrefillKernel[] = ['register', 'tiled'];

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

/** The source row of each row interleaveGateUp writes: row 2p is gate p, row 2p + 1 is up p (source row F + p). */
export function gateUpSourceRow(rows: number): (r: number) => number {
  if (rows % 2 !== 0) throw new Error(`gate/up weight has ${rows} rows; expected an even count (gate rows, then as many up rows)`);
  const F = rows / 2;
  return (r) => (r % 2 === 0 ? r / 2 : F + (r - 1) / 2);
}

/** Rows a thread owns and tokens a thread owns in the tiled (T > 1) form; fixed by the shaders. */
export const MATMUL_ROWS_PER_THREAD = 4;
export const MATMUL_TOKEN_TILE = 4;

/** What every matmul kernel checks of its inputs; returns y's columns and whether the gate pairs rows. */
export function checkMatmulInputs(w: GpuWeight, o: MatmulOptions, label: string): { gate: boolean; outCols: number } {
  const T = o.tokens;
  const K = w.cols;
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
  return { gate, outCols };
}

/** The fusion defines all three kernels take (described in shaders/include/matmul_out.wgsl). */
export function fusionDefines(o: MatmulOptions): Defines {
  return { ACC: !!o.accumulate, NORM: !!o.norm, NORMW: !!o.norm?.weight, SILU: o.activation === 'silu', GLU: o.activation === 'silu-gate' };
}

/** Bindings of every matmul kernel: params, x, the weight chunk, y (and the norm weights when fused with them). */
export function matmulBindings(o: MatmulOptions): BindingKind[] {
  return o.norm?.weight ? ['uniform', 'read', 'read', 'write', 'read'] : ['uniform', 'read', 'read', 'write'];
}

/** Pipeline label suffix: the weight format and the defines that are on (the format ones aside). */
export function variantName(format: string, defines: Defines): string {
  const flags = Object.entries(defines).filter(([k, v]) => v && k !== 'QUANT' && k !== 'Q4' && k !== 'F16');
  return [format, ...flags.map(([k]) => k.toLowerCase())].join(' ');
}

/** Column of y where a chunk's outputs start: the gated activation writes one a row pair. */
export function yOffset(c: WeightChunk, gate: boolean): number {
  return gate ? c.rowStart / 2 : c.rowStart;
}

/** The dispatch of chunk i: x, the chunk, y (and the norm's eps and weights when fused). */
export function chunkDispatch(gpu: Gpu, p: Pipeline, w: GpuWeight, i: number, label: string, params: number[], o: MatmulOptions, workgroups: [number, number, number]): Dispatch {
  const name = w.chunks.length > 1 ? `${label}[${i}]` : label;
  const words: (number | { f: number })[] = o.norm ? [...params, { f: o.norm.eps }] : params;
  const buffers = o.norm?.weight ? [o.x, w.chunks[i].buffer, o.y, o.norm.weight] : [o.x, w.chunks[i].buffer, o.y];
  return makeDispatch(gpu, p, name, words, buffers, workgroups);
}

const DEFAULT_WG = 64;
const MIN_WG = 16;
// Below this many workgroups per chunk the default workgroup size is halved (down to MIN_WG), so
// small matrices still spread over the GPU's cores.
const MIN_WORKGROUPS = 8;

/**
 * Workgroup size and count of a chunk of `rows` rows in the thread-a-row layout (matmul.wgsl and
 * matmul_q.wgsl): a thread 4 rows, `tiles` token tiles.
 */
export function threadRowsSizing(rows: number, tiles: number, workgroupSize: number | undefined): { WG: number; workgroups: number } {
  const R = MATMUL_ROWS_PER_THREAD;
  let WG = workgroupSize ?? DEFAULT_WG;
  if (workgroupSize === undefined) while (WG > MIN_WG && Math.ceil(rows / (R * WG)) * tiles < MIN_WORKGROUPS) WG >>= 1;
  return { WG, workgroups: Math.ceil(rows / (R * WG)) * tiles };
}

/** Token tiles of the thread-a-row layout: ceil(T / 4) tiled (T > 1), else the one token. */
export function tokenTiles(T: number): number {
  return T > 1 ? Math.ceil(T / MATMUL_TOKEN_TILE) : T;
}

/** The f32/f16 product in the thread-a-row layout: 'rows' for T = 1, register-tiled for T > 1. */
export function matmulFloatDispatches(gpu: Gpu, w: GpuWeight, o: MatmulOptions): Dispatch[] {
  const label = o.label ?? `matmul ${w.label}`;
  if (w.format !== 'f32' && w.format !== 'f16') throw new Error(`${label}: the matmul kernel takes f32 or f16 weights, got ${w.format} (matmul_q takes q8/q4)`);
  const { gate, outCols } = checkMatmulInputs(w, o, label);
  const T = o.tokens;
  const K = w.cols;
  const f16 = w.format === 'f16';
  const defines = { F16: f16, SHADER_F16: f16 && (o.shaderF16 ?? true) && gpu.features.shaderF16, VEC4: f16 ? K % 8 === 0 : K % 4 === 0, TILE: T > 1, ...fusionDefines(o) };
  const code = preprocess(shaderSource('matmul', builtIn), defines);
  const tiles = tokenTiles(T);
  return w.chunks.map((c, i) => {
    const { WG, workgroups } = threadRowsSizing(c.rows, tiles, o.workgroupSize);
    const p = gpu.pipeline({ label: `matmul ${variantName(w.format, defines)}`, code, bindings: matmulBindings(o), constants: { WG } });
    const params = [T, c.rows, K, w.rowWords, outCols, yOffset(c, gate), tiles];
    return chunkDispatch(gpu, p, w, i, label, params, o, grid(gpu, workgroups));
  });
}

// ---- CPU reference of every fused form (all three kernels check against it) ----

/** A fused form of the product, on the CPU. */
export interface MatmulRefForm {
  /** y before the product: the result is acc + (the product after the activation). */
  acc?: Float32Array;
  /** RMSNorm in front with weight g (absent: g = 1, the norm weights folded into w). */
  norm?: { weight?: Float32Array; eps: number };
  activation?: 'silu' | 'silu-gate';
}

/** RMSNorm of each of `rows` rows of x: x * w / sqrt(mean(x^2) + eps), the squares summed in f32 as the kernels do. */
export function rmsNormRef(x: Float32Array, w: Float32Array, rows: number, dim: number, eps: number): Float32Array {
  const y = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss = Math.fround(ss + Math.fround(x[r * dim + i] * x[r * dim + i]));
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i] * inv * w[i];
  }
  return y;
}

/** a * sigmoid(a), without overflow for large |a|. */
export function silu(a: number): number {
  return a >= 0 ? a / (1 + Math.exp(-a)) : (a * Math.exp(a)) / (1 + Math.exp(a));
}

/**
 * CPU reference of every form: y = acc + act(norm(x) W^T), x [T, K], w [N, K] row-major as stored
 * (for 'silu-gate' in interleaved (gate, up) pairs, y [T, N / 2]; else y [T, N]). For quantized or
 * f16 weights pass the stored values (dequantize).
 */
export function matmulRef(x: Float32Array, w: Float32Array, T: number, N: number, K: number, form: MatmulRefForm = {}): Float32Array {
  const input = form.norm ? rmsNormRef(x, form.norm.weight ?? new Float32Array(K).fill(1), T, K, form.norm.eps) : x;
  const prod = new Float32Array(T * N);
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += input[t * K + k] * w[n * K + k];
      prod[t * N + n] = s;
    }
  }
  const gate = form.activation === 'silu-gate';
  const outN = gate ? N / 2 : N;
  const y = new Float32Array(T * outN);
  for (let t = 0; t < T; t++)
    for (let n = 0; n < outN; n++) {
      const v = gate ? silu(prod[t * N + 2 * n]) * prod[t * N + 2 * n + 1] : form.activation === 'silu' ? silu(prod[t * N + n]) : prod[t * N + n];
      y[t * outN + n] = (form.acc ? form.acc[t * outN + n] : 0) + v;
    }
  return y;
}
