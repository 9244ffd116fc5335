// The compact checkpoint's config entry and tensor list (openelm convert), without a GPU.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/config.ts';
import { derivePlan } from '../../src/config/plan.ts';
import { compactTensors, scalesName } from '../../src/weights/compact-layout.ts';
import { resolveWeightFormat } from '../../src/runtime/weight-format.ts';
import { LLAMA_VOCAB_CONFIG } from '../helpers.ts';

const planOf = (extra: Record<string, unknown>) => derivePlan(parseConfig({ ...LLAMA_VOCAB_CONFIG, ...extra }, 'config.json'));

test('the openelm_webgpu entry is parsed into the plan, and checked', () => {
  assert.equal(planOf({}).stored, undefined);
  assert.deepEqual(planOf({ openelm_webgpu: { format: 'q4', version: 1 } }).stored, { format: 'q4', version: 1, fold_norms: false });
  assert.deepEqual(planOf({ openelm_webgpu: { format: 'q8', version: 1, fold_norms: true } }).stored, { format: 'q8', version: 1, fold_norms: true });
  assert.throws(() => planOf({ openelm_webgpu: 'q4' }), /^Error: config\.json: openelm_webgpu must be an object/);
  assert.throws(() => planOf({ openelm_webgpu: { format: 'q5', version: 1 } }), /^Error: config\.json: openelm_webgpu\.format must be q8 or q4, got "q5"$/);
  assert.throws(() => planOf({ openelm_webgpu: { format: 'q4' } }), /openelm_webgpu\.version must be 1 \(this engine reads version 1\), got undefined$/);
  assert.throws(() => planOf({ openelm_webgpu: { format: 'q4', version: 1, fold_norms: 'yes' } }), /openelm_webgpu\.fold_norms must be true or false/);
});

test('a compact checkpoint loads in its own format; another dtype is one clear error', () => {
  const q4 = planOf({ openelm_webgpu: { format: 'q4', version: 1 } });
  assert.equal(resolveWeightFormat(q4, undefined), 'q4');
  assert.equal(resolveWeightFormat(q4, 'q4'), 'q4');
  assert.throws(() => resolveWeightFormat(q4, 'q8'), /^Error: config\.json: this checkpoint is stored in q4 \(openelm_webgpu\.format, written by openelm convert\); load it with dtype q4 or auto, not q8$/);
  assert.equal(resolveWeightFormat(planOf({}), undefined), 'f16');
  assert.equal(resolveWeightFormat(planOf({}), 'q8'), 'q8');
});

test('compactTensors: quants and scales for every matrix, vectors kept, folded norms dropped', () => {
  const plan = planOf({});
  for (const format of ['q8', 'q4'] as const) {
    for (const fold of [false, true]) {
      const specs = compactTensors(plan, { format, fold_norms: fold });
      const byName = new Map(specs.map((s) => [s.name, s]));
      for (const t of plan.tensors) {
        if (t.shape.length === 2) {
          const [rows, cols] = t.shape;
          const groups = Math.ceil(cols / 32);
          assert.deepEqual(byName.get(t.name)?.shape, [rows, groups * (format === 'q8' ? 32 : 16)], t.name);
          assert.equal(byName.get(t.name)?.dtype, 'U8');
          assert.deepEqual(byName.get(scalesName(t.name))?.shape, [rows, groups]);
          assert.equal(byName.get(scalesName(t.name))?.dtype, 'F16');
        } else {
          const folded = fold && /\.(attn_norm|ffn_norm)\.weight$/.test(t.name);
          assert.equal(byName.has(t.name), !folded, t.name);
        }
      }
      assert.equal(scalesName('transformer.layers.0.attn.qkv_proj.weight'), 'transformer.layers.0.attn.qkv_proj.scales');
    }
  }
});
