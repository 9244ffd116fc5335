// The GGUF writer of the llama.cpp peer: a tiny independent reader parses back the header, the
// metadata and the tensor infos written for the tiny-elm fixture, and dequantizes the data.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadPlan } from '../../src/index.ts';
import { openCheckpoint } from '../../src/io/node-source.ts';
import { readTensorF32 } from '../../src/io/safetensors.ts';
import { f16BitsToF32 } from '../../src/util/half.ts';
import { buildGgufHeader, gv, GGUF_TYPE, writeOpenElmGguf, type GgmlTypeName } from '../../bench/gguf.ts';
import { ggmlBlocks } from '../../src/weights/quant.ts';
import { fixtureDir } from '../helpers.ts';

const dir = fixtureDir('tiny-elm');
const tmp = mkdtempSync(join(tmpdir(), 'openelm-gguf-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

// ---- a minimal GGUF v3 reader, written from the format description, independent of the writer ----
interface Info {
  name: string;
  dims: number[]; // GGUF order: innermost first
  type: number;
  offset: number;
}
interface Parsed {
  version: number;
  meta: Map<string, { type: number; value: unknown }>;
  tensors: Info[];
  dataStart: number;
  bytes: Uint8Array;
}

function parseGguf(bytes: Uint8Array): Parsed {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 0;
  const u32 = () => ((p += 4), v.getUint32(p - 4, true));
  const u64 = () => {
    const x = v.getBigUint64(p, true);
    p += 8;
    assert.ok(x < BigInt(Number.MAX_SAFE_INTEGER));
    return Number(x);
  };
  const str = () => {
    const n = u64();
    const s = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(p, p + n));
    p += n;
    return s;
  };
  const scalar = (t: number): unknown => {
    switch (t) {
      case 0: return v.getUint8(p++);
      case 1: return v.getInt8(p++);
      case 2: return ((p += 2), v.getUint16(p - 2, true));
      case 3: return ((p += 2), v.getInt16(p - 2, true));
      case 4: return u32();
      case 5: return ((p += 4), v.getInt32(p - 4, true));
      case 6: return ((p += 4), v.getFloat32(p - 4, true));
      case 7: return v.getUint8(p++) !== 0;
      case 8: return str();
      case 10: return u64();
      case 11: return ((p += 8), v.getBigInt64(p - 8, true));
      case 12: return ((p += 8), v.getFloat64(p - 8, true));
      default: throw new Error(`unknown GGUF value type ${t} at ${p}`);
    }
  };
  assert.equal(new TextDecoder().decode(bytes.subarray(0, 4)), 'GGUF');
  p = 4;
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  const meta = new Map<string, { type: number; value: unknown }>();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const type = u32();
    if (type === 9) {
      const itemType = u32();
      const n = u64();
      const arr: unknown[] = [];
      for (let j = 0; j < n; j++) arr.push(scalar(itemType));
      meta.set(key, { type: 9 * 100 + itemType, value: arr });
    } else meta.set(key, { type, value: scalar(type) });
  }
  const tensors: Info[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nd = u32();
    const dims: number[] = [];
    for (let j = 0; j < nd; j++) dims.push(u64());
    const type = u32();
    const offset = u64();
    tensors.push({ name, dims, type, offset });
  }
  const align = (meta.get('general.alignment')?.value as number | undefined) ?? 32;
  const dataStart = Math.ceil(p / align) * align;
  return { version, meta, tensors, dataStart, bytes };
}

const BLOCK: Record<number, [number, number]> = { 0: [1, 4], 1: [1, 2], 2: [32, 18], 8: [32, 34] };
const nbytes = (t: Info) => {
  const n = t.dims.reduce((a, b) => a * b, 1);
  const [per, size] = BLOCK[t.type];
  return (n / per) * size;
};

function dequant(g: Parsed, t: Info): Float32Array {
  const n = t.dims.reduce((a, b) => a * b, 1);
  const start = g.dataStart + t.offset;
  const v = new DataView(g.bytes.buffer, g.bytes.byteOffset + start, nbytes(t));
  const out = new Float32Array(n);
  if (t.type === 0) for (let i = 0; i < n; i++) out[i] = v.getFloat32(4 * i, true);
  else if (t.type === 1) for (let i = 0; i < n; i++) out[i] = f16BitsToF32(v.getUint16(2 * i, true));
  else if (t.type === 8) {
    for (let b = 0; b < n / 32; b++) {
      const d = f16BitsToF32(v.getUint16(b * 34, true));
      for (let j = 0; j < 32; j++) out[b * 32 + j] = d * v.getInt8(b * 34 + 2 + j);
    }
  } else if (t.type === 2) {
    for (let b = 0; b < n / 32; b++) {
      const d = f16BitsToF32(v.getUint16(b * 18, true));
      for (let j = 0; j < 16; j++) {
        const q = v.getUint8(b * 18 + 2 + j);
        out[b * 32 + j] = d * ((q & 15) - 8);
        out[b * 32 + 16 + j] = d * ((q >> 4) - 8);
      }
    }
  } else throw new Error(`type ${t.type}`);
  return out;
}

// ---- tests ----

test('header, metadata and tensor infos of a hand-made file parse back', () => {
  const meta = new Map([
    ['general.architecture', gv.str('openelm')],
    ['a.u32', gv.u32(7)],
    ['a.f32', gv.f32(0.5)],
    ['a.bool', gv.bool(true)],
    ['a.ints', gv.arr(GGUF_TYPE.INT32, [1, -2, 3])],
    ['a.strs', gv.arr(GGUF_TYPE.STRING, ['x', 'ü', ''])],
  ]);
  const { header, offsets, dataBytes } = buildGgufHeader(meta, [
    { name: 'a', shape: [3, 64], type: 'F16' },
    { name: 'b', shape: [5], type: 'F32' },
    { name: 'c', shape: [2, 64], type: 'Q8_0' },
  ]);
  assert.equal(header.length % 32, 0);
  assert.deepEqual(offsets, [0, 384, 416]);
  assert.equal(dataBytes, 576); // 416 + 2 blocks of 2 rows x 34 bytes = 552, padded to 32
  const g = parseGguf(header);
  assert.equal(g.version, 3);
  assert.equal(g.dataStart, header.length);
  assert.equal(g.meta.get('a.u32')!.value, 7);
  assert.equal(g.meta.get('a.f32')!.value, 0.5);
  assert.equal(g.meta.get('a.bool')!.value, true);
  assert.deepEqual(g.meta.get('a.ints')!.value, [1, -2, 3]);
  assert.deepEqual(g.meta.get('a.strs')!.value, ['x', 'ü', '']);
  assert.deepEqual(g.tensors.map((t) => [t.name, t.dims, t.type, t.offset]), [
    ['a', [64, 3], 1, 0],
    ['b', [5], 0, 384],
    ['c', [64, 2], 8, 416],
  ]);
});

for (const type of ['F16', 'F32', 'Q8_0', 'Q4_0'] as GgmlTypeName[]) {
  test(`the tiny-elm checkpoint as a ${type} GGUF reads back as llama.cpp's openelm layout`, async () => {
    const plan = await loadPlan(dir);
    const tensors = await openCheckpoint(dir);
    const path = join(tmp, `tiny.${type}.gguf`);
    await writeOpenElmGguf(path, plan, tensors, type);
    const g = parseGguf(new Uint8Array(readFileSync(path)));
    assert.equal(g.version, 3);
    const m = (k: string) => {
      assert.ok(g.meta.has(k), `missing metadata ${k}`);
      return g.meta.get(k)!.value;
    };
    assert.equal(m('general.architecture'), 'openelm');
    assert.equal(m('openelm.block_count'), 4);
    assert.equal(m('openelm.embedding_length'), 128);
    assert.equal(m('openelm.context_length'), 256);
    assert.deepEqual(m('openelm.feed_forward_length'), plan.layers.map((l) => l.ffnDim));
    assert.equal(g.meta.get('openelm.feed_forward_length')!.type, 905); // array of INT32
    assert.deepEqual(m('openelm.attention.head_count'), [2, 4, 4, 4]);
    assert.deepEqual(m('openelm.attention.head_count_kv'), [1, 2, 2, 2]);
    assert.equal(m('openelm.rope.freq_base'), 10000);
    assert.equal(m('openelm.rope.dimension_count'), 32);
    assert.equal(m('openelm.attention.key_length'), 32);
    assert.equal(m('openelm.attention.value_length'), 32);
    assert.ok(Math.abs((m('openelm.attention.layer_norm_rms_epsilon') as number) - 1e-6) < 1e-12);
    assert.equal(m('tokenizer.ggml.model'), 'llama');
    const tokens = m('tokenizer.ggml.tokens') as string[];
    const types = m('tokenizer.ggml.token_type') as number[];
    assert.equal(tokens.length, 512);
    assert.equal((m('tokenizer.ggml.scores') as number[]).length, 512);
    assert.deepEqual([tokens[0], tokens[1], tokens[2], tokens[3], tokens[450]], ['<unk>', '<s>', '</s>', '<0x00>', '\u2581The']);
    assert.deepEqual([types[0], types[1], types[2], types[3], types[300]], [2, 3, 3, 6, 1]);
    assert.equal(m('tokenizer.ggml.bos_token_id'), 1);
    assert.equal(m('tokenizer.ggml.eos_token_id'), 2);

    // Tensor infos: llama.cpp's names, shapes reversed, norms F32, aligned offsets, no overlap.
    const want = new Map<string, number[]>([['token_embd.weight', [128, 512]], ['output_norm.weight', [128]]]);
    plan.layers.forEach((l) => {
      const b = `blk.${l.index}`;
      want.set(`${b}.attn_norm.weight`, [128]);
      want.set(`${b}.attn_qkv.weight`, [128, l.qkvOut]);
      want.set(`${b}.attn_q_norm.weight`, [32]);
      want.set(`${b}.attn_k_norm.weight`, [32]);
      want.set(`${b}.attn_output.weight`, [l.numQueryHeads * 32, 128]);
      want.set(`${b}.ffn_norm.weight`, [128]);
      want.set(`${b}.ffn_gate.weight`, [128, l.ffnDim]);
      want.set(`${b}.ffn_up.weight`, [128, l.ffnDim]);
      want.set(`${b}.ffn_down.weight`, [l.ffnDim, 128]);
    });
    assert.equal(g.tensors.length, want.size);
    const code = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 }[type];
    let end = 0;
    for (const t of [...g.tensors].sort((a, b) => a.offset - b.offset)) {
      assert.deepEqual(t.dims, want.get(t.name), t.name);
      assert.equal(t.type, t.dims.length === 1 ? 0 : code, t.name);
      assert.equal(t.offset % 32, 0, t.name);
      assert.ok(t.offset >= end, `${t.name} overlaps the previous tensor`);
      end = t.offset + nbytes(t);
    }
    assert.equal(g.bytes.length, g.dataStart + Math.ceil(end / 32) * 32);

    // Data: gate and up are proj_1's two halves; quantized values within one step of the source.
    const proj1 = await readTensorF32(tensors.get('transformer.layers.1.ffn.proj_1.weight')!);
    const F = plan.layers[1].ffnDim;
    const tol = type === 'F16' || type === 'F32' ? 0 : type === 'Q8_0' ? 0.6 / 127 : 1.01 / 8;
    for (const [name, rows] of [['blk.1.ffn_gate.weight', 0], ['blk.1.ffn_up.weight', F]] as const) {
      const t = g.tensors.find((x) => x.name === name)!;
      const got = dequant(g, t);
      const src = proj1.subarray(rows * 128, (rows + F) * 128);
      for (let b = 0; b < got.length / 32; b++) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(src[b * 32 + j]));
        for (let j = 0; j < 32; j++) {
          const i = b * 32 + j;
          assert.ok(Math.abs(got[i] - src[i]) <= tol * amax + 1e-7, `${name}[${i}]: ${got[i]} vs ${src[i]}`);
        }
      }
    }
    if (type === 'Q8_0' || type === 'Q4_0') {
      // The quantized bytes are the engine's (ggmlBlocks, whose layout ggml-blocks.test.ts checks), byte for byte.
      const gate = g.tensors.find((x) => x.name === 'blk.1.ffn_gate.weight')!;
      const start = g.dataStart + gate.offset;
      assert.deepEqual(g.bytes.subarray(start, start + nbytes(gate)), ggmlBlocks(proj1.subarray(0, F * 128), type === 'Q8_0' ? 'q8' : 'q4'));
    }
    const norm = g.tensors.find((x) => x.name === 'output_norm.weight')!;
    assert.deepEqual(Array.from(dequant(g, norm)), Array.from(await readTensorF32(tensors.get('transformer.norm.weight')!)));
  });
}
