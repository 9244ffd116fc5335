// `openelm convert` end to end through the real CLI: --json says what it wrote; the converted
// folder prints the same logits as --dtype q4 on the source; and bad input (a non-empty --out, a
// conflicting --dtype, a truncated or damaged converted file, a config claiming the other format)
// ends with one clear stderr line.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileSource } from '../../src/io/node-source.ts';
import { parseSafetensors } from '../../src/io/safetensors.ts';
import { fixtureDir } from '../helpers.ts';
import { runCli } from '../cli-spawn.ts';

const SRC = fixtureDir('tiny-elm');
const root = mkdtempSync(join(tmpdir(), 'openelm-convert-cli-'));
after(() => rmSync(root, { recursive: true, force: true }));
const Q4 = join(root, 'q4');
const Q8 = join(root, 'q8');
const env = { OPENELM_CACHE: join(root, 'cache'), HF_ENDPOINT: 'http://127.0.0.1:9' };
const cli = (args: string[]) => runCli(args, { env, timeoutMs: 120_000 });

interface ConvertJson {
  source: string;
  out: string;
  format: string;
  fold_norms: boolean;
  files: { name: string; bytes: number }[];
  source_weight_bytes: number;
  weight_bytes: number;
  ms: number;
}

let q4Json: ConvertJson;
before(async () => {
  const r = await cli(['convert', '--model', SRC, '--dtype', 'q4', '--out', Q4, '--json']);
  assert.equal(r.code, 0, r.stderr);
  q4Json = JSON.parse(r.stdout) as ConvertJson;
  const r8 = await cli(['convert', '--model', SRC, '--dtype', 'q8', '--out', Q8, '--json']);
  assert.equal(r8.code, 0, r8.stderr);
});

test('convert --json reports the files written, their sizes and the time', () => {
  assert.equal(q4Json.format, 'q4');
  assert.equal(q4Json.fold_norms, false);
  assert.equal(q4Json.out, Q4);
  const names = q4Json.files.map((f) => f.name);
  assert.ok(names.includes('config.json') && names.includes('model.safetensors'), names.join(', '));
  for (const f of q4Json.files) assert.equal(f.bytes, statSync(join(Q4, f.name)).size, f.name);
  assert.equal(q4Json.weight_bytes, statSync(join(Q4, 'model.safetensors')).size);
  assert.equal(q4Json.source_weight_bytes, statSync(join(SRC, 'model.safetensors')).size);
  // The fixture is tiny (f32 norms and the zero-padded groups weigh more than in a real model).
  assert.ok(q4Json.weight_bytes < q4Json.source_weight_bytes / 3, `${q4Json.weight_bytes} of ${q4Json.source_weight_bytes}`);
  assert.ok(Number.isFinite(q4Json.ms) && q4Json.ms >= 0);
  const cfg = JSON.parse(readFileSync(join(Q4, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual(cfg.openelm_webgpu, { format: 'q4', version: 1, fold_norms: false });
});

test('the converted folder prints the same logits as --dtype on the source, and runs generate', async () => {
  for (const [dir, dtype] of [[Q4, 'q4'], [Q8, 'q8']]) {
    const args = ['--input-ids', '1,5,9,200', '--all-positions', '--json', '--gemv', 'rows', '--prefill-matmul', 'register'];
    const a = await cli(['logits', '--model', SRC, '--dtype', dtype, ...args]);
    const b = await cli(['logits', '--model', dir, ...args]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(b.stdout, a.stdout, dtype);
    const same = await cli(['logits', '--model', dir, '--dtype', dtype, ...args]);
    assert.equal(same.stdout, a.stdout, `${dtype} given explicitly`);
  }
  const g = await cli(['generate', '--model', Q4, '--input-ids', '1,5,9', '--max-new-tokens', '4', '--json']);
  assert.equal(g.code, 0, g.stderr);
  assert.equal((JSON.parse(g.stdout) as { output_ids: number[] }).output_ids.length, 4);
});

/** A copy of a converted folder to damage. */
function copyOf(dir: string, name: string): string {
  const d = join(root, name);
  cpSync(dir, d, { recursive: true });
  return d;
}

const cases: { name: string; args: () => string[]; code: 1 | 2; line: RegExp }[] = [
  {
    name: '--out exists and is not empty',
    args: () => ['convert', '--model', SRC, '--dtype', 'q4', '--out', Q8],
    code: 1,
    line: /^openelm: .*q8: --out exists and is not empty; give a new or empty folder$/,
  },
  { name: 'bad --dtype', args: () => ['convert', '--model', SRC, '--dtype', 'f16', '--out', join(root, 'x1')], code: 2, line: /--dtype must be q8 or q4, got "f16"/ },
  { name: 'missing --out', args: () => ['convert', '--model', SRC, '--dtype', 'q4'], code: 2, line: /--out DIR is required/ },
  { name: 'converting a converted folder', args: () => ['convert', '--model', Q4, '--dtype', 'q8', '--out', join(root, 'x2')], code: 1, line: /config\.json: this checkpoint is already converted \(openelm_webgpu\.format q4\)/ },
  {
    name: 'a conflicting --dtype',
    args: () => ['logits', '--model', Q4, '--dtype', 'f16', '--input-ids', '1,5', '--json'],
    code: 1,
    line: /this checkpoint is stored in q4 \(openelm_webgpu\.format.*not f16$/,
  },
  {
    name: 'a truncated converted file',
    args: () => {
      const d = copyOf(Q4, 'truncated');
      const f = join(d, 'model.safetensors');
      truncateSync(f, statSync(f).size - 100);
      return ['logits', '--model', d, '--input-ids', '1,5', '--json'];
    },
    code: 1,
    line: /truncated\/model\.safetensors: tensor ".*" data_offsets .* past the end of the file/,
  },
  {
    name: 'a config claiming q4 over q8 tensors',
    args: () => {
      const d = copyOf(Q8, 'claims-q4');
      const cfgPath = join(d, 'config.json');
      const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
      writeFileSync(cfgPath, JSON.stringify({ ...cfg, openelm_webgpu: { format: 'q4', version: 1 } }));
      return ['logits', '--model', d, '--input-ids', '1,5', '--json'];
    },
    code: 1,
    line: /claims-q4\/model\.safetensors: tensor "transformer\.token_embeddings\.weight" is U8 \[\d+, \d+\], expected U8 \[\d+, \d+\] \(config\.json says openelm_webgpu\.format q4\): that is the size of q8 quants$/,
  },
  {
    name: 'an unknown format version',
    args: () => {
      const d = copyOf(Q4, 'version');
      const cfgPath = join(d, 'config.json');
      const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
      writeFileSync(cfgPath, JSON.stringify({ ...cfg, openelm_webgpu: { format: 'q4', version: 2 } }));
      return ['logits', '--model', d, '--input-ids', '1,5', '--json'];
    },
    code: 1,
    line: /version\/config\.json: openelm_webgpu\.version must be 1 \(this engine reads version 1\), got 2$/,
  },
];

test(`bad input: ${cases.length} cases, each one stderr line and the right exit code`, async () => {
  const failures: string[] = [];
  for (const k of cases) {
    const r = await cli(k.args());
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    if (r.code !== k.code || lines.length !== 1 || !k.line.test(lines[0])) failures.push(`${k.name}: exit ${r.code}, stderr: ${r.stderr.trim()}`);
  }
  assert.deepEqual(failures, []);
});

test('a damaged scale in a converted file is named at load', async () => {
  const d = copyOf(Q4, 'damaged');
  const f = join(d, 'model.safetensors');
  const e = (await parseSafetensors(await fileSource(f))).get('transformer.layers.1.ffn.proj_2.scales')!;
  const bytes = readFileSync(f);
  bytes.writeUInt16LE(0x7c00, e.offset + 2 * 5); // +inf: the 6th scale of row 0
  writeFileSync(f, bytes);
  const r = await cli(['logits', '--model', d, '--input-ids', '1,5', '--json']);
  assert.equal(r.code, 1);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /damaged\/model\.safetensors: tensor "transformer\.layers\.1\.ffn\.proj_2\.scales" has a non-finite scale at row 0, group 5 \(is the file damaged\?\)$/);
});

test('convert names a missing shard of the source and leaves --out uncreated', async () => {
  // A missing shard: the error names it, and --out is left as it was (not created).
  const d = join(root, 'sharded');
  mkdirSync(d);
  cpSync(join(SRC, 'config.json'), join(d, 'config.json'));
  writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'transformer.norm.weight': 'model-00001-of-00002.safetensors' } }));
  const out = join(root, 'never');
  const r = await cli(['convert', '--model', d, '--dtype', 'q4', '--out', out]);
  assert.equal(r.code, 1);
  assert.match(r.stderr.trim(), /shard "model-00001-of-00002\.safetensors" \(holding "transformer\.norm\.weight"\) does not exist/);
  assert.throws(() => statSync(out));
});
