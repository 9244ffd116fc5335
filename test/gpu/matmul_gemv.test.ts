// The coalesced one-token kernel (kernels/matmul_gemv.ts, shaders/matmul_gemv.wgsl), with and
// without subgroups, in every weight format and fused form, against matmulRef; and what it refuses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matmulGemvDispatches } from '../../kernels/matmul_gemv.ts';
import { destroyWeight, uploadWeight, weightRowBytes } from '../../src/weights/gpu-weight.ts';
import { randInt, rng, testGpu } from '../helpers.ts';
import { FORMATS, FUSIONS, runCase } from './matmul-cases.ts';


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

test('the coalesced GEMV refuses more than one token and K that is not a whole number of units', async () => {
  const gpu = await testGpu();
  const x = gpu.createBuffer('x', 4 * 64 * 4, GPUBufferUsage.STORAGE);
  const y = gpu.createBuffer('y', 4 * 8 * 4, GPUBufferUsage.STORAGE);
  const w = uploadWeight(gpu, 'w', new Float32Array(8 * 64), 8, 64, 'f16');
  assert.throws(() => matmulGemvDispatches(gpu, w, { tokens: 2, x, y }), /one token, got tokens = 2/);
  const odd = uploadWeight(gpu, 'w', new Float32Array(8 * 60), 8, 60, 'q8');
  assert.throws(() => matmulGemvDispatches(gpu, odd, { tokens: 1, x, y }), /K a multiple of 32 for q8 weights, got 60/);
  destroyWeight(gpu, w);
  destroyWeight(gpu, odd);
  gpu.destroyBuffer(x);
  gpu.destroyBuffer(y);
});
