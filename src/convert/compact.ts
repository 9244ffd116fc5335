// `openelm convert`: writes a compact checkpoint (layout in weights/compact-layout.ts) from any
// model folder: every matrix quantized to q8/q4 exactly as loading would quantize it
// (packQuantRows), so the converted folder gives the same logits bit for bit while the download
// shrinks to ~28% (q8) or ~15% (q4) of float32. Streams: one block of rows of one tensor at a time
// is in memory (plus that matrix's scales, 1/16 of its quants), never a whole float tensor.
// Node-only (reads and writes files).
import { copyFile, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseConfig } from '../config/config.ts';
import { derivePlan } from '../config/plan.ts';
import { STORED_FORMAT_KEY, STORED_FORMAT_VERSION, type StoredFormatEntry } from '../config/stored-format.ts';
import { openCheckpoint } from '../io/node-source.ts';
import { bytesToF32, DTYPE_SIZES, readFiniteTensorF32, readTensorBytes, type RawTensorToWrite, type TensorEntry } from '../io/safetensors.ts';
import { writeCheckpointWeights } from '../io/node-source.ts';
import { parseJson } from '../util/json.ts';
import { compactTensors, isFoldedNorm, scalesName } from '../weights/compact-layout.ts';
import { packQuantRows, quantGroups, quantRowWords, quantScaleRowWords, type QuantFormat } from '../weights/quant.ts';
import { foldColumnScale } from '../../kernels/matmul.ts';
import { checkCheckpoint } from '../runtime/model-weights.ts';

/** Files of a model folder besides config and weights that a converted folder keeps. */
export const COPIED_FILES = ['tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'generation_config.json', 'special_tokens_map.json'];

export interface ConvertOptions {
  format: QuantFormat;
  /** Multiply the layers' RMSNorm gains into qkv_proj / proj_1 before quantizing (ModelOptions.foldNorms). */
  foldNorms?: boolean;
  /** Split the weights into shards of at most this many bytes (default: one model.safetensors). */
  shardBytes?: number;
  onProgress?: (done: number, total: number, tensor: string) => void;
}

export interface ConvertResult {
  out: string;
  format: QuantFormat;
  fold_norms: boolean;
  /** Every file written or copied, with its size. */
  files: { name: string; bytes: number }[];
  /** Bytes of the weight files, source and converted. */
  source_weight_bytes: number;
  weight_bytes: number;
  ms: number;
}

// Source rows are read, quantized and written in blocks of about this many source bytes.
const BLOCK_BYTES = 4 << 20;

async function isNonEmptyDir(dir: string): Promise<boolean> {
  const st = await stat(dir).catch(() => undefined);
  if (!st) return false;
  if (!st.isDirectory()) throw new Error(`${dir}: --out exists and is not a folder`);
  return (await readdir(dir)).length > 0;
}

/** Rows [row0, row0 + n) of a float matrix as f32, each value checked finite. */
async function readRowsF32(e: TensorEntry, cols: number, row0: number, n: number): Promise<Float32Array> {
  const size = DTYPE_SIZES[e.dtype];
  const bytes = await e.source.read(e.offset + row0 * cols * size, n * cols * size);
  const values = bytesToF32(bytes, e.dtype, `${e.source.name}: tensor "${e.name}"`);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v - v !== 0) throw new Error(`${e.source.name}: tensor "${e.name}" has a non-finite value (${v}) at index ${row0 * cols + i}`);
  }
  return values;
}

/** Converts the model folder `src` into a compact checkpoint in `out` (a new or empty folder). */
export async function convertCheckpoint(src: string, out: string, opts: ConvertOptions): Promise<ConvertResult> {
  const t0 = performance.now();
  const cfgFile = join(src, 'config.json');
  let cfgText: string;
  try {
    cfgText = await readFile(cfgFile, 'utf8');
  } catch {
    throw new Error(`${cfgFile}: cannot read the model's config.json (is ${src} a model folder in the Hugging Face layout?)`);
  }
  const cfgJson = parseJson(cfgText, cfgFile) as Record<string, unknown>;
  const plan = derivePlan(parseConfig(cfgJson, cfgFile), cfgFile);
  if (plan.stored) throw new Error(`${cfgFile}: this checkpoint is already converted (${STORED_FORMAT_KEY}.format ${plan.stored.format}); convert the float source instead`);
  const tensors = await openCheckpoint(src);
  checkCheckpoint(plan, tensors);
  if (await isNonEmptyDir(out)) throw new Error(`${out}: --out exists and is not empty; give a new or empty folder`);
  await mkdir(out, { recursive: true });

  const stored: StoredFormatEntry = { format: opts.format, version: STORED_FORMAT_VERSION, fold_norms: !!opts.foldNorms };
  const specs = compactTensors(plan, stored);
  const total = plan.tensors.length;
  let done = 0;
  const step = (name: string) => opts.onProgress?.(++done, total, name);
  // Scales of the matrix whose quants were just written, for its .scales tensor (written next).
  const pendingScales = new Map<string, Uint8Array>();
  // The norm whose gains fold into a matrix: qkv_proj takes attn_norm, proj_1 takes ffn_norm.
  const foldSource = (name: string): string | undefined => {
    if (!stored.fold_norms) return undefined;
    if (name.endsWith('.attn.qkv_proj.weight')) return name.replace('.attn.qkv_proj.weight', '.attn_norm.weight');
    if (name.endsWith('.ffn.proj_1.weight')) return name.replace('.ffn.proj_1.weight', '.ffn_norm.weight');
    return undefined;
  };

  async function* quants(name: string, rows: number, cols: number): AsyncGenerator<Uint8Array> {
    const e = tensors.get(name)!;
    const foldName = foldSource(name);
    const gains = foldName ? await readFiniteTensorF32(tensors.get(foldName)!) : undefined;
    const rowWords = quantRowWords(cols, opts.format);
    const groups = quantGroups(cols);
    const sWords = quantScaleRowWords(cols);
    const block = Math.max(1, Math.floor(BLOCK_BYTES / (cols * DTYPE_SIZES[e.dtype])));
    const q = new Uint32Array(Math.min(block, rows) * rowWords);
    const sc = new Uint32Array(Math.min(block, rows) * sWords);
    const scales = new Uint16Array(rows * groups);
    for (let r = 0; r < rows; r += block) {
      const m = Math.min(block, rows - r);
      let x = await readRowsF32(e, cols, r, m);
      if (gains) x = foldColumnScale(x, m, cols, gains);
      packQuantRows(x, m, cols, opts.format, q, sc);
      const halves = new Uint16Array(sc.buffer, 0, m * sWords * 2);
      for (let i = 0; i < m; i++) scales.set(halves.subarray(i * sWords * 2, i * sWords * 2 + groups), (r + i) * groups);
      // A copy: the staging array is reused for the next block before the writer is done with it.
      yield new Uint8Array(q.buffer, 0, m * rowWords * 4).slice();
    }
    pendingScales.set(scalesName(name), new Uint8Array(scales.buffer));
    step(name);
  }

  const list: RawTensorToWrite[] = [];
  for (const spec of specs) {
    const [rows, cols] = spec.of.shape;
    if (spec.dtype === 'U8') {
      list.push({ name: spec.name, dtype: 'U8', shape: spec.shape, bytes: () => quants(spec.name, rows, cols) });
    } else if (spec.dtype === 'F16') {
      list.push({
        name: spec.name,
        dtype: 'F16',
        shape: spec.shape,
        bytes: () => {
          const s = pendingScales.get(spec.name);
          if (!s) throw new Error(`convert: the scales of "${spec.of.name}" are written before its quants`);
          pendingScales.delete(spec.name);
          return [s];
        },
      });
    } else {
      const e = tensors.get(spec.name)!;
      // Vectors keep the source's dtype and bytes, so they load exactly as from the source.
      list.push({
        name: spec.name,
        dtype: e.dtype,
        shape: spec.shape,
        bytes: async function* () {
          yield await readTensorBytes(e);
          step(spec.name);
        },
      });
    }
  }
  // Folded norms are not stored; count them as done where the source has them.
  for (const t of plan.tensors) if (stored.fold_norms && isFoldedNorm(t.name)) step(t.name);

  const weightFiles = await writeCheckpointWeights(out, list, {
    maxShardBytes: opts.shardBytes,
    metadata: { format: 'pt', openelm_webgpu: `${opts.format} v${STORED_FORMAT_VERSION}` },
  });
  // Config last: a folder whose weights failed to write does not look like a model.
  const copied: string[] = [];
  for (const f of COPIED_FILES) {
    const st = await stat(join(src, f)).catch(() => undefined);
    if (st?.isFile()) {
      await copyFile(join(src, f), join(out, f));
      copied.push(f);
    }
  }
  await writeFile(join(out, 'config.json'), JSON.stringify({ ...cfgJson, [STORED_FORMAT_KEY]: stored }, null, 2) + '\n');

  const sizeOf = async (f: string) => (await stat(f)).size;
  const files: { name: string; bytes: number }[] = [];
  for (const f of ['config.json', ...weightFiles, ...copied]) files.push({ name: f, bytes: await sizeOf(join(out, f)) });
  const sources = new Set([...tensors.values()].map((e) => e.source));
  const weightSet = new Set(weightFiles.filter((f) => f.endsWith('.safetensors')));
  return {
    out,
    format: opts.format,
    fold_norms: stored.fold_norms,
    files,
    source_weight_bytes: [...sources].reduce((a, s) => a + s.size, 0),
    weight_bytes: files.filter((f) => weightSet.has(f.name)).reduce((a, f) => a + f.bytes, 0),
    ms: performance.now() - t0,
  };
}
