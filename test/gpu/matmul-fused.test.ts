// The fused forms of the matrix product, in every kernel the chooser (src/runtime/linear.ts) picks:
// `norm` (RMSNorm in front, with weights or folded into W) and `activation` ('silu', or
// 'silu-gate' over interleaved gate/up rows) behind, alone and together, accumulate on and off,
// against matmulRef's form over the stored weights: every weight format, one token and tiled
// T > 1, chunked weights, odd sizes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { releaseDispatches, runDispatches, type Dispatch } from '../../src/gpu/dispatch.ts';
import { matmulRef } from '../../kernels/matmul.ts';
import { interleaveGateUp, matmulDispatches, matmulKernel } from '../../src/runtime/linear.ts';
import { dequantize } from '../../src/weights/quant.ts';
import { destroyWeight, planChunks, uploadWeight, weightRowBytes, type WeightFormat } from '../../src/weights/gpu-weight.ts';
import { randInt, rng, testGpu } from '../helpers.ts';
import { FORMATS, FUSIONS, runCase } from './matmul-cases.ts';

test('the chooser picks the kernel by format, token count, gemv option and K', async () => {
  const gpu = await testGpu();
  for (const [format, K, T, gemv, kernel] of [
    ['f32', 64, 1, 'rows', 'matmul'],
    ['f16', 64, 7, 'coalesced', 'matmul'],
    ['f16', 64, 1, 'coalesced', 'matmul_gemv'],
    ['f16', 60, 1, 'coalesced', 'matmul'],
    ['q8', 64, 1, 'rows', 'matmul_q'],
    ['q4', 64, 3, 'coalesced', 'matmul_q'],
    ['q4', 64, 1, 'coalesced', 'matmul_gemv'],
    ['q8', 48, 1, 'coalesced', 'matmul_q'],
  ] as const) {
    const w = uploadWeight(gpu, 'w', new Float32Array(4 * K), 4, K, format);
    assert.equal(matmulKernel(w, T, gemv), kernel, `${format} K=${K} T=${T} ${gemv}`);
    destroyWeight(gpu, w);
  }
});

test('fused matmul (norm, silu, silu-gate) match the forms of matmulRef on awkward shapes', async () => {
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
    const want = matmulRef(new Float32Array(T * K).fill(1), dequantize(new Float32Array(N * K).fill(0.5), N, K, format), T, N, K, { norm: { weight: new Float32Array(K).fill(1), eps: 0 }, activation: 'silu-gate' });
    for (const [i, v] of got.entries()) assert.ok(Math.abs(v - want[i]) <= 1e-5 * Math.abs(want[i]) + 1e-6, `T=${T} N=${N} K=${K} ${format}: ${v} vs ${want[i]}`);
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
