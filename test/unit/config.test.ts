// config.json parsing and the layer-wise scaling plan (CPU only).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseConfig, parseConfigText, type OpenElmConfig } from '../../src/config/config.ts';
import { derivePlan, layerMultipliers, linspace, makeDivisible, roundTo2 } from '../../src/config/plan.ts';
import { RELEASED_SIZES, releasedConfig, releasedRepoName } from '../../src/config/released.ts';
import { fixtureDir } from '../helpers.ts';

const TINY = fixtureDir('tiny-elm');
const tinyJson = (): Record<string, unknown> => JSON.parse(readFileSync(`${TINY}/config.json`, 'utf8'));

/** A minimal valid config (only the required keys). */
function minimal(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    num_transformer_layers: 4,
    model_dim: 128,
    head_dim: 32,
    num_gqa_groups: 2,
    qkv_multipliers: [0.5, 1.0],
    ffn_multipliers: [0.5, 4.0],
    ffn_dim_divisor: 32,
    vocab_size: 512,
    max_context_length: 256,
    rope_freq_constant: 10000,
    ...over,
  };
}

function throwsLine(fn: () => unknown, expected: string | RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(!e.message.includes('\n'), `error should be one line: ${e.message}`);
    if (typeof expected === 'string') assert.equal(e.message, expected);
    else assert.match(e.message, expected);
    return true;
  });
}

test('OpenELM-270M per-layer plan: the released model\'s heads, FFN widths and settings', () => {
  const plan = derivePlan(parseConfig(releasedConfig('270M'), 'config.json'));
  assert.deepEqual(plan.layers.map((l) => l.numQueryHeads), [12, 12, 12, 12, 12, 16, 16, 16, 16, 16, 16, 16, 20, 20, 20, 20]);
  assert.deepEqual(plan.layers.map((l) => l.numKvHeads), [3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5]);
  assert.deepEqual(
    plan.layers.map((l) => l.ffnDim),
    [768, 1024, 1280, 1536, 1792, 2048, 2560, 2816, 3072, 3328, 3584, 3840, 4352, 4608, 4864, 5120],
  );
  assert.deepEqual(plan.layers[0], { index: 0, numQueryHeads: 12, numKvHeads: 3, ffnDim: 768, qkvOut: 18 * 64, proj1Out: 1536 });
  assert.equal(plan.layers[0].qkvOut, 1152); // Linear(1280 -> 1152) in the HF model printout
  assert.equal(plan.rmsNormEps, 1e-6);
  assert.equal(plan.tiedEmbeddings, true);
  assert.equal(plan.ropeTheta, 10000);
  assert.equal(plan.ropeMaxLength, 4096);
  assert.equal(plan.maxContext, 2048);
  assert.equal(plan.bosTokenId, 1);
  assert.equal(plan.eosTokenId, 2);
});

test('released configs: parameter counts and stored lists', () => {
  const expected: Record<string, [number, string]> = {
    '270M': [271527168, '271.5'],
    '450M': [457179136, '457.2'],
    '1.1B': [1079891456, '1079.9'],
    '3B': [3036647424, '3036.6'],
  };
  for (const size of RELEASED_SIZES) {
    const cfg = releasedConfig(size);
    const plan = derivePlan(parseConfig(cfg, `${size}/config.json`)); // stored lists must agree
    assert.equal(plan.paramCount, expected[size][0], size);
    assert.equal((plan.paramCount / 1e6).toFixed(1), expected[size][1], size);
    assert.deepEqual(cfg.num_query_heads, plan.layers.map((l) => l.numQueryHeads));
    assert.deepEqual(cfg.num_kv_heads, plan.layers.map((l) => l.numKvHeads));
    const keys = Object.keys(cfg);
    assert.deepEqual(keys, [...keys].sort(), 'save_pretrained writes sorted keys');
    // Re-reading the stored per-layer ffn_multipliers gives the same plan as [0.5, 4.0].
    const again = derivePlan(parseConfig({ ...cfg, ffn_multipliers: [0.5, 4.0] }, 'x'));
    assert.deepEqual(again.layers, plan.layers);
  }
  assert.deepEqual(releasedConfig('270M').ffn_multipliers, [0.5, 0.73, 0.97, 1.2, 1.43, 1.67, 1.9, 2.13, 2.37, 2.6, 2.83, 3.07, 3.3, 3.53, 3.77, 4.0]);
  assert.equal(releasedConfig('3B').head_dim, 128);
  assert.equal(releasedRepoName('1.1B', true), 'apple/OpenELM-1_1B-Instruct');
});

test('tiny-elm fixture config', () => {
  const plan = derivePlan(parseConfig(tinyJson(), `${TINY}/config.json`));
  assert.deepEqual(plan.layers.map((l) => l.numQueryHeads), [2, 4, 4, 4]);
  assert.deepEqual(plan.layers.map((l) => l.numKvHeads), [1, 2, 2, 2]);
  assert.deepEqual(plan.layers.map((l) => l.ffnDim), [64, 224, 352, 512]);
  assert.equal(plan.paramCount, 681344);
  const ref = JSON.parse(readFileSync(`${TINY}/reference.json`, 'utf8')).derived_config;
  assert.deepEqual(plan.layers.map((l) => l.qkvOut), ref.qkv_proj_out);
  assert.equal(plan.paramCount, ref.param_count);
  assert.equal(plan.ropeMaxLength, 512);
  assert.equal(plan.tensors.length, 1 + 4 * 8 + 1);
  assert.deepEqual(plan.tensors[0], { name: 'transformer.token_embeddings.weight', shape: [512, 128] });
  const byName = new Map(plan.tensors.map((t) => [t.name, t.shape]));
  assert.deepEqual(byName.get('transformer.layers.1.attn.qkv_proj.weight'), [256, 128]);
  assert.deepEqual(byName.get('transformer.layers.1.attn.out_proj.weight'), [128, 128]);
  assert.deepEqual(byName.get('transformer.layers.0.attn.out_proj.weight'), [128, 64]);
  assert.deepEqual(byName.get('transformer.layers.2.ffn.proj_1.weight'), [704, 128]);
  assert.deepEqual(byName.get('transformer.layers.2.ffn.proj_2.weight'), [128, 352]);
  assert.deepEqual(byName.get('transformer.layers.3.attn.q_norm.weight'), [32]);
  assert.deepEqual(byName.get('transformer.norm.weight'), [128]);
  assert.equal(byName.has('lm_head.weight'), false);
  // The same plan from [lo, hi] instead of the stored per-layer list, and without stored heads.
  const { num_query_heads: _q, num_kv_heads: _kv, ...bare } = tinyJson();
  assert.deepEqual(derivePlan(parseConfig({ ...bare, ffn_multipliers: [0.5, 4.0] }, 'x')).layers, plan.layers);
});

test('stored head lists that disagree with the derivation are an error', () => {
  const j = tinyJson();
  (j.num_query_heads as number[])[2] = 6;
  throwsLine(
    () => derivePlan(parseConfig(j, 'config.json'), 'config.json'),
    /^config\.json: num_query_heads\[2\] is 6, but .* give 4 query heads for layer 2$/,
  );
  const k = tinyJson();
  (k.num_kv_heads as number[])[0] = 2;
  throwsLine(() => derivePlan(parseConfig(k, 'config.json'), 'config.json'), /^config\.json: num_kv_heads\[0\] is 2, but 2 query heads \/ num_gqa_groups 2 give 1 KV heads for layer 0$/);
  throwsLine(() => parseConfig({ ...tinyJson(), num_query_heads: [2, 4, 4] }, 'config.json'), /^config\.json: num_query_heads must be a list of 4 positive integers .*got a list of 3$/);
  throwsLine(() => parseConfig({ ...tinyJson(), num_kv_heads: [1, 2, 'x', 2] }, 'config.json'), 'config.json: num_kv_heads[2] must be a positive integer, got "x"');
  // A bare integer (HF's constructor fallback, overwritten by its __post_init__) is ignored.
  assert.equal(parseConfig({ ...tinyJson(), num_query_heads: 16 }, 'c').num_query_heads, undefined);
});

test('missing keys, odd head_dim and wrong types give specific one-line messages', () => {
  for (const key of ['num_transformer_layers', 'model_dim', 'head_dim', 'num_gqa_groups', 'qkv_multipliers', 'ffn_multipliers', 'ffn_dim_divisor', 'vocab_size', 'max_context_length', 'rope_freq_constant']) {
    const j = minimal();
    delete j[key];
    throwsLine(() => parseConfig(j, 'config.json'), new RegExp(`^config\\.json: missing required key "${key}" \\(expected .+\\)$`));
  }
  throwsLine(() => parseConfig(minimal({ head_dim: 33 }), 'config.json'), 'config.json: head_dim must be a positive even integer, got 33');
  throwsLine(() => parseConfig(minimal({ head_dim: 0 }), 'config.json'), 'config.json: head_dim must be a positive even integer, got 0');
  throwsLine(() => parseConfig(minimal({ model_dim: '128' }), 'config.json'), 'config.json: model_dim must be a positive integer, got "128"');
  throwsLine(() => parseConfig(minimal({ model_dim: 127.5 }), 'config.json'), 'config.json: model_dim must be a positive integer, got 127.5');
  throwsLine(() => parseConfig(minimal({ num_gqa_groups: -1 }), 'config.json'), 'config.json: num_gqa_groups must be a positive integer, got -1');
  throwsLine(() => parseConfig(minimal({ vocab_size: null }), 'config.json'), 'config.json: vocab_size must be a positive integer, got null');
  throwsLine(() => parseConfig(minimal({ qkv_multipliers: [0.5] }), 'config.json'), 'config.json: qkv_multipliers must be a positive number or a list [lo, hi] of two positive numbers, got [0.5]');
  throwsLine(() => parseConfig(minimal({ qkv_multipliers: '0.5' }), 'config.json'), /^config\.json: qkv_multipliers must be .*, got "0\.5"$/);
  throwsLine(() => parseConfig(minimal({ ffn_multipliers: [1, 2, 3] }), 'config.json'), 'config.json: ffn_multipliers must be a positive number, a list [lo, hi], or a list of 4 per-layer positive numbers (num_transformer_layers is 4), got a list of 3 values');
  throwsLine(() => parseConfig(minimal({ ffn_multipliers: [1, 2, -3, 4] }), 'config.json'), 'config.json: ffn_multipliers[2] must be a positive number, got -3');
  throwsLine(() => parseConfig(minimal({ rope_freq_constant: 'big' }), 'config.json'), 'config.json: rope_freq_constant must be a positive number, got "big"');
  throwsLine(() => parseConfig(minimal({ share_input_output_layers: 'yes' }), 'config.json'), 'config.json: share_input_output_layers must be true or false, got "yes"');
  throwsLine(() => parseConfig(minimal({ bos_token_id: 600 }), 'config.json'), 'config.json: bos_token_id must be below vocab_size (512), got 600');
  throwsLine(() => parseConfig([1, 2], 'config.json'), /^config\.json: expected a JSON object .* got an array$/);
  throwsLine(() => parseConfigText('{"model_dim": 12,', 'dir/config.json'), /^dir\/config\.json: not valid JSON \(.*\)$/);
});

test('optional keys take their defaults', () => {
  const cfg: OpenElmConfig = parseConfig(minimal(), 'c');
  assert.equal(cfg.ffn_with_glu, true);
  assert.equal(cfg.normalize_qk_projections, true);
  assert.equal(cfg.share_input_output_layers, true);
  assert.equal(cfg.rope_max_length, 4096);
  assert.equal(cfg.bos_token_id, 1);
  assert.equal(cfg.eos_token_id, 2);
  assert.equal(derivePlan(cfg).paramCount, 681344); // same shapes as tiny-elm
});

test('num_gqa_groups 1 (multi-head attention): KV heads equal query heads', () => {
  const plan = derivePlan(parseConfig(minimal({ num_gqa_groups: 1 }), 'c'));
  for (const l of plan.layers) {
    assert.equal(l.numKvHeads, l.numQueryHeads);
    assert.equal(l.qkvOut, 3 * l.numQueryHeads * 32);
  }
  // make_divisible(128 * m, 32): 0.5 -> 64 (2 heads), 0.67 -> 96 (3), 0.83 -> 96 (3), 1.0 -> 128 (4)
  assert.deepEqual(plan.layers.map((l) => l.numQueryHeads), [2, 3, 3, 4]);
});

test('untied embeddings add lm_head.weight; q/k norms and GLU follow their flags', () => {
  const tied = derivePlan(parseConfig(minimal(), 'c'));
  const untied = derivePlan(parseConfig(minimal({ share_input_output_layers: false }), 'c'));
  assert.equal(untied.tiedEmbeddings, false);
  assert.deepEqual(untied.tensors[untied.tensors.length - 1], { name: 'lm_head.weight', shape: [512, 128] });
  assert.equal(untied.paramCount, tied.paramCount + 512 * 128);

  const noNorm = derivePlan(parseConfig(minimal({ normalize_qk_projections: false }), 'c'));
  assert.equal(noNorm.normalizeQk, false);
  assert.ok(!noNorm.tensors.some((t) => t.name.includes('q_norm') || t.name.includes('k_norm')));
  assert.equal(noNorm.paramCount, tied.paramCount - 4 * 2 * 32);

  const noGlu = derivePlan(parseConfig(minimal({ ffn_with_glu: false }), 'c'));
  assert.deepEqual(noGlu.layers.map((l) => l.proj1Out), noGlu.layers.map((l) => l.ffnDim));
  assert.deepEqual(tied.layers.map((l) => l.proj1Out), tied.layers.map((l) => 2 * l.ffnDim));
});

test('multipliers: numbers, [lo, hi], per-layer lists', () => {
  const uniform = derivePlan(parseConfig(minimal({ qkv_multipliers: 1, ffn_multipliers: 2 }), 'c'));
  assert.deepEqual(uniform.layers.map((l) => l.numQueryHeads), [4, 4, 4, 4]);
  assert.deepEqual(uniform.layers.map((l) => l.ffnDim), [256, 256, 256, 256]);
  // A per-layer list is used as it is (no rounding).
  const perLayer = derivePlan(parseConfig(minimal({ ffn_multipliers: [1, 1.5, 2, 0.25] }), 'c'));
  assert.deepEqual(perLayer.layers.map((l) => l.ffnDim), [128, 192, 256, 32]);
  // With 2 layers, a 2-element list is [lo, hi] as in HF (the same thing, up to rounding).
  const two = derivePlan(parseConfig(minimal({ num_transformer_layers: 2, ffn_multipliers: [1, 2.5] }), 'c'));
  assert.deepEqual(two.layers.map((l) => l.ffnDim), [128, 320]);
  // One layer: linspace gives just lo.
  assert.deepEqual(layerMultipliers([0.5, 4], 1), [0.5]);
  assert.deepEqual(derivePlan(parseConfig(minimal({ num_transformer_layers: 1 }), 'c')).layers.map((l) => l.numQueryHeads), [2]);
});

test('rounding is numpy.around (float64 x*100, rint half-even), as HF applies it to numpy scalars', () => {
  // Values checked against numpy 2.x: [float(round(v, 2)) for v in np.linspace(lo, hi, n)]
  assert.deepEqual(layerMultipliers([0.5, 4.0], 21), [0.5, 0.68, 0.85, 1.02, 1.2, 1.38, 1.55, 1.72, 1.9, 2.08, 2.25, 2.42, 2.6, 2.78, 2.95, 3.12, 3.3, 3.47, 3.65, 3.82, 4.0]);
  assert.deepEqual(layerMultipliers([0.25, 1.0], 11), [0.25, 0.32, 0.4, 0.48, 0.55, 0.62, 0.7, 0.78, 0.85, 0.92, 1.0]);
  const l41 = layerMultipliers([1.0, 4.0], 41);
  assert.equal(l41[1], 1.08); // Python's float round would give 1.07
  assert.equal(l41[17], 2.28);
  assert.equal(l41[29], 3.18);
  assert.equal(roundTo2(0.125), 0.12); // exact tie -> even
  assert.equal(roundTo2(0.375), 0.38);
  assert.deepEqual(linspace(0, 1, 5), [0, 0.25, 0.5, 0.75, 1]);
  assert.equal(linspace(0.5, 4, 16)[15], 4);
});

test('make_divisible', () => {
  assert.equal(makeDivisible(640, 256), 768);
  assert.equal(makeDivisible(100, 256), 256); // never below the divisor
  assert.equal(makeDivisible(1280 * 0.73, 256), 1024);
  assert.equal(makeDivisible(383, 256), 512); // 256 < 0.9 * 383: bumped
  assert.equal(makeDivisible(380, 256), 512); // int(380 + 128) // 256 * 256 = 256 < 342 -> 512
  assert.equal(makeDivisible(127, 256), 256);
  assert.equal(makeDivisible(1280 * 3.07, 256), 3840);
  assert.equal(makeDivisible(2048 * 2.31, 256), 4608); // 1.1B layers 13 and 14 both get 4608
});
