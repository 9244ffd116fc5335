// safetensors parsing, reading, writing and checkpoint folders (CPU only).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config.ts';
import { derivePlan } from '../../src/config/plan.ts';
import { f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, bf16BitsToF32 } from '../../src/util/half.ts';
import {
  bytesToF32,
  checkCheckpointTensors,
  checkTensorShape,
  encodeF32,
  memorySource,
  parseSafetensors,
  readTensorF32,
  type TensorEntry,
} from '../../src/io/safetensors.ts';
import { fileSource, openCheckpoint, writeCheckpointWeights, writeSafetensors } from '../../src/io/node-source.ts';
import { assembleShards, parseShardIndex } from '../../src/io/shard-index.ts';
import { fixtureDir, rawFile } from '../helpers.ts';

const TINY = fixtureDir('tiny-elm');

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'openelm-st-'));
}

function rand(seed: number, n: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 4294967296 - 0.5) * 2 * scale;
  }
  return out;
}


async function parseRaw(bytes: Uint8Array) {
  return parseSafetensors(memorySource('model.safetensors', bytes));
}

async function rejectsLine(p: Promise<unknown>, expected: string | RegExp): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
    if (typeof expected === 'string') assert.equal(e.message, expected);
    else assert.match(e.message, expected);
    return true;
  });
}

test('round trip F32, F16, BF16 through a file', async () => {
  const dir = tempDir();
  try {
    const a = rand(1, 6 * 5, 3);
    const b = rand(2, 7 * 3, 100);
    const c = rand(3, 11, 0.01);
    const special = new Float32Array([0, -0, 1, -1, 65504, 1e-8, 6e-5, 2 ** -24, Infinity, -Infinity, 70000, 0.1]);
    const path = join(dir, 'x.safetensors');
    await writeSafetensors(
      path,
      [
        { name: 'a', dtype: 'F32', shape: [6, 5], data: a },
        { name: 'b', dtype: 'F16', shape: [7, 3], data: () => b },
        { name: 'c', dtype: 'BF16', shape: [11], data: () => [c.subarray(0, 4), c.subarray(4)] },
        { name: 'special16', dtype: 'F16', shape: [special.length], data: special },
        { name: 'special_bf', dtype: 'BF16', shape: [special.length], data: special },
        { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
        { name: 'scalar', dtype: 'F32', shape: [], data: new Float32Array([42]) },
      ],
      { format: 'pt', note: 'test' },
    );
    const m = await parseSafetensors(await fileSource(path));
    assert.deepEqual([...m.keys()].sort(), ['a', 'b', 'c', 'empty', 'scalar', 'special16', 'special_bf']);
    // Header is padded to a multiple of 8, so data starts aligned.
    assert.equal(m.get('a')!.offset % 8, 0);
    assert.deepEqual(m.get('b')!.shape, [7, 3]);
    assert.equal(m.get('b')!.dtype, 'F16');
    assert.equal(m.get('b')!.byteLength, 42);
    assert.deepEqual(await readTensorF32(m.get('a')!), a);
    assert.deepEqual(await readTensorF32(m.get('b')!), Float32Array.from(b, (v) => f16BitsToF32(f32ToF16Bits(v))));
    assert.deepEqual(await readTensorF32(m.get('c')!), Float32Array.from(c, (v) => bf16BitsToF32(f32ToBf16Bits(v))));
    const s16 = await readTensorF32(m.get('special16')!);
    assert.deepEqual([...s16], [0, -0, 1, -1, 65504, 0, 1007 * 2 ** -24, 2 ** -24, Infinity, -Infinity, Infinity, 0.0999755859375].map((v) => Math.fround(v)));
    const sbf = await readTensorF32(m.get('special_bf')!);
    assert.equal(sbf[4], 65536); // bf16 keeps the range, loses precision
    assert.equal(sbf[8], Infinity);
    assert.equal(sbf[11], 0.10009765625);
    assert.deepEqual(await readTensorF32(m.get('empty')!), new Float32Array(0));
    assert.deepEqual(await readTensorF32(m.get('scalar')!), new Float32Array([42]));
    const header = JSON.parse(new TextDecoder().decode(readFileSync(path).subarray(8, 8 + Number(m.get('a')!.offset - 8))));
    assert.deepEqual(header.__metadata__, { format: 'pt', note: 'test' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * The f16 value nearest to v (ties to an even last mantissa bit), from the format's definition:
 * 10 mantissa bits below the leading one, exponents -14..15, subnormals spaced 2^-24, and
 * anything from 65520 (halfway past the largest finite, 65504) up is infinite. Exact in f64.
 */
function nearestF16(v: number): number {
  const a = Math.abs(v);
  if (a >= 65520) return Math.sign(v) * Infinity;
  let e = -14;
  while (e < 15 && 2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (e - 10);
  const q = a / ulp;
  let r = Math.floor(q);
  if (q - r > 0.5 || (q - r === 0.5 && r % 2 === 1)) r++;
  return (v < 0 || Object.is(v, -0) ? -1 : 1) * r * ulp;
}

test('f16 encoding rounds to the nearest f16, ties to even, on many bit patterns', () => {
  const n = 1 << 18;
  const vals = new Float32Array(n);
  const bits = new Uint32Array(vals.buffer);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    bits[i] = s >>> 0;
  }
  // plus edge values around the f16 range boundaries and subnormals
  const edges = [65504, 65519.99, 65520, 65536, 2 ** -14, 2 ** -14 * (1 - 2 ** -11), 2 ** -24, 2 ** -25, 2 ** -25 * 1.0001, 3 * 2 ** -26, 1 + 2 ** -11, 1 + 3 * 2 ** -11, -0, NaN];
  edges.forEach((v, i) => (vals[i] = v));
  for (let i = 0; i < 2000; i++) vals[100 + i] = (i - 1000) * 2 ** -26; // subnormal range
  const out = new Uint8Array(n * 2);
  encodeF32(vals, 'F16', out, 0);
  const got = new Uint16Array(out.buffer);
  for (let i = 0; i < n; i++) {
    const v = vals[i];
    if (got[i] !== f32ToF16Bits(v)) assert.fail(`value ${v}: the scalar and the array encoder differ`);
    const decoded = f16BitsToF32(got[i]);
    if (Number.isNaN(v)) {
      assert.ok(Number.isNaN(decoded), `NaN (bits 0x${bits[i].toString(16)}) encodes as 0x${got[i].toString(16)}`);
      continue;
    }
    const want = nearestF16(v);
    if (!Object.is(decoded, want)) assert.fail(`value ${v} (bits 0x${bits[i].toString(16)}): got 0x${got[i].toString(16)} = ${decoded}, want ${want}`);
  }
  // and the lookup-table decoder agrees with the scalar one for every f16
  const all = new Uint16Array(65536).map((_, i) => i);
  const dec = bytesToF32(new Uint8Array(all.buffer), 'F16');
  for (let i = 0; i < 65536; i++) assert.ok(Object.is(dec[i], Math.fround(f16BitsToF32(i))) || (Number.isNaN(dec[i]) && Number.isNaN(f16BitsToF32(i))));
});

test('unaligned byte views are copied before reinterpreting', () => {
  const f = new Float32Array([1.5, -2.25, 3]);
  const buf = new Uint8Array(1 + 12);
  buf.set(new Uint8Array(f.buffer), 1);
  assert.deepEqual(bytesToF32(buf.subarray(1), 'F32'), f);
  const h = new Uint16Array([f32ToF16Bits(1.5), f32ToF16Bits(-2.25)]);
  const buf2 = new Uint8Array(5);
  buf2.set(new Uint8Array(h.buffer), 1);
  assert.deepEqual(bytesToF32(buf2.subarray(1), 'F16'), new Float32Array([1.5, -2.25]));
  assert.deepEqual(bytesToF32(buf2.subarray(1), 'BF16').length, 2);
  assert.throws(() => bytesToF32(new Uint8Array(8), 'I64', 'x'), /x has dtype I64; only F32, F16 and BF16/);
});

test('sharded round trip', async () => {
  const dir = tempDir();
  try {
    const ts = Array.from({ length: 7 }, (_, i) => ({ name: `t.${i}.weight`, dtype: 'F16' as const, shape: [10 + i, 8], data: rand(10 + i, (10 + i) * 8) }));
    // 160, 176, 192, 208, 224, 240, 256 bytes; greedy with limit 400: [160 176] [192 208] [224] [240] [256]
    const files = await writeCheckpointWeights(dir, ts, { maxShardBytes: 400, metadata: { format: 'pt' } });
    assert.deepEqual(files, [1, 2, 3, 4, 5].map((i) => `model-0000${i}-of-00005.safetensors`).concat('model.safetensors.index.json'));
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    assert.equal(index.metadata.total_size, ts.reduce((a, t) => a + t.shape[0] * 16, 0));
    assert.equal(index.weight_map['t.6.weight'], 'model-00005-of-00005.safetensors');
    assert.equal(index.weight_map['t.3.weight'], 'model-00002-of-00005.safetensors');
    const m = await openCheckpoint(dir);
    assert.equal(m.size, 7);
    for (const t of ts) {
      const e = m.get(t.name)!;
      assert.deepEqual(e.shape, t.shape);
      assert.deepEqual(await readTensorF32(e), Float32Array.from(t.data, (v) => f16BitsToF32(f32ToF16Bits(v))));
    }
    // Everything fits: a single model.safetensors, and the old index is removed.
    assert.deepEqual(await writeCheckpointWeights(dir, ts, { maxShardBytes: 1 << 20 }), ['model.safetensors']);
    assert.equal((await openCheckpoint(dir)).get('t.3.weight')!.source.name, join(dir, 'model.safetensors'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('malformed files: one clear line naming the file and tensor', async () => {
  const ok = { x: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };
  assert.equal((await parseRaw(rawFile(ok, 16))).get('x')!.offset, 8 + JSON.stringify(ok).length);
  await rejectsLine(parseRaw(new Uint8Array(5)), 'model.safetensors: file is 5 bytes, too short for the 8-byte safetensors header length');
  await rejectsLine(parseRaw(rawFile(ok, 16).subarray(0, 30)), /^model\.safetensors: header length \d+ is past the end of the file \(file is 30 bytes; is this a safetensors file\?\)$/);
  await rejectsLine(parseRaw(rawFile(ok, 16, 1n << 40n)), /^model\.safetensors: header length 1099511627776 is past the end of the file/);
  await rejectsLine(parseRaw(rawFile('{"x": {"dtype": "F32",', 0)), /^model\.safetensors: header is not valid JSON \(.+\)$/);
  await rejectsLine(parseRaw(rawFile('[1, 2]', 0)), 'model.safetensors: header must be a JSON object, got [1,2]');
  await rejectsLine(
    parseRaw(rawFile({ x: { dtype: 'F32', shape: [25], data_offsets: [0, 100] } }, 64)),
    'model.safetensors: tensor "x" data_offsets [0, 100] end past the end of the file (data region is 64 bytes)',
  );
  await rejectsLine(
    parseRaw(rawFile({ x: { dtype: 'F32', shape: [2], data_offsets: [16, 8] } }, 64)),
    'model.safetensors: tensor "x" data_offsets [16, 8] has begin after end',
  );
  await rejectsLine(
    parseRaw(rawFile({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }, 32)),
    'model.safetensors: tensor "b" data_offsets [8, 24] overlap tensor "a" data_offsets [0, 16]',
  );
  // overlap hidden behind an empty tensor between the two
  await rejectsLine(
    parseRaw(rawFile({ a: { dtype: 'F32', shape: [8], data_offsets: [0, 32] }, z: { dtype: 'F32', shape: [0], data_offsets: [4, 4] }, b: { dtype: 'F32', shape: [2], data_offsets: [16, 24] } }, 32)),
    'model.safetensors: tensor "b" data_offsets [16, 24] overlap tensor "a" data_offsets [0, 32]',
  );
  await rejectsLine(
    parseRaw(rawFile({ x: { dtype: 'F16', shape: [3, 4], data_offsets: [0, 16] } }, 32)),
    'model.safetensors: tensor "x" data_offsets [0, 16] hold 16 bytes, but F16 [3, 4] needs 24',
  );
  await rejectsLine(
    parseRaw(rawFile({ x: { dtype: 'F24', shape: [2], data_offsets: [0, 6] } }, 8)),
    /^model\.safetensors: tensor "x" has unknown dtype "F24" \(expected one of .*F16.*\)$/,
  );
  await rejectsLine(parseRaw(rawFile({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 8)), 'model.safetensors: tensor "x" shape must be a list of non-negative integers, got [-1]');
  await rejectsLine(parseRaw(rawFile({ x: { dtype: 'F32', shape: [1], data_offsets: [0] } }, 8)), 'model.safetensors: tensor "x" data_offsets must be a list [begin, end] of two non-negative integers, got [0]');
  await rejectsLine(parseRaw(rawFile({ x: 5 }, 8)), 'model.safetensors: tensor "x" must be an object {dtype, shape, data_offsets}, got 5');
  // __metadata__ is allowed; a known but non-float dtype parses and fails only when read as floats
  const m = await parseRaw(rawFile({ __metadata__: { format: 'pt' }, ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, 16));
  assert.equal(m.size, 1);
  await rejectsLine(readTensorF32(m.get('ids')!), 'model.safetensors: tensor "ids" has dtype I64; only F32, F16 and BF16 can be read as floats');
});

test('a truncated file is caught at parse time (header) or read time (short source)', async () => {
  const dir = tempDir();
  try {
    const path = join(dir, 'model.safetensors');
    await writeSafetensors(path, [{ name: 'w', dtype: 'F32', shape: [64], data: rand(5, 64) }]);
    const full = readFileSync(path);
    writeFileSync(path, full.subarray(0, full.length - 10));
    await rejectsLine(parseSafetensors(await fileSource(path)), `${path}: tensor "w" data_offsets [0, 256] end past the end of the file (data region is 246 bytes)`);
    writeFileSync(path, full.subarray(0, 6));
    await rejectsLine(parseSafetensors(await fileSource(path)), `${path}: file is 6 bytes, too short for the 8-byte safetensors header length`);
    writeFileSync(path, full.subarray(0, 20));
    await rejectsLine(parseSafetensors(await fileSource(path)), /header length \d+ is past the end of the file \(file is 20 bytes/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('checkpoint folders: missing files, bad index entries', async () => {
  const dir = tempDir();
  try {
    await rejectsLine(openCheckpoint(join(dir, 'nope')), `${join(dir, 'nope')}: model folder does not exist`);
    await rejectsLine(openCheckpoint(dir), `${dir}: no weights found: looked for model.safetensors and model.safetensors.index.json in this folder`);

    const t = (name: string) => ({ name, dtype: 'F32' as const, shape: [4], data: rand(1, 4) });
    await writeSafetensors(join(dir, 'shard-a.safetensors'), [t('a'), t('b')]);
    const indexPath = join(dir, 'model.safetensors.index.json');
    const writeIndex = (wm: unknown) => writeFileSync(indexPath, JSON.stringify({ metadata: {}, weight_map: wm }));

    writeIndex({ a: 'shard-a.safetensors', b: 'shard-a.safetensors' });
    assert.deepEqual([...(await openCheckpoint(dir)).keys()].sort(), ['a', 'b']);

    writeIndex({ a: 'shard-a.safetensors', c: 'shard-b.safetensors' });
    await rejectsLine(openCheckpoint(dir), `${indexPath}: shard "shard-b.safetensors" (holding "c") does not exist in ${dir}`);

    writeIndex({ a: '../evil.safetensors' });
    await rejectsLine(openCheckpoint(dir), `${indexPath}: weight_map["a"] is "../evil.safetensors", but shard names must be plain file names inside the model folder`);
    writeIndex({ a: '/etc/passwd' });
    await rejectsLine(openCheckpoint(dir), /weight_map\["a"\] is "\/etc\/passwd", but shard names must be plain file names/);
    writeIndex({ a: 'sub/x.safetensors' });
    await rejectsLine(openCheckpoint(dir), /must be plain file names/);
    writeIndex({ a: 3 });
    await rejectsLine(openCheckpoint(dir), `${indexPath}: weight_map["a"] must be a shard file name, got 3`);

    writeIndex({ a: 'shard-a.safetensors', zz: 'shard-a.safetensors' });
    await rejectsLine(openCheckpoint(dir), `${indexPath}: tensor "zz" is mapped to shard "shard-a.safetensors", but that shard does not hold it`);

    writeFileSync(indexPath, '{"weight_map": ');
    await rejectsLine(openCheckpoint(dir), /model\.safetensors\.index\.json: not valid JSON \(.+\)$/);
    writeFileSync(indexPath, '{"metadata": {}}');
    await rejectsLine(openCheckpoint(dir), /model\.safetensors\.index\.json: expected an object with "weight_map"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writer: wrong value count is an error and leaves no file behind', async () => {
  const dir = tempDir();
  try {
    const path = join(dir, 'model.safetensors');
    await rejectsLine(
      writeSafetensors(path, [{ name: 'w', dtype: 'F16', shape: [3, 4], data: () => new Float32Array(11) }]),
      `${path}: tensor "w" F16 [3, 4] needs 12 values, its data gave 11`,
    );
    await rejectsLine(openCheckpoint(dir), /no weights found/);
    await assert.rejects(writeSafetensors(path, [{ name: 'w', dtype: 'I8' as 'F16', shape: [1], data: new Float32Array(1) }]), /dtype I8, expected F32, F16 or BF16/);
    await assert.rejects(writeSafetensors(path, [{ name: 'w', dtype: 'F32', shape: [1], data: new Float32Array(1) }, { name: 'w', dtype: 'F32', shape: [1], data: new Float32Array(1) }]), /tensor "w" given twice/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('checkTensorShape and checkCheckpointTensors', async () => {
  const source = memorySource('model.safetensors', new Uint8Array(0));
  const e: TensorEntry = { name: 'transformer.layers.3.attn.qkv_proj.weight', dtype: 'F16', shape: [256, 128], source, offset: 0, byteLength: 0 };
  checkTensorShape(e, [256, 128], 'model.safetensors');
  assert.throws(() => checkTensorShape(e, [384, 128], 'model.safetensors'), {
    message: 'model.safetensors: tensor "transformer.layers.3.attn.qkv_proj.weight" has shape [256, 128], expected [384, 128]',
  });
  assert.throws(() => checkTensorShape(e, [256, 128, 1]), /model\.safetensors: .* has shape \[256, 128\], expected \[256, 128, 1\]/);
  const map = new Map([[e.name, e]]);
  assert.deepEqual(checkCheckpointTensors(map, [{ name: e.name, shape: [256, 128] }], 'dir'), []);
  assert.throws(() => checkCheckpointTensors(map, [{ name: 'lm_head.weight', shape: [10, 4] }], 'dir'), {
    message: 'dir: tensor "lm_head.weight" [10, 4] is missing from the checkpoint',
  });
});

test('tiny-elm fixture: every planned tensor present with its shape, values readable', async () => {
  const plan = derivePlan(parseConfig(JSON.parse(readFileSync(`${TINY}/config.json`, 'utf8')), `${TINY}/config.json`));
  const m = await openCheckpoint(TINY);
  assert.deepEqual(checkCheckpointTensors(m, plan.tensors, TINY), []);
  for (const spec of plan.tensors) {
    const e = m.get(spec.name);
    assert.ok(e, spec.name);
    checkTensorShape(e, spec.shape);
    assert.equal(e.dtype, 'F16');
  }
  assert.equal(m.size, plan.tensors.length);
  const emb = await readTensorF32(m.get('transformer.token_embeddings.weight')!);
  assert.equal(emb.length, 512 * 128);
  let ss = 0;
  for (const v of emb) ss += v * v;
  const std = Math.sqrt(ss / emb.length);
  assert.ok(std > 0.08 && std < 0.1, `embedding std ${std}`);
  const norm = await readTensorF32(m.get('transformer.norm.weight')!);
  assert.ok(Math.abs(norm.reduce((a, b) => a + b, 0) / norm.length - 1) < 0.05);
});

test('shard index: one parser; a tensor in two shards, in the wrong shard, or unlisted is an error', async () => {
  const where = 'm/model.safetensors.index.json';
  const shard = async (name: string, tensors: string[]) => {
    const header = Object.fromEntries(tensors.map((t, i) => [t, { dtype: 'F32', shape: [1], data_offsets: [4 * i, 4 * i + 4] }]));
    return parseSafetensors(memorySource(name, rawFile(header, 4 * tensors.length)));
  };
  const index = (wm: Record<string, string>) => parseShardIndex(JSON.stringify({ metadata: {}, weight_map: wm }), where);
  const a = await shard('a.safetensors', ['x', 'y']);
  const b = await shard('b.safetensors', ['z']);
  const shards = new Map([['a.safetensors', a], ['b.safetensors', b]]);
  const ok = assembleShards(index({ x: 'a.safetensors', y: 'a.safetensors', z: 'b.safetensors' }), shards, where);
  assert.deepEqual([...ok.keys()].sort(), ['x', 'y', 'z']);
  assert.equal(ok.get('z')!.source.name, 'b.safetensors');
  assert.throws(() => assembleShards(index({ x: 'a.safetensors', y: 'a.safetensors', z: 'a.safetensors' }), shards, where), {
    message: `${where}: tensor "z" is in shard "b.safetensors", but the index maps it to shard "a.safetensors"`,
  });
  assert.throws(() => assembleShards(index({ x: 'a.safetensors', z: 'b.safetensors' }), shards, where), {
    message: `${where}: shard "a.safetensors" holds tensor "y", which the index does not list`,
  });
  const twice = await shard('b.safetensors', ['z', 'y']);
  assert.throws(() => assembleShards(index({ x: 'a.safetensors', y: 'a.safetensors', z: 'b.safetensors' }), new Map([['a.safetensors', a], ['b.safetensors', twice]]), where), {
    message: `${where}: tensor "y" is in two shards, "a.safetensors" and "b.safetensors"`,
  });
  assert.throws(() => parseShardIndex('{"weight_map": {"x": "a/b.safetensors"}}', where), { message: `${where}: weight_map["x"] is "a/b.safetensors", but shard names must be plain file names inside the model folder` });
  assert.throws(() => parseShardIndex('{"weight_map": {}}', where), { message: `${where}: weight_map is empty` });
  assert.deepEqual([...parseShardIndex('{"weight_map": {"x": "a", "y": "b", "z": "a"}}', where)], [['a', ['x', 'z']], ['b', ['y']]]);
});
