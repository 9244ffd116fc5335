// Parsing JSON text read from a file or URL, so that a syntax error names where the text came from
// in the one-line form every loader uses (config.json, tokenizer files, the shard index).

/** JSON.parse, or an Error `WHERE: not valid JSON (the parser's reason)`. */
export function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new Error(`${where}: not valid JSON (${(e as Error).message})`);
  }
}
