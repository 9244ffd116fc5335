// MLX-quantized checkpoints (written by writeMlxCheckpoint in MLX's layout) loaded by loadModel as
// they are stored (mlx4/mlx8), against the float64 CPU forward (src/doctor/cpu-forward.ts) over
// the dequantized weights: 4 and 8 bits, groups of 32, 64 and 128, f16/bf16/f32 scales, tied and
// untied embeddings, every position of a chunked prefill and decode steps, within 2e-4.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openCheckpoint } from '../../src/io/node-source.ts';
import { readTensorF32 } from '../../src/io/safetensors.ts';
import { synthesizeCheckpoint } from '../../src/io/synth.ts';
import { loadModel, loadPlan } from '../../src/index.ts';
import { cpuForward, type Tensors } from '../../src/doctor/cpu-forward.ts';
import { readMlxMatrix } from '../../src/runtime/mlx-weights.ts';
import { dequantizeAffine, type AffineBits, type ScaleDtype } from '../../src/weights/affine.ts';
import { writeMlxCheckpoint } from '../../src/weights/mlx-checkpoint.ts';
import type { ModelPlan } from '../../src/config/plan.ts';
import { assertClose, rng, testGpu } from '../helpers.ts';

const base = { model_type: 'openelm', rope_freq_constant: 10000, rope_max_length: 256, bos_token_id: 1, eos_token_id: 2, normalize_qk_projections: true, ffn_with_glu: true };
// Every matrix's K (model_dim, query heads * head_dim, ffn_dim) a multiple of the group sizes used.
const TIED = { ...base, num_transformer_layers: 2, model_dim: 128, head_dim: 32, num_gqa_groups: 2, qkv_multipliers: [0.5, 1.0], ffn_multipliers: [0.5, 2.0], ffn_dim_divisor: 64, vocab_size: 301, max_context_length: 40, share_input_output_layers: true };
const UNTIED = { ...base, num_transformer_layers: 2, model_dim: 256, head_dim: 64, num_gqa_groups: 2, qkv_multipliers: 1.0, ffn_multipliers: [0.5, 1.0], ffn_dim_divisor: 128, vocab_size: 173, max_context_length: 40, share_input_output_layers: false };

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** The reference's weights: matrices dequantized (s q + b in float64), norms as stored. */
async function dequantizedTensors(plan: ModelPlan, dir: string): Promise<Tensors> {
  const files = await openCheckpoint(dir);
  const t: Tensors = new Map();
  for (const spec of plan.tensors) {
    if (spec.shape.length === 2) t.set(spec.name, dequantizeAffine(await readMlxMatrix(plan, files, spec.name)));
    else t.set(spec.name, Float64Array.from(await readTensorF32(files.get(spec.name)!)));
  }
  return t;
}

let seed = 70;
for (const [name, config, bits, groupSize, scaleDtype] of [
  ['tied', TIED, 4, 32, 'F16'],
  ['tied', TIED, 8, 64, 'BF16'],
  ['untied', UNTIED, 4, 128, 'BF16'],
  ['untied', UNTIED, 8, 32, 'F32'],
] as [string, object, AffineBits, number, ScaleDtype][]) {
  test(`MLX ${bits}-bit, groups of ${groupSize}, ${scaleDtype} scales, ${name} embeddings: logits match the float64 forward over the dequantized weights`, async () => {
    const src = mkdtempSync(join(tmpdir(), 'openelm-mlx-src-'));
    const dir = mkdtempSync(join(tmpdir(), 'openelm-mlx-'));
    dirs.push(src, dir);
    await synthesizeCheckpoint(src, config, { dtype: 'F32', seed: seed++ });
    await writeMlxCheckpoint(dir, src, { bits, groupSize, scaleDtype });
    const plan = await loadPlan(dir);
    assert.deepEqual(plan.quantization, { bits, groupSize });
    const t = await dequantizedTensors(plan, dir);
    const r = rng(seed);
    const prompt = [plan.bosTokenId, ...Array.from({ length: 9 }, () => 3 + Math.floor(r() * (plan.vocabSize - 3)))];
    const model = await loadModel(dir, { gpu: await testGpu(), prefillChunk: 4 });
    try {
      assert.equal(model.dtype, bits === 4 ? 'mlx4' : 'mlx8');
      assert.equal(model.engine.weights.embedding.format, model.dtype);
      const ref = cpuForward(plan, t, prompt);
      const rows = await model.logits(prompt, { allPositions: true });
      rows.forEach((row, i) => assertClose(row, ref.logits[i], 2e-4, 0, `position ${i}`));
      // Two decode steps after the prompt.
      const seq = [...prompt];
      for (let s = 0; s < 2; s++) {
        const next = 3 + ((seq.length * 7) % (plan.vocabSize - 3));
        seq.push(next);
        assertClose(await model.engine.stepLogits(next), cpuForward(plan, t, seq).logits[seq.length - 1], 2e-4, 0, `decode step ${s + 1}`);
      }
    } finally {
      model.dispose();
    }
  });
}

test('an MLX checkpoint refuses a conflicting dtype, and a float one refuses mlx4, in one line', async () => {
  const src = mkdtempSync(join(tmpdir(), 'openelm-mlx-src-'));
  const dir = mkdtempSync(join(tmpdir(), 'openelm-mlx-'));
  dirs.push(src, dir);
  await synthesizeCheckpoint(src, TIED, { dtype: 'F16', seed: 3 });
  await writeMlxCheckpoint(dir, src, { bits: 4, groupSize: 64 });
  const gpu = await testGpu();
  await assert.rejects(loadModel(dir, { gpu, dtype: 'q4' }), /MLX-quantized \(4-bit, groups of 64\) and loads only as mlx4 \(dtype auto\), got dtype q4/);
  await assert.rejects(loadModel(src, { gpu, dtype: 'mlx4' }), /dtype mlx4 needs an MLX-quantized checkpoint/);
  const m = await loadModel(dir, { gpu, dtype: 'mlx4' });
  assert.equal(m.dtype, 'mlx4');
  m.dispose();
});
