import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silu, siluGateDispatch, siluGateRef } from '../../kernels/silu_gate.ts';
import { releaseDispatches, runDispatches } from '../../src/gpu/dispatch.ts';
import { assertClose, randn, rng, testGpu } from '../helpers.ts';

test('silu_gate matches the CPU reference (GLU and plain, odd dims)', async () => {
  const gpu = await testGpu();
  const r = rng(21);
  for (const glu of [true, false]) {
    for (const [tokens, dim] of [[1, 1], [1, 7], [3, 63], [5, 65], [2, 768], [4, 1001]]) {
      const width = glu ? 2 * dim : dim;
      const y = randn(r, tokens * width, 4);
      const yb = gpu.upload('y', y);
      const ob = gpu.upload('out', new Float32Array(tokens * dim).fill(NaN));
      const d = siluGateDispatch(gpu, { tokens, dim, glu, y: yb, out: ob });
      runDispatches(gpu, [d]);
      assertClose(await gpu.readF32(ob, tokens * dim), siluGateRef(y, tokens, dim, glu), 1e-6, 1e-5, `silu glu=${glu} ${tokens}x${dim}`);
      releaseDispatches(gpu, [d]);
      gpu.destroyBuffer(yb);
      gpu.destroyBuffer(ob);
    }
  }
});

test('silu_gate: extreme inputs give no NaN or Inf', async () => {
  const gpu = await testGpu();
  const gate = [-1e30, -3e38, -1000, -100, -88.8, -20, -1e-30, 0, -0, 1e-30, 20, 88.8, 100, 1000, 1e30, 3e38];
  const dim = gate.length;
  const y = new Float32Array(2 * dim);
  y.set(gate);
  y.fill(1, dim);
  const yb = gpu.upload('y', y);
  const ob = gpu.upload('out', new Float32Array(dim));
  const d = siluGateDispatch(gpu, { tokens: 1, dim, glu: true, y: yb, out: ob });
  runDispatches(gpu, [d]);
  const got = await gpu.readF32(ob, dim);
  for (let i = 0; i < dim; i++) assert.ok(Number.isFinite(got[i]), `silu(${gate[i]}) = ${got[i]}`);
  assertClose(got, Float32Array.from(gate, silu), 1e-6, 1e-5, 'silu extremes');
  releaseDispatches(gpu, [d]);
  gpu.destroyBuffer(yb);
  gpu.destroyBuffer(ob);
});
