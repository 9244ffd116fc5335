// The sharded-checkpoint index (`model.safetensors.index.json`), parsed and checked in one place
// for the Node folder loader, the hub downloader and the browser loader. Browser-safe.
import type { TensorEntry } from './safetensors.ts';
import { parseJson } from '../util/json.ts';

export const INDEX_FILE = 'model.safetensors.index.json';

/** A shard name from an index must be a plain file name inside the checkpoint folder. */
export function isPlainFileName(f: string): boolean {
  return f.length > 0 && f !== '.' && f !== '..' && !/[/\\\0]/.test(f) && !/^[A-Za-z]:/.test(f);
}

/**
 * The index's weight_map as shard file -> tensor names (shards in first-mention order). `where`
 * (the index's path or URL) starts every error message.
 */
export function parseShardIndex(text: string, where: string): Map<string, string[]> {
  const fail = (msg: string): never => {
    throw new Error(`${where}: ${msg}`);
  };
  const index = parseJson(text, where);
  const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    return fail(`expected an object with "weight_map": {tensor name: shard file}, got ${typeof index === 'object' && index !== null ? 'no weight_map object' : JSON.stringify(index)}`);
  }
  const byShard = new Map<string, string[]>();
  for (const [name, f] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof f !== 'string') return fail(`weight_map["${name}"] must be a shard file name, got ${JSON.stringify(f)}`);
    if (!isPlainFileName(f)) fail(`weight_map["${name}"] is ${JSON.stringify(f)}, but shard names must be plain file names inside the model folder`);
    let list = byShard.get(f);
    if (!list) byShard.set(f, (list = []));
    list.push(name);
  }
  if (byShard.size === 0) fail(`weight_map is empty`);
  return byShard;
}

/**
 * The tensors of a sharded checkpoint, from each shard's parsed header. Every tensor must sit in
 * exactly the shard the index names: one the index maps elsewhere (or not at all), or one that two
 * shards both hold, is an ambiguous checkpoint and an error naming the files and the tensor.
 */
export function assembleShards(byShard: ReadonlyMap<string, readonly string[]>, shards: ReadonlyMap<string, Map<string, TensorEntry>>, where: string): Map<string, TensorEntry> {
  // Which shard holds each tensor, by the shards' own headers.
  const heldBy = new Map<string, string>();
  for (const [file, entries] of shards) {
    for (const name of entries.keys()) {
      const other = heldBy.get(name);
      if (other !== undefined) throw new Error(`${where}: tensor "${name}" is in two shards, "${other}" and "${file}"`);
      heldBy.set(name, file);
    }
  }
  const out = new Map<string, TensorEntry>();
  for (const [file, names] of byShard) {
    for (const name of names) {
      const e = shards.get(file)?.get(name);
      if (e) {
        out.set(name, e);
        continue;
      }
      const actual = heldBy.get(name);
      if (actual !== undefined) throw new Error(`${where}: tensor "${name}" is in shard "${actual}", but the index maps it to shard "${file}"`);
      throw new Error(`${where}: tensor "${name}" is mapped to shard "${file}", but that shard does not hold it`);
    }
  }
  for (const [name, file] of heldBy) {
    if (!out.has(name)) throw new Error(`${where}: shard "${file}" holds tensor "${name}", which the index does not list`);
  }
  return out;
}
