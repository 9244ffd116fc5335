// Node-only parts of the safetensors I/O: files as ByteSources, opening a checkpoint folder
// (single file or sharded), and the streaming writer.
import { open, stat, rename, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { assembleShards, INDEX_FILE, parseShardIndex } from './shard-index.ts';

export { INDEX_FILE };
import {
  buildHeader,
  DTYPE_SIZES,
  encodeF32,
  isRawTensor,
  numElements,
  parseSafetensors,
  type ByteSource,
  type TensorEntry,
  type AnyTensorToWrite,
  type RawTensorToWrite,
  type TensorToWrite,
} from './safetensors.ts';

const MAX_READ = 1 << 30; // FileHandle.read takes at most 2^31-1 bytes a call

async function readFully(fh: FileHandle, name: string, out: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < out.byteLength) {
    const want = Math.min(out.byteLength - done, MAX_READ);
    const { bytesRead } = await fh.read(out, done, want, position + done);
    if (bytesRead === 0) {
      throw new Error(`${name}: file ended after ${position + done} bytes while reading ${out.byteLength} bytes at ${position} (was it truncated?)`);
    }
    done += bytesRead;
  }
}

/**
 * A file as a ByteSource. Each read opens the file, reads exactly the requested range into a
 * fresh (aligned) buffer and closes it again, so nothing leaks and the file is never read whole.
 * `name` (used in error messages) defaults to the path.
 */
export async function fileSource(path: string, name: string = path): Promise<ByteSource> {
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new Error(`${name}: not a regular file`);
    size = st.size;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new Error(`${name}: file does not exist`);
    throw err;
  }
  return {
    name,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      if (!(offset >= 0 && length >= 0 && offset + length <= size)) {
        throw new Error(`${name}: read of ${length} bytes at offset ${offset} is past the end of the file (${size} bytes)`);
      }
      const out = new Uint8Array(length);
      if (length === 0) return out;
      const fh = await open(path, 'r');
      try {
        await readFully(fh, name, out, offset);
      } finally {
        await fh.close();
      }
      return out;
    },
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export const SINGLE_FILE = 'model.safetensors';

/**
 * Opens the weights of a Hugging Face model folder: `model.safetensors`, or else
 * `model.safetensors.index.json` and its shards. Reads headers only. For a sharded checkpoint the
 * map holds exactly the tensors of `weight_map`, each checked to be present in its shard.
 */
export async function openCheckpoint(dir: string): Promise<Map<string, TensorEntry>> {
  const single = join(dir, SINGLE_FILE);
  const indexPath = join(dir, INDEX_FILE);
  if (await exists(single)) return parseSafetensors(await fileSource(single));
  if (!(await exists(indexPath))) {
    if (!(await exists(dir))) throw new Error(`${dir}: model folder does not exist`);
    throw new Error(`${dir}: no weights found: looked for ${SINGLE_FILE} and ${INDEX_FILE} in this folder`);
  }

  const src = await fileSource(indexPath);
  const byShard = parseShardIndex(new TextDecoder().decode(await src.read(0, src.size)), indexPath);
  const shards = new Map<string, Map<string, TensorEntry>>();
  for (const [file, names] of byShard) {
    const shardPath = join(dir, file);
    if (!(await exists(shardPath))) {
      throw new Error(`${indexPath}: shard "${file}" (holding "${names[0]}"${names.length > 1 ? ` and ${names.length - 1} more` : ''}) does not exist in ${dir}`);
    }
    shards.set(file, await parseSafetensors(await fileSource(shardPath)));
  }
  return assembleShards(byShard, shards, indexPath);
}

// ---- Writing ----

const CHUNK_ELEMS = 1 << 20;

async function* chunksOf(t: TensorToWrite): AsyncGenerator<Float32Array> {
  const d = typeof t.data === 'function' ? t.data() : t.data;
  if (d instanceof Float32Array) {
    yield d;
  } else {
    for (const c of d) yield c;
  }
}

/** Writes one tensor's data (converted to its dtype), chunk by chunk. */
async function writeTensorData(fh: FileHandle, path: string, t: TensorToWrite, buf: Uint8Array): Promise<void> {
  const expected = numElements(t.shape);
  let count = 0;
  for await (const chunk of chunksOf(t)) {
    if (!(chunk instanceof Float32Array)) throw new Error(`${path}: tensor "${t.name}": data must be Float32Array chunks`);
    count += chunk.length;
    if (count > expected) break;
    for (let i = 0; i < chunk.length; i += CHUNK_ELEMS) {
      const part = chunk.subarray(i, Math.min(chunk.length, i + CHUNK_ELEMS));
      const n = encodeF32(part, t.dtype, buf, 0);
      await fh.write(buf, 0, n);
    }
  }
  if (count !== expected) {
    throw new Error(`${path}: tensor "${t.name}" ${t.dtype} [${t.shape.join(', ')}] needs ${expected} values, its data gave ${count > expected ? 'more' : count}`);
  }
}

/** Writes one raw tensor's bytes as its producer yields them, checking the total. */
async function writeRawTensorData(fh: FileHandle, path: string, t: RawTensorToWrite): Promise<void> {
  const expected = numElements(t.shape) * DTYPE_SIZES[t.dtype];
  let count = 0;
  for await (const part of t.bytes()) {
    count += part.byteLength;
    if (count > expected) break;
    await fh.write(part, 0, part.byteLength);
  }
  if (count !== expected) throw new Error(`${path}: tensor "${t.name}" ${t.dtype} [${t.shape.join(', ')}] needs ${expected} bytes, its data gave ${count > expected ? 'more' : count}`);
}

/**
 * Writes a safetensors file, streaming tensor by tensor: only the tensor being written (or its
 * current chunk, when `data` yields chunks) is in memory. Writes `<path>.partial` and renames it
 * when complete, so a failed write leaves no valid-looking file.
 */
export async function writeSafetensors(path: string, tensors: Iterable<AnyTensorToWrite>, metadata?: Record<string, string>): Promise<void> {
  const list = [...tensors];
  const { bytes } = buildHeader(list, metadata);
  const tmp = `${path}.partial`;
  const fh = await open(tmp, 'w');
  let ok = false;
  try {
    await fh.write(bytes, 0, bytes.length);
    const buf = new Uint8Array(CHUNK_ELEMS * 4);
    for (const t of list) await (isRawTensor(t) ? writeRawTensorData(fh, path, t) : writeTensorData(fh, path, t, buf));
    ok = true;
  } finally {
    await fh.close();
    if (!ok) await rm(tmp, { force: true });
  }
  await rename(tmp, path);
}

function shardName(i: number, n: number): string {
  const pad = (k: number) => String(k).padStart(5, '0');
  return `model-${pad(i)}-of-${pad(n)}.safetensors`;
}

/**
 * Writes the weights of a model folder. Without `maxShardBytes`, or when everything fits in one
 * shard, writes `dir/model.safetensors`. Otherwise splits the tensors greedily, in order, into
 * shards of at most `maxShardBytes` data bytes (a tensor larger than that gets a shard of its
 * own), written as `model-0000N-of-0000M.safetensors` plus `model.safetensors.index.json`, the
 * layout save_pretrained uses. Returns the file names written.
 */
export async function writeCheckpointWeights(
  dir: string,
  tensors: Iterable<AnyTensorToWrite>,
  opts: { maxShardBytes?: number; metadata?: Record<string, string> } = {},
): Promise<string[]> {
  const list = [...tensors];
  const bytesOf = (t: AnyTensorToWrite) => numElements(t.shape) * (DTYPE_SIZES[t.dtype] ?? 0);
  const total = list.reduce((a, t) => a + bytesOf(t), 0);
  const max = opts.maxShardBytes;
  if (max === undefined || total <= max) {
    await rm(join(dir, INDEX_FILE), { force: true }); // a stale index from an earlier sharded write
    await writeSafetensors(join(dir, SINGLE_FILE), list, opts.metadata);
    return [SINGLE_FILE];
  }
  if (!(max > 0)) throw new Error(`writeCheckpointWeights: maxShardBytes must be positive, got ${max}`);
  const shards: AnyTensorToWrite[][] = [];
  let cur: AnyTensorToWrite[] = [];
  let curBytes = 0;
  for (const t of list) {
    const b = bytesOf(t);
    if (cur.length > 0 && curBytes + b > max) {
      shards.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(t);
    curBytes += b;
  }
  if (cur.length > 0) shards.push(cur);
  await rm(join(dir, SINGLE_FILE), { force: true }); // would take precedence over the index
  const names: string[] = [];
  const weightMap: Record<string, string> = {};
  for (let i = 0; i < shards.length; i++) {
    const name = shardName(i + 1, shards.length);
    await writeSafetensors(join(dir, name), shards[i], opts.metadata);
    for (const t of shards[i]) weightMap[t.name] = name;
    names.push(name);
  }
  const index = { metadata: { total_size: total }, weight_map: weightMap };
  const fh = await open(join(dir, INDEX_FILE), 'w');
  try {
    await fh.writeFile(JSON.stringify(index, null, 2) + '\n');
  } finally {
    await fh.close();
  }
  return [...names, INDEX_FILE];
}
