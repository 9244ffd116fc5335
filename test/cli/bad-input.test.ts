// Malformed input, one case a row, each run through the real CLI (node bin/openelm.js) in its own
// folder: the run must end with the right exit code (2 usage, 1 anything else), exactly one stderr
// line that names the file, tensor or option, no stack trace, no native crash, within a timeout,
// and leave nothing behind outside its folder. Checkpoints are the tiny-elm fixture, rewritten
// with the project's own writers, so most cases fail before any GPU start-up.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileSource, writeSafetensors } from '../../src/io/node-source.ts';
import { synthesizeCheckpoint, synthTensors } from '../../src/io/synth.ts';
import { parseConfig } from '../../src/config/config.ts';
import { derivePlan } from '../../src/config/plan.ts';
import { numElements, parseSafetensors, readTensorF32, type TensorToWrite } from '../../src/io/safetensors.ts';
import { fixtureDir, rawFile } from '../helpers.ts';
import { runCli } from '../cli-spawn.ts';

const TINY = fixtureDir('tiny-elm');
const tinyConfig = JSON.parse(readFileSync(join(TINY, 'config.json'), 'utf8')) as Record<string, unknown>;
const tinyPlan = derivePlan(parseConfig(tinyConfig, 'config.json'));
const root = mkdtempSync(join(tmpdir(), 'openelm-bad-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** The fixture's weights split into header (object) and data bytes, to rewrite headers. */
function fixtureWeights(): { header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>; data: Uint8Array } {
  const bytes = readFileSync(join(TINY, 'model.safetensors'));
  const n = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')), data: bytes.subarray(8 + n) };
}
type TensorHeader = { dtype: string; shape: number[]; data_offsets: [number, number] };

/** Case context: `dir` is the model folder (created empty), `tmp` the case's own folder. */
interface Ctx {
  dir: string;
  tmp: string;
}
const W = (c: Ctx) => join(c.dir, 'model.safetensors');
const withConfig = (c: Ctx, patch: Record<string, unknown>, drop: string[] = []): void => {
  cpSync(join(TINY, 'model.safetensors'), W(c));
  const cfg: Record<string, unknown> = { ...tinyConfig, ...patch };
  for (const k of drop) delete cfg[k];
  writeFileSync(join(c.dir, 'config.json'), JSON.stringify(cfg));
};
const withHeader = (c: Ctx, edit: (h: Record<string, unknown>) => void, data?: Uint8Array): void => {
  cpSync(join(TINY, 'config.json'), join(c.dir, 'config.json'));
  const fw = fixtureWeights();
  edit(fw.header);
  writeFileSync(W(c), rawFile(fw.header, data ?? fw.data));
};
const withRawWeights = (c: Ctx, bytes: Uint8Array): void => {
  cpSync(join(TINY, 'config.json'), join(c.dir, 'config.json'));
  writeFileSync(W(c), bytes);
};
const tensorOf = (h: Record<string, unknown>, name: string) => h[name] as TensorHeader;
/** The tiny model in 3+ shards (the project's synthesizer), then `edit` on its index. */
const sharded = async (c: Ctx, edit?: (weightMap: Record<string, string>) => void): Promise<string[]> => {
  await synthesizeCheckpoint(c.dir, tinyConfig, { dtype: 'F16', seed: 1, shardBytes: 400_000 });
  const indexPath = join(c.dir, 'model.safetensors.index.json');
  const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { weight_map: Record<string, string> };
  edit?.(index.weight_map);
  writeFileSync(indexPath, JSON.stringify(index));
  return [...new Set(Object.values(index.weight_map))];
};
/** Rewrites shard `file` with an extra copy of tensor `name` (128 ones). */
const addToShard = async (c: Ctx, file: string, name: string): Promise<void> => {
  const path = join(c.dir, file);
  const entries = [...(await parseSafetensors(await fileSource(path))).values()];
  const tensors: TensorToWrite[] = await Promise.all(entries.map(async (e) => ({ name: e.name, dtype: 'F16' as const, shape: e.shape, data: await readTensorF32(e) })));
  await writeSafetensors(path, [...tensors, { name, dtype: 'F16', shape: [128], data: new Float32Array(128).fill(1) }]);
};
/** The tiny model (synthetic weights) with one value of one tensor replaced. */
const poisoned = async (c: Ctx, dtype: 'F16' | 'F32', name: string, index: number, value: number): Promise<void> => {
  writeFileSync(join(c.dir, 'config.json'), JSON.stringify(tinyConfig));
  const tensors: TensorToWrite[] = synthTensors(tinyPlan, dtype, 3).map((t) => {
    if (t.name !== name) return t;
    const all = new Float32Array(numElements(t.shape));
    let at = 0;
    for (const chunk of (t.data as () => Iterable<Float32Array>)()) all.set(chunk, (at += chunk.length) - chunk.length);
    all[index] = value;
    return { ...t, data: all };
  });
  await writeSafetensors(W(c), tensors);
};

interface Case {
  name: string;
  setup?: (c: Ctx) => void | Promise<void>;
  args: (c: Ctx) => string[];
  code: 1 | 2;
  /** What the one stderr line must say (it must also name the file, tensor or option). */
  line: RegExp | ((c: Ctx) => RegExp);
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const logits = (c: Ctx, ...extra: string[]) => ['logits', '--model', c.dir, '--input-ids', '1,5,9', '--json', ...extra];
const gen = (c: Ctx, ...extra: string[]) => ['generate', '--model', c.dir, '--input-ids', '1,5,9', '--max-new-tokens', '2', '--json', ...extra];
const fx = (..._: unknown[]) => TINY; // a case that needs no files of its own runs on the fixture
const inFile = (c: Ctx, rest: string) => new RegExp(`^openelm: ${esc(W(c))}: ${rest}`);
const inConfig = (c: Ctx, rest: string) => new RegExp(`^openelm: ${esc(join(c.dir, 'config.json'))}: ${rest}`);
const inIndex = (c: Ctx, rest: string) => new RegExp(`^openelm: ${esc(join(c.dir, 'model.safetensors.index.json'))}: ${rest}`);

const cases: Case[] = [
  // ---- safetensors: the file and its header
  { name: 'weights: empty file', setup: (c) => withRawWeights(c, new Uint8Array(0)), args: logits, code: 1, line: (c) => inFile(c, 'file is 0 bytes, too short') },
  { name: 'weights: 5-byte file', setup: (c) => withRawWeights(c, new Uint8Array(5)), args: logits, code: 1, line: (c) => inFile(c, 'file is 5 bytes, too short') },
  { name: 'weights: truncated inside the header', setup: (c) => withRawWeights(c, readFileSync(join(TINY, 'model.safetensors')).subarray(0, 100)), args: logits, code: 1, line: (c) => inFile(c, 'header length \\d+ is past the end of the file') },
  { name: 'weights: truncated inside the data', setup: (c) => withRawWeights(c, readFileSync(join(TINY, 'model.safetensors')).subarray(0, 700_000)), args: logits, code: 1, line: (c) => inFile(c, 'tensor ".+" data_offsets \\[\\d+, \\d+\\] end past the end of the file') },
  { name: 'weights: header length 2^40', setup: (c) => withRawWeights(c, rawFile({}, 0, 1n << 40n)), args: logits, code: 1, line: (c) => inFile(c, 'header length 1099511627776 is past the end') },
  { name: 'weights: header not JSON', setup: (c) => withRawWeights(c, rawFile('{"transformer.norm.weight": {"dtype": "F16",', 8)), args: logits, code: 1, line: (c) => inFile(c, 'header is not valid JSON') },
  { name: 'weights: header not UTF-8', setup: (c) => withRawWeights(c, new Uint8Array([4, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0xff, 0xfe, 0x7d])), args: logits, code: 1, line: (c) => inFile(c, 'header is not valid UTF-8') },
  { name: 'weights: header is a list', setup: (c) => withRawWeights(c, rawFile('[1, 2]')), args: logits, code: 1, line: (c) => inFile(c, 'header must be a JSON object') },
  { name: 'weights: tensor entry not an object', setup: (c) => withHeader(c, (h) => (h['transformer.norm.weight'] = 5)), args: logits, code: 1, line: (c) => inFile(c, 'tensor "transformer.norm.weight" must be an object') },
  { name: 'weights: unknown dtype', setup: (c) => withHeader(c, (h) => (tensorOf(h, 'transformer.norm.weight').dtype = 'F24')), args: logits, code: 1, line: (c) => inFile(c, 'tensor "transformer.norm.weight" has unknown dtype "F24"') },
  { name: 'weights: dtype a number', setup: (c) => withHeader(c, (h) => ((h['transformer.norm.weight'] as Record<string, unknown>).dtype = 16)), args: logits, code: 1, line: (c) => inFile(c, 'tensor "transformer.norm.weight" dtype must be a string') },
  { name: 'weights: integer dtype for a weight', setup: (c) => withHeader(c, (h) => (tensorOf(h, 'transformer.norm.weight').dtype = 'I16')), args: logits, code: 1, line: (c) => inFile(c, 'tensor "transformer.norm.weight" has dtype I16, expected one of F32, F16, BF16') },
  { name: 'weights: negative shape', setup: (c) => withHeader(c, (h) => (tensorOf(h, 'transformer.norm.weight').shape = [-128])), args: logits, code: 1, line: (c) => inFile(c, 'tensor "transformer.norm.weight" shape must be a list of non-negative integers') },
  { name: 'weights: shape not a list', setup: (c) => withHeader(c, (h) => ((h['transformer.norm.weight'] as Record<string, unknown>).shape = '128')), args: logits, code: 1, line: (c) => inFile(c, 'tensor "transformer.norm.weight" shape must be a list') },
  { name: 'weights: data_offsets of one number', setup: (c) => withHeader(c, (h) => ((h['transformer.norm.weight'] as Record<string, unknown>).data_offsets = [0])), args: logits, code: 1, line: (c) => inFile(c, 'tensor "transformer.norm.weight" data_offsets must be a list \\[begin, end\\]') },
  { name: 'weights: begin after end', setup: (c) => withHeader(c, (h) => (tensorOf(h, 'transformer.norm.weight').data_offsets = [256, 0])), args: logits, code: 1, line: (c) => inFile(c, 'tensor "transformer.norm.weight" data_offsets \\[256, 0\\] has begin after end') },
  { name: 'weights: offsets past the end', setup: (c) => withHeader(c, (h) => { const t = tensorOf(h, 'transformer.norm.weight'); t.data_offsets = [t.data_offsets[0] + 10_000_000, t.data_offsets[1] + 10_000_000]; }), args: logits, code: 1, line: (c) => inFile(c, 'tensor "transformer.norm.weight" data_offsets \\[\\d+, \\d+\\] end past the end of the file') },
  { name: 'weights: overlapping tensors', setup: (c) => withHeader(c, (h) => { const a = tensorOf(h, 'transformer.norm.weight'); const b = tensorOf(h, 'transformer.layers.0.attn_norm.weight'); a.data_offsets = [...b.data_offsets] as [number, number]; }), args: logits, code: 1, line: (c) => inFile(c, 'tensor ".+" data_offsets \\[\\d+, \\d+\\] overlap tensor') },
  { name: 'weights: byte count disagrees with shape', setup: (c) => withHeader(c, (h) => (tensorOf(h, 'transformer.norm.weight').shape = [129])), args: logits, code: 1, line: (c) => inFile(c, 'tensor "transformer.norm.weight" data_offsets \\[\\d+, \\d+\\] hold 256 bytes, but F16 \\[129\\] needs 258') },
  { name: 'weights: shape disagrees with the config', setup: (c) => withHeader(c, (h) => (tensorOf(h, 'transformer.norm.weight').shape = [64, 2])), args: logits, code: 1, line: (c) => inFile(c, 'tensor "transformer.norm.weight" has shape \\[64, 2\\], expected \\[128\\]') },
  { name: 'weights: a tensor missing', setup: (c) => withHeader(c, (h) => delete h['transformer.layers.2.ffn.proj_1.weight']), args: logits, code: 1, line: (c) => inFile(c, 'missing tensor "transformer.layers.2.ffn.proj_1.weight"') },
  { name: 'weights: an unexpected tensor', setup: (c) => withHeader(c, (h) => (h['lm_head.weight'] = { dtype: 'F16', shape: [0], data_offsets: [0, 0] })), args: logits, code: 1, line: (c) => inFile(c, 'unexpected tensor "lm_head.weight"') },
  { name: 'weights: __metadata__ value not a string', setup: (c) => withHeader(c, (h) => (h.__metadata__ = { format: 'pt', step: 5 })), args: logits, code: 1, line: (c) => inFile(c, '__metadata__\\["step"\\] must be a string') },
  { name: 'weights: __metadata__ a list', setup: (c) => withHeader(c, (h) => (h.__metadata__ = ['pt'])), args: logits, code: 1, line: (c) => inFile(c, '__metadata__ must be a JSON object of strings') },
  { name: 'weights: nested __metadata__', setup: (c) => withHeader(c, (h) => (h.__metadata__ = { format: { kind: 'pt' } })), args: logits, code: 1, line: (c) => inFile(c, '__metadata__\\["format"\\] must be a string') },
  { name: 'weights: model.safetensors is a folder', setup: (c) => { cpSync(join(TINY, 'config.json'), join(c.dir, 'config.json')); mkdirSync(W(c)); }, args: logits, code: 1, line: (c) => inFile(c, 'not a regular file') },
  { name: 'weights: none in the folder', setup: (c) => cpSync(join(TINY, 'config.json'), join(c.dir, 'config.json')), args: logits, code: 1, line: (c) => new RegExp(`^openelm: ${esc(c.dir)}: no weights found`) },
  { name: 'weights: model folder does not exist', args: (c) => ['logits', '--model', join(c.dir, 'nope'), '--input-ids', '1'], code: 1, line: (c) => new RegExp(`^openelm: ${esc(join(c.dir, 'nope', 'config.json'))}: cannot read`) },

  // ---- non-finite weights: caught while each tensor is converted
  { name: 'non-finite: NaN in a layer-1 proj_2 (F16)', setup: (c) => poisoned(c, 'F16', 'transformer.layers.1.ffn.proj_2.weight', 77, NaN), args: logits, code: 1, line: (c) => inFile(c, 'tensor "transformer.layers.1.ffn.proj_2.weight" has a non-finite value \\(NaN\\) at index 77$') },
  { name: 'non-finite: +Infinity in the embedding (F16)', setup: (c) => poisoned(c, 'F16', 'transformer.token_embeddings.weight', 3, Infinity), args: logits, code: 1, line: (c) => inFile(c, 'tensor "transformer.token_embeddings.weight" has a non-finite value \\(Infinity\\) at index 3$') },
  { name: 'non-finite: -Infinity in the final norm (F32)', setup: (c) => poisoned(c, 'F32', 'transformer.norm.weight', 127, -Infinity), args: logits, code: 1, line: (c) => inFile(c, 'tensor "transformer.norm.weight" has a non-finite value \\(-Infinity\\) at index 127$') },
  { name: 'non-finite: NaN in a q_norm, q8', setup: (c) => poisoned(c, 'F32', 'transformer.layers.3.attn.q_norm.weight', 0, NaN), args: (c) => logits(c, '--dtype', 'q8'), code: 1, line: (c) => inFile(c, 'tensor "transformer.layers.3.attn.q_norm.weight" has a non-finite value \\(NaN\\) at index 0$') },
  { name: 'non-finite: 70000 overflows F16 to Infinity', setup: (c) => poisoned(c, 'F16', 'transformer.layers.0.attn_norm.weight', 5, 70000), args: gen, code: 1, line: (c) => inFile(c, 'tensor "transformer.layers.0.attn_norm.weight" has a non-finite value \\(Infinity\\) at index 5$') },

  // ---- sharded checkpoints: the index and its shards
  { name: 'shards: a shard file missing', setup: async (c) => rmSync(join(c.dir, (await sharded(c))[1])), args: logits, code: 1, line: (c) => inIndex(c, 'shard "model-00002-of-0000\\d.safetensors" \\(holding ".+"( and \\d+ more)?\\) does not exist') },
  { name: 'shards: index not JSON', setup: async (c) => { await sharded(c); writeFileSync(join(c.dir, 'model.safetensors.index.json'), '{"weight_map": '); }, args: logits, code: 1, line: (c) => inIndex(c, 'not valid JSON') },
  { name: 'shards: index without weight_map', setup: async (c) => { await sharded(c); writeFileSync(join(c.dir, 'model.safetensors.index.json'), '{"metadata": {}}'); }, args: logits, code: 1, line: (c) => inIndex(c, 'expected an object with "weight_map"') },
  { name: 'shards: weight_map value a number', setup: (c) => sharded(c, (wm) => ((wm as Record<string, unknown>)['transformer.norm.weight'] = 3)), args: logits, code: 1, line: (c) => inIndex(c, 'weight_map\\["transformer.norm.weight"\\] must be a shard file name, got 3') },
  { name: 'shards: weight_map path leaves the folder', setup: (c) => sharded(c, (wm) => (wm['transformer.norm.weight'] = '../outside.safetensors')), args: logits, code: 1, line: (c) => inIndex(c, 'weight_map\\["transformer.norm.weight"\\] is "../outside.safetensors", but shard names must be plain file names') },
  { name: 'shards: weight_map empty', setup: (c) => sharded(c, (wm) => { for (const k of Object.keys(wm)) delete wm[k]; }), args: logits, code: 1, line: (c) => inIndex(c, 'weight_map is empty') },
  { name: 'shards: tensor mapped to a shard that lacks it', setup: (c) => sharded(c, (wm) => (wm['transformer.zzz.weight'] = wm['transformer.norm.weight'])), args: logits, code: 1, line: (c) => inIndex(c, 'tensor "transformer.zzz.weight" is mapped to shard ".+", but that shard does not hold it') },
  { name: 'shards: tensor in a shard other than the index names', setup: (c) => sharded(c, (wm) => { const first = wm['transformer.token_embeddings.weight']; const other = Object.values(wm).find((f) => f !== first)!; const moved = Object.keys(wm).find((k) => wm[k] === other)!; wm[moved] = first; }), args: logits, code: 1, line: (c) => inIndex(c, 'tensor ".+" is in shard ".+", but the index maps it to shard ".+"$') },
  { name: 'shards: tensor in two shards', setup: async (c) => addToShard(c, (await sharded(c))[1], 'transformer.norm.weight'), args: logits, code: 1, line: (c) => inIndex(c, 'tensor "transformer.norm.weight" is in two shards, "model-0000\\d-of-0000\\d.safetensors" and "model-0000\\d-of-0000\\d.safetensors"$') },
  { name: 'shards: shard holds a tensor the index omits', setup: (c) => sharded(c, (wm) => delete wm['transformer.layers.1.ffn_norm.weight']), args: logits, code: 1, line: (c) => inIndex(c, 'shard ".+" holds tensor "transformer.layers.1.ffn_norm.weight", which the index does not list') },

  // ---- config.json
  { name: 'config: missing file', setup: (c) => cpSync(join(TINY, 'model.safetensors'), W(c)), args: logits, code: 1, line: (c) => inConfig(c, "cannot read the model's config.json") },
  { name: 'config: not JSON', setup: (c) => { cpSync(join(TINY, 'model.safetensors'), W(c)); writeFileSync(join(c.dir, 'config.json'), '{"model_dim": 128,'); }, args: logits, code: 1, line: (c) => inConfig(c, 'not valid JSON') },
  { name: 'config: a list', setup: (c) => { cpSync(join(TINY, 'model.safetensors'), W(c)); writeFileSync(join(c.dir, 'config.json'), '[]'); }, args: logits, code: 1, line: (c) => inConfig(c, 'expected a JSON object') },
  { name: 'config: missing num_transformer_layers', setup: (c) => withConfig(c, {}, ['num_transformer_layers']), args: logits, code: 1, line: (c) => inConfig(c, 'missing required key "num_transformer_layers"') },
  { name: 'config: missing vocab_size', setup: (c) => withConfig(c, {}, ['vocab_size']), args: logits, code: 1, line: (c) => inConfig(c, 'missing required key "vocab_size"') },
  { name: 'config: missing head_dim', setup: (c) => withConfig(c, {}, ['head_dim']), args: logits, code: 1, line: (c) => inConfig(c, 'missing required key "head_dim"') },
  { name: 'config: a billion layers', setup: (c) => withConfig(c, { num_transformer_layers: 1e9 }), args: logits, code: 1, line: (c) => inConfig(c, 'num_transformer_layers must be at most 1024, got 1000000000') },
  { name: 'config: model_dim a string', setup: (c) => withConfig(c, { model_dim: '128' }), args: logits, code: 1, line: (c) => inConfig(c, 'model_dim must be a positive integer, got "128"') },
  { name: 'config: model_dim absurd', setup: (c) => withConfig(c, { model_dim: 2 ** 40 }), args: logits, code: 1, line: (c) => inConfig(c, 'model_dim must be at most 65536') },
  { name: 'config: odd head_dim', setup: (c) => withConfig(c, { head_dim: 33 }), args: logits, code: 1, line: (c) => inConfig(c, 'head_dim must be a positive even integer, got 33') },
  { name: 'config: head_dim 0', setup: (c) => withConfig(c, { head_dim: 0 }), args: logits, code: 1, line: (c) => inConfig(c, 'head_dim must be a positive even integer, got 0') },
  { name: 'config: vocab_size 10^12', setup: (c) => withConfig(c, { vocab_size: 1e12 }), args: logits, code: 1, line: (c) => inConfig(c, 'vocab_size must be at most 16777216') },
  { name: 'config: max_context_length 10^9', setup: (c) => withConfig(c, { max_context_length: 1e9 }), args: logits, code: 1, line: (c) => inConfig(c, 'max_context_length must be at most 1048576') },
  { name: 'config: max_context_length -1', setup: (c) => withConfig(c, { max_context_length: -1 }), args: logits, code: 1, line: (c) => inConfig(c, 'max_context_length must be a positive integer, got -1') },
  { name: 'config: rope_max_length 10^12', setup: (c) => withConfig(c, { rope_max_length: 1e12 }), args: logits, code: 1, line: (c) => inConfig(c, 'rope_max_length must be at most') },
  { name: 'config: qkv_multipliers 1000', setup: (c) => withConfig(c, { qkv_multipliers: [0.5, 1000] }), args: logits, code: 1, line: (c) => inConfig(c, 'qkv_multipliers\\[1\\] must be at most 64, got 1000') },
  { name: 'config: ffn_multipliers of the wrong length', setup: (c) => withConfig(c, { ffn_multipliers: [1, 2, 3] }), args: logits, code: 1, line: (c) => inConfig(c, 'ffn_multipliers must be .* got a list of 3 values') },
  { name: 'config: ffn_multipliers absurd', setup: (c) => withConfig(c, { ffn_multipliers: [0.5, 1.67, 2.83, 1e6] }), args: logits, code: 1, line: (c) => inConfig(c, 'ffn_multipliers\\[3\\] must be at most 64') },
  { name: 'config: num_query_heads disagree with the multipliers', setup: (c) => withConfig(c, { num_query_heads: [2, 4, 4, 6] }), args: logits, code: 1, line: (c) => inConfig(c, 'num_query_heads\\[3\\] is 6, but qkv_multipliers') },
  { name: 'config: num_kv_heads list too short', setup: (c) => withConfig(c, { num_kv_heads: [1, 2] }), args: logits, code: 1, line: (c) => inConfig(c, 'num_kv_heads must be a list of 4 positive integers') },
  { name: 'config: num_kv_heads disagree', setup: (c) => withConfig(c, { num_kv_heads: [1, 2, 2, 1] }), args: logits, code: 1, line: (c) => inConfig(c, 'num_kv_heads\\[3\\] is 1, but 4 query heads') },
  { name: 'config: negative rope_freq_constant', setup: (c) => withConfig(c, { rope_freq_constant: -1 }), args: logits, code: 1, line: (c) => inConfig(c, 'rope_freq_constant must be a positive number, got -1') },
  { name: 'config: bos_token_id outside the vocabulary', setup: (c) => withConfig(c, { bos_token_id: 512 }), args: logits, code: 1, line: (c) => inConfig(c, 'bos_token_id must be below vocab_size \\(512\\), got 512') },
  { name: 'config: ffn_with_glu a string', setup: (c) => withConfig(c, { ffn_with_glu: 'yes' }), args: logits, code: 1, line: (c) => inConfig(c, 'ffn_with_glu must be true or false, got "yes"') },
  { name: 'config: vocab_size disagrees with the checkpoint', setup: (c) => withConfig(c, { vocab_size: 1000 }), args: logits, code: 1, line: (c) => inFile(c, 'tensor "transformer.token_embeddings.weight" has shape \\[512, 128\\], expected \\[1000, 128\\]') },
  { name: 'config: untied output layer the checkpoint lacks', setup: (c) => withConfig(c, { share_input_output_layers: false }), args: logits, code: 1, line: (c) => inFile(c, 'missing tensor "lm_head.weight"') },

  // ---- command-line options
  { name: 'cli: unknown command', args: () => ['frobnicate'], code: 2, line: /^openelm: unknown command "frobnicate"/ },
  { name: 'cli: unknown option', args: (c) => logits({ ...c, dir: fx() }, '--temperature', '3'), code: 2, line: /^openelm: logits: unknown option --temperature/ },
  { name: 'cli: stray argument', args: () => ['logits', 'model-dir'], code: 2, line: /^openelm: logits: unexpected argument "model-dir"/ },
  { name: 'cli: option without its value', args: () => ['logits', '--input-ids', '1', '--model'], code: 2, line: /^openelm: logits: --model needs a value/ },
  { name: 'cli: flag given a value', args: () => ['logits', '--model', fx(), '--input-ids', '1', '--json=yes'], code: 2, line: /^openelm: logits: --json takes no value/ },
  { name: 'cli: --input-ids missing', args: () => ['logits', '--model', fx()], code: 2, line: /^openelm: --input-ids is required/ },
  { name: 'cli: --input-ids not numbers', args: () => ['logits', '--model', fx(), '--input-ids', '1,two,3'], code: 2, line: /^openelm: --input-ids: "two" is not a token id/ },
  { name: 'cli: --input-ids with an empty item', args: () => ['logits', '--model', fx(), '--input-ids', '1,,3'], code: 2, line: /^openelm: --input-ids must be comma-separated token ids/ },
  { name: 'cli: --input-ids negative', args: () => ['logits', '--model', fx(), '--input-ids', '1,-5'], code: 2, line: /^openelm: --input-ids: "-5" is not a token id/ },
  { name: 'cli: --input-ids outside the vocabulary', args: () => ['logits', '--model', fx(), '--input-ids', '1,5,600', '--json'], code: 2, line: /^openelm: --input-ids: token id 600 \(position 2\) is outside the model's vocabulary of 512/ },
  { name: 'cli: generate ids outside the vocabulary', args: () => ['generate', '--model', fx(), '--input-ids', '99999', '--json'], code: 2, line: /^openelm: --input-ids: token id 99999 \(position 0\) is outside/ },
  { name: 'cli: bad --dtype', args: () => ['logits', '--model', fx(), '--input-ids', '1', '--dtype', 'f8'], code: 2, line: /^openelm: --dtype must be one of auto, f32, f16, q8, q4, mlx4, mlx8, got "f8"/ },
  { name: 'cli: bad --gemv', args: () => ['logits', '--model', fx(), '--input-ids', '1', '--gemv', 'fast'], code: 2, line: /^openelm: --gemv must be auto/ },
  { name: 'cli: bad --kv-dtype', args: () => ['logits', '--model', fx(), '--input-ids', '1', '--kv-dtype', 'bf16'], code: 2, line: /^openelm: --kv-dtype must be f32 or f16, got "bf16"/ },
  { name: 'cli: bad --attention', args: () => ['generate', '--model', fx(), '--input-ids', '1', '--attention', 'fast'], code: 2, line: /^openelm: --attention must be auto, single, split, got "fast"/ },
  { name: 'cli: --context-length 0', args: () => ['logits', '--model', fx(), '--input-ids', '1', '--context-length', '0'], code: 2, line: /^openelm: --context-length must be an integer >= 1, got "0"/ },
  { name: 'cli: --context-length too big for the GPU', args: () => ['logits', '--model', fx(), '--input-ids', '1', '--context-length', '100000000'], code: 1, line: /^openelm: the context length \(--context-length\): the RoPE table for 100000000 positions needs/ },
  { name: 'cli: both --prompt and --input-ids', args: () => ['generate', '--model', fx(), '--prompt', 'Hi', '--input-ids', '1'], code: 2, line: /^openelm: give either --prompt or --input-ids, not both/ },
  { name: 'cli: --max-new-tokens -1', args: () => ['generate', '--model', fx(), '--input-ids', '1', '--max-new-tokens', '-1'], code: 2, line: /^openelm: --max-new-tokens must be an integer >= 0, got "-1"/ },
  { name: 'cli: --max-new-tokens 1.5', args: () => ['generate', '--model', fx(), '--input-ids', '1', '--max-new-tokens', '1.5'], code: 2, line: /^openelm: --max-new-tokens must be an integer >= 0, got "1.5"/ },
  { name: 'cli: --chat without --prompt', args: () => ['generate', '--model', fx(), '--input-ids', '1', '--chat'], code: 2, line: /^openelm: --chat needs --prompt/ },
  { name: 'cli: synth --size 5B', args: (c) => ['synth', '--size', '5B', '--out', join(c.tmp, 'out')], code: 2, line: /^openelm: --size must be one of 270M, 450M, 1.1B, 3B, got "5B"/ },
  { name: 'cli: synth --dtype I8', args: (c) => ['synth', '--out', join(c.tmp, 'out'), '--dtype', 'I8'], code: 2, line: /^openelm: --dtype must be F16, F32 or BF16, got "I8"/ },

  // ---- --generate_kwargs
  { name: 'kwargs: temperature=-1', args: () => [...gen({ dir: fx(), tmp: '' }), '--generate_kwargs', 'temperature=-1'], code: 2, line: /^openelm: temperature must be a number >= 0/ },
  { name: 'kwargs: temperature=nan', args: () => [...gen({ dir: fx(), tmp: '' }), '--generate_kwargs', 'temperature=nan'], code: 2, line: /^openelm: temperature must be a number, got "nan"/ },
  { name: 'kwargs: top_p=0', args: () => [...gen({ dir: fx(), tmp: '' }), '--generate_kwargs', 'top_p=0'], code: 2, line: /^openelm: top_p must be in \(0, 1\], got 0/ },
  { name: 'kwargs: top_p=1.5', args: () => [...gen({ dir: fx(), tmp: '' }), '--generate_kwargs', 'top_p=1.5'], code: 2, line: /^openelm: top_p must be in \(0, 1\], got 1.5/ },
  { name: 'kwargs: top_k=-3', args: () => [...gen({ dir: fx(), tmp: '' }), '--generate_kwargs', 'top_k=-3'], code: 2, line: /^openelm: top_k must be an integer >= 0/ },
  { name: 'kwargs: repetition_penalty=0', args: () => [...gen({ dir: fx(), tmp: '' }), '--generate_kwargs', 'repetition_penalty=0'], code: 2, line: /^openelm: repetition_penalty must be a number > 0/ },
  { name: 'kwargs: do_sample=maybe', args: () => [...gen({ dir: fx(), tmp: '' }), '--generate_kwargs', 'do_sample=maybe'], code: 2, line: /^openelm: do_sample must be true or false, got "maybe"/ },
  { name: 'kwargs: seed=-1', args: () => [...gen({ dir: fx(), tmp: '' }), '--generate_kwargs', 'seed=-1'], code: 2, line: /^openelm: seed must be an integer >= 0/ },
  { name: 'kwargs: unknown kwarg', args: () => [...gen({ dir: fx(), tmp: '' }), '--generate_kwargs', 'num_beams=4'], code: 2, line: /^openelm: generate_kwargs: unsupported option "num_beams"/ },
  { name: 'kwargs: not KEY=VALUE', args: () => [...gen({ dir: fx(), tmp: '' }), '--generate_kwargs', 'temperature'], code: 2, line: /^openelm: generate_kwargs: "temperature" is not KEY=VALUE/ },
  { name: 'kwargs: given twice', args: () => [...gen({ dir: fx(), tmp: '' }), '--generate_kwargs', 'top_k=3', 'top_k=4'], code: 2, line: /^openelm: generate_kwargs: top_k given twice/ },
  { name: 'kwargs: max_new_tokens twice (option and kwarg)', args: () => [...gen({ dir: fx(), tmp: '' }), '--generate_kwargs', 'max_new_tokens=3'], code: 2, line: /^openelm: give max_new_tokens once/ },
  { name: 'kwargs: empty stop string', args: () => [...gen({ dir: fx(), tmp: '' }), '--generate_kwargs', 'stop_strings='], code: 2, line: /^openelm: stop strings must not be empty/ },

  // ---- tokenizer files
  { name: 'tokenizer: tokenizer.json not JSON', setup: (c) => { withConfig(c, {}); writeFileSync(join(c.dir, 'tokenizer.json'), '{"model": '); }, args: (c) => ['generate', '--model', c.dir, '--prompt', 'Hi'], code: 1, line: (c) => new RegExp(`^openelm: ${esc(join(c.dir, 'tokenizer.json'))}: `) },
  { name: 'tokenizer: tokenizer.json without a model', setup: (c) => { withConfig(c, {}); writeFileSync(join(c.dir, 'tokenizer.json'), '{}'); }, args: (c) => ['generate', '--model', c.dir, '--prompt', 'Hi'], code: 1, line: (c) => new RegExp(`^openelm: ${esc(join(c.dir, 'tokenizer.json'))}: `) },
  { name: 'tokenizer: tokenizer.model garbage', setup: (c) => { withConfig(c, {}); writeFileSync(join(c.dir, 'tokenizer.model'), new Uint8Array([0xff, 0xff, 0xff, 0x01, 0x02])); }, args: (c) => ['generate', '--model', c.dir, '--prompt', 'Hi'], code: 1, line: (c) => new RegExp(`^openelm: ${esc(join(c.dir, 'tokenizer.model'))}: `) },
  { name: 'tokenizer: --tokenizer path does not exist', args: (c) => ['generate', '--model', fx(), '--prompt', 'Hi', '--tokenizer', join(c.tmp, 'nope.json')], code: 1, line: (c) => new RegExp(`^openelm: ${esc(join(c.tmp, 'nope.json'))}: no such file or folder`) },
  { name: 'tokenizer: --tokenizer file is empty', setup: (c) => writeFileSync(join(c.dir, 'empty.model'), ''), args: (c) => ['generate', '--model', fx(), '--prompt', 'Hi', '--tokenizer', join(c.dir, 'empty.model')], code: 1, line: (c) => new RegExp(`^openelm: ${esc(join(c.dir, 'empty.model'))}: `) },
];

/** Every file and folder under `dir`, as paths relative to it. */
function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      out.push(relative(dir, p));
      if (statSync(p).isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

test(`malformed input corpus: ${cases.length} cases, each one clear stderr line and the right exit code`, { timeout: 900_000 }, async () => {
  assert.ok(cases.length >= 60, `${cases.length} cases`);
  assert.equal(new Set(cases.map((c) => c.name)).size, cases.length, 'case names are unique');
  const failures: string[] = [];
  const runCase = async (k: Case, i: number): Promise<void> => {
    const caseDir = mkdtempSync(join(root, `case${i}-`));
    const ctx: Ctx = { dir: join(caseDir, 'model'), tmp: join(caseDir, 'tmp') };
    mkdirSync(ctx.dir);
    mkdirSync(ctx.tmp);
    try {
      await k.setup?.(ctx);
      const before = listTree(caseDir);
      const cache = join(caseDir, 'cache');
      const r = await runCli(k.args(ctx), { tmp: ctx.tmp, timeoutMs: 60_000, env: { OPENELM_CACHE: cache, HF_ENDPOINT: 'http://127.0.0.1:9' } });
      const lines = r.stderr.split('\n').filter((l) => l !== '');
      const want = typeof k.line === 'function' ? k.line(ctx) : k.line;
      const problems: string[] = [];
      if (r.timedOut) problems.push(`timed out after ${r.ms.toFixed(0)} ms`);
      if (r.signal !== null) problems.push(`ended by signal ${r.signal}`);
      if (r.code !== k.code) problems.push(`exit code ${r.code}, expected ${k.code}`);
      if (lines.length !== 1) problems.push(`${lines.length} stderr lines`);
      if (/^ {4}at /m.test(r.stderr)) problems.push('stack trace');
      if (!want.test(lines[0] ?? '')) problems.push(`stderr does not match ${want}`);
      if (r.stdout !== '') problems.push(`stdout: ${r.stdout.slice(0, 80)}`);
      const after = listTree(caseDir);
      const added = after.filter((f) => !before.includes(f));
      if (added.length > 0) problems.push(`left files: ${added.join(', ')}`);
      if (problems.length > 0) failures.push(`${k.name}: ${problems.join('; ')}\n    stderr: ${r.stderr.trim().split('\n').slice(0, 3).join(' | ')}`);
    } catch (e) {
      failures.push(`${k.name}: setup or run failed: ${(e as Error).message}`);
    } finally {
      rmSync(caseDir, { recursive: true, force: true });
    }
  };
  // Two at a time: most cases end before any GPU start-up, so the run is bound by node start-up.
  let next = 0;
  const worker = async () => {
    while (next < cases.length) {
      const i = next++;
      await runCase(cases[i], i);
    }
  };
  await Promise.all([worker(), worker()]);
  assert.deepEqual(failures, [], `${failures.length} of ${cases.length} cases failed:\n${failures.join('\n')}`);
});
