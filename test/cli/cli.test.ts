// The command-line contract (README, "Command line"), run as a user (or an acceptance check) would run it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { synthesizeCheckpoint } from '../../src/io/synth.ts';
import { assertClose, loadFixture, repoRoot } from '../helpers.ts';

const fx = loadFixture('tiny-elm');
const V = 512;

function openelm(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin/openelm.js'), ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function ok(...args: string[]): string {
  const r = openelm(...args);
  assert.equal(r.code, 0, `openelm ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** A failing command: non-zero exit and one line on stderr matching `pattern`. */
function fails(pattern: RegExp, ...args: string[]): void {
  const r = openelm(...args);
  assert.notEqual(r.code, 0, `expected openelm ${args.join(' ')} to fail`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one stderr line, got:\n${r.stderr}`);
  assert.match(lines[0], pattern);
}

const tmp = mkdtempSync(join(tmpdir(), 'openelm-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

for (const dtype of ['f32', 'f16']) {
  test(`logits --json (${dtype}) gives the last position's logits of the reference`, () => {
    const p = fx.manifest.prompts[1];
    const out = JSON.parse(ok('logits', '--model', fx.dir, '--input-ids', p.input_ids.join(','), '--json', '--dtype', dtype));
    assert.equal(out.logits.length, 1);
    const ref = fx.array(p.logits);
    const last = p.logits_positions.indexOf(p.input_ids.length - 1);
    assertClose(out.logits[0], ref.subarray(last * V, (last + 1) * V), 2e-4);
  });
}

test('logits --all-positions gives one row per input token', () => {
  const p = fx.manifest.prompts[1];
  const out = JSON.parse(ok('logits', '--model', fx.dir, '--input-ids', p.input_ids.join(','), '--json', '--all-positions'));
  assert.equal(out.logits.length, p.input_ids.length);
  const ref = fx.array(p.logits);
  p.logits_positions.forEach((pos, i) => assertClose(out.logits[pos], ref.subarray(i * V, (i + 1) * V), 2e-4, 0, `position ${pos}`));
});

test('generate --json gives the reference greedy tokens and the stats', () => {
  for (const p of fx.manifest.prompts.slice(0, 2)) {
    const out = JSON.parse(ok('generate', '--model', fx.dir, '--input-ids', p.input_ids.join(','), '--max-new-tokens', '16', '--json'));
    assert.deepEqual(out.output_ids, p.greedy.tokens);
    assert.equal(out.text, '', 'no tokenizer fits this 512-token vocabulary, so there is no text');
    for (const k of ['prefill_tokens_per_s', 'decode_tokens_per_s', 'dispatches_per_token']) assert.ok(out.stats[k] > 0, `stats.${k}`);
  }
});

test('generate_kwargs max_new_tokens is honoured', () => {
  const out = JSON.parse(ok('generate', '--model', fx.dir, '--input-ids', '1,5,9', '--generate_kwargs', 'max_new_tokens=3', '--json'));
  assert.equal(out.output_ids.length, 3);
});

test('a sharded F32 copy of the checkpoint is read the same way', async () => {
  const { openCheckpoint, writeCheckpointWeights } = await import('../../src/io/node-source.ts');
  const { readTensorF32 } = await import('../../src/io/safetensors.ts');
  const dir = join(tmp, 'sharded');
  const tensors = [];
  for (const [name, e] of await openCheckpoint(fx.dir)) tensors.push({ name, dtype: 'F32' as const, shape: e.shape, data: await readTensorF32(e) });
  mkdirSync(dir);
  await writeCheckpointWeights(dir, tensors, { maxShardBytes: 600_000 });
  cpSync(join(fx.dir, 'config.json'), join(dir, 'config.json'));
  const p = fx.manifest.prompts[0];
  const out = JSON.parse(ok('generate', '--model', dir, '--input-ids', p.input_ids.join(','), '--max-new-tokens', '16', '--json', '--dtype', 'f32'));
  assert.deepEqual(out.output_ids, p.greedy.tokens);
});

test('bad input gives one clear line and a non-zero exit', () => {
  fails(/--input-ids: token id 512 \(position 1\) is outside the model's vocabulary of 512/, 'logits', '--model', fx.dir, '--input-ids', '1,512');
  fails(/unknown option --temprature/, 'generate', '--model', fx.dir, '--input-ids', '1', '--temprature', '1');
  fails(/--input-ids.*"x"/, 'logits', '--model', fx.dir, '--input-ids', '1,x');
  fails(/--dtype must be one of/, 'logits', '--model', fx.dir, '--input-ids', '1', '--dtype', 'f8');
  fails(/do not fit the context of 256 tokens/, 'logits', '--model', fx.dir, '--input-ids', Array(300).fill(1).join(','));
  fails(/more than the context of 256/, 'generate', '--model', fx.dir, '--input-ids', Array(250).fill(1).join(','), '--max-new-tokens', '10');
  fails(/config\.json/, 'logits', '--model', join(tmp, 'nowhere'), '--input-ids', '1');
  fails(/unknown command "frobnicate"/, 'frobnicate');
  fails(/unsupported option "num_beams"/, 'generate', '--model', fx.dir, '--input-ids', '1', '--generate_kwargs', 'num_beams=4');
});

test('a checkpoint whose tensor has the wrong shape is named in the error', () => {
  const dir = join(tmp, 'badshape');
  cpSync(fx.dir, dir, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  cfg.num_query_heads = [2, 4, 4, 8];
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  fails(/num_query_heads.*layer 3/i, 'logits', '--model', dir, '--input-ids', '1');
  cfg.num_query_heads = [2, 4, 4, 4];
  cfg.model_dim = 96;
  delete cfg.num_kv_heads;
  delete cfg.num_query_heads;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  fails(/model\.safetensors.*"transformer\.token_embeddings\.weight".*expected \[512, 96\]/, 'logits', '--model', dir, '--input-ids', '1');
});

test('--help documents every option', () => {
  const out = ok('generate', '--help');
  for (const o of ['--model', '--input-ids', '--max-new-tokens', '--dtype', '--json', '--generate_kwargs']) assert.match(out, new RegExp(o));
});

test('generate with prompt lookup or an assistant model: plain greedy tokens, stats.speculative, --max_length', () => {
  const ids = '1,7,9,7,9,7';
  const base = ['generate', '--model', fx.dir, '--input-ids', ids, '--json'];
  const plain = JSON.parse(ok(...base, '--max-new-tokens', '20'));
  const lookup = JSON.parse(ok(...base, '--max-new-tokens', '20', '--generate_kwargs', 'prompt_lookup_num_tokens=10', 'max_matching_ngram_size=3'));
  const assisted = JSON.parse(ok(...base, '--max-new-tokens', '20', '--assistant_model', fx.dir, '--assistant_dtype', 'q8', '--generate_kwargs', 'num_assistant_tokens=3'));
  for (const [name, out] of [['prompt_lookup', lookup], ['assistant', assisted]] as const) {
    assert.deepEqual(out.output_ids, plain.output_ids, name);
    const s = out.stats.speculative;
    assert.equal(s.method, name);
    for (const k of ['drafted', 'accepted', 'acceptance_rate', 'main_passes', 'draft_passes', 'tokens_per_main_pass']) assert.equal(typeof s[k], 'number', `${name}: ${k}`);
    assert.ok(s.accepted <= s.drafted && s.main_passes <= 20, name);
  }
  assert.equal(plain.stats.speculative, undefined);
  assert.equal(JSON.parse(ok(...base, '--max_length', '10', '--device', 'cuda:0')).output_ids.length, 4);
});

test('speculative decoding: bad combinations exit non-zero with one line', async () => {
  const base = ['generate', '--model', fx.dir, '--input-ids', '1,2,3'];
  fails(/prompt_lookup_num_tokens must be an integer >= 1/, ...base, '--generate_kwargs', 'prompt_lookup_num_tokens=0');
  fails(/--assistant_model or --generate_kwargs prompt_lookup_num_tokens=N, not both/, ...base, '--assistant_model', fx.dir, '--generate_kwargs', 'prompt_lookup_num_tokens=4');
  fails(/--assistant_dtype needs --assistant_model/, ...base, '--assistant_dtype', 'q4');
  fails(/--assistant_dtype must be one of/, ...base, '--assistant_model', fx.dir, '--assistant_dtype', 'q3');
  fails(/--device cpu: this engine runs only on the GPU/, ...base, '--device', 'cpu');
  fails(/give max_length or max_new_tokens, not both/, ...base, '--max_length', '9', '--max-new-tokens', '3');
  fails(/max_length \(3\) must be greater than the prompt's length/, ...base, '--max_length', '3');
  // An assistant with another vocabulary.
  const other = join(tmp, 'other-vocab');
  const cfg = JSON.parse(readFileSync(join(fx.dir, 'config.json'), 'utf8'));
  await synthesizeCheckpoint(other, { ...cfg, vocab_size: 256 }, { dtype: 'F16', seed: 1 });
  fails(/assistant model's vocabulary has 256 tokens but this model's has 512/, ...base, '--assistant_model', other);
});
