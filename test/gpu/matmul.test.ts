// The f32/f16 matmul kernel (kernels/matmul.ts, shaders/matmul.wgsl) through the chooser, against
// matmulRef over the stored weights: one token ('rows') and tiled T > 1, odd shapes, chunked
// weights, workgroup sizes; and how weights are split into chunks and stored.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { releaseDispatches, runDispatches, type Dispatch } from '../../src/gpu/dispatch.ts';
import { matmulDispatches } from '../../src/runtime/linear.ts';
import { destroyWeight, planChunks, uploadWeight, type WeightFormat } from '../../src/weights/gpu-weight.ts';
import { f16BitsToF32, roundF16 } from '../../src/util/half.ts';
import { assertClose, randInt, randn, rng, testGpu } from '../helpers.ts';
import { checkModelSized, runPlainCase } from './matmul-cases.ts';

test('planChunks splits big tensors evenly and never past the limit', () => {
  // OpenELM-3B's embedding in f16: 32000 x 3072 halves = 187.5 MiB against a 128 MiB binding.
  assert.deepEqual(planChunks(32000, 3072 * 2, 128 << 20), [[0, 16000], [16000, 16000]]);
  assert.deepEqual(planChunks(10, 12, 1 << 20), [[0, 10]]);
  assert.deepEqual(planChunks(10, 12, 40), [[0, 2], [2, 2], [4, 2], [6, 2], [8, 2]]);
  assert.deepEqual(planChunks(7, 16, 50), [[0, 3], [3, 3], [6, 1]]);
  assert.throws(() => planChunks(3, 100, 64), /one row takes 100 bytes/);
});

test('uploadWeight splits rows into chunks under the byte limit', async () => {
  const gpu = await testGpu();
  const r = rng(7);
  for (const [rows, cols, format, max] of [
    [10, 3, 'f32', 40],
    [10, 3, 'f16', 40],
    [7, 5, 'f16', 24],
    [300, 33, 'f32', 1000],
    [5, 1, 'f16', 16],
  ] as [number, number, WeightFormat, number][]) {
    const data = randn(r, rows * cols);
    const w = uploadWeight(gpu, 'w', data, rows, cols, format, max);
    const rowWords = format === 'f16' ? Math.ceil(cols / 2) : cols;
    assert.equal(w.rowWords, rowWords);
    let next = 0;
    for (const c of w.chunks) {
      assert.equal(c.rowStart, next);
      assert.ok(c.rows >= 1);
      assert.ok(c.rows * rowWords * 4 <= max, `chunk of ${c.rows} rows passes ${max} bytes`);
      assert.ok(c.buffer.size <= Math.max(16, max));
      next += c.rows;
      // Check the stored words.
      const got = await gpu.readU32(c.buffer, c.rows * rowWords);
      const f = new Float32Array(got.buffer);
      for (let rr = 0; rr < c.rows; rr++)
        for (let k = 0; k < cols; k++) {
          const v = data[(c.rowStart + rr) * cols + k];
          if (format === 'f32') assert.equal(f[rr * rowWords + k], v);
          else {
            const word = got[rr * rowWords + (k >> 1)];
            const half = k & 1 ? word >>> 16 : word & 0xffff;
            assert.equal(f16BitsToF32(half), roundF16(v), `row ${c.rowStart + rr} col ${k}`);
          }
        }
    }
    assert.equal(next, rows);
    const before = gpu.allocatedBytes;
    destroyWeight(gpu, w);
    assert.ok(gpu.allocatedBytes < before && w.chunks.length === 0);
  }
  assert.throws(() => uploadWeight(gpu, 'w', new Float32Array(40), 2, 20, 'f32', 64), /one row takes 80 bytes/);
});

test('matmul matches the CPU reference on awkward shapes (f32, f16, accumulate)', async () => {
  const gpu = await testGpu();
  const r = rng(11);
  const Ks = [1, 3, 7, 8, 33, 130, 257];
  const Ns = [1, 5, 63, 65, 300];
  const Ts = [1, 2, 5, 9, 17];
  let cases = 0;
  for (const K of Ks)
    for (const N of Ns) {
      const T = Ts[randInt(r, 0, Ts.length - 1)];
      const format: WeightFormat = cases % 2 === 0 ? 'f16' : 'f32';
      await runPlainCase(gpu, r, T, N, K, format, cases % 3 === 0);
      cases++;
    }
  // Every T with both formats and both modes on a couple of shapes.
  for (const T of Ts)
    for (const format of ['f32', 'f16'] as WeightFormat[])
      for (const acc of [false, true]) await runPlainCase(gpu, r, T, randInt(r, 1, 70), [16, 33][randInt(r, 0, 1)], format, acc);
});

test('matmul with weights split into unaligned chunks', async () => {
  const gpu = await testGpu();
  const r = rng(12);
  for (const [T, N, K, format, max] of [
    [1, 300, 33, 'f16', 17 * 4 * 7], // 7 rows a chunk
    [5, 300, 130, 'f32', 130 * 4 * 13 + 9], // 13 rows a chunk
    [17, 65, 257, 'f16', 129 * 4 * 3], // 3 rows a chunk
    [9, 63, 8, 'f32', 32], // 1 row a chunk
    [2, 300, 64, 'f16', 128 * 41], // 41 rows a chunk
  ] as [number, number, number, WeightFormat, number][]) {
    for (const acc of [false, true]) {
      const { chunks } = await runPlainCase(gpu, r, T, N, K, format, acc, max);
      assert.ok(chunks > 1, `expected a split for ${N}x${K}`);
    }
  }
});

test('matmul with explicit workgroup sizes and rows past several workgroups', async () => {
  const gpu = await testGpu();
  const r = rng(13);
  for (const wg of [1, 4, 16, 64, 128]) {
    await runPlainCase(gpu, r, 1, 1029, 24, 'f16', wg % 2 === 0, undefined, wg);
    await runPlainCase(gpu, r, 6, 300, 13, 'f32', wg % 2 === 1, undefined, wg);
  }
  // One-thread workgroups, 4 rows each, 4 tokens each: more workgroups than one grid dimension allows.
  const T = Math.ceil(gpu.limits.maxComputeWorkgroupsPerDimension / 75) * 4 + 5;
  const { folded } = await runPlainCase(gpu, r, T, 300, 2, 'f16', true, undefined, 1);
  assert.ok(folded, 'expected the grid to fold into y');
});

test('matmul on minimal, exactly-sized buffers raises no GPU error', async () => {
  const gpu = await testGpu();
  gpu.device.pushErrorScope('validation');
  for (const [T, N, K, format] of [
    [1, 1, 1, 'f16'],
    [1, 1, 1, 'f32'],
    [3, 2, 1, 'f16'],
    [5, 3, 9, 'f32'],
    [9, 1, 16, 'f16'],
  ] as [number, number, number, WeightFormat][]) {
    const x = new Float32Array(T * K).fill(1);
    const w = new Float32Array(N * K).fill(0.5);
    const weight = uploadWeight(gpu, 'w', w, N, K, format);
    // Plain device buffers of exactly the needed size (createBuffer pads to 16 bytes at most).
    const xb = gpu.upload('x', x);
    const yb = gpu.createBuffer('y', T * N * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    const ds: Dispatch[] = matmulDispatches(gpu, weight, { tokens: T, x: xb, y: yb });
    runDispatches(gpu, ds);
    const got = await gpu.readF32(yb, T * N); // throws on any uncaptured GPU error
    assertClose(got, new Float32Array(T * N).fill(0.5 * K), 0, 0, `T=${T} N=${N} K=${K} ${format}`);
    releaseDispatches(gpu, ds);
    destroyWeight(gpu, weight);
    gpu.destroyBuffer(xb);
    gpu.destroyBuffer(yb);
  }
  const err = await gpu.device.popErrorScope();
  assert.equal(err, null, err?.message);
  // A too-small y is refused on the CPU side rather than left to the GPU.
  const weight = uploadWeight(gpu, 'w', new Float32Array(64), 8, 8, 'f32');
  const xb = gpu.upload('x', new Float32Array(8));
  const yb = gpu.createBuffer('y', 16, GPUBufferUsage.STORAGE);
  assert.throws(() => matmulDispatches(gpu, weight, { tokens: 1, x: xb, y: yb }), /y holds 16 bytes/);
  destroyWeight(gpu, weight);
  gpu.destroyBuffer(xb);
  gpu.destroyBuffer(yb);
  gpu.checkErrors();
});


test('matmul at model sizes: decode T=1 K=1280 N=5120 and prefill T=100 K=1280 N=1536 (f32, f16)', async () => {
  const gpu = await testGpu();
  for (const format of ['f32', 'f16'] as WeightFormat[]) {
    await checkModelSized(gpu, 1, 5120, 1280, format);
    await checkModelSized(gpu, 100, 1536, 1280, format);
  }
});
