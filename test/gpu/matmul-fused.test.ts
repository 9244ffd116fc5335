// The fusions of matmul: `norm` (RMSNorm in front) and `activation` ('silu', or 'silu-gate' over
// interleaved gate/up rows) behind, alone and together, against the CPU composition
// rmsNormRef -> matmulRef -> silu / siluGateRef over the dequantized weights: every weight format,
// both paths (T = 1 and tiled T > 1), accumulate on and off, chunked weights, odd sizes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { releaseDispatches, runDispatches, type Dispatch } from '../../src/gpu/dispatch.ts';
import { foldColumnScale, interleaveGateUp, matmulDispatches, matmulRef, type MatmulOptions } from '../../kernels/matmul.ts';
import { dequantize } from '../../src/weights/quant.ts';
import { rmsNormDispatch, rmsNormRef } from '../../kernels/rmsnorm.ts';
import { silu, siluGateDispatch } from '../../kernels/silu_gate.ts';
import { destroyWeight, planChunks, uploadWeight, weightRowBytes, type WeightFormat } from '../../src/weights/gpu-weight.ts';
import type { Gpu } from '../../src/gpu/gpu.ts';
import { randInt, randn, rng, testGpu, timeDispatches } from '../helpers.ts';

const FORMATS: WeightFormat[] = ['f32', 'f16', 'q8', 'q4'];

interface Case {
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
}

function describe(c: Case): string {
  const fused = [c.norm ? (c.folded ? 'norm(folded g)' : 'norm') : '', c.activation ?? ''].filter(Boolean).join('+');
  return `${c.gemv ?? ''}${c.subgroups === false ? ' no-subgroups' : ''} ${fused} T=${c.T} N=${c.N} K=${c.K} ${c.format}${c.accumulate ? ' acc' : ''}${c.maxChunkBytes ? ` chunk<=${c.maxChunkBytes}B` : ''}${c.workgroupSize ? ` wg=${c.workgroupSize}` : ''}`;
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

async function runCase(gpu: Gpu, r: () => number, c: Case): Promise<{ chunks: number }> {
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
  const xin = c.norm ? rmsNormRef(x, c.folded ? new Float32Array(K).fill(1) : g, T, K, eps) : x;
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
  const o: MatmulOptions = { tokens: T, x: xb, y: yb, accumulate, workgroupSize: c.workgroupSize, activation: c.activation, gemv: c.gemv, subgroups: c.subgroups };
  if (c.norm) o.norm = c.folded ? { eps } : { weight: gb, eps };
  const ds = matmulDispatches(gpu, weight, o);
  assert.equal(ds.length, weight.chunks.length);
  if (c.gemv === 'coalesced') {
    assert.match(ds[0].pipeline.label, /gemv/, `${what}: the coalesced kernel was not used`);
    assert.equal(/subgroups/.test(ds[0].pipeline.label), c.subgroups !== false && gpu.features.subgroups, `${what}: ${ds[0].pipeline.label}`);
  }
  runDispatches(gpu, ds);
  const got = await gpu.readF32(yb, T * outN);
  // The products in stored row order, then the activation.
  const prod = matmulRef(xin, wRef, T, N, K);
  const mag = magnitudes(xin, wRef, T, N, K, format === 'q4');
  const rel = 1e-5;
  for (let t = 0; t < T; t++)
    for (let n = 0; n < outN; n++) {
      const i = t * outN + n;
      let want: number;
      let tol: number;
      if (gate) {
        const [a, b] = [prod[t * N + 2 * n], prod[t * N + 2 * n + 1]];
        const [ea, eb] = [rel * (mag[t * N + 2 * n] + 1), rel * (mag[t * N + 2 * n + 1] + 1)];
        want = silu(a) * b;
        // silu' is within [-0.1, 1.1].
        tol = 1.1 * ea * (Math.abs(b) + eb) + Math.abs(silu(a)) * eb;
      } else {
        const a = prod[t * N + n];
        want = c.activation === 'silu' ? silu(a) : a;
        tol = 1.1 * rel * (mag[t * N + n] + 1);
      }
      if (accumulate) {
        want += y0[i];
        tol += rel * Math.abs(y0[i]);
      }
      if (!(Math.abs(got[i] - want) <= tol + 1e-6 * Math.abs(want))) throw new Error(`${what}: [${t}, ${n}] is ${got[i]}, expected ${want} (tol ${tol})`);
    }
  releaseDispatches(gpu, ds);
  const chunks = weight.chunks.length;
  destroyWeight(gpu, weight);
  for (const b of [xb, gb, yb]) gpu.destroyBuffer(b);
  return { chunks };
}

const FUSIONS: Pick<Case, 'norm' | 'activation' | 'folded'>[] = [
  { norm: true },
  { norm: true, folded: true, activation: 'silu-gate' },
  { norm: true, folded: true },
  { norm: false, activation: 'silu' },
  { norm: false, activation: 'silu-gate' },
  { norm: true, activation: 'silu-gate' },
  { norm: true, activation: 'silu' },
];

test('fused matmul (norm, silu, silu-gate) matches the CPU composition on awkward shapes', async () => {
  const gpu = await testGpu();
  const r = rng(21);
  // K: tiny, odd, not a multiple of 4 / 8 / 32, of 32 but not of 256, several scale vec4s.
  const Ks = [1, 2, 3, 7, 8, 12, 31, 32, 33, 100, 130, 257, 288, 520];
  const Ns = [2, 6, 64, 66, 300];
  const Ts = [1, 2, 5, 17];
  let i = 0;
  for (const K of Ks)
    for (const N of Ns) {
      await runCase(gpu, r, { T: Ts[i % 4], N, K, format: FORMATS[(i >> 2) % 4], ...FUSIONS[i % FUSIONS.length], accumulate: i % 3 === 0 });
      i++;
    }
  // Every T, format, fusion and accumulate setting; odd N where no gate needs pairs.
  for (const T of Ts)
    for (const format of FORMATS)
      for (const f of FUSIONS)
        for (const accumulate of [false, true]) {
          const N = 2 * randInt(r, 1, 40) - (f.activation === 'silu-gate' ? 0 : 1);
          await runCase(gpu, r, { T, N, K: [16, 33, 96, 255, 256][randInt(r, 0, 4)], format, ...f, accumulate });
        }
});

test('fused matmul with weights split into chunks (pairs kept whole) and explicit workgroup sizes', async () => {
  const gpu = await testGpu();
  const r = rng(22);
  for (const [T, N, K, format, rowsPerChunk] of [
    [1, 300, 33, 'f16', 8],
    [5, 300, 130, 'f32', 14],
    [17, 66, 257, 'f16', 4],
    [2, 64, 8, 'f32', 2],
    [1, 300, 33, 'q8', 7],
    [5, 300, 130, 'q4', 13],
    [17, 66, 257, 'q8', 3],
    [1, 300, 1280, 'q4', 41],
  ] as [number, number, number, WeightFormat, number][]) {
    const max = weightRowBytes(K, format) * rowsPerChunk + 12;
    for (const f of FUSIONS) {
      const { chunks } = await runCase(gpu, r, { T, N, K, format, ...f, accumulate: f.norm, maxChunkBytes: max });
      // The gate rounds a chunk down to whole pairs.
      const per = f.activation === 'silu-gate' ? rowsPerChunk - (rowsPerChunk % 2) : rowsPerChunk;
      assert.equal(chunks, Math.ceil(N / per), `${N} rows of ${per} a chunk`);
    }
  }
  for (const wg of [1, 4, 16, 128]) {
    await runCase(gpu, r, { T: 1, N: 1030, K: 64, format: FORMATS[wg % 4], ...FUSIONS[wg % FUSIONS.length], accumulate: wg % 3 === 0, workgroupSize: wg });
    await runCase(gpu, r, { T: 6, N: 300, K: 45, format: FORMATS[(wg + 1) % 4], ...FUSIONS[(wg + 2) % FUSIONS.length], accumulate: wg % 3 === 1, workgroupSize: wg });
  }
});

test('planChunks keeps row groups whole', () => {
  assert.deepEqual(planChunks(10, 12, 40, 'w', 2), [[0, 2], [2, 2], [4, 2], [6, 2], [8, 2]]);
  assert.deepEqual(planChunks(12, 16, 80, 'w', 2), [[0, 4], [4, 4], [8, 4]]);
  assert.throws(() => planChunks(4, 16, 16, 'w', 2), /2 rows that must stay together take 32 bytes/);
});

test('fused matmul on minimal buffers raises no GPU error; bad options are refused', async () => {
  const gpu = await testGpu();
  gpu.device.pushErrorScope('validation');
  for (const [T, N, K, format] of [
    [1, 2, 1, 'f32'],
    [1, 2, 1, 'f16'],
    [3, 2, 1, 'q4'],
    [5, 4, 9, 'q8'],
    [9, 2, 16, 'f16'],
  ] as [number, number, number, WeightFormat][]) {
    // x = 1, g = 1, eps = 0: the normed input is 1, each product 0.5 K, the output silu(0.5 K) * 0.5 K.
    const weight = uploadWeight(gpu, 'w', new Float32Array(N * K).fill(0.5), N, K, format, undefined, 2);
    const xb = gpu.upload('x', new Float32Array(T * K).fill(1));
    const gb = gpu.upload('g', new Float32Array(K).fill(1));
    const yb = gpu.createBuffer('y', (T * N * 4) / 2, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    const ds: Dispatch[] = matmulDispatches(gpu, weight, { tokens: T, x: xb, y: yb, norm: { weight: gb, eps: 0 }, activation: 'silu-gate' });
    runDispatches(gpu, ds);
    const got = await gpu.readF32(yb, (T * N) / 2);
    const p = dequantize(new Float32Array(K).fill(0.5), 1, K, format)[0] * K;
    const want = silu(p) * p;
    for (const v of got) assert.ok(Math.abs(v - want) <= 1e-5 * Math.abs(want) + 1e-6, `T=${T} N=${N} K=${K} ${format}: ${v} vs ${want}`);
    releaseDispatches(gpu, ds);
    destroyWeight(gpu, weight);
    for (const b of [xb, gb, yb]) gpu.destroyBuffer(b);
  }
  const err = await gpu.device.popErrorScope();
  assert.equal(err, null, err?.message);
  gpu.checkErrors();

  const odd = uploadWeight(gpu, 'w', new Float32Array(24), 3, 8, 'f32');
  const xb = gpu.createBuffer('x', 32, GPUBufferUsage.STORAGE);
  const yb = gpu.createBuffer('y', 64, GPUBufferUsage.STORAGE);
  const tiny = gpu.createBuffer('g', 16, GPUBufferUsage.STORAGE);
  assert.throws(() => matmulDispatches(gpu, odd, { tokens: 1, x: xb, y: yb, activation: 'silu-gate' }), /\(gate, up\) row pairs/);
  assert.throws(() => matmulDispatches(gpu, odd, { tokens: 1, x: xb, y: yb, norm: { weight: tiny, eps: 1e-5 } }), /norm weight holds 16 bytes, needs 32/);
  assert.throws(() => matmulDispatches(gpu, odd, { tokens: 1, x: xb, y: yb, norm: { weight: xb, eps: NaN } }), /eps/);
  assert.throws(() => interleaveGateUp(new Float32Array(6), 3, 2), /3 rows; expected an even count/);
  destroyWeight(gpu, odd);
  for (const b of [xb, yb, tiny]) gpu.destroyBuffer(b);
});

// ---- Timing (reported, not asserted): fused vs the dispatches it replaces, at 270M decode shapes.

test('fused matmul timing: norm + gated proj_1 of OpenELM-270M (K=1280, 2 x 3072 rows) against rmsnorm, matmul, silu_gate', async () => {
  const gpu = await testGpu();
  const [K, F] = [1280, 3072];
  for (const format of ['f16', 'q4'] as WeightFormat[]) {
    const r = rng(5);
    const w = randn(r, 2 * F * K, 0.05);
    const plainW = uploadWeight(gpu, 'w', w, 2 * F, K, format);
    const gateW = uploadWeight(gpu, 'w', interleaveGateUp(w, 2 * F, K), 2 * F, K, format, undefined, 2);
    const xb = gpu.upload('x', randn(r, K));
    const gb = gpu.upload('g', randn(r, K, 0.1).map((v) => 1 + v));
    const normed = gpu.createBuffer('normed', K * 4, GPUBufferUsage.STORAGE);
    const mid = gpu.createBuffer('mid', 2 * F * 4, GPUBufferUsage.STORAGE);
    const yb = gpu.createBuffer('y', F * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    const eps = 1e-6;
    const fused = matmulDispatches(gpu, gateW, { tokens: 1, x: xb, y: yb, norm: { weight: gb, eps }, activation: 'silu-gate' });
    const unfused = [
      rmsNormDispatch(gpu, { rows: 1, dim: K, eps, x: xb, weight: gb, y: normed }),
      ...matmulDispatches(gpu, plainW, { tokens: 1, x: normed, y: mid }),
      siluGateDispatch(gpu, { tokens: 1, dim: F, glu: true, y: mid, out: yb }),
    ];
    runDispatches(gpu, unfused);
    const want = await gpu.readF32(yb, F);
    runDispatches(gpu, fused);
    const got = await gpu.readF32(yb, F);
    // Same result up to rounding (q4's is coarser, see magnitudes above): within 1e-3 of the outputs' rms.
    const rms = Math.sqrt(want.reduce((s, v) => s + v * v, 0) / F);
    for (let i = 0; i < F; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-3 * rms, `[${i}] fused ${got[i]} vs unfused ${want[i]}`);
    const t = { fused: [] as number[], unfused: [] as number[] };
    for (let round = 0; round < 3; round++) {
      t.fused.push(await timeDispatches(gpu, fused, 7));
      t.unfused.push(await timeDispatches(gpu, unfused, 7));
    }
    const m = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1].toFixed(2);
    console.log(`norm+proj_1+silu_gate ${format} T=1 K=${K} rows=${2 * F}: fused (1 dispatch) ${m(t.fused)} ms, unfused (3 dispatches) ${m(t.unfused)} ms`);
    releaseDispatches(gpu, [...fused, ...unfused]);
    destroyWeight(gpu, plainW);
    destroyWeight(gpu, gateW);
    for (const b of [xb, gb, normed, mid, yb]) gpu.destroyBuffer(b);
  }
});

// ---- The coalesced one-token kernel (matmul_gemv.wgsl), with and without subgroups.

test('coalesced GEMV (subgroups and the workgroup-memory fallback) matches the CPU in every form and format', async () => {
  const gpu = await testGpu();
  const r = rng(31);
  const modes = gpu.features.subgroups ? [true, false] : [false];
  let i = 0;
  for (const subgroups of modes)
    for (const format of FORMATS)
      for (const f of [{ norm: false }, ...FUSIONS])
        for (const K of [32, 96, 264, 1280].filter((k) => k % (format === 'q8' || format === 'q4' ? 32 : 8) === 0)) {
          const N = 2 * randInt(r, 1, 150) - (f.activation === 'silu-gate' ? 0 : i % 2);
          await runCase(gpu, r, { T: 1, N, K, format, ...f, accumulate: i % 3 === 0, gemv: 'coalesced', subgroups, maxChunkBytes: i % 5 === 0 ? weightRowBytes(K, format) * 14 : undefined });
          i++;
        }
});
