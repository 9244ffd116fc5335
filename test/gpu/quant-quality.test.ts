// Quantization quality where it matters: a checkpoint whose RMSNorm gains spread the way trained
// models' do (log-normal, a few outlier channels; the synthetic scheme's gains). Our q8/q4 must be
// no worse than llama.cpp's plain Q8_0/Q4_0 rounding of the same matrices: the KL divergence of
// the engine's next-token distributions from the float64 f32-weight forward pass stays within
// 1.25x of what the plain rounding gives in the same float64 forward pass.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parseConfig } from '../../src/config/config.ts';
import { derivePlan } from '../../src/config/plan.ts';
import { openCheckpoint } from '../../src/io/node-source.ts';
import { readTensorF32 } from '../../src/io/safetensors.ts';
import { synthesizeCheckpoint } from '../../src/io/synth.ts';
import { loadModel } from '../../src/index.ts';
import { dequantize } from '../../src/weights/quant.ts';
import { agreement } from '../../bench/quality.ts';
import { cpuForward, type Tensors } from '../../src/doctor/cpu-forward.ts';
import { fixtureDir, rng, testGpu } from '../helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'openelm-quant-quality-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const config = JSON.parse(readFileSync(join(fixtureDir('tiny-elm'), 'config.json'), 'utf8')) as Record<string, unknown>;
const plan = derivePlan(parseConfig(config, 'config.json'));
const POSITIONS = 48;
const r = rng(11);
const ids = [1, ...Array.from({ length: POSITIONS - 1 }, () => 3 + Math.floor(r() * (plan.vocabSize - 3)))];

/** The checkpoint's tensors, matrices rounded as `format` stores them (plain, per matrix; 'f32': as they are). */
async function tensors(format: 'f32' | 'q8' | 'q4'): Promise<Tensors> {
  const t: Tensors = new Map();
  for (const [name, e] of await openCheckpoint(dir)) {
    const data = await readTensorF32(e);
    t.set(name, Float64Array.from(e.shape.length === 2 && format !== 'f32' ? dequantize(data, e.shape[0], e.shape[1], format) : data));
  }
  return t;
}

const ready = synthesizeCheckpoint(dir, config, { dtype: 'F32', seed: 5 });

test('the synthetic norm gains spread like a trained model\'s: log-normal with outlier channels', async () => {
  await ready;
  const t = await tensors('f32');
  const g = Array.from(t.get('transformer.layers.0.attn_norm.weight')!);
  const sorted = [...g].sort((a, b) => a - b);
  const median = sorted[sorted.length >> 1];
  assert.ok(median > 0.7 && median < 1.4, `median gain ${median}`);
  assert.ok(sorted[sorted.length - 1] > 8 * median, `largest gain ${sorted[sorted.length - 1]} is an outlier`);
  assert.ok(sorted[0] > 0 && sorted[0] < 0.6 * median, `smallest gain ${sorted[0]}`);
});

for (const format of ['q8', 'q4'] as const) {
  test(`${format} on varied norm gains: KL from f32 within 1.25x of plain ${format === 'q8' ? 'Q8_0' : 'Q4_0'} rounding`, async () => {
    await ready;
    const reference = cpuForward(plan, await tensors('f32'), ids).logits.map((row) => Float32Array.from(row));
    const plain = cpuForward(plan, await tensors(format), ids).logits.map((row) => Float32Array.from(row));
    const model = await loadModel(dir, { dtype: format, gpu: await testGpu() });
    let ours: Float32Array[];
    try {
      ours = await model.logits(ids, { allPositions: true });
    } finally {
      model.dispose();
    }
    const want = agreement(reference, plain, 'f32');
    const got = agreement(reference, ours, 'f32');
    assert.ok(want.mean_kl > 0, 'plain rounding changes the distributions at all');
    assert.ok(got.mean_kl <= 1.25 * want.mean_kl, `${format}: mean KL ${got.mean_kl.toExponential(3)} vs plain rounding's ${want.mean_kl.toExponential(3)}`);
    assert.ok(got.top1 >= want.top1 - 2 / POSITIONS, `${format}: top-1 agreement ${got.top1} vs plain rounding's ${want.top1}`);
  });
}
