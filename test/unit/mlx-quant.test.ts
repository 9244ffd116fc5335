// MLX's affine layout on the CPU: the quantization rule and packing (src/weights/affine.ts), the
// config entry (src/config/mlx-quant.ts), the checkpoint writer and the checks that name the bad
// tensor (src/runtime/mlx-weights.ts).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parseConfig } from '../../src/config/config.ts';
import { derivePlan } from '../../src/config/plan.ts';
import { openCheckpoint } from '../../src/io/node-source.ts';
import type { TensorEntry } from '../../src/io/safetensors.ts';
import { checkCheckpoint } from '../../src/runtime/model-weights.ts';
import { readMlxMatrix } from '../../src/runtime/mlx-weights.ts';
import { resolveWeightFormat } from '../../src/runtime/weight-format.ts';
import { affineCode, dequantizeAffine, quantizeAffine, scaleValue, type AffineBits } from '../../src/weights/affine.ts';
import { writeMlxCheckpoint } from '../../src/weights/mlx-checkpoint.ts';
import { randn, rng } from '../helpers.ts';

const CONFIG = {
  model_type: 'openelm', num_transformer_layers: 2, model_dim: 64, head_dim: 16, num_gqa_groups: 2, qkv_multipliers: [0.5, 1.0],
  ffn_multipliers: [0.5, 1.0], ffn_dim_divisor: 32, vocab_size: 37, max_context_length: 16, rope_freq_constant: 10000, rope_max_length: 32,
  share_input_output_layers: false, normalize_qk_projections: true, ffn_with_glu: true, bos_token_id: 1, eos_token_id: 2,
};

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

test('quantizeAffine packs codes from the low bits and keeps the larger-magnitude edge exact', () => {
  // w = 0.25 q - 1, each group holding q = 0 and q = 2^B - 1 (so min -1, max the edge): the scale
  // is -0.25, the bias the max, each code (2^B - 1) - q, and every weight comes back exactly.
  for (const bits of [4, 8] as AffineBits[]) {
    const n = 1 << bits;
    const G = 32;
    const cols = 96;
    const q = Array.from({ length: cols }, (_, i) => (i % G === 0 ? 0 : i % G === 1 ? n - 1 : (i * 37 + 5) % n));
    const w = Float32Array.from(q, (v) => 0.25 * v - 1);
    const t = quantizeAffine(w, 1, cols, bits, G, 'F32');
    for (let g = 0; g < cols / G; g++) {
      assert.equal(scaleValue(t.scales[g], 'F32'), -0.25);
      assert.equal(scaleValue(t.biases[g], 'F32'), 0.25 * (n - 1) - 1);
    }
    // Packed independently: code i of word j at bits (i mod 32/B) * B.
    const per = 32 / bits;
    const words = Array.from({ length: (cols * bits) / 32 }, (_, j) => {
      let v = 0;
      for (let i = 0; i < per; i++) v += (n - 1 - q[j * per + i]) * 2 ** (i * bits);
      return v;
    });
    assert.deepEqual(Array.from(t.codes), words);
    assert.deepEqual(Array.from(dequantizeAffine(t)), Array.from(w));
  }
});

test('quantizeAffine: every code in range, weights within half a step (clamped ends within 1.5), both edges, constant groups', () => {
  const r = rng(5);
  for (const bits of [4, 8] as AffineBits[])
    for (const G of [32, 64, 128]) {
      const rows = 7;
      const cols = 2 * G;
      const w = randn(r, rows * cols, 0.3);
      // A negative-edge group, and a constant group (the scale floor, bias 0 or the value).
      for (let i = 0; i < G; i++) w[i] = -Math.abs(w[i]) * 3;
      w.fill(0.125, cols, cols + G);
      w.fill(0, 2 * cols, 2 * cols + G);
      const t = quantizeAffine(w, rows, cols, bits, G, 'F32');
      const d = dequantizeAffine(t);
      for (let row = 0; row < rows; row++)
        for (let k = 0; k < cols; k++) {
          const g = row * (cols / G) + Math.floor(k / G);
          const step = Math.abs(scaleValue(t.scales[g], 'F32'));
          const q = affineCode(t.codes, (row * cols * bits) / 32, k, bits);
          assert.ok(q >= 0 && q < 1 << bits);
          const err = Math.abs(d[row * cols + k] - w[row * cols + k]);
          // Rounded codes are within half a step; the rescaled step (edge / q0) may leave the far
          // end of the range short by up to one step, where codes clamp.
          const bound = q === 0 || q === (1 << bits) - 1 ? 1.5 * step : step / 2;
          assert.ok(err <= bound + 1e-6 * Math.abs(w[row * cols + k]) + 1e-7, `${bits}-bit G=${G} [${row}, ${k}]: error ${err} > ${bound} (code ${q}, step ${step})`);
        }
      assert.equal(d[cols], 0.125);
      assert.equal(d[2 * cols], 0);
    }
});

test('config.json quantization: MLX settings accepted, anything else refused in one line', () => {
  const plan = (q: unknown) => derivePlan(parseConfig({ ...CONFIG, quantization: q }, 'config.json'), 'config.json');
  assert.deepEqual(plan({ group_size: 64, bits: 4 }).quantization, { bits: 4, groupSize: 64 });
  assert.deepEqual(plan({ group_size: 32, bits: 8, mode: 'affine', 'transformer.layers.0.attn.qkv_proj': { group_size: 32, bits: 8 } }).quantization, { bits: 8, groupSize: 32 });
  assert.equal(derivePlan(parseConfig(CONFIG, 'c')).quantization, undefined);
  assert.throws(() => plan({ group_size: 64, bits: 3 }), /^Error: config\.json: quantization\.bits must be 4 or 8, got 3$/);
  assert.throws(() => plan({ group_size: 16, bits: 4 }), /quantization\.group_size must be 32, 64 or 128, got 16/);
  assert.throws(() => plan({ group_size: 32, bits: 4, mode: 'mxfp4' }), /quantization\.mode must be "affine"/);
  assert.throws(() => plan({ group_size: 64, bits: 4, 'lm_head': false }), /quantization\."lm_head" is false: checkpoints with modules left unquantized are not supported/);
  assert.throws(() => plan({ group_size: 64, bits: 4, 'transformer.layers.1.ffn.proj_2': { group_size: 64, bits: 8 } }), /mixed quantization is not supported/);
  assert.throws(() => plan([4, 64]), /quantization must be an object/);
});

test('writeMlxCheckpoint writes MLX names, shapes and dtypes; checkCheckpoint names a bad tensor in one line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'openelm-mlx-unit-'));
  dirs.push(dir);
  const plan0 = derivePlan(parseConfig(CONFIG, 'c'));
  const r = rng(9);
  const tensors = new Map(plan0.tensors.map((s) => [s.name, randn(r, s.shape.reduce((a, b) => a * b, 1), 0.2)] as const));
  await writeMlxCheckpoint(dir, { config: CONFIG, tensors }, { bits: 4, groupSize: 32, scaleDtype: 'BF16' });
  const files = await openCheckpoint(dir);
  const plan = derivePlan(parseConfig(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')), 'config.json'));
  assert.deepEqual(plan.quantization, { bits: 4, groupSize: 32 });
  const e = (n: string) => files.get(n)!;
  assert.deepEqual([e('lm_head.weight').dtype, e('lm_head.weight').shape], ['U32', [37, 8]]);
  assert.deepEqual([e('lm_head.scales').dtype, e('lm_head.scales').shape], ['BF16', [37, 2]]);
  assert.deepEqual([e('transformer.layers.0.ffn.proj_2.biases').dtype, e('transformer.layers.0.ffn.proj_2.biases').shape[1]], ['BF16', plan.layers[0].ffnDim / 32]);
  assert.equal(e('transformer.norm.weight').dtype, 'BF16');
  checkCheckpoint(plan, files);
  // What the loader reads back is what the writer quantized.
  const back = await readMlxMatrix(plan, files, 'lm_head.weight');
  const direct = quantizeAffine(tensors.get('lm_head.weight')!, 37, 64, 4, 32, 'BF16');
  assert.deepEqual(Array.from(back.codes), Array.from(direct.codes));
  assert.deepEqual(Array.from(back.scales), Array.from(direct.scales));
  assert.equal(resolveWeightFormat(plan, undefined), 'mlx4');
  assert.equal(resolveWeightFormat(plan0, 'auto'), 'f16');

  const broken = (name: string, change: Partial<TensorEntry> | null) => {
    const m = new Map(files);
    if (change === null) m.delete(name);
    else m.set(name, { ...files.get(name)!, ...change });
    return () => checkCheckpoint(plan, m);
  };
  assert.throws(broken('transformer.layers.1.attn.qkv_proj.weight', { shape: [plan.layers[1].qkvOut, 16] }), /model\.safetensors: tensor "transformer\.layers\.1\.attn\.qkv_proj\.weight" has shape \[\d+, 16\], expected \[\d+, 8\]/);
  assert.throws(broken('lm_head.weight', { dtype: 'F16' }), /tensor "lm_head\.weight" has dtype F16, expected U32 \(MLX's packed 4-bit codes\)/);
  assert.throws(broken('lm_head.scales', { shape: [37, 4] }), /tensor "lm_head\.scales" has shape \[37, 4\], expected \[37, 2\]/);
  assert.throws(broken('lm_head.biases', { dtype: 'F16' }), /tensor "lm_head\.biases" has dtype F16, expected BF16 like "lm_head\.scales"/);
  assert.throws(broken('lm_head.scales', { dtype: 'I8' }), /tensor "lm_head\.scales" has dtype I8, expected one of F16, BF16, F32/);
  assert.throws(broken('transformer.token_embeddings.biases', null), /missing tensor "transformer\.token_embeddings\.biases" \(expected shape \[37, 2\] in MLX's 4-bit layout\)/);
  assert.throws(broken('transformer.norm.weight', { dtype: 'U32' }), /tensor "transformer\.norm\.weight" has dtype U32, expected one of F32, F16, BF16/);
  const extra = new Map(files);
  extra.set('lm_head.extra', files.get('lm_head.scales')!);
  assert.throws(() => checkCheckpoint(plan, extra), /unexpected tensor "lm_head\.extra"/);
});
