// Shared by the matmul tests (matmul, matmul_q, matmul_gemv, matmul-fused): one product on the GPU
// through the chooser (src/runtime/linear.ts) against the kernels' CPU reference (matmulRef) over
// the weights as stored, with tolerances from the size of the product's terms.
import assert from 'node:assert/strict';
import { releaseDispatches, runDispatches } from '../../src/gpu/dispatch.ts';
import { matmulRef, rmsNormRef, silu } from '../../kernels/matmul.ts';
import { foldColumnScale, interleaveGateUp, matmulDispatches, type MatmulOptions } from '../../src/runtime/linear.ts';
import { dequantize } from '../../src/weights/quant.ts';
import { destroyWeight, uploadWeight, type WeightFormat } from '../../src/weights/gpu-weight.ts';
import type { Gpu } from '../../src/gpu/gpu.ts';
import { randInt, randn, rng } from '../helpers.ts';

/** Tolerance for an f32 dot product of length K: relative to the sum of |x*w| terms. */
function plainMagnitudes(x: Float32Array, w: Float32Array, T: number, N: number, K: number): Float32Array {
  const m = new Float32Array(T * N);
  for (let t = 0; t < T; t++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += Math.abs(x[t * K + k] * w[n * K + k]);
      m[t * N + n] = s;
    }
  return m;
}

function checkClose(actual: Float32Array, expected: Float32Array, mag: Float32Array, rel: number, what: string): void {
  for (let i = 0; i < expected.length; i++) {
    const tol = rel * (mag[i] + 1);
    if (!(Math.abs(actual[i] - expected[i]) <= tol)) {
      throw new Error(`${what}: index ${i} is ${actual[i]}, expected ${expected[i]} (tol ${tol})`);
    }
  }
}

export async function runPlainCase(gpu: Gpu, r: () => number, T: number, N: number, K: number, format: WeightFormat, accumulate: boolean, maxChunkBytes?: number, workgroupSize?: number): Promise<{ chunks: number; folded: boolean }> {
  const what = `T=${T} N=${N} K=${K} ${format}${accumulate ? ' acc' : ''}${maxChunkBytes ? ` chunk<=${maxChunkBytes}B` : ''}${workgroupSize ? ` wg=${workgroupSize}` : ''}`;
  const x = randn(r, T * K);
  const w = randn(r, N * K, 0.5);
  const y0 = randn(r, T * N);
  const weight = uploadWeight(gpu, 'w', w, N, K, format, maxChunkBytes);
  const wRef = dequantize(w, N, K, format);
  const xb = gpu.upload('x', x);
  const yb = gpu.upload('y', y0);
  const ds = matmulDispatches(gpu, weight, { tokens: T, x: xb, y: yb, accumulate, workgroupSize });
  assert.equal(ds.length, weight.chunks.length);
  // The kernel of this format ran (pipeline labels start "matmul FORMAT").
  assert.equal(ds[0].pipeline.label.split(' ')[1], format, `${what}: ${ds[0].pipeline.label}`);
  runDispatches(gpu, ds);
  const got = await gpu.readF32(yb, T * N);
  const mag = plainMagnitudes(x, wRef, T, N, K);
  if (accumulate) for (let i = 0; i < mag.length; i++) mag[i] += Math.abs(y0[i]);
  checkClose(got, matmulRef(x, wRef, T, N, K, { acc: accumulate ? y0 : undefined }), mag, 1e-5, what);
  releaseDispatches(gpu, ds);
  const chunks = weight.chunks.length;
  const folded = ds.some((d) => d.workgroups[1] > 1);
  destroyWeight(gpu, weight);
  gpu.destroyBuffer(xb);
  gpu.destroyBuffer(yb);
  return { chunks, folded };
}

export const FORMATS: WeightFormat[] = ['f32', 'f16', 'q8', 'q4'];

export interface Case {
  T: number;
  /** Weight rows (with the gate: 2 * outputs). */
  N: number;
  K: number;
  format: WeightFormat;
  norm: boolean;
  activation?: 'silu' | 'silu-gate';
  accumulate: boolean;
  maxChunkBytes?: number;
  workgroupSize?: number;
  gemv?: 'rows' | 'coalesced';
  subgroups?: boolean;
  /** norm: g folded into W's columns before upload, the kernel given no norm weights. */
  folded?: boolean;
  /** T > 1: the kernel ('tiled': matmul_tiled.wgsl) and its block sizes. */
  prefill?: 'register' | 'tiled';
  tiles?: { WG: number; TT: number; KS: number };
  /** f16 weights read as f16 where the device has shader-f16 (default true). */
  shaderF16?: boolean;
}

function describe(c: Case): string {
  const fused = [c.norm ? (c.folded ? 'norm(folded g)' : 'norm') : '', c.activation ?? ''].filter(Boolean).join('+');
  return `${c.gemv ?? ''}${c.prefill === 'tiled' ? `tiled${c.tiles ? JSON.stringify(c.tiles) : ''}` : ''}${c.shaderF16 === false ? ' packed-f16' : ''}${c.subgroups === false ? ' no-subgroups' : ''} ${fused} T=${c.T} N=${c.N} K=${c.K} ${c.format}${c.accumulate ? ' acc' : ''}${c.maxChunkBytes ? ` chunk<=${c.maxChunkBytes}B` : ''}${c.workgroupSize ? ` wg=${c.workgroupSize}` : ''}`;
}

/**
 * Sum of |x*w| terms of each product: the scale of its rounding error. q4 adds sum |x| * 8|d| per
 * group (8|d| is the group's largest |weight|): the kernel sums (q - 8) d x as
 * 255 d sum (q / 255) x - 8 d sum x (see matmul.wgsl), whose rounding scales with that.
 */
function magnitudes(x: Float32Array, w: Float32Array, T: number, N: number, K: number, q4: boolean): Float32Array {
  const m = new Float32Array(T * N);
  for (let n = 0; n < N; n++) {
    const gmax = new Float32Array(Math.ceil(K / 32));
    if (q4) for (let k = 0; k < K; k++) gmax[k >> 5] = Math.max(gmax[k >> 5], Math.abs(w[n * K + k]));
    for (let t = 0; t < T; t++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += Math.abs(x[t * K + k]) * (Math.abs(w[n * K + k]) + gmax[k >> 5]);
      m[t * N + n] = s;
    }
  }
  return m;
}

export async function runCase(gpu: Gpu, r: () => number, c: Case): Promise<{ chunks: number }> {
  const { T, N, K, format, accumulate } = c;
  const what = describe(c);
  const gate = c.activation === 'silu-gate';
  const outN = gate ? N / 2 : N;
  // x at a random scale (so the norm's scale matters), one token all zeros when T > 2 (scale
  // 1 / sqrt(eps)); g around 1 with either sign.
  const x = randn(r, T * K, c.norm ? [0.01, 1, 30][randInt(r, 0, 2)] : 1);
  if (c.norm && T > 2) x.fill(0, K, 2 * K);
  const g = randn(r, K, 0.3).map((v) => 1 + v);
  const eps = [1e-5, 1e-6][randInt(r, 0, 1)];
  // Large weights on a few rows push the activation's input past where exp overflows f32.
  const w = randn(r, N * K, 0.5);
  if (c.activation && K >= 2) for (let i = 0; i < 3; i++) w.fill(i % 2 ? 40 : -40, randInt(r, 0, N - 1) * K, randInt(r, 0, N - 1) * K + 2);
  const scaled = c.folded ? foldColumnScale(w, N, K, g) : w;
  const stored = gate ? interleaveGateUp(scaled, N, K) : scaled;
  const y0 = randn(r, T * outN);
  const weight = uploadWeight(gpu, 'w', stored, N, K, format, c.maxChunkBytes, gate ? 2 : 1);
  const wRef = dequantize(stored, N, K, format);
  const xb = gpu.upload('x', x);
  const gb = gpu.upload('g', g);
  const yb = gpu.upload('y', y0);
  const o: MatmulOptions = { tokens: T, x: xb, y: yb, accumulate, workgroupSize: c.workgroupSize, activation: c.activation, gemv: c.gemv, subgroups: c.subgroups, prefill: c.prefill, tiles: c.tiles, shaderF16: c.shaderF16 };
  if (c.norm) o.norm = c.folded ? { eps } : { weight: gb, eps };
  const ds = matmulDispatches(gpu, weight, o);
  assert.equal(ds.length, weight.chunks.length);
  if (c.gemv === 'coalesced') {
    assert.match(ds[0].pipeline.label, /gemv/, `${what}: the coalesced kernel was not used`);
    assert.equal(/subgroups/.test(ds[0].pipeline.label), c.subgroups !== false && gpu.features.subgroups, `${what}: ${ds[0].pipeline.label}`);
  }
  assert.equal(ds[0].pipeline.label.split(' ')[1], c.gemv === 'coalesced' ? 'gemv' : format, `${what}: ${ds[0].pipeline.label}`);
  assert.equal(/ tiled$/.test(ds[0].pipeline.label), T > 1 && c.prefill === 'tiled', `${what}: ${ds[0].pipeline.label}`);
  if (format === 'f16' && c.gemv !== 'coalesced') assert.equal(/shader_f16/.test(ds[0].pipeline.label), c.shaderF16 !== false && gpu.features.shaderF16, `${what}: ${ds[0].pipeline.label}`);
  runDispatches(gpu, ds);
  const got = await gpu.readF32(yb, T * outN);
  const norm = c.norm ? { weight: c.folded ? undefined : g, eps } : undefined;
  const want = matmulRef(x, wRef, T, N, K, { acc: accumulate ? y0 : undefined, norm, activation: c.activation });
  // Tolerances from the products before the activation (in stored row order) and their terms.
  const prod = matmulRef(x, wRef, T, N, K, { norm });
  const xin = norm ? rmsNormRef(x, norm.weight ?? new Float32Array(K).fill(1), T, K, eps) : x;
  const mag = magnitudes(xin, wRef, T, N, K, format === 'q4');
  const rel = 1e-5;
  for (let t = 0; t < T; t++)
    for (let n = 0; n < outN; n++) {
      const i = t * outN + n;
      let tol: number;
      if (gate) {
        const [a, b] = [prod[t * N + 2 * n], prod[t * N + 2 * n + 1]];
        const [ea, eb] = [rel * (mag[t * N + 2 * n] + 1), rel * (mag[t * N + 2 * n + 1] + 1)];
        // silu' is within [-0.1, 1.1].
        tol = 1.1 * ea * (Math.abs(b) + eb) + Math.abs(silu(a)) * eb;
      } else {
        tol = 1.1 * rel * (mag[t * N + n] + 1);
      }
      if (accumulate) tol += rel * Math.abs(y0[i]);
      if (!(Math.abs(got[i] - want[i]) <= tol + 1e-6 * Math.abs(want[i]))) throw new Error(`${what}: [${t}, ${n}] is ${got[i]}, expected ${want[i]} (tol ${tol})`);
    }
  releaseDispatches(gpu, ds);
  const chunks = weight.chunks.length;
  destroyWeight(gpu, weight);
  for (const b of [xb, gb, yb]) gpu.destroyBuffer(b);
  return { chunks };
}

export const FUSIONS: Pick<Case, 'norm' | 'activation' | 'folded'>[] = [
  { norm: true },
  { norm: true, folded: true, activation: 'silu-gate' },
  { norm: true, folded: true },
  { norm: false, activation: 'silu' },
  { norm: false, activation: 'silu-gate' },
  { norm: true, activation: 'silu-gate' },
  { norm: true, activation: 'silu' },
];

/** A model-sized product (OpenELM-270M's), spot-checked at random outputs. */
export async function checkModelSized(gpu: Gpu, T: number, N: number, K: number, format: WeightFormat): Promise<void> {
  const r = rng(T * 7 + N);
  const x = randn(r, T * K);
  const w = randn(r, N * K, 0.05);
  const weight = uploadWeight(gpu, 'w', w, N, K, format);
  const wRef = dequantize(w, N, K, format);
  const xb = gpu.upload('x', x);
  const yb = gpu.createBuffer('y', T * N * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
  const ds = matmulDispatches(gpu, weight, { tokens: T, x: xb, y: yb });
  runDispatches(gpu, ds);
  // Spot-check a few outputs against the reference over the stored weights.
  const got = await gpu.readF32(yb, T * N);
  for (let i = 0; i < 16; i++) {
    const t = randInt(r, 0, T - 1);
    const n = randInt(r, 0, N - 1);
    let s = 0;
    let m = 0;
    for (let k = 0; k < K; k++) {
      const p = x[t * K + k] * wRef[n * K + k];
      s += p;
      m += Math.abs(p);
    }
    assert.ok(Math.abs(got[t * N + n] - s) <= 1e-5 * (m + 1), `[${t}, ${n}] ${got[t * N + n]} vs ${s}`);
  }
  releaseDispatches(gpu, ds);
  destroyWeight(gpu, weight);
  gpu.destroyBuffer(xb);
  gpu.destroyBuffer(yb);
}
