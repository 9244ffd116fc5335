// The q8/q4 matmul kernel (kernels/matmul_q.ts, shaders/matmul_q.wgsl) through the chooser,
// against matmulRef over the dequantized weights: every K around the group size of 32, one token
// and tiled T > 1, chunked weights, workgroup sizes, minimal buffers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { releaseDispatches, runDispatches, type Dispatch } from '../../src/gpu/dispatch.ts';
import { matmulDispatches } from '../../src/runtime/linear.ts';
import { dequantize } from '../../src/weights/quant.ts';
import { destroyWeight, uploadWeight, weightRowBytes, type WeightFormat } from '../../src/weights/gpu-weight.ts';
import { assertClose, randInt, rng, testGpu } from '../helpers.ts';
import { checkModelSized, runPlainCase } from './matmul-cases.ts';

test('matmul_q (q8/q4) matches the CPU product over the dequantized weights', async () => {
  const gpu = await testGpu();
  const r = rng(14);
  // K: below, at and past one group; odd; not a multiple of 4; of 32 but not of 256; several
  // scale vec4s (K > 256).
  const Ks = [1, 3, 7, 8, 31, 32, 33, 64, 100, 130, 257, 288, 520, 1280];
  const Ns = [1, 5, 63, 65, 300];
  const Ts = [1, 3, 17];
  let cases = 0;
  for (const K of Ks)
    for (const N of Ns) {
      const T = Ts[cases % Ts.length];
      const format: WeightFormat = (cases >> 1) % 2 === 0 ? 'q8' : 'q4';
      await runPlainCase(gpu, r, T, N, K, format, cases % 3 === 0);
      cases++;
    }
  // Every T in both formats and modes.
  for (const T of [1, 2, 3, 4, 5, 17])
    for (const format of ['q8', 'q4'] as WeightFormat[])
      for (const acc of [false, true]) await runPlainCase(gpu, r, T, randInt(r, 1, 70), [16, 33, 96, 255][randInt(r, 0, 3)], format, acc);
});

test('matmul_q (q8/q4) with weights split into chunks, and explicit workgroup sizes', async () => {
  const gpu = await testGpu();
  const r = rng(15);
  for (const [T, N, K, format, rowsPerChunk] of [
    [1, 300, 33, 'q8', 7],
    [3, 300, 130, 'q4', 13],
    [17, 65, 257, 'q8', 3],
    [9, 63, 8, 'q4', 1],
    [1, 300, 1280, 'q4', 41],
    [17, 100, 64, 'q8', 50],
  ] as [number, number, number, WeightFormat, number][]) {
    const max = weightRowBytes(K, format) * rowsPerChunk + 12;
    for (const acc of [false, true]) {
      const { chunks } = await runPlainCase(gpu, r, T, N, K, format, acc, max);
      assert.equal(chunks, Math.ceil(N / rowsPerChunk), `expected ${rowsPerChunk} rows a chunk for ${N}x${K}`);
    }
  }
  for (const wg of [1, 4, 16, 64, 128]) {
    await runPlainCase(gpu, r, 1, 1029, 64, 'q4', wg % 2 === 0, undefined, wg);
    await runPlainCase(gpu, r, 6, 300, 45, 'q8', wg % 2 === 1, undefined, wg);
  }
  // A grid folded into y.
  const T = Math.ceil(gpu.limits.maxComputeWorkgroupsPerDimension / 75) * 4 + 5;
  const { folded } = await runPlainCase(gpu, r, T, 300, 2, 'q8', true, undefined, 1);
  assert.ok(folded, 'expected the grid to fold into y');
});

test('matmul_q (q8/q4) on minimal, exactly-sized buffers raises no GPU error', async () => {
  const gpu = await testGpu();
  gpu.device.pushErrorScope('validation');
  for (const [T, N, K, format] of [
    [1, 1, 1, 'q8'],
    [1, 1, 1, 'q4'],
    [3, 2, 1, 'q4'],
    [5, 3, 9, 'q8'],
    [9, 1, 32, 'q4'],
    [2, 5, 4, 'q8'],
  ] as [number, number, number, WeightFormat][]) {
    // 0.5 = 4 * 0.125 (q4: max 0.5, d = -0.0625, q = 0) and 127 * (0.5 / 127) (q8), both exact.
    const x = new Float32Array(T * K).fill(1);
    const w = new Float32Array(N * K).fill(0.5);
    const weight = uploadWeight(gpu, 'w', w, N, K, format);
    const xb = gpu.upload('x', x);
    const yb = gpu.createBuffer('y', T * N * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    const ds: Dispatch[] = matmulDispatches(gpu, weight, { tokens: T, x: xb, y: yb });
    runDispatches(gpu, ds);
    const got = await gpu.readF32(yb, T * N);
    const v = dequantize(w.subarray(0, K), 1, K, format)[0];
    assertClose(got, new Float32Array(T * N).fill(v * K), 1e-6 * K, 0, `T=${T} N=${N} K=${K} ${format}`);
    releaseDispatches(gpu, ds);
    destroyWeight(gpu, weight);
    gpu.destroyBuffer(xb);
    gpu.destroyBuffer(yb);
  }
  const err = await gpu.device.popErrorScope();
  assert.equal(err, null, err?.message);
  gpu.checkErrors();
});


test('matmul_q at model sizes: decode T=1 K=1280 N=5120 and prefill T=100 K=1280 N=1536 (q8, q4)', async () => {
  const gpu = await testGpu();
  for (const format of ['q8', 'q4'] as WeightFormat[]) {
    await checkModelSized(gpu, 1, 5120, 1280, format);
    await checkModelSized(gpu, 100, 1536, 1280, format);
  }
});
