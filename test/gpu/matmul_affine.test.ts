// The MLX affine kernels (kernels/matmul_affine.ts + the embedding's AFFINE variant) against their
// CPU references over the dequantized weights: 4 and 8 bits, groups of 32/64/128, f16/bf16/f32
// scales, odd row counts (not a multiple of the workgroup tile), one token and tiled T > 1, every
// fused form, chunked weights; the embedding gather; and the doctor's checks of both.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matmulRef } from '../../kernels/matmul.ts';
import { affineWeightsRef } from '../../kernels/matmul_affine.ts';
import { embeddingDispatches, embeddingRef } from '../../kernels/embedding.ts';
import { releaseDispatches, runDispatches } from '../../src/gpu/dispatch.ts';
import { gateUpSourceRow, matmulDispatches, matmulKernel, type MatmulOptions } from '../../src/runtime/linear.ts';
import { affineRowWords, affineScaleRowWords, quantizeAffine, scaleValue, type AffineBits, type AffineTensor, type ScaleDtype } from '../../src/weights/affine.ts';
import { uploadAffineWeight } from '../../src/weights/affine-upload.ts';
import { destroyWeight } from '../../src/weights/gpu-weight.ts';
import type { Gpu } from '../../src/gpu/gpu.ts';
import { assertClose, randInt, randn, rng, testGpu } from '../helpers.ts';
import { affineChecks } from '../../src/doctor/affine-checks.ts';
import { runCheck } from '../../src/doctor/kernel-checks.ts';
import { setKernelVariant } from '../../src/gpu/kernel-variants.ts';
import affineSource from '../../shaders/matmul_affine.wgsl';

interface AffineCase {
  T: number;
  N: number;
  K: number;
  bits: AffineBits;
  G: number;
  sd: ScaleDtype;
  norm?: boolean;
  activation?: 'silu' | 'silu-gate';
  accumulate?: boolean;
  rowsPerChunk?: number;
}

/** Sum over k of |x| (|s q| + |b|): the scale of the kernel's rounding (it sums s q x and b x apart). */
function magnitudes(x: Float32Array, t: AffineTensor, srcRow: (r: number) => number, T: number): Float64Array {
  const { rows: N, cols: K, groupSize: G } = t;
  const m = new Float64Array(T * N);
  for (let n = 0; n < N; n++) {
    const s = srcRow(n);
    for (let tt = 0; tt < T; tt++) {
      let acc = 0;
      for (let k = 0; k < K; k++) {
        const sc = Math.abs(scaleValue(t.scales[s * (K / G) + Math.floor(k / G)], t.scaleDtype));
        const b = Math.abs(scaleValue(t.biases[s * (K / G) + Math.floor(k / G)], t.scaleDtype));
        acc += Math.abs(x[tt * K + k]) * (sc * ((1 << t.bits) - 1) + b);
      }
      m[tt * N + n] = acc;
    }
  }
  return m;
}

async function runAffineCase(gpu: Gpu, r: () => number, c: AffineCase): Promise<number> {
  const { T, N, K, bits, G, sd } = c;
  const what = `T=${T} N=${N} K=${K} ${bits}-bit G=${G} ${sd}${c.norm ? ' norm' : ''}${c.activation ? ` ${c.activation}` : ''}${c.accumulate ? ' acc' : ''}${c.rowsPerChunk ? ` ${c.rowsPerChunk} rows/chunk` : ''}`;
  const gate = c.activation === 'silu-gate';
  const outN = gate ? N / 2 : N;
  // Weights with an offset per row, so biases are far from zero and do not cancel.
  const wf = randn(r, N * K, 0.5).map((v, i) => v + 0.3 * Math.sin(Math.floor(i / K)));
  const t = quantizeAffine(wf, N, K, bits, G, sd);
  const srcRow = gate ? gateUpSourceRow(N) : (q: number) => q;
  const max = c.rowsPerChunk ? (affineRowWords(K, bits) + affineScaleRowWords(K, G, sd)) * 4 * c.rowsPerChunk + 15 : undefined;
  const weight = uploadAffineWeight(gpu, 'w', t, { srcRow, rowMultiple: gate ? 2 : 1, maxChunkBytes: max });
  if (c.rowsPerChunk) assert.equal(weight.chunks.length, Math.ceil(N / c.rowsPerChunk), what);
  assert.equal(matmulKernel(weight, T, 'coalesced', 'tiled'), 'matmul_affine');
  const wRef = affineWeightsRef(t, srcRow);
  const x = randn(r, T * K, c.norm ? 3 : 1);
  const g = randn(r, K, 0.3).map((v) => 1 + v);
  const y0 = randn(r, T * outN);
  const xb = gpu.upload('x', x);
  const gb = gpu.upload('g', g);
  const yb = gpu.upload('y', y0);
  const eps = 1e-6;
  const o: MatmulOptions = { tokens: T, x: xb, y: yb, accumulate: c.accumulate, activation: c.activation };
  if (c.norm) o.norm = { weight: gb, eps };
  const ds = matmulDispatches(gpu, weight, o);
  assert.equal(ds.length, weight.chunks.length);
  assert.equal(ds[0].pipeline.label.split(' ')[1], bits === 4 ? 'mlx4' : 'mlx8', `${what}: ${ds[0].pipeline.label}`);
  runDispatches(gpu, ds);
  const got = await gpu.readF32(yb, T * outN);
  const ref = matmulRef(x, wRef, T, N, K, { acc: c.accumulate ? y0 : undefined, norm: c.norm ? { weight: g, eps } : undefined, activation: c.activation });
  // Tolerance from the product's terms (after the norm's scale, with g up to ~2).
  const xm = c.norm ? x.map((v, i) => (v * 2.5) / Math.sqrt(x.subarray(Math.floor(i / K) * K, Math.floor(i / K) * K + K).reduce((a, u) => a + u * u, 0) / K + eps)) : x;
  const mag = magnitudes(xm, t, srcRow, T);
  for (let tt = 0; tt < T; tt++)
    for (let n = 0; n < outN; n++) {
      const i = tt * outN + n;
      const m = gate ? 2 * Math.max(mag[tt * N + 2 * n], mag[tt * N + 2 * n + 1]) ** 2 + mag[tt * N + 2 * n + 1] : mag[tt * N + n];
      const tol = 2e-6 * (m + Math.abs(ref[i]) + 1);
      if (!(Math.abs(got[i] - ref[i]) <= tol)) throw new Error(`${what}: index ${i} is ${got[i]}, expected ${ref[i]} (tol ${tol})`);
    }
  releaseDispatches(gpu, ds);
  const chunks = weight.chunks.length;
  destroyWeight(gpu, weight);
  for (const b of [xb, gb, yb]) gpu.destroyBuffer(b);
  return chunks;
}

test('matmul_affine (mlx4/mlx8) matches the CPU product over the dequantized weights', async () => {
  const gpu = await testGpu();
  const r = rng(61);
  const sds: ScaleDtype[] = ['F16', 'BF16', 'F32'];
  let i = 0;
  for (const bits of [4, 8] as AffineBits[])
    for (const G of [32, 64, 128])
      for (const N of [1, 5, 63, 65, 257])
        for (const T of [1, 3, 17]) {
          const K = G * [1, 2, 3, 5][i % 4];
          await runAffineCase(gpu, r, { T, N, K, bits, G, sd: sds[i % 3], accumulate: i % 2 === 1 });
          i++;
        }
});

test('matmul_affine fused forms (norm, silu, gated silu, accumulate) and chunked weights', async () => {
  const gpu = await testGpu();
  const r = rng(62);
  const sds: ScaleDtype[] = ['F16', 'BF16', 'F32'];
  let i = 0;
  for (const bits of [4, 8] as AffineBits[])
    for (const T of [1, 2, 5])
      for (const activation of [undefined, 'silu', 'silu-gate'] as const) {
        const G = [32, 64, 128][i % 3];
        await runAffineCase(gpu, r, { T, N: 2 * randInt(r, 1, 70) + 2, K: G * randInt(r, 1, 4), bits, G, sd: sds[(i + 1) % 3], norm: i % 2 === 0, activation, accumulate: i % 4 < 2 });
        i++;
      }
  for (const [T, N, bits, G, rows, act] of [
    [1, 301, 4, 64, 7, undefined],
    [4, 130, 8, 32, 14, 'silu-gate'],
    [17, 66, 4, 128, 2, 'silu-gate'],
    [3, 65, 8, 64, 64, undefined],
  ] as [number, number, AffineBits, number, number, 'silu-gate' | undefined][]) {
    await runAffineCase(gpu, r, { T, N, K: 2 * G, bits, G, sd: 'BF16', rowsPerChunk: rows, activation: act, norm: true });
  }
});

test('embedding gathers mlx4/mlx8 rows exactly as s * q + b (chunked tables, ids past the end give zeros)', async () => {
  const gpu = await testGpu();
  const r = rng(63);
  let i = 0;
  for (const bits of [4, 8] as AffineBits[])
    for (const G of [32, 64, 128])
      for (const sd of ['F16', 'BF16', 'F32'] as ScaleDtype[]) {
        const rows = [1, 37, 300][i % 3];
        const cols = G * [1, 3][i % 2];
        const t = quantizeAffine(randn(r, rows * cols, 0.7), rows, cols, bits, G, sd);
        const rowsPerChunk = i % 2 === 0 ? undefined : randInt(r, 1, 9);
        const max = rowsPerChunk ? (affineRowWords(cols, bits) + affineScaleRowWords(cols, G, sd)) * 4 * rowsPerChunk + 15 : undefined;
        const w = uploadAffineWeight(gpu, 'table', t, { maxChunkBytes: max });
        const ids = Uint32Array.from({ length: 19 }, (_, k) => (k === 3 ? rows + 5 : k === 0 ? rows - 1 : randInt(r, 0, rows - 1)));
        const idb = gpu.upload('ids', ids);
        const out = gpu.upload('out', new Float32Array(ids.length * cols).fill(NaN));
        const ds = embeddingDispatches(gpu, w, { tokens: ids.length, ids: idb, out });
        runDispatches(gpu, ds);
        // s * q + b in f32 (one or two roundings: the GPU may fuse them) against the f64 value.
        const ref = embeddingRef(affineWeightsRef(t), cols, ids);
        assertClose(await gpu.readF32(out, ids.length * cols), ref, 1e-6, 2 ** -22, `embedding ${bits}-bit G=${G} ${sd} [${rows}, ${cols}]`);
        releaseDispatches(gpu, ds);
        destroyWeight(gpu, w);
        gpu.destroyBuffer(idb);
        gpu.destroyBuffer(out);
        i++;
      }
});

test("the doctor's affine checks pass, and fail on a matmul_affine variant that drops the biases", async () => {
  const gpu = await testGpu();
  const specs = affineChecks();
  assert.deepEqual([...new Set(specs.map((s) => s.format))].sort(), ['mlx4', 'mlx8']);
  for (const s of specs) {
    const c = await runCheck(gpu, s);
    assert.ok(c.pass, `${c.name} ${c.variant} ${c.format}: ${c.max_error} ${c.error ?? ''}`);
  }
  const drop = 'bi * dot(';
  assert.ok(affineSource.includes(drop));
  setKernelVariant('matmul_affine', affineSource.replaceAll(drop, '0.0 * bi * dot('), 'no-bias.wgsl');
  try {
    for (const s of specs.filter((x) => x.kernels.includes('matmul_affine'))) assert.equal((await runCheck(gpu, s)).pass, false, `${s.variant} passes without biases`);
  } finally {
    setKernelVariant('matmul_affine', null);
  }
});
