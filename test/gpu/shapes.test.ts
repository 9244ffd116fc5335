// The engine on OpenELM shapes the fixture does not cover, against the independent CPU forward
// pass in cpu-forward.ts (itself checked against the PyTorch fixture first).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseConfig } from '../../src/config/config.ts';
import { derivePlan, type ModelPlan } from '../../src/config/plan.ts';
import { openCheckpoint } from '../../src/io/node-source.ts';
import { readTensorF32 } from '../../src/io/safetensors.ts';
import { synthesizeCheckpoint } from '../../src/io/synth.ts';
import { loadModel } from '../../src/index.ts';
import { cpuForward, type Tensors } from '../../src/doctor/cpu-forward.ts';
import { assertClose, fixtureDir, loadFixture, rng, testGpu } from '../helpers.ts';
import { readFileSync } from 'node:fs';

async function cpuTensors(dir: string): Promise<Tensors> {
  const out: Tensors = new Map();
  for (const [name, e] of await openCheckpoint(dir)) out.set(name, Float64Array.from(await readTensorF32(e)));
  return out;
}

test('the CPU reference forward pass reproduces the PyTorch fixture', async () => {
  const fx = loadFixture('tiny-elm');
  const plan = derivePlan(parseConfig(JSON.parse(readFileSync(join(fixtureDir('tiny-elm'), 'config.json'), 'utf8')), 'config.json'));
  const t = await cpuTensors(fx.dir);
  for (const p of fx.manifest.prompts.slice(0, 3)) {
    const { logits, residualLast } = cpuForward(plan, t, p.input_ids);
    const ref = fx.array(p.logits);
    p.logits_positions.forEach((pos, i) => assertClose(logits[pos], ref.subarray(i * plan.vocabSize, (i + 1) * plan.vocabSize), 2e-5, 0, `${p.name}@${pos}`));
    assertClose(residualLast.flatMap((r) => Array.from(r)), fx.array(p.residual_last), 2e-5, 0, `${p.name} residuals`);
  }
});

const base = {
  model_type: 'openelm',
  rope_freq_constant: 10000,
  rope_max_length: 256,
  bos_token_id: 1,
  eos_token_id: 2,
};
const shapes: Record<string, Record<string, unknown>> = {
  'untied output layer, one query head per KV head, head_dim 6, odd vocab': {
    ...base,
    num_transformer_layers: 3,
    model_dim: 48,
    head_dim: 6,
    num_gqa_groups: 1,
    qkv_multipliers: [0.5, 1.0],
    ffn_multipliers: [0.5, 2.0],
    ffn_dim_divisor: 16,
    vocab_size: 301,
    max_context_length: 40,
    share_input_output_layers: false,
    normalize_qk_projections: true,
    ffn_with_glu: true,
  },
  'no q/k norm, no GLU, 3 query heads per KV head, head_dim 10': {
    ...base,
    num_transformer_layers: 2,
    model_dim: 60,
    head_dim: 10,
    num_gqa_groups: 3,
    qkv_multipliers: [0.5, 1.0],
    ffn_multipliers: [1.0, 3.0],
    ffn_dim_divisor: 8,
    vocab_size: 97,
    max_context_length: 33,
    share_input_output_layers: true,
    normalize_qk_projections: false,
    ffn_with_glu: false,
    rope_freq_constant: 500000,
  },
  'head_dim 128, per-layer ffn multipliers, 4 groups': {
    ...base,
    num_transformer_layers: 2,
    model_dim: 256,
    head_dim: 128,
    num_gqa_groups: 2,
    qkv_multipliers: 1.0,
    ffn_multipliers: [0.75, 1.25],
    ffn_dim_divisor: 64,
    vocab_size: 130,
    max_context_length: 64,
    share_input_output_layers: true,
    normalize_qk_projections: true,
    ffn_with_glu: true,
  },
};

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

let seed = 10;
for (const [name, config] of Object.entries(shapes)) {
  describe(name, () => {
    for (const dtype of ['f32', 'f16'] as const) {
      test(`${dtype}: prefill in chunks, every position, decode steps and greedy tokens match the CPU`, async () => {
        const dir = mkdtempSync(join(tmpdir(), 'openelm-shape-'));
        dirs.push(dir);
        // F16 on disk: both engine formats then hold exactly the weights the CPU uses.
        const plan: ModelPlan = await synthesizeCheckpoint(dir, config, { dtype: 'F16', seed: seed++ });
        const t = await cpuTensors(dir);
        const r = rng(seed);
        const prompt = [plan.bosTokenId, ...Array.from({ length: 10 }, () => 3 + Math.floor(r() * (plan.vocabSize - 3)))];
        const model = await loadModel(dir, { dtype, gpu: await testGpu(), prefillChunk: 4 });
        try {
          const V = plan.vocabSize;
          const ref = cpuForward(plan, t, prompt);
          const rows = await model.logits(prompt, { allPositions: true });
          rows.forEach((row, i) => assertClose(row, ref.logits[i], 2e-4, 0, `position ${i}`));

          // Greedy continuation on the CPU, then the engine teacher-forced along it and free-running.
          const seq = [...prompt];
          const cpuSteps: Float64Array[] = [ref.logits[prompt.length - 1]];
          for (let s = 0; s < 6; s++) {
            const last = cpuSteps[cpuSteps.length - 1];
            seq.push(last.indexOf(Math.max(...last)));
            if (s < 5) cpuSteps.push(cpuForward(plan, t, seq).logits[seq.length - 1]);
          }
          const greedy = seq.slice(prompt.length);
          await model.logits(prompt);
          for (let s = 1; s < cpuSteps.length; s++) {
            assertClose(await model.engine.stepLogits(greedy[s - 1]), cpuSteps[s], 2e-4, 0, `decode step ${s}`);
          }
          const margins = cpuSteps.map((l) => {
            const sorted = Array.from(l).sort((a, b) => b - a);
            return sorted[0] - sorted[1];
          });
          const out: number[] = [];
          for await (const t of model.generate(prompt, { maxNewTokens: 6, stopAtEos: false })) out.push(t.id);
          const sure = margins.findIndex((m) => m < 1e-3);
          const n = sure < 0 ? 6 : sure;
          assert.deepEqual(out.slice(0, n), greedy.slice(0, n), `greedy tokens (margins ${margins.map((m) => m.toFixed(4))})`);
          assert.equal(V, rows[0].length);
        } finally {
          model.dispose();
        }
      });
    }
  });
}
