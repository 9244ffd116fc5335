// The kernel lab: a variant WGSL file stands in for the matmul; the harness gate accepts a correct
// one and rejects a wrong one before anything is timed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import source from '../../shaders/matmul.wgsl';
import gemvSource from '../../shaders/matmul_gemv.wgsl';
import { checkMatmulFully } from '../../src/doctor/matmul-check.ts';
import { kernelOrigin, setKernelVariant } from '../../src/gpu/kernel-variants.ts';
import { testGpu } from '../helpers.ts';

test('a correct matmul variant passes the lab check, a wrong one fails it', async () => {
  const gpu = await testGpu();
  // The same kernel with its sums in another order is still correct.
  setKernelVariant('matmul', `// variant: a copy of the built-in kernel\n${source}`, 'copy.wgsl');
  try {
    assert.equal(kernelOrigin('matmul'), 'copy.wgsl');
    for (const f of ['f32', 'f16', 'q8', 'q4'] as const) assert.ok((await checkMatmulFully(gpu, f)) < 1, f);
    // Scaling every stored output by 1.01 is the kind of bug the gate must catch.
    const wrong = source.replaceAll('y[i] = v;', 'y[i] = v * 1.01;').replaceAll('y[i] = y[i] + v;', 'y[i] = y[i] + v * 1.01;');
    assert.notEqual(wrong, source, 'the broken variant differs from the built-in');
    setKernelVariant('matmul', wrong, 'wrong.wgsl');
    assert.ok((await checkMatmulFully(gpu, 'f32')) >= 1);
    // A variant that ignores the fused RMSNorm (plain products are right) must fail too.
    const noNorm = source.replace('return inverseSqrt(ss / f32(params.K) + params.eps);', 'return 1.0;');
    assert.notEqual(noNorm, source);
    setKernelVariant('matmul', noNorm, 'no-norm.wgsl');
    assert.ok((await checkMatmulFully(gpu, 'q8')) >= 1);
  } finally {
    setKernelVariant('matmul', null);
  }
  assert.equal(kernelOrigin('matmul'), 'built-in');
  assert.ok((await checkMatmulFully(gpu, 'f16')) < 1);
});

test('a matmul_gemv variant (the coalesced one-token kernel) is checked the same way', async () => {
  const gpu = await testGpu();
  setKernelVariant('matmul_gemv', `// variant: a copy\n${gemvSource}`, 'gemv-copy.wgsl');
  try {
    for (const f of ['f32', 'f16', 'q8', 'q4'] as const) assert.ok((await checkMatmulFully(gpu, f, 'coalesced')) < 1, f);
    // Dropping the last row of each block of 4 is caught.
    const wrong = gemvSource.replace('if (4u * blk + 3u < N) { store(4u * blk + 3u, o.w); }', '');
    assert.notEqual(wrong, gemvSource);
    setKernelVariant('matmul_gemv', wrong, 'gemv-wrong.wgsl');
    assert.ok((await checkMatmulFully(gpu, 'f16', 'coalesced')) >= 1);
    // The thread-a-row matmul does not use it.
    assert.ok((await checkMatmulFully(gpu, 'f16', 'rows')) < 1);
  } finally {
    setKernelVariant('matmul_gemv', null);
  }
});
