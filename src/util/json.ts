// JSON read from files and URLs (config.json, tokenizer files, safetensors headers, the shard
// index): parsing with an error that names where the text came from, and the checks and the short
// rendering of a bad value that every loader's one-line errors use.

/** JSON.parse, or an Error `WHERE: not valid JSON (the parser's reason)`. */
export function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new Error(`${where}: not valid JSON (${(e as Error).message})`);
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Short JSON-ish rendering of a bad value for error messages (long strings and objects cut). */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '...' : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 60 ? s.slice(0, 60) + '...' : s;
}
