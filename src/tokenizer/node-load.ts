// Node-only: finds and reads tokenizer.json / tokenizer.model from a model folder or a file path.
import { readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { tokenizerFromJson, tokenizerFromModelProto } from './load.ts';
import type { Tokenizer } from './tokenizer.ts';
import { chatTemplateFromConfig, type ChatTemplate } from './chat.ts';
import { parseJson } from '../util/json.ts';

/** The tokenizer file in a folder: tokenizer.json first, then tokenizer.model; undefined if neither. */
export async function findTokenizerFile(dir: string): Promise<string | undefined> {
  for (const name of ['tokenizer.json', 'tokenizer.model']) {
    const file = join(dir, name);
    try {
      if ((await stat(file)).isFile()) return file;
    } catch {
      // not there
    }
  }
  return undefined;
}

/** Reads one tokenizer file: *.json as Hugging Face tokenizer.json, anything else as a SentencePiece model. */
export async function loadTokenizerFile(file: string): Promise<Tokenizer> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw new Error(`${file}: cannot read the tokenizer file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (basename(file).toLowerCase().endsWith('.json')) {
    return tokenizerFromJson(new TextDecoder().decode(bytes), file);
  }
  return tokenizerFromModelProto(bytes, file);
}

/** The built-in default, imported on first use (building it costs a few hundred ms). */
async function builtIn(): Promise<Tokenizer> {
  const { defaultTokenizer } = await import('./default.ts');
  return defaultTokenizer();
}

/**
 * A tokenizer for a model: `dirOrFile` is a model folder (its tokenizer.json, else its
 * tokenizer.model, else the built-in Llama-2 default, since Apple's OpenELM folders ship no
 * tokenizer) or a tokenizer file. Without an argument: the built-in default.
 */
export async function loadTokenizer(dirOrFile?: string): Promise<Tokenizer> {
  if (dirOrFile === undefined || dirOrFile === '') return builtIn();
  let isDir: boolean;
  try {
    isDir = (await stat(dirOrFile)).isDirectory();
  } catch {
    throw new Error(`${dirOrFile}: no such file or folder (expected a model folder, tokenizer.json or tokenizer.model)`);
  }
  if (!isDir) return loadTokenizerFile(dirOrFile);
  const file = await findTokenizerFile(dirOrFile);
  return file === undefined ? builtIn() : loadTokenizerFile(file);
}

/**
 * The chat template of a model or tokenizer folder (its tokenizer_config.json), or undefined when
 * the folder has none.
 */
export async function loadChatTemplate(dir: string): Promise<ChatTemplate | undefined> {
  const file = join(dir, 'tokenizer_config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  return chatTemplateFromConfig(parseJson(text, file), file);
}
