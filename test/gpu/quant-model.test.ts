// Quantized weights in the whole model: q8/q4 engines against the float64 CPU forward pass over the
// same dequantized weights (exactness of the kernels), and against the f32 reference (quality).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/config.ts';
import { derivePlan } from '../../src/config/plan.ts';
import { openCheckpoint } from '../../src/io/node-source.ts';
import { readTensorF32 } from '../../src/io/safetensors.ts';
import { loadModel } from '../../src/index.ts';
import { dequantize } from '../../src/weights/quant.ts';
import { foldColumnScale } from '../../src/runtime/linear.ts';
import { agreement } from '../../bench/quality.ts';
import { cpuForward, type Tensors } from '../../src/doctor/cpu-forward.ts';
import { assertClose, loadFixture, testGpu } from '../helpers.ts';

const fx = loadFixture('tiny-elm');
const plan = derivePlan(parseConfig(JSON.parse(readFileSync(join(fx.dir, 'config.json'), 'utf8')), 'config.json'));

for (const dtype of ['q8', 'q4'] as const) {
  test(`${dtype}: the engine equals the CPU forward pass over the dequantized weights`, async () => {
    // The weights as the engine stores them: each layer's norm weights folded into the columns of
    // the product after it (qkv_proj, proj_1), then quantized; the norms themselves become ones.
    const ckpt = await openCheckpoint(fx.dir);
    const t: Tensors = new Map();
    const normBefore = (name: string) => name.replace(/attn\.qkv_proj\.weight$/, 'attn_norm.weight').replace(/ffn\.proj_1\.weight$/, 'ffn_norm.weight');
    for (const [name, e] of ckpt) {
      let data = await readTensorF32(e);
      if (/\.(attn_norm|ffn_norm)\.weight$/.test(name)) data = new Float32Array(data.length).fill(1);
      else if (normBefore(name) !== name) data = foldColumnScale(data, e.shape[0], e.shape[1], await readTensorF32(ckpt.get(normBefore(name))!));
      t.set(name, Float64Array.from(e.shape.length === 2 ? dequantize(data, e.shape[0], e.shape[1], dtype) : data));
    }
    const model = await loadModel(fx.dir, { dtype, gpu: await testGpu() });
    try {
      const V = plan.vocabSize;
      const refRows: Float32Array[] = [];
      const gotRows: Float32Array[] = [];
      for (const p of fx.manifest.prompts.slice(0, 3)) {
        const rows = await model.logits(p.input_ids, { allPositions: true });
        const cpu = cpuForward(plan, t, p.input_ids);
        rows.forEach((row, i) => assertClose(row, cpu.logits[i], 2e-4, 0, `${p.name} position ${i}`));
        const ref = fx.array(p.logits);
        p.logits_positions.forEach((pos, i) => {
          gotRows.push(rows[pos]);
          refRows.push(ref.subarray(i * V, (i + 1) * V));
        });
      }
      const a = agreement(refRows, gotRows, 'reference');
      console.log(`${dtype} vs the f32 reference on tiny-elm: top-1 agreement ${(a.top1 * 100).toFixed(1)}%, mean KL ${a.mean_kl.toExponential(3)}`);
      // Loose sanity bounds: the formats are lossy, but not broken.
      assert.ok(a.mean_kl < (dtype === 'q8' ? 1e-3 : 0.2), `mean KL ${a.mean_kl}`);
    } finally {
      model.dispose();
    }
  });
}
