// The kernel lab: a variant WGSL file stands in for a matmul kernel (matmul: f32/f16, matmul_q:
// q8/q4, matmul_gemv: the coalesced one-token kernel); the harness gate accepts a correct one and
// rejects a wrong one before anything is timed. Variants' `#include` lines resolve like the
// built-ins', and a variant may paste a snippet and change it instead.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import source from '../../shaders/matmul.wgsl';
import quantSource from '../../shaders/matmul_q.wgsl';
import gemvSource from '../../shaders/matmul_gemv.wgsl';
import { checkMatmulFully } from '../../src/doctor/matmul-check.ts';
import { kernelOrigin, setKernelVariant, type KernelName } from '../../src/gpu/kernel-variants.ts';
import { SHADER_INCLUDES } from '../../src/gpu/shader.ts';
import { testGpu } from '../helpers.ts';

/** The kernel with its `#include matmul_out` pasted in and changed by `edit`. */
function withOutput(src: string, edit: (snippet: string) => string): string {
  const snippet = SHADER_INCLUDES.matmul_out;
  const changed = edit(snippet);
  assert.notEqual(changed, snippet, 'the edit changes the snippet');
  assert.ok(src.includes('#include matmul_out'));
  return src.replace('#include matmul_out', changed);
}

// Scaling every stored output by 1.01 is the kind of bug the gate must catch.
const scaleOutputs = (s: string) => s.replaceAll('y[i] = v;', 'y[i] = v * 1.01;').replaceAll('y[i] = y[i] + v;', 'y[i] = y[i] + v * 1.01;');
// A variant that ignores the fused RMSNorm (plain products are right) must fail too.
const dropNorm = (s: string) => s.replace('return inverseSqrt(ss / f32(params.K) + params.eps);', 'return 1.0;');

for (const [kernel, src, formats] of [
  ['matmul', source, ['f32', 'f16']],
  ['matmul_q', quantSource, ['q8', 'q4']],
] as const) {
  test(`a correct ${kernel} variant passes the lab check, a wrong one fails it`, async () => {
    const gpu = await testGpu();
    const name: KernelName = kernel;
    // The same kernel (its includes resolved from the built-in snippets) is still correct.
    setKernelVariant(name, `// variant: a copy of the built-in kernel\n${src}`, 'copy.wgsl');
    try {
      assert.equal(kernelOrigin(name), 'copy.wgsl');
      for (const f of formats) assert.ok((await checkMatmulFully(gpu, f)) < 1, f);
      // The snippet pasted in unchanged but for a harmless comment: still correct.
      setKernelVariant(name, withOutput(src, (s) => `// pasted\n${s}`), 'pasted.wgsl');
      assert.ok((await checkMatmulFully(gpu, formats[0])) < 1);
      setKernelVariant(name, withOutput(src, scaleOutputs), 'wrong.wgsl');
      for (const f of formats) assert.ok((await checkMatmulFully(gpu, f)) >= 1, f);
      setKernelVariant(name, withOutput(src, dropNorm), 'no-norm.wgsl');
      assert.ok((await checkMatmulFully(gpu, formats[1])) >= 1);
    } finally {
      setKernelVariant(name, null);
    }
    assert.equal(kernelOrigin(name), 'built-in');
    for (const f of formats) assert.ok((await checkMatmulFully(gpu, f)) < 1, f);
  });
}

test('a variant of one matmul kernel leaves the others alone', async () => {
  const gpu = await testGpu();
  setKernelVariant('matmul', withOutput(source, scaleOutputs), 'wrong.wgsl');
  try {
    // q8/q4 run matmul_q, which has no variant.
    assert.ok((await checkMatmulFully(gpu, 'q8')) < 1);
  } finally {
    setKernelVariant('matmul', null);
  }
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
