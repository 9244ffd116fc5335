// Generation options with Hugging Face names and semantics, parsed and validated in one place
// (the CLI's --generate_kwargs and the library's options object both end up here).

export interface GenerationConfig {
  maxNewTokens: number;
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  seed: number;
  /** Stop after the model's eos token. */
  stopAtEos: boolean;
  /** Stop once the generated text contains one of these (the text is cut before it). */
  stopStrings: string[];
  /** Total length, prompt included (generate_openelm.py's --max_length); when given, maxNewTokens is ignored. */
  maxLength?: number;
  /** Prompt lookup decoding: draft up to this many tokens from earlier text (off when undefined). */
  promptLookupNumTokens?: number;
  /** Longest n-gram prompt lookup matches (Hugging Face's default 2). */
  maxMatchingNgramSize: number;
  /** Drafts an assistant model proposes at first (Hugging Face's default 5). */
  numAssistantTokens: number;
  /** 'heuristic': +2 after a fully accepted draft, else -1 (minimum 1); 'constant': fixed. */
  numAssistantTokensSchedule: AssistantSchedule;
  /**
   * Plain decoding: decode steps submitted together, the ids read back in one copy (no CPU round
   * trip per token; tokens then stream in groups of this size). 1: a readback per token.
   */
  decodeAhead: number;
  /**
   * Keep the KV entries of the longest prefix the prompt shares with what the cache holds (the
   * previous prompt and the tokens fed after it) and prefill only the rest; false: prefill all.
   */
  reuseCache: boolean;
}

export const ASSISTANT_SCHEDULES = ['heuristic', 'constant'] as const;
export type AssistantSchedule = (typeof ASSISTANT_SCHEDULES)[number];

// Hugging Face's GenerationConfig defaults (top_k is 50 there too).
export const GENERATION_DEFAULTS: GenerationConfig = {
  maxNewTokens: 32,
  doSample: false,
  temperature: 1.0,
  topK: 50,
  topP: 1.0,
  repetitionPenalty: 1.0,
  seed: 0,
  stopAtEos: true,
  stopStrings: [],
  maxMatchingNgramSize: 2,
  numAssistantTokens: 5,
  numAssistantTokensSchedule: 'heuristic',
  decodeAhead: 1,
  reuseCache: true,
};

/** The kwargs `--generate_kwargs` accepts, with Hugging Face's names. */
export const KWARGS = [
  'max_new_tokens',
  'max_length',
  'do_sample',
  'temperature',
  'top_k',
  'top_p',
  'repetition_penalty',
  'seed',
  'stop_strings',
  'prompt_lookup_num_tokens',
  'max_matching_ngram_size',
  'num_assistant_tokens',
  'num_assistant_tokens_schedule',
] as const;
export type Kwarg = (typeof KWARGS)[number];

function num(name: string, v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new Error(`${name} must be a number, got "${v}"`);
  return n;
}

function int(name: string, v: string): number {
  const n = num(name, v);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got "${v}"`);
  return n;
}

function bool(name: string, v: string): boolean {
  if (/^(true|1|yes)$/i.test(v)) return true;
  if (/^(false|0|no)$/i.test(v)) return false;
  throw new Error(`${name} must be true or false, got "${v}"`);
}

/** Applies `key=value` strings (Hugging Face names) over `base`. */
export function applyKwargs(base: Partial<GenerationConfig>, items: Iterable<string>): Partial<GenerationConfig> {
  const out = { ...base };
  const given = new Set<string>();
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new Error(`generate_kwargs: "${item}" is not KEY=VALUE`);
    const key = item.slice(0, eq);
    const v = item.slice(eq + 1);
    if (!(KWARGS as readonly string[]).includes(key)) {
      throw new Error(`generate_kwargs: unsupported option "${key}" (supported: ${KWARGS.join(', ')})`);
    }
    if (given.has(key)) throw new Error(`generate_kwargs: ${key} given twice`);
    given.add(key);
    switch (key as Kwarg) {
      case 'max_new_tokens': out.maxNewTokens = int(key, v); break;
      case 'do_sample': out.doSample = bool(key, v); break;
      case 'temperature': out.temperature = num(key, v); break;
      case 'top_k': out.topK = int(key, v); break;
      case 'top_p': out.topP = num(key, v); break;
      case 'repetition_penalty': out.repetitionPenalty = num(key, v); break;
      case 'seed': out.seed = int(key, v); break;
      case 'stop_strings': out.stopStrings = [...(out.stopStrings ?? []), v]; break;
      case 'max_length': out.maxLength = int(key, v); break;
      case 'prompt_lookup_num_tokens': out.promptLookupNumTokens = int(key, v); break;
      case 'max_matching_ngram_size': out.maxMatchingNgramSize = int(key, v); break;
      case 'num_assistant_tokens': out.numAssistantTokens = int(key, v); break;
      case 'num_assistant_tokens_schedule': out.numAssistantTokensSchedule = v as AssistantSchedule; break;
    }
  }
  return out;
}

/** Fills defaults and checks every value; errors name the option and the accepted range. */
export function resolveGeneration(o: Partial<GenerationConfig>): GenerationConfig {
  const c: GenerationConfig = { ...GENERATION_DEFAULTS, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) };
  if (c.maxLength !== undefined && (!Number.isSafeInteger(c.maxLength) || c.maxLength < 1)) throw new Error(`max_length must be an integer >= 1, got ${c.maxLength}`);
  const pl = c.promptLookupNumTokens;
  if (pl !== undefined && (!Number.isSafeInteger(pl) || pl < 1)) throw new Error(`prompt_lookup_num_tokens must be an integer >= 1 (leave it out to turn prompt lookup off), got ${pl}`);
  if (!Number.isSafeInteger(c.maxMatchingNgramSize) || c.maxMatchingNgramSize < 1) throw new Error(`max_matching_ngram_size must be an integer >= 1, got ${c.maxMatchingNgramSize}`);
  if (!Number.isSafeInteger(c.numAssistantTokens) || c.numAssistantTokens < 1) throw new Error(`num_assistant_tokens must be an integer >= 1, got ${c.numAssistantTokens}`);
  if (!Number.isSafeInteger(c.decodeAhead) || c.decodeAhead < 1) throw new Error(`decode_ahead must be an integer >= 1, got ${c.decodeAhead}`);
  if (!(ASSISTANT_SCHEDULES as readonly string[]).includes(c.numAssistantTokensSchedule)) {
    throw new Error(`num_assistant_tokens_schedule must be ${ASSISTANT_SCHEDULES.join(' or ')}, got "${c.numAssistantTokensSchedule}"`);
  }
  if (!Number.isSafeInteger(c.maxNewTokens) || c.maxNewTokens < 0) throw new Error(`max_new_tokens must be an integer >= 0, got ${c.maxNewTokens}`);
  if (!(c.temperature >= 0) || !Number.isFinite(c.temperature)) throw new Error(`temperature must be a number >= 0 (0 means greedy), got ${c.temperature}`);
  if (!Number.isSafeInteger(c.topK) || c.topK < 0) throw new Error(`top_k must be an integer >= 0 (0 turns it off), got ${c.topK}`);
  if (!(c.topP > 0 && c.topP <= 1)) throw new Error(`top_p must be in (0, 1], got ${c.topP}`);
  if (!(c.repetitionPenalty > 0) || !Number.isFinite(c.repetitionPenalty)) throw new Error(`repetition_penalty must be a number > 0 (1 turns it off), got ${c.repetitionPenalty}`);
  if (!Number.isSafeInteger(c.seed) || c.seed < 0) throw new Error(`seed must be an integer >= 0, got ${c.seed}`);
  if (c.stopStrings.some((s) => s.length === 0)) throw new Error('stop strings must not be empty');
  // Temperature 0 is the common spelling of greedy decoding.
  if (c.temperature === 0) c.doSample = false;
  return c;
}
