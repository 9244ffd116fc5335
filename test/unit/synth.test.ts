// Synthetic random-weight checkpoints (CPU only).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config.ts';
import { derivePlan } from '../../src/config/plan.ts';
import { checkCheckpointTensors, parseSafetensors, readTensorF32 } from '../../src/io/safetensors.ts';
import { fileSource, openCheckpoint } from '../../src/io/node-source.ts';
import { hashSeed, normalChunks, normalTable16, normGains, synthesizeCheckpoint, SYNTHETIC_NOTE } from '../../src/io/synth.ts';
import { fixtureDir } from '../helpers.ts';

const TINY = fixtureDir('tiny-elm');
const tinyConfig = () => JSON.parse(readFileSync(`${TINY}/config.json`, 'utf8'));

function stats(a: Float32Array): { mean: number; std: number } {
  let s = 0;
  let ss = 0;
  for (const v of a) {
    s += v;
    ss += v * v;
  }
  const mean = s / a.length;
  return { mean, std: Math.sqrt(ss / a.length - mean * mean) };
}

test('normal table: symmetric, sorted, unit variance; chunks are deterministic', () => {
  const t = normalTable16();
  assert.equal(t.length, 65536);
  for (let i = 1; i < t.length; i++) assert.ok(t[i] > t[i - 1], `not increasing at ${i}`);
  assert.equal(t[0], -t[65535]);
  const st = stats(t);
  assert.ok(Math.abs(st.mean) < 1e-6 && Math.abs(st.std - 1) < 1e-6, JSON.stringify(st));
  assert.ok(t[65535] > 4 && t[65535] < 4.5);
  assert.ok(Math.abs(t[Math.round(0.8413447 * 65536)] - 1) < 1e-3, 'the 84.13% quantile is 1 sigma');
  const a = [...normalChunks(7, 1001, 0, 1, 300)];
  assert.deepEqual(a.map((c) => c.length), [300, 300, 300, 101]);
  const b = [...normalChunks(7, 1001, 0, 1, 1001)][0];
  const joined = new Float32Array(1001);
  let at = 0;
  for (const c of a) joined.set(c, (at += c.length) - c.length);
  assert.deepEqual(joined.subarray(0, 1000), b.subarray(0, 1000)); // same stream for any chunk size (even chunks)
  const big = [...normalChunks(99, 200000, 0.5, 2)][0];
  const s2 = stats(big);
  assert.ok(Math.abs(s2.mean - 0.5) < 0.02 && Math.abs(s2.std - 2) < 0.02, JSON.stringify(s2));
});

test('synthesize the tiny-elm config and read it back', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'openelm-synth-'));
  try {
    const plan = await synthesizeCheckpoint(dir, tinyConfig(), { dtype: 'F16', seed: 3 });
    assert.equal(plan.paramCount, 681344);
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    assert.equal(cfg.synthetic_note, SYNTHETIC_NOTE);
    const plan2 = derivePlan(parseConfig(cfg, join(dir, 'config.json')));
    assert.deepEqual(plan2.layers, plan.layers);
    const m = await openCheckpoint(dir);
    assert.deepEqual(checkCheckpointTensors(m, plan2.tensors, dir), []);
    assert.equal(m.size, plan2.tensors.length);
    for (const e of m.values()) assert.equal(e.dtype, 'F16');
    const qkv = stats(await readTensorF32(m.get('transformer.layers.2.attn.qkv_proj.weight')!));
    assert.ok(Math.abs(qkv.std * Math.sqrt(128) - 1) < 0.05, `qkv std ${qkv.std}`);
    const p2 = stats(await readTensorF32(m.get('transformer.layers.3.ffn.proj_2.weight')!));
    assert.ok(Math.abs(p2.std * Math.sqrt(512) - 1) < 0.05, `proj_2 std ${p2.std}`);
    const emb = stats(await readTensorF32(m.get('transformer.token_embeddings.weight')!));
    assert.ok(Math.abs(emb.std * Math.sqrt(128) - 1) < 0.05 && Math.abs(emb.mean) < 0.01, `emb ${JSON.stringify(emb)}`);
    // Norm gains: log-normal around 1; the layer norms have exactly two channels 16x larger (128
    // channels: max(2, 128 / 512)), the q/k norms none.
    for (const [name, outliers] of [['transformer.layers.0.attn_norm.weight', 2], ['transformer.layers.1.attn.q_norm.weight', 0]] as const) {
      const g = await readTensorF32(m.get(name)!);
      const plain = normGains(hashSeed(3, name), g.length, false);
      const ratios = Array.from(g, (v, i) => v / plain[i]);
      assert.equal(ratios.filter((r) => Math.abs(r - 16) < 0.05).length, outliers, `${name}: outlier channels`);
      assert.equal(ratios.filter((r) => Math.abs(r - 1) < 2e-3).length, g.length - outliers, `${name}: the other channels`);
      const logs = stats(plain.map(Math.log));
      assert.ok(Math.abs(logs.mean) < 0.2 && logs.std > 0.35 && logs.std < 0.65, `${name}: log gains ${JSON.stringify(logs)}`);
    }
    const file = readFileSync(join(dir, 'model.safetensors'));
    const header = JSON.parse(file.subarray(8, 8 + Number(file.readBigUInt64LE(0))).toString('utf8'));
    assert.equal(header.__metadata__.synthetic, SYNTHETIC_NOTE);

    // Same seed, F32 and sharded: the same values up to f16 rounding; different seed differs.
    const dir2 = join(dir, 'f32');
    await synthesizeCheckpoint(dir2, tinyConfig(), { dtype: 'F32', seed: 3, shardBytes: 200_000 });
    assert.ok(readdirSync(dir2).includes('model.safetensors.index.json'));
    const m2 = await openCheckpoint(dir2);
    const name = 'transformer.layers.1.ffn.proj_1.weight';
    const a = await readTensorF32(m.get(name)!);
    const b = await readTensorF32(m2.get(name)!);
    let maxRel = 0;
    for (let i = 0; i < a.length; i++) maxRel = Math.max(maxRel, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), 1e-3));
    assert.ok(maxRel < 1e-3, `f16 vs f32 ${maxRel}`);
    const dir3 = join(dir, 'seed4');
    await synthesizeCheckpoint(dir3, tinyConfig(), { dtype: 'BF16', seed: 4 });
    const c = await readTensorF32((await parseSafetensors(await fileSource(join(dir3, 'model.safetensors')))).get(name)!);
    assert.notDeepEqual(c.subarray(0, 8), b.subarray(0, 8));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('synthesize an untied, MHA config; invalid configs are rejected before writing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'openelm-synth-'));
  try {
    const cfg = { ...tinyConfig(), share_input_output_layers: false, num_gqa_groups: 1 };
    delete cfg.num_query_heads;
    delete cfg.num_kv_heads;
    const plan = await synthesizeCheckpoint(dir, cfg, { dtype: 'F32', seed: 1 });
    const m = await openCheckpoint(dir);
    assert.deepEqual(checkCheckpointTensors(m, plan.tensors, dir), []);
    assert.deepEqual(m.get('lm_head.weight')!.shape, [512, 128]);
    await assert.rejects(synthesizeCheckpoint(join(dir, 'bad'), { ...tinyConfig(), head_dim: 33 }, { dtype: 'F16', seed: 1 }), {
      message: 'config: head_dim must be a positive even integer, got 33',
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
