// The config.json entry of a checkpoint `openelm convert` wrote: its matrices are stored already
// quantized in the engine's q8/q4 layout (see src/convert/compact.ts), so loading uploads them as
// they are. Pure data: browser-safe.
import { describeValue, isObject } from '../util/json.ts';

export const STORED_FORMAT_KEY = 'openelm_webgpu';
export const STORED_FORMAT_VERSION = 1;
export const STORED_FORMATS = ['q8', 'q4'] as const;
export type StoredFormat = (typeof STORED_FORMATS)[number];

export interface StoredFormatEntry {
  format: StoredFormat;
  version: number;
  /** The layers' RMSNorm gains were multiplied into qkv_proj / proj_1 before quantizing (no attn_norm / ffn_norm tensors). */
  fold_norms: boolean;
}

/** The `openelm_webgpu` entry of a config object, checked; undefined when the config has none. */
export function parseStoredFormat(o: Record<string, unknown>, file: string): StoredFormatEntry | undefined {
  const v = o[STORED_FORMAT_KEY];
  if (v === undefined || v === null) return undefined;
  const fail = (msg: string): never => {
    throw new Error(`${file}: ${STORED_FORMAT_KEY}${msg}`);
  };
  if (!isObject(v)) return fail(` must be an object {"format": "q4"|"q8", "version": ${STORED_FORMAT_VERSION}}, got ${describeValue(v)}`);
  const e = v as Record<string, unknown>;
  if (!(STORED_FORMATS as readonly unknown[]).includes(e.format)) fail(`.format must be ${STORED_FORMATS.join(' or ')}, got ${describeValue(e.format)}`);
  if (e.version !== STORED_FORMAT_VERSION) fail(`.version must be ${STORED_FORMAT_VERSION} (this engine reads version ${STORED_FORMAT_VERSION}), got ${describeValue(e.version)}`);
  if (e.fold_norms !== undefined && typeof e.fold_norms !== 'boolean') fail(`.fold_norms must be true or false, got ${describeValue(e.fold_norms)}`);
  return { format: e.format as StoredFormat, version: STORED_FORMAT_VERSION, fold_norms: e.fold_norms === true };
}
