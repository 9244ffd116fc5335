import { test } from 'node:test';
import { addDispatch, addRef } from '../../kernels/add.ts';
import { releaseDispatches, runDispatches } from '../../src/gpu/dispatch.ts';
import { assertClose, randInt, randn, rng, testGpu } from '../helpers.ts';

test('add matches the CPU reference on random sizes', async () => {
  const gpu = await testGpu();
  const r = rng(1);
  for (const n of [1, 63, 64, 65, randInt(r, 100, 5000)]) {
    const x = randn(r, n);
    const y = randn(r, n);
    const xb = gpu.upload('x', x);
    const yb = gpu.upload('y', y);
    const d = addDispatch(gpu, n, xb, yb);
    runDispatches(gpu, [d]);
    assertClose(await gpu.readF32(yb, n), addRef(x, y), 0, 0, `add n=${n}`);
    releaseDispatches(gpu, [d]);
    gpu.destroyBuffer(xb);
    gpu.destroyBuffer(yb);
  }
});
