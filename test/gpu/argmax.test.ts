import { test } from 'node:test';
import assert from 'node:assert/strict';
import { argmaxDispatch, argmaxRef } from '../../kernels/argmax.ts';
import { releaseDispatches, runDispatches } from '../../src/gpu/dispatch.ts';
import type { Gpu } from '../../src/gpu/gpu.ts';
import { randn, rng, testGpu } from '../helpers.ts';

async function gpuArgmax(gpu: Gpu, logits: Float32Array, n: number, offset: number): Promise<number> {
  const lb = gpu.upload('logits', logits);
  const ob = gpu.upload('out', new Uint32Array([0xdeadbeef]));
  const d = argmaxDispatch(gpu, { n, offset, logits: lb, out: ob });
  runDispatches(gpu, [d]);
  const [got] = await gpu.readU32(ob, 1);
  releaseDispatches(gpu, [d]);
  gpu.destroyBuffer(lb);
  gpu.destroyBuffer(ob);
  return got;
}

test('argmax matches the CPU reference on random logits with offsets', async () => {
  const gpu = await testGpu();
  const r = rng(31);
  for (const [n, offset] of [[1, 0], [2, 3], [255, 0], [256, 1], [257, 5], [1000, 32000], [32000, 0], [50257, 7], [65537, 0]]) {
    const logits = randn(r, offset + n + 3, 5);
    // Values outside [offset, offset + n) must be ignored.
    logits[offset + n] = 1e9;
    if (offset > 0) logits[offset - 1] = 1e9;
    const want = argmaxRef(logits, n, offset);
    assert.equal(await gpuArgmax(gpu, logits, n, offset), want, `n=${n} offset=${offset}`);
  }
});

test('argmax: ties go to the lowest index, NaN never wins, -Inf and all-equal rows work', async () => {
  const gpu = await testGpu();
  const r = rng(37);
  const n = 5000;
  // Ties: the max value at several indices, in different threads and in the same thread.
  const ties = randn(r, n);
  for (const i of [4999, 3001, 2048, 1234, 1490]) ties[i] = 100;
  assert.equal(await gpuArgmax(gpu, ties, n, 0), 1234);
  // NaN at low indices and everywhere else around the max.
  const nans = randn(r, n);
  for (let i = 0; i < n; i += 3) nans[i] = NaN;
  nans[0] = NaN;
  nans[777] = 50;
  nans[778] = NaN;
  assert.equal(await gpuArgmax(gpu, nans, n, 0), argmaxRef(nans, n));
  assert.equal(argmaxRef(nans, n), 777);
  // All equal (including -Infinity): index 0.
  assert.equal(await gpuArgmax(gpu, new Float32Array(n).fill(-3), n, 0), 0);
  assert.equal(await gpuArgmax(gpu, new Float32Array(n).fill(-Infinity), n, 0), 0);
  const negInf = new Float32Array(n).fill(-Infinity);
  negInf[4321] = -1e38;
  assert.equal(await gpuArgmax(gpu, negInf, n, 0), 4321);
  // Only NaN but one -Infinity: that one wins; only NaN: 0.
  const allNan = new Float32Array(300).fill(NaN);
  assert.equal(await gpuArgmax(gpu, allNan, 300, 0), 0);
  allNan[299] = -Infinity;
  assert.equal(await gpuArgmax(gpu, allNan, 300, 0), 299);
  // +Infinity wins over large finite values; the first of two wins.
  const inf = randn(r, 1000);
  inf[600] = Infinity;
  inf[900] = Infinity;
  assert.equal(await gpuArgmax(gpu, inf, 1000, 0), 600);
});
