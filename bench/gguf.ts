// A small GGUF v3 writer, and the conversion of an OpenELM checkpoint (safetensors) into the GGUF
// layout llama.cpp reads for architecture "openelm", so that llama.cpp can
// be benchmarked on exactly the weights we run. Tensors are F32 (norms), F16, Q8_0 or Q4_0.
// Written tensor by tensor (never the whole model in memory) into `<path>.partial`, then renamed.
import { open, rename, rm } from 'node:fs/promises';
import llamaTokenizerData from 'llama-tokenizer-js';
import type { ModelPlan } from '../src/config/plan.ts';
import { f32ToF16Bits } from '../src/util/half.ts';
import { readTensorBytes, readTensorF32, type TensorEntry } from '../src/io/safetensors.ts';
import { ggmlBlocks, QUANT_GROUP } from '../src/weights/quant.ts';

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** ggml tensor types written here. */
export const GGML_TYPE = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 } as const;
export type GgmlTypeName = keyof typeof GGML_TYPE;
export const GGML_TYPE_NAMES = Object.keys(GGML_TYPE) as GgmlTypeName[];
/** llama_ftype of a file whose matrices are all of one type. */
const FILE_TYPE: Record<GgmlTypeName, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7 };

export const GGUF_TYPE = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
type ScalarType = Exclude<(typeof GGUF_TYPE)[keyof typeof GGUF_TYPE], 9>;

export type GgufValue =
  | { type: ScalarType; value: number | string | boolean | bigint }
  | { type: typeof GGUF_TYPE.ARRAY; itemType: ScalarType; value: readonly (number | string | boolean | bigint)[] };

export const gv = {
  u32: (value: number): GgufValue => ({ type: GGUF_TYPE.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GGUF_TYPE.INT32, value }),
  f32: (value: number): GgufValue => ({ type: GGUF_TYPE.FLOAT32, value }),
  bool: (value: boolean): GgufValue => ({ type: GGUF_TYPE.BOOL, value }),
  str: (value: string): GgufValue => ({ type: GGUF_TYPE.STRING, value }),
  arr: (itemType: ScalarType, value: readonly (number | string | boolean | bigint)[]): GgufValue => ({ type: GGUF_TYPE.ARRAY, itemType, value }),
};

/** Growable little-endian byte buffer. */
class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private static readonly utf8 = new TextEncoder();

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number) { this.reserve(1); this.view.setUint8(this.length, v); this.length += 1; }
  i8(v: number) { this.reserve(1); this.view.setInt8(this.length, v); this.length += 1; }
  u16(v: number) { this.reserve(2); this.view.setUint16(this.length, v, true); this.length += 2; }
  i16(v: number) { this.reserve(2); this.view.setInt16(this.length, v, true); this.length += 2; }
  u32(v: number) { this.reserve(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  i32(v: number) { this.reserve(4); this.view.setInt32(this.length, v, true); this.length += 4; }
  f32(v: number) { this.reserve(4); this.view.setFloat32(this.length, v, true); this.length += 4; }
  f64(v: number) { this.reserve(8); this.view.setFloat64(this.length, v, true); this.length += 8; }
  u64(v: number | bigint) { this.reserve(8); this.view.setBigUint64(this.length, BigInt(v), true); this.length += 8; }
  i64(v: number | bigint) { this.reserve(8); this.view.setBigInt64(this.length, BigInt(v), true); this.length += 8; }
  str(s: string) {
    const b = ByteWriter.utf8.encode(s);
    this.u64(b.length);
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  pad(align: number) { while (this.length % align !== 0) this.u8(0); }
  bytes(): Uint8Array { return this.buf.slice(0, this.length); }
}

function writeScalar(w: ByteWriter, type: ScalarType, v: number | string | boolean | bigint, key: string): void {
  const num = () => {
    if (typeof v !== 'number' && typeof v !== 'bigint') throw new Error(`GGUF key ${key}: expected a number, got ${typeof v}`);
    return v;
  };
  switch (type) {
    case GGUF_TYPE.UINT8: return w.u8(Number(num()));
    case GGUF_TYPE.INT8: return w.i8(Number(num()));
    case GGUF_TYPE.UINT16: return w.u16(Number(num()));
    case GGUF_TYPE.INT16: return w.i16(Number(num()));
    case GGUF_TYPE.UINT32: return w.u32(Number(num()));
    case GGUF_TYPE.INT32: return w.i32(Number(num()));
    case GGUF_TYPE.FLOAT32: return w.f32(Number(num()));
    case GGUF_TYPE.FLOAT64: return w.f64(Number(num()));
    case GGUF_TYPE.UINT64: return w.u64(num());
    case GGUF_TYPE.INT64: return w.i64(num());
    case GGUF_TYPE.BOOL:
      if (typeof v !== 'boolean') throw new Error(`GGUF key ${key}: expected a boolean`);
      return w.u8(v ? 1 : 0);
    case GGUF_TYPE.STRING:
      if (typeof v !== 'string') throw new Error(`GGUF key ${key}: expected a string`);
      return w.str(v);
  }
}

export interface GgufTensorInfo {
  name: string;
  /** Hugging Face order, outermost first ([rows, cols]); GGUF stores it reversed. */
  shape: readonly number[];
  type: GgmlTypeName;
}

export interface GgufTensor extends GgufTensorInfo {
  /** The values, row-major, as float32; called once, when the tensor is written. */
  data: () => Promise<Float32Array> | Float32Array;
  /** Optional: the tensor's bytes already in `type` (skips the conversion). */
  raw?: () => Promise<Uint8Array>;
}

export function ggmlTensorBytes(type: GgmlTypeName, shape: readonly number[]): number {
  const n = shape.reduce((a, b) => a * b, 1);
  const inner = shape[shape.length - 1];
  switch (type) {
    case 'F32': return 4 * n;
    case 'F16': return 2 * n;
    case 'Q8_0':
    case 'Q4_0':
      if (inner % QUANT_GROUP !== 0) throw new Error(`${type} needs rows that are a multiple of ${QUANT_GROUP} values, got ${inner}`);
      return (n / QUANT_GROUP) * (type === 'Q8_0' ? 34 : 18);
  }
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Header, metadata and tensor infos (padded to the alignment); offsets relative to the data start. */
export function buildGgufHeader(metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensorInfo[], alignment = GGUF_DEFAULT_ALIGNMENT): { header: Uint8Array; offsets: number[]; dataBytes: number } {
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(metadata.size);
  for (const [key, v] of metadata) {
    w.str(key);
    w.u32(v.type);
    if (v.type === GGUF_TYPE.ARRAY) {
      w.u32(v.itemType);
      w.u64(v.value.length);
      for (const item of v.value) writeScalar(w, v.itemType, item, key);
    } else writeScalar(w, v.type, v.value, key);
  }
  const offsets: number[] = [];
  let offset = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new Error(`GGUF: tensor ${t.name} listed twice`);
    seen.add(t.name);
    w.str(t.name);
    w.u32(t.shape.length);
    for (let i = t.shape.length - 1; i >= 0; i--) w.u64(t.shape[i]);
    w.u32(GGML_TYPE[t.type]);
    w.u64(offset);
    offsets.push(offset);
    offset = alignUp(offset + ggmlTensorBytes(t.type, t.shape), alignment);
  }
  w.pad(alignment);
  return { header: w.bytes(), offsets, dataBytes: offset };
}

// ---- tensor encodings ----

export function encodeF16(x: Float32Array): Uint8Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32ToF16Bits(x[i]);
  return new Uint8Array(out.buffer);
}

export function encodeTensor(x: Float32Array, type: GgmlTypeName): Uint8Array {
  switch (type) {
    case 'F32': return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    case 'F16': return encodeF16(x);
    // The engine's quantizer, so llama.cpp runs on exactly the values our q8/q4 kernels multiply by.
    case 'Q8_0': return ggmlBlocks(x, 'q8');
    case 'Q4_0': return ggmlBlocks(x, 'q4');
  }
}

/** Writes a GGUF v3 file, streaming tensor by tensor. */
export async function writeGguf(path: string, metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensor[], alignment = GGUF_DEFAULT_ALIGNMENT): Promise<void> {
  const { header, offsets, dataBytes } = buildGgufHeader(metadata, tensors, alignment);
  const tmp = `${path}.partial`;
  const fh = await open(tmp, 'w');
  let ok = false;
  try {
    await fh.write(header, 0, header.length);
    const zeros = new Uint8Array(alignment);
    let pos = 0;
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i];
      if (pos < offsets[i]) {
        await fh.write(zeros, 0, offsets[i] - pos);
        pos = offsets[i];
      }
      const bytes = t.raw ? await t.raw() : encodeTensor(await t.data(), t.type);
      const want = ggmlTensorBytes(t.type, t.shape);
      if (bytes.byteLength !== want) throw new Error(`GGUF: tensor ${t.name} gave ${bytes.byteLength} bytes, expected ${want}`);
      let done = 0;
      while (done < bytes.byteLength) {
        const { bytesWritten } = await fh.write(bytes, done, Math.min(bytes.byteLength - done, 1 << 30));
        done += bytesWritten;
      }
      pos += bytes.byteLength;
    }
    if (pos < dataBytes) await fh.write(zeros, 0, dataBytes - pos);
    ok = true;
  } finally {
    await fh.close();
    if (!ok) await rm(tmp, { force: true });
  }
  await rename(tmp, path);
}

// ---- OpenELM ----

const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/**
 * Llama-2's vocabulary (from llama-tokenizer-js) cut or padded to `vocabSize` pieces, with
 * SentencePiece-style token types and scores (0 for special and byte pieces, else minus the merge
 * rank, which is what the SPM tokenizer compares).
 */
export function llamaVocabulary(vocabSize: number): { tokens: string[]; scores: number[]; types: number[] } {
  const pieces = llamaTokenizerData.vocabById;
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  for (let i = 0; i < vocabSize; i++) {
    const p = i < pieces.length ? pieces[i] : `<extra_${i}>`;
    tokens.push(p);
    if (i === 0) types.push(TOKEN_TYPE.UNKNOWN);
    else if (i === 1 || i === 2) types.push(TOKEN_TYPE.CONTROL);
    else if (/^<0x[0-9A-F]{2}>$/.test(p)) types.push(TOKEN_TYPE.BYTE);
    else if (i >= pieces.length) types.push(TOKEN_TYPE.USER_DEFINED);
    else types.push(TOKEN_TYPE.NORMAL);
    scores.push(types[i] === TOKEN_TYPE.NORMAL ? -(i - 259 + 1) : 0);
  }
  return { tokens, scores, types };
}

/** The GGUF metadata llama.cpp's "openelm" architecture reads, plus the tokenizer keys. */
export function openElmMetadata(plan: ModelPlan, type: GgmlTypeName, name = 'OpenELM'): Map<string, GgufValue> {
  const m = new Map<string, GgufValue>();
  const A = 'openelm';
  m.set('general.architecture', gv.str(A));
  m.set('general.name', gv.str(name));
  m.set('general.file_type', gv.u32(FILE_TYPE[type]));
  m.set('general.quantization_version', gv.u32(2));
  m.set('general.alignment', gv.u32(GGUF_DEFAULT_ALIGNMENT));
  m.set(`${A}.block_count`, gv.u32(plan.numLayers));
  m.set(`${A}.context_length`, gv.u32(plan.maxContext));
  m.set(`${A}.embedding_length`, gv.u32(plan.modelDim));
  m.set(`${A}.feed_forward_length`, gv.arr(GGUF_TYPE.INT32, plan.layers.map((l) => l.ffnDim)));
  m.set(`${A}.attention.head_count`, gv.arr(GGUF_TYPE.INT32, plan.layers.map((l) => l.numQueryHeads)));
  m.set(`${A}.attention.head_count_kv`, gv.arr(GGUF_TYPE.INT32, plan.layers.map((l) => l.numKvHeads)));
  m.set(`${A}.rope.freq_base`, gv.f32(plan.ropeTheta));
  m.set(`${A}.attention.layer_norm_rms_epsilon`, gv.f32(plan.rmsNormEps));
  m.set(`${A}.rope.dimension_count`, gv.u32(plan.headDim));
  m.set(`${A}.attention.key_length`, gv.u32(plan.headDim));
  m.set(`${A}.attention.value_length`, gv.u32(plan.headDim));
  const vocab = llamaVocabulary(plan.vocabSize);
  m.set('tokenizer.ggml.model', gv.str('llama'));
  m.set('tokenizer.ggml.tokens', gv.arr(GGUF_TYPE.STRING, vocab.tokens));
  m.set('tokenizer.ggml.scores', gv.arr(GGUF_TYPE.FLOAT32, vocab.scores));
  m.set('tokenizer.ggml.token_type', gv.arr(GGUF_TYPE.INT32, vocab.types));
  m.set('tokenizer.ggml.bos_token_id', gv.u32(plan.bosTokenId));
  m.set('tokenizer.ggml.eos_token_id', gv.u32(plan.eosTokenId));
  m.set('tokenizer.ggml.unknown_token_id', gv.u32(0));
  m.set('tokenizer.ggml.add_bos_token', gv.bool(true));
  m.set('tokenizer.ggml.add_eos_token', gv.bool(false));
  return m;
}

/**
 * The GGUF tensors of an OpenELM checkpoint: Hugging Face names mapped to llama.cpp's, proj_1
 * split into ffn_gate (its first ffn_dim rows) and ffn_up (the rest), norms in F32 and matrices
 * in `type` (F16 for a matrix whose rows are not whole quantization blocks).
 */
export function openElmTensors(plan: ModelPlan, tensors: ReadonlyMap<string, TensorEntry>, type: GgmlTypeName): GgufTensor[] {
  const entry = (name: string): TensorEntry => {
    const e = tensors.get(name);
    if (!e) throw new Error(`checkpoint has no tensor "${name}"`);
    return e;
  };
  // proj_1 is read once for both of its halves.
  let cache: { name: string; data: Promise<Float32Array> } | undefined;
  const read = (name: string): Promise<Float32Array> => {
    if (cache?.name !== name) cache = { name, data: readTensorF32(entry(name)) };
    return cache.data;
  };
  const out: GgufTensor[] = [];
  const add = (gguf: string, hf: string, rows?: [number, number]) => {
    const e = entry(hf);
    const shape = rows ? [rows[1] - rows[0], e.shape[1]] : [...e.shape];
    const matrix = shape.length === 2;
    let t: GgmlTypeName = matrix ? type : 'F32';
    if ((t === 'Q8_0' || t === 'Q4_0') && shape[shape.length - 1] % QUANT_GROUP !== 0) t = 'F16';
    const cols = e.shape[1] ?? 0;
    const tensor: GgufTensor = {
      name: gguf,
      shape,
      type: t,
      data: async () => {
        const all = await read(hf);
        return rows ? all.subarray(rows[0] * cols, rows[1] * cols) : all;
      },
    };
    if (t === 'F16' && e.dtype === 'F16') {
      // Already F16 in the file: copy the bytes.
      tensor.raw = async () => {
        const b = await readTensorBytes(e);
        return rows ? b.subarray(rows[0] * cols * 2, rows[1] * cols * 2) : b;
      };
    }
    out.push(tensor);
  };
  add('token_embd.weight', 'transformer.token_embeddings.weight');
  for (const l of plan.layers) {
    const p = `transformer.layers.${l.index}`;
    const b = `blk.${l.index}`;
    add(`${b}.attn_norm.weight`, `${p}.attn_norm.weight`);
    add(`${b}.attn_qkv.weight`, `${p}.attn.qkv_proj.weight`);
    if (tensors.has(`${p}.attn.q_norm.weight`)) add(`${b}.attn_q_norm.weight`, `${p}.attn.q_norm.weight`);
    if (tensors.has(`${p}.attn.k_norm.weight`)) add(`${b}.attn_k_norm.weight`, `${p}.attn.k_norm.weight`);
    add(`${b}.attn_output.weight`, `${p}.attn.out_proj.weight`);
    add(`${b}.ffn_norm.weight`, `${p}.ffn_norm.weight`);
    if (plan.ffnWithGlu) {
      add(`${b}.ffn_gate.weight`, `${p}.ffn.proj_1.weight`, [0, l.ffnDim]);
      add(`${b}.ffn_up.weight`, `${p}.ffn.proj_1.weight`, [l.ffnDim, 2 * l.ffnDim]);
    } else {
      add(`${b}.ffn_up.weight`, `${p}.ffn.proj_1.weight`);
    }
    add(`${b}.ffn_down.weight`, `${p}.ffn.proj_2.weight`);
  }
  add('output_norm.weight', 'transformer.norm.weight');
  if (!plan.tiedEmbeddings) add('output.weight', 'lm_head.weight');
  return out;
}

/** Writes `path` as a GGUF of the checkpoint whose plan and tensors are given. */
export async function writeOpenElmGguf(path: string, plan: ModelPlan, tensors: ReadonlyMap<string, TensorEntry>, type: GgmlTypeName, name?: string): Promise<void> {
  await writeGguf(path, openElmMetadata(plan, type, name), openElmTensors(plan, tensors, type));
}
