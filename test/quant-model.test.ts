// Quantized weights in the whole model: q8/q4 engines against the float64 CPU forward pass over the
// same dequantized weights (exactness of the kernels), and against the f32 reference (quality).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../src/config/config.ts';
import { derivePlan } from '../src/config/plan.ts';
import { openCheckpoint } from '../src/io/node-source.ts';
import { readTensorF32 } from '../src/io/safetensors.ts';
import { loadModel } from '../src/index.ts';
import { dequantize } from '../kernels/quant.ts';
import { cpuForward, type Tensors } from './cpu-forward.ts';
import { assertClose, loadFixture, testGpu } from './helpers.ts';

const fx = loadFixture('tiny-elm');
const plan = derivePlan(parseConfig(JSON.parse(readFileSync(join(fx.dir, 'config.json'), 'utf8')), 'config.json'));

/** Mean KL(reference || engine) over rows of logits and the fraction of rows with the same argmax. */
function agreement(ref: Float32Array, got: Float32Array, V: number): { kl: number; top1: number } {
  let kl = 0;
  let same = 0;
  const rows = ref.length / V;
  for (let r = 0; r < rows; r++) {
    const a = ref.subarray(r * V, (r + 1) * V);
    const b = got.subarray(r * V, (r + 1) * V);
    const lse = (x: Float32Array) => {
      const m = Math.max(...x);
      return m + Math.log(x.reduce((s, v) => s + Math.exp(v - m), 0));
    };
    const la = lse(a);
    const lb = lse(b);
    for (let i = 0; i < V; i++) kl += Math.exp(a[i] - la) * (a[i] - la - (b[i] - lb));
    if (a.indexOf(Math.max(...a)) === b.indexOf(Math.max(...b))) same++;
  }
  return { kl: kl / rows, top1: same / rows };
}

for (const dtype of ['q8', 'q4'] as const) {
  test(`${dtype}: the engine equals the CPU forward pass over the dequantized weights`, async () => {
    const t: Tensors = new Map();
    for (const [name, e] of await openCheckpoint(fx.dir)) {
      const data = await readTensorF32(e);
      t.set(name, Float64Array.from(e.shape.length === 2 ? dequantize(data, e.shape[0], e.shape[1], dtype) : data));
    }
    const model = await loadModel(fx.dir, { dtype, gpu: await testGpu() });
    try {
      const V = plan.vocabSize;
      let refAll = new Float32Array(0);
      let gotAll = new Float32Array(0);
      for (const p of fx.manifest.prompts.slice(0, 3)) {
        const rows = await model.logits(p.input_ids, { allPositions: true });
        const cpu = cpuForward(plan, t, p.input_ids);
        rows.forEach((row, i) => assertClose(row, cpu.logits[i], 2e-4, 0, `${p.name} position ${i}`));
        const got = new Float32Array(p.logits_positions.length * V);
        p.logits_positions.forEach((pos, i) => got.set(rows[pos], i * V));
        refAll = Float32Array.from([...refAll, ...fx.array(p.logits)]);
        gotAll = Float32Array.from([...gotAll, ...got]);
      }
      const a = agreement(refAll, gotAll, V);
      console.log(`${dtype} vs the f32 reference on tiny-elm: top-1 agreement ${(a.top1 * 100).toFixed(1)}%, mean KL ${a.kl.toExponential(3)}`);
      // Loose sanity bounds: the formats are lossy, but not broken.
      assert.ok(a.kl < (dtype === 'q8' ? 1e-3 : 0.2), `mean KL ${a.kl}`);
    } finally {
      model.dispose();
    }
  });
}
