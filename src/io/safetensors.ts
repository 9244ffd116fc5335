// safetensors parsing and tensor reading over an abstract byte source. Browser-safe: the Node
// file implementation and the writer live in node-source.ts.
//
// Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON
// `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then the data
// region; offsets are relative to the start of the data region.
import type { TensorSpec } from '../config/plan.ts';
import { f16BitsToF32, f32BitsToBf16Bits, f32BitsToF16Bits } from '../util/half.ts';
import { describeValue, isObject } from '../util/json.ts';

/** Random-access bytes: a file in Node, a Blob or HTTP range requests in a browser. */
export interface ByteSource {
  /** Used in error messages: a path, a file name or a URL. */
  name: string;
  size: number;
  /** Exactly `length` bytes from `offset` (rejects if the source is shorter). */
  read(offset: number, length: number): Promise<Uint8Array>;
}

export interface TensorEntry {
  name: string;
  dtype: string;
  shape: number[];
  source: ByteSource;
  /** Absolute byte offset in source. */
  offset: number;
  byteLength: number;
}

/** Bytes per element of every dtype the safetensors format defines. */
export const DTYPE_SIZES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

/** Largest header we accept; real checkpoints have headers of a few hundred KB. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export function shapeString(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export function numElements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Parses and validates the header of a safetensors file; reads only the header bytes. */
export async function parseSafetensors(source: ByteSource): Promise<Map<string, TensorEntry>> {
  const file = source.name;
  const fail = (msg: string): never => {
    throw new Error(`${file}: ${msg}`);
  };
  if (source.size < 8) fail(`file is ${source.size} bytes, too short for the 8-byte safetensors header length`);
  const lenBytes = await source.read(0, 8);
  const big = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (big > BigInt(source.size - 8)) {
    fail(`header length ${big} is past the end of the file (file is ${source.size} bytes; is this a safetensors file?)`);
  }
  const headerLen = Number(big);
  if (headerLen > MAX_HEADER_BYTES) fail(`header length ${headerLen} is larger than the ${MAX_HEADER_BYTES}-byte limit (is this a safetensors file?)`);
  if (headerLen < 2) fail(`header length ${headerLen} is too short to hold a JSON object`);
  const headerBytes = await source.read(8, headerLen);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    return fail(`header is not valid UTF-8`);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    return fail(`header is not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(header)) return fail(`header must be a JSON object, got ${describeValue(header)}`);

  const dataStart = 8 + headerLen;
  const dataLen = source.size - dataStart;
  const entries = new Map<string, TensorEntry>();
  const spans: { name: string; begin: number; end: number }[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      // The format defines it as a string -> string map (the reference reader rejects anything else).
      if (v !== null && !isObject(v)) fail(`__metadata__ must be a JSON object of strings, got ${describeValue(v)}`);
      for (const [k, s] of Object.entries((v ?? {}) as Record<string, unknown>)) {
        if (typeof s !== 'string') fail(`__metadata__["${k}"] must be a string, got ${describeValue(s)}`);
      }
      continue;
    }
    const bad = (msg: string): never => fail(`tensor "${name}" ${msg}`);
    if (!isObject(v)) bad(`must be an object {dtype, shape, data_offsets}, got ${describeValue(v)}`);
    const o = v as Record<string, unknown>;
    const dtype = o.dtype;
    if (typeof dtype !== 'string') return bad(`dtype must be a string, got ${describeValue(dtype)}`);
    const size = DTYPE_SIZES[dtype];
    if (size === undefined) bad(`has unknown dtype ${describeValue(dtype)} (expected one of ${Object.keys(DTYPE_SIZES).join(', ')})`);
    const shape = o.shape;
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) return bad(`shape must be a list of non-negative integers, got ${describeValue(shape)}`);
    const offs = o.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isNonNegInt)) {
      return bad(`data_offsets must be a list [begin, end] of two non-negative integers, got ${describeValue(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    const where = `data_offsets [${begin}, ${end}]`;
    if (begin > end) bad(`${where} has begin after end`);
    if (end > dataLen) bad(`${where} end past the end of the file (data region is ${dataLen} bytes)`);
    const expected = numElements(shape) * size;
    if (end - begin !== expected) {
      bad(`${where} hold ${end - begin} bytes, but ${dtype} ${shapeString(shape)} needs ${expected}`);
    }
    entries.set(name, { name, dtype, shape: shape.slice(), source, offset: dataStart + begin, byteLength: end - begin });
    spans.push({ name, begin, end });
  }
  // Empty tensors occupy no bytes and may sit anywhere; every other pair must be disjoint.
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let prev: { name: string; begin: number; end: number } | undefined;
  for (const c of spans) {
    if (c.end === c.begin) continue;
    if (prev && c.begin < prev.end) {
      fail(`tensor "${c.name}" data_offsets [${c.begin}, ${c.end}] overlap tensor "${prev.name}" data_offsets [${prev.begin}, ${prev.end}]`);
    }
    if (!prev || c.end > prev.end) prev = c;
  }
  return entries;
}

/** The raw bytes of a tensor (little-endian, as stored). */
export function readTensorBytes(entry: TensorEntry): Promise<Uint8Array> {
  return entry.source.read(entry.offset, entry.byteLength);
}

let f16Table: Float32Array | undefined;
/** f16 bits -> f32 value, all 65536 of them; built on first use. */
export function f16LookupTable(): Float32Array {
  if (!f16Table) {
    const t = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) t[i] = f16BitsToF32(i);
    f16Table = t;
  }
  return f16Table;
}

/** `bytes` as a typed-array-friendly buffer: copies when the view is not aligned to `align`. */
function aligned(bytes: Uint8Array, align: number): Uint8Array {
  if (bytes.byteOffset % align === 0) return bytes;
  return bytes.slice();
}

/** Converts raw little-endian bytes of dtype F32, F16 or BF16 to float32 values. */
export function bytesToF32(bytes: Uint8Array, dtype: string, what = 'tensor'): Float32Array {
  switch (dtype) {
    case 'F32': {
      const b = aligned(bytes, 4);
      const view = new Float32Array(b.buffer, b.byteOffset, b.byteLength >> 2);
      // No copy when the bytes are a buffer of their own (fileSource) or already a copy.
      const owned = b !== bytes || (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength);
      return owned ? view : view.slice();
    }
    case 'F16': {
      const b = aligned(bytes, 2);
      const src = new Uint16Array(b.buffer, b.byteOffset, b.byteLength >> 1);
      const t = f16LookupTable();
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = t[src[i]];
      return out;
    }
    case 'BF16': {
      const b = aligned(bytes, 2);
      const src = new Uint16Array(b.buffer, b.byteOffset, b.byteLength >> 1);
      const out = new Float32Array(src.length);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < src.length; i++) u[i] = src[i] << 16;
      return out;
    }
    default:
      throw new Error(`${what} has dtype ${dtype}; only F32, F16 and BF16 can be read as floats`);
  }
}

/** Reads a tensor as float32 (F32, F16 or BF16 in the file). */
export async function readTensorF32(entry: TensorEntry): Promise<Float32Array> {
  if (entry.dtype !== 'F32' && entry.dtype !== 'F16' && entry.dtype !== 'BF16') {
    throw new Error(`${entry.source.name}: tensor "${entry.name}" has dtype ${entry.dtype}; only F32, F16 and BF16 can be read as floats`);
  }
  const bytes = await readTensorBytes(entry);
  return bytesToF32(bytes, entry.dtype, `${entry.source.name}: tensor "${entry.name}"`);
}

/**
 * Reads a tensor of model weights as float32 and checks every value is finite: a NaN or an
 * infinity in a checkpoint (a broken conversion, a corrupt download) would otherwise spread through
 * every later position as NaN logits, so it is an error naming the file, tensor and index.
 */
export async function readFiniteTensorF32(entry: TensorEntry): Promise<Float32Array> {
  const values = await readTensorF32(entry);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v - v !== 0) throw new Error(`${entry.source.name}: tensor "${entry.name}" has a non-finite value (${v}) at index ${i}`);
  }
  return values;
}

/** Throws `<file>: tensor "x" has shape [a, b], expected [c, d]` when the shapes differ. */
export function checkTensorShape(entry: TensorEntry, expectedShape: readonly number[], file: string = entry.source.name): void {
  const ok = entry.shape.length === expectedShape.length && entry.shape.every((d, i) => d === expectedShape[i]);
  if (!ok) throw new Error(`${file}: tensor "${entry.name}" has shape ${shapeString(entry.shape)}, expected ${shapeString(expectedShape)}`);
}

/**
 * Checks that every tensor of a plan is present with its shape. Throws on the first missing or
 * misshapen tensor (naming `file`, e.g. the checkpoint folder); returns the names of tensors the
 * checkpoint holds that the plan does not use.
 */
export function checkCheckpointTensors(tensors: Map<string, TensorEntry>, specs: readonly TensorSpec[], file: string): string[] {
  for (const spec of specs) {
    const e = tensors.get(spec.name);
    if (!e) throw new Error(`${file}: tensor "${spec.name}" ${shapeString(spec.shape)} is missing from the checkpoint`);
    checkTensorShape(e, spec.shape, e.source.name);
  }
  const used = new Set(specs.map((s) => s.name));
  return [...tensors.keys()].filter((n) => !used.has(n));
}

/** A ByteSource over bytes already in memory (tests, small fetched files). */
export function memorySource(name: string, bytes: Uint8Array): ByteSource {
  return {
    name,
    size: bytes.byteLength,
    async read(offset: number, length: number): Promise<Uint8Array> {
      if (offset < 0 || length < 0 || offset + length > bytes.byteLength) {
        throw new Error(`${name}: read of ${length} bytes at ${offset} is past the end (${bytes.byteLength} bytes)`);
      }
      return bytes.subarray(offset, offset + length);
    },
  };
}

// ---- Writing: encoding helpers shared by the Node writer (kept here: pure computation) ----

export type WriteDtype = 'F32' | 'F16' | 'BF16';

export interface TensorToWrite {
  name: string;
  dtype: WriteDtype;
  shape: number[];
  /**
   * The values, or a function producing them when the tensor is written (so a whole model never
   * sits in memory): either one Float32Array or an iterable of chunks that together hold
   * product(shape) values in row-major order.
   */
  data: Float32Array | (() => Float32Array | Iterable<Float32Array>);
}

/**
 * A tensor written from its raw little-endian bytes, in any dtype the format defines (compact
 * checkpoints' U8 quants and F16 scales): `bytes` yields them in order, product(shape) * size in all.
 */
export interface RawTensorToWrite {
  name: string;
  dtype: string;
  shape: number[];
  bytes: () => Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
}

export type AnyTensorToWrite = TensorToWrite | RawTensorToWrite;

export function isRawTensor(t: AnyTensorToWrite): t is RawTensorToWrite {
  return 'bytes' in t;
}

/** Encodes float32 values into `out` (at byte `at`) as dtype; returns bytes written. */
export function encodeF32(values: Float32Array, dtype: WriteDtype, out: Uint8Array, at: number): number {
  const n = values.length;
  const src = new Uint32Array(values.buffer, values.byteOffset, n);
  if (dtype === 'F32') {
    out.set(new Uint8Array(values.buffer, values.byteOffset, n * 4), at);
    return n * 4;
  }
  if ((out.byteOffset + at) % 2 !== 0) throw new Error('encodeF32: output offset must be even');
  const dst = new Uint16Array(out.buffer, out.byteOffset + at, n);
  if (dtype === 'F16') {
    for (let i = 0; i < n; i++) dst[i] = f32BitsToF16Bits(src[i]);
  } else {
    for (let i = 0; i < n; i++) dst[i] = f32BitsToBf16Bits(src[i]);
  }
  return n * 2;
}

/**
 * Builds the header bytes (8-byte length + JSON padded with spaces to a multiple of 8, as the
 * reference implementation does) and the data offsets, for tensors written in the given order.
 */
export function buildHeader(
  tensors: readonly AnyTensorToWrite[],
  metadata?: Record<string, string>,
): { bytes: Uint8Array; dataBytes: number } {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let at = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === '__metadata__') throw new Error(`writeSafetensors: "__metadata__" is not a tensor name`);
    if (seen.has(t.name)) throw new Error(`writeSafetensors: tensor "${t.name}" given twice`);
    seen.add(t.name);
    if (DTYPE_SIZES[t.dtype] === undefined || (!isRawTensor(t) && !['F32', 'F16', 'BF16'].includes(t.dtype))) {
      throw new Error(`writeSafetensors: tensor "${t.name}" has dtype ${t.dtype}, expected ${isRawTensor(t) ? Object.keys(DTYPE_SIZES).join(', ') : 'F32, F16 or BF16'}`);
    }
    if (!t.shape.every(isNonNegInt)) throw new Error(`writeSafetensors: tensor "${t.name}" has bad shape ${describeValue(t.shape)}`);
    const len = numElements(t.shape) * DTYPE_SIZES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + len] };
    at += len;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const bytes = new Uint8Array(8 + padded);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(padded), true);
  bytes.set(json, 8);
  bytes.fill(0x20, 8 + json.length);
  return { bytes, dataBytes: at };
}
