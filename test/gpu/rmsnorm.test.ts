import { test } from 'node:test';
import { rmsNormDispatch, rmsNormRef } from '../../kernels/rmsnorm.ts';
import { releaseDispatches, runDispatches } from '../../src/gpu/dispatch.ts';
import { assertClose, randInt, randn, rng, testGpu } from '../helpers.ts';

test('rmsnorm matches the CPU reference (odd and vec4 dims)', async () => {
  const gpu = await testGpu();
  const r = rng(7);
  const shapes: [number, number, number?][] = [[1, 1], [1, 2], [3, 5], [2, 63], [5, 64], [1, 1280], [4, 3071], [randInt(r, 2, 9), randInt(r, 100, 3000)]];
  for (const [rows, dim, workgroupSize] of [...shapes, [3, 1001, 64], [2, 1280, 64], [2, 130, 1], [2, 131, 256]]) {
    const x = randn(r, rows * dim, 3);
    const w = randn(r, dim);
    const xb = gpu.upload('x', x);
    const wb = gpu.upload('w', w);
    const yb = gpu.upload('y', new Float32Array(rows * dim).fill(NaN));
    const d = rmsNormDispatch(gpu, { rows, dim, eps: 1e-6, x: xb, weight: wb, y: yb, workgroupSize });
    runDispatches(gpu, [d]);
    assertClose(await gpu.readF32(yb, rows * dim), rmsNormRef(x, w, rows, dim, 1e-6), 1e-5, 1e-5, `rmsnorm ${rows}x${dim} wg=${workgroupSize ?? 'default'}`);
    releaseDispatches(gpu, [d]);
    for (const b of [xb, wb, yb]) gpu.destroyBuffer(b);
  }
});

test('rmsnorm: eps matters for a zero row, tiny and huge rows stay finite', async () => {
  const gpu = await testGpu();
  const dim = 7;
  const rows = 3;
  const x = new Float32Array(rows * dim);
  for (let i = 0; i < dim; i++) {
    x[i] = 0;
    x[dim + i] = 1e-4 * (i + 1);
    x[2 * dim + i] = 1e15 * (i - 3);
  }
  const w = Float32Array.from({ length: dim }, (_, i) => 0.5 + i);
  const xb = gpu.upload('x', x);
  const wb = gpu.upload('w', w);
  const yb = gpu.upload('y', new Float32Array(rows * dim));
  const d = rmsNormDispatch(gpu, { rows, dim, eps: 1e-6, x: xb, weight: wb, y: yb });
  runDispatches(gpu, [d]);
  const got = await gpu.readF32(yb, rows * dim);
  assertClose(got, rmsNormRef(x, w, rows, dim, 1e-6), 1e-5, 1e-5, 'rmsnorm edge rows');
  releaseDispatches(gpu, [d]);
  for (const b of [xb, wb, yb]) gpu.destroyBuffer(b);
});
