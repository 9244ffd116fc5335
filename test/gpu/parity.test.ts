// The engine against the independent PyTorch reference (test/fixtures/tiny-elm): logits at
// every stored position, teacher-forced decode steps, and free-running greedy tokens.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadModel, type OpenElmModel } from '../../src/index.ts';
import { assertClose, loadFixture, maxAbsDiff, testGpu } from '../helpers.ts';

const fx = loadFixture('tiny-elm');
const ATOL = 2e-4; // f32 math, f32 KV cache, RoPE tables built on the CPU (fixture README)

async function firstBadLayer(model: OpenElmModel, ids: number[], expected: Float32Array): Promise<string> {
  model.engine.reset();
  await model.engine.prefill(ids, 'none', { residuals: true });
  const got = await model.engine.residuals();
  const D = model.plan.modelDim;
  for (let r = 0; r <= model.plan.numLayers; r++) {
    const d = maxAbsDiff(got.subarray(r * D, (r + 1) * D), expected.subarray(r * D, (r + 1) * D));
    if (d > 1e-4) return r === 0 ? `the token embedding is already off by ${d}` : `decoder layer ${r - 1} is the first off (by ${d})`;
  }
  return 'every layer residual matches; the final norm or the output layer is off';
}

// Both decode matmul kernels: a thread a row, and coalesced (with subgroups where the device has
// them); both prefill matmuls: register-tiled, and tiled through workgroup memory (forced on); and
// split-K decode attention forced on (p3's decode rows span several splits).
for (const [dtype, gemv, prefillMatmul, attention] of [
  ['f32', 'rows', 'register', 'auto'],
  ['f16', 'rows', 'register', 'auto'],
  ['f32', 'coalesced', 'register', 'auto'],
  ['f16', 'coalesced', 'register', 'auto'],
  ['f32', 'rows', 'tiled', 'auto'],
  ['f16', 'rows', 'tiled', 'auto'],
  ['f32', 'rows', 'register', 'split'],
] as const) {
  describe(`tiny-elm parity, ${dtype} weights, ${gemv} GEMV, ${prefillMatmul} prefill matmul${attention === 'split' ? ', split-K attention' : ''}`, () => {
    let model: OpenElmModel;
    before(async () => {
      model = await loadModel(fx.dir, { dtype, gemv, prefillMatmul, attention, gpu: await testGpu() });
      assert.equal(model.engine.prefillMatmul, prefillMatmul);
    });
    after(() => model.dispose());

    for (const p of fx.manifest.prompts) {
      test(`${p.name} (${p.input_ids.length} tokens): logits at every stored position`, async () => {
        const rows = await model.logits(p.input_ids, { allPositions: true });
        const ref = fx.array(p.logits);
        const V = model.plan.vocabSize;
        const got = new Float32Array(p.logits_positions.length * V);
        p.logits_positions.forEach((pos, i) => got.set(rows[pos], i * V));
        const diff = maxAbsDiff(got, ref);
        if (diff > ATOL) assert.fail(`max |diff| ${diff} > ${ATOL}: ${await firstBadLayer(model, p.input_ids, fx.array(p.residual_last))}`);
      });

      test(`${p.name}: teacher-forced decode steps`, async () => {
        const V = model.plan.vocabSize;
        const steps = fx.array(p.greedy.step_logits);
        const [last] = await model.logits(p.input_ids);
        assertClose(last, steps.subarray(0, V), ATOL, 0, 'step 0 (prefill)');
        for (let t = 1; t < p.greedy.tokens.length; t++) {
          const got = await model.engine.stepLogits(p.greedy.tokens[t - 1]);
          assertClose(got, steps.subarray(t * V, (t + 1) * V), ATOL, 0, `decode step ${t}`);
        }
      });

      test(`${p.name}: 16 greedy tokens`, async () => {
        const out: number[] = [];
        for await (const t of model.generate(p.input_ids, { maxNewTokens: 16, stopAtEos: false })) out.push(t.id);
        assert.deepEqual(out, p.greedy.tokens);
      });
    }
  });
}
