// Writes a checkpoint in MLX's quantized layout (what mlx-lm's convert -q writes for OpenELM) from
// a float checkpoint folder or from tensors in memory: config.json with
// `"quantization": {"group_size", "bits"}` and model.safetensors where every matrix is NAME.weight
// (uint32 codes), NAME.scales and NAME.biases, quantized by MLX's rule (affine.ts), and the norm
// weights stay floats (in the scale dtype, as mlx-lm casts the whole model before quantizing).
// Node only. For tests and the harness (an MLX 4-bit 270M-shaped checkpoint); one tensor at a time
// is read, quantized and written.
import { open, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseConfig } from '../config/config.ts';
import { derivePlan } from '../config/plan.ts';
import { openCheckpoint } from '../io/node-source.ts';
import { encodeF32, readTensorF32, type WriteDtype } from '../io/safetensors.ts';
import { affineRowWords, quantizeAffine, type AffineBits, type ScaleDtype } from './affine.ts';

export interface MlxWriteOptions {
  bits: AffineBits;
  groupSize: number;
  /** dtype of scales, biases and the float tensors (default F16, mlx-lm's default). */
  scaleDtype?: ScaleDtype;
}

/** Float tensors by name (row-major), e.g. a synthetic model in memory. */
export type FloatTensors = Map<string, Float32Array>;

interface Entry {
  name: string;
  dtype: string;
  shape: number[];
  bytes: () => Promise<Uint8Array>;
}

const SIZES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, U32: 4 };

/**
 * Writes `outDir` (config.json + model.safetensors in MLX's layout) from a float checkpoint folder
 * or float tensors with the config to use. Returns the bytes of model.safetensors.
 */
export async function writeMlxCheckpoint(outDir: string, source: string | { config: object; tensors: FloatTensors }, opts: MlxWriteOptions): Promise<number> {
  const sd: ScaleDtype = opts.scaleDtype ?? 'F16';
  const config = typeof source === 'string' ? (JSON.parse(await readFile(join(source, 'config.json'), 'utf8')) as Record<string, unknown>) : { ...(source.config as Record<string, unknown>) };
  delete config.quantization;
  const plan = derivePlan(parseConfig(config, 'config.json'), 'config.json');
  const files = typeof source === 'string' ? await openCheckpoint(source) : undefined;
  const read = async (name: string): Promise<Float32Array> => {
    if (files) return readTensorF32(files.get(name) ?? missing(name));
    return (source as { tensors: FloatTensors }).tensors.get(name) ?? missing(name);
  };
  const floatBytes = (v: Float32Array, dtype: WriteDtype): Uint8Array => {
    const out = new Uint8Array(v.length * SIZES[dtype]);
    encodeF32(v, dtype, out, 0);
    return out;
  };
  // The quantized parts of the matrix being written, computed once for its three entries.
  let cached: { name: string; parts: Promise<{ codes: Uint8Array; scales: Uint8Array; biases: Uint8Array }> } | undefined;
  const parts = (name: string, rows: number, cols: number) => {
    if (cached?.name !== name) {
      cached = {
        name,
        parts: read(name).then((v) => {
          const t = quantizeAffine(v, rows, cols, opts.bits, opts.groupSize, sd);
          const u8 = (a: Uint16Array | Uint32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
          return { codes: u8(t.codes), scales: u8(t.scales), biases: u8(t.biases) };
        }),
      };
    }
    return cached.parts;
  };
  const entries: Entry[] = [];
  for (const spec of plan.tensors) {
    if (spec.shape.length !== 2) {
      entries.push({ name: spec.name, dtype: sd, shape: spec.shape, bytes: async () => floatBytes(await read(spec.name), sd) });
      continue;
    }
    const [rows, cols] = spec.shape;
    if (cols % opts.groupSize !== 0) throw new Error(`writeMlxCheckpoint: tensor "${spec.name}" has ${cols} columns, not a multiple of the group size ${opts.groupSize}`);
    const base = spec.name.replace(/\.weight$/, '');
    const groups = cols / opts.groupSize;
    entries.push({ name: spec.name, dtype: 'U32', shape: [rows, affineRowWords(cols, opts.bits)], bytes: async () => (await parts(spec.name, rows, cols)).codes });
    entries.push({ name: `${base}.scales`, dtype: sd, shape: [rows, groups], bytes: async () => (await parts(spec.name, rows, cols)).scales });
    entries.push({ name: `${base}.biases`, dtype: sd, shape: [rows, groups], bytes: async () => (await parts(spec.name, rows, cols)).biases });
  }
  await mkdir(outDir, { recursive: true });
  const total = await writeRawSafetensors(join(outDir, 'model.safetensors'), entries);
  const out = { ...config, quantization: { group_size: opts.groupSize, bits: opts.bits } };
  await writeFile(join(outDir, 'config.json'), JSON.stringify(out, null, 2) + '\n');
  return total;
}

function missing(name: string): never {
  throw new Error(`writeMlxCheckpoint: the source has no tensor "${name}"`);
}

/** A safetensors file of tensors given as raw little-endian bytes (codes are not floats). */
async function writeRawSafetensors(path: string, entries: Entry[]): Promise<number> {
  const header: Record<string, unknown> = { __metadata__: { format: 'mlx' } };
  let at = 0;
  for (const e of entries) {
    const len = e.shape.reduce((a, b) => a * b, 1) * SIZES[e.dtype];
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [at, at + len] };
    at += len;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const head = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  const tmp = `${path}.partial`;
  const fh = await open(tmp, 'w');
  let ok = false;
  try {
    await fh.write(head);
    for (const e of entries) {
      const b = await e.bytes();
      const len = e.shape.reduce((a, c) => a * c, 1) * SIZES[e.dtype];
      if (b.byteLength !== len) throw new Error(`writeMlxCheckpoint: tensor "${e.name}" has ${b.byteLength} bytes, expected ${len}`);
      await fh.write(b);
    }
    ok = true;
  } finally {
    await fh.close();
    if (!ok) await rm(tmp, { force: true });
  }
  await rename(tmp, path);
  return head.byteLength + at;
}
