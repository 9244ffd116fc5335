// Request bodies of /v1/completions and /v1/chat/completions, checked field by field and mapped to
// the engine's generation options. Every refusal is a 400 naming the field (OpenAI's `param`).
//
// Mapping (see README, Serve): temperature (default 1, as OpenAI; 0 = greedy), top_p, seed (random
// when absent), max_tokens / max_completion_tokens, stop (a string or up to 4) -> stop strings;
// extensions top_k (default 0 = off, as OpenAI samples the whole distribution),
// repetition_penalty and prompt_lookup_num_tokens (Hugging Face's meaning). OpenAI's additive
// frequency/presence penalties have no equivalent here: 0 is accepted, anything else refused
// (repetition_penalty is the multiplicative one this engine has). Fields for features this server
// does not have (n > 1, logprobs, tools, logit_bias, echo, ...) are refused unless they ask for
// nothing; unknown fields are refused so a typo is not silently ignored.
import { checkChatMessages, type ChatMessage } from '../tokenizer/chat.ts';
import type { GenerationConfig } from '../generate/options.ts';
import { badField } from './errors.ts';

export type Endpoint = 'chat' | 'completion';

export interface GenRequest {
  endpoint: Endpoint;
  /** The `model` field, when given (checked against the served model by the server). */
  model?: string;
  stream: boolean;
  /** stream_options.include_usage: a last chunk with usage and no choices. */
  includeUsage: boolean;
  /** Chat: the conversation; completion: text, or token ids fed as they are. */
  messages?: ChatMessage[];
  prompt?: string | number[];
  /** Options for model.generate, all but the token budget (which needs the prompt's length). */
  options: Partial<GenerationConfig>;
  /** max_tokens / max_completion_tokens as asked, if given. */
  maxTokens?: number;
}

type Body = Record<string, unknown>;

const COMMON = [
  'model', 'stream', 'stream_options', 'temperature', 'top_p', 'top_k', 'max_tokens', 'n', 'stop', 'seed',
  'frequency_penalty', 'presence_penalty', 'repetition_penalty', 'prompt_lookup_num_tokens', 'logprobs',
  'logit_bias', 'user', 'metadata', 'store', 'service_tier',
];
const CHAT_ONLY = ['messages', 'max_completion_tokens', 'top_logprobs', 'response_format', 'tools', 'tool_choice', 'parallel_tool_calls'];
const COMPLETION_ONLY = ['prompt', 'echo', 'best_of', 'suffix'];

const absent = (v: unknown): boolean => v === undefined || v === null;

function num(b: Body, key: string, check: (n: number) => boolean, expected: string): number | undefined {
  const v = b[key];
  if (absent(v)) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) throw badField(key, `${key} must be ${expected}, got ${JSON.stringify(v)}`);
  return v;
}

function int(b: Body, key: string, min: number, expected = `an integer >= ${min}`): number | undefined {
  return num(b, key, (n) => Number.isSafeInteger(n) && n >= min, expected);
}

function bool(b: Body, key: string): boolean | undefined {
  const v = b[key];
  if (absent(v)) return undefined;
  if (typeof v !== 'boolean') throw badField(key, `${key} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

/** A field for a feature this server lacks: fine when it asks for nothing (`ok`), else refused. */
function unsupported(b: Body, key: string, ok: (v: unknown) => boolean, what: string): void {
  const v = b[key];
  if (!absent(v) && !ok(v)) throw badField(key, `${key} is not supported by this server (${what}); leave it out`, 'unsupported_parameter');
}

function stopStrings(b: Body): string[] | undefined {
  const v = b.stop;
  if (absent(v)) return undefined;
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length > 4 || list.some((s) => typeof s !== 'string' || s.length === 0)) {
    throw badField('stop', `stop must be a non-empty string or an array of up to 4 non-empty strings, got ${JSON.stringify(v)}`);
  }
  return list as string[];
}

/** OpenAI message content: a string, or an array of text parts (joined); other parts are refused. */
function messageText(content: unknown, i: number): unknown {
  if (!Array.isArray(content)) return content;
  return content
    .map((part: unknown, j) => {
      const p = part as { type?: unknown; text?: unknown } | null;
      if (!p || p.type !== 'text' || typeof p.text !== 'string') {
        throw badField(`messages[${i}].content[${j}]`, `messages[${i}].content[${j}] must be a text part {"type": "text", "text": "..."}; this model reads text only`);
      }
      return p.text;
    })
    .join('');
}

function chatMessages(v: unknown): ChatMessage[] {
  if (!Array.isArray(v)) throw badField('messages', 'messages must be a non-empty array of {role, content}');
  // OpenAI's newer "developer" role is the system role under another name.
  const messages = v.map((m: unknown, i) => {
    if (!m || typeof m !== 'object') return m;
    const r = m as { role?: unknown; content?: unknown };
    return { role: r.role === 'developer' ? 'system' : r.role, content: messageText(r.content, i) };
  });
  try {
    checkChatMessages(messages);
  } catch (e) {
    throw badField('messages', (e as Error).message);
  }
  return messages;
}

function completionPrompt(v: unknown): string | number[] {
  const ids = (a: unknown): a is number[] => Array.isArray(a) && a.length > 0 && a.every((x) => Number.isSafeInteger(x) && (x as number) >= 0);
  if (typeof v === 'string') {
    if (v.length === 0) throw badField('prompt', 'prompt must not be empty');
    return v;
  }
  if (ids(v)) return v;
  // A batch of one is the single prompt; batches are refused (one GPU, one sequence at a time).
  if (Array.isArray(v) && v.length === 1 && (typeof v[0] === 'string' || ids(v[0]))) return completionPrompt(v[0]);
  if (Array.isArray(v) && v.length > 1 && v.every((x) => typeof x === 'string' || ids(x))) {
    throw badField('prompt', `prompt holds ${v.length} prompts; this server takes one prompt a request (send one request each)`, 'unsupported_parameter');
  }
  throw badField('prompt', 'prompt must be a non-empty string or a non-empty array of token ids (non-negative integers)');
}

/** Checks a parsed JSON body for `endpoint` and maps it to a GenRequest. */
export function parseGenRequest(body: unknown, endpoint: Endpoint): GenRequest {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw badField('body', 'the request body must be a JSON object');
  const b = body as Body;
  const known = new Set([...COMMON, ...(endpoint === 'chat' ? CHAT_ONLY : COMPLETION_ONLY)]);
  const unknown = Object.keys(b).find((k) => !known.has(k));
  if (unknown !== undefined) throw badField(unknown, `unknown field "${unknown}" for ${endpoint === 'chat' ? '/v1/chat/completions' : '/v1/completions'}`, 'unknown_parameter');

  if (!absent(b.model) && typeof b.model !== 'string') throw badField('model', `model must be a string, got ${JSON.stringify(b.model)}`);
  const stream = bool(b, 'stream') ?? false;
  let includeUsage = false;
  if (!absent(b.stream_options)) {
    const so = b.stream_options;
    if (!stream) throw badField('stream_options', 'stream_options is only allowed with stream: true');
    if (typeof so !== 'object' || Array.isArray(so)) throw badField('stream_options', 'stream_options must be an object like {"include_usage": true}');
    const extra = Object.keys(so as Body).find((k) => k !== 'include_usage');
    if (extra !== undefined) throw badField(`stream_options.${extra}`, `stream_options.${extra} is not supported (only include_usage)`, 'unsupported_parameter');
    includeUsage = bool(so as Body, 'include_usage') ?? false;
  }

  const n = int(b, 'n', 1);
  if (n !== undefined && n !== 1) throw badField('n', `n must be 1 (this server returns one choice a request), got ${n}`, 'unsupported_parameter');
  for (const key of ['frequency_penalty', 'presence_penalty']) {
    const v = num(b, key, (x) => x >= -2 && x <= 2, 'a number in [-2, 2]');
    if (v !== undefined && v !== 0) {
      throw badField(key, `${key} is not supported (only 0); use repetition_penalty (e.g. 1.1), the multiplicative penalty this engine applies`, 'unsupported_parameter');
    }
  }
  unsupported(b, 'logprobs', (v) => v === false || v === 0, 'no log-probabilities are returned');
  unsupported(b, 'top_logprobs', (v) => v === 0, 'no log-probabilities are returned');
  unsupported(b, 'logit_bias', (v) => typeof v === 'object' && Object.keys(v as object).length === 0, 'no logit bias');
  unsupported(b, 'echo', (v) => v === false, 'the prompt is not echoed');
  unsupported(b, 'best_of', (v) => v === 1, 'one candidate a request');
  unsupported(b, 'suffix', (v) => v === '', 'no insertion');
  unsupported(b, 'response_format', (v) => (v as { type?: unknown }).type === 'text', 'plain text only');
  unsupported(b, 'tools', (v) => Array.isArray(v) && v.length === 0, 'no tool calls');
  unsupported(b, 'tool_choice', (v) => v === 'none', 'no tool calls');

  const temperature = num(b, 'temperature', (x) => x >= 0 && x <= 2, 'a number in [0, 2] (0 = greedy)') ?? 1;
  const options: Partial<GenerationConfig> = {
    temperature,
    doSample: temperature > 0,
    topP: num(b, 'top_p', (x) => x > 0 && x <= 1, 'a number in (0, 1]'),
    topK: int(b, 'top_k', 0, 'an integer >= 0 (0 = off)') ?? 0,
    repetitionPenalty: num(b, 'repetition_penalty', (x) => x > 0, 'a number > 0 (1 = off)'),
    promptLookupNumTokens: int(b, 'prompt_lookup_num_tokens', 1, 'an integer >= 1 (leave it out for plain decoding)'),
    // Without a seed each sampled request draws its own; with one, the same request gives the same text.
    seed: int(b, 'seed', 0, 'an integer >= 0') ?? Math.floor(Math.random() * 2 ** 31),
    stopStrings: stopStrings(b),
    stopAtEos: true,
  };

  let maxTokens = int(b, 'max_tokens', 1);
  if (endpoint === 'chat') {
    const mct = int(b, 'max_completion_tokens', 1);
    if (mct !== undefined && maxTokens !== undefined && mct !== maxTokens) {
      throw badField('max_completion_tokens', `give max_tokens or max_completion_tokens, not both with different values (${maxTokens} and ${mct})`);
    }
    maxTokens ??= mct;
  }
  const req: GenRequest = { endpoint, model: b.model as string | undefined, stream, includeUsage, options, maxTokens };
  if (endpoint === 'chat') req.messages = chatMessages(b.messages);
  else {
    if (absent(b.prompt)) throw badField('prompt', 'prompt is required (text, or an array of token ids)', 'missing_required_parameter');
    req.prompt = completionPrompt(b.prompt);
  }
  return req;
}

/**
 * New tokens for a prompt of `promptTokens`: max_tokens as asked, or by default what the context
 * leaves (at most the server's cap). A prompt that fills the context, or max_tokens beyond the cap
 * or the context, is refused rather than cut short without notice.
 */
export function tokenBudget(promptTokens: number, asked: number | undefined, limits: { contextLength: number; maxTokens: number }, promptField: 'messages' | 'prompt'): number {
  const room = limits.contextLength - promptTokens;
  if (room < 1) {
    throw badField(promptField, `the prompt is ${promptTokens} tokens; this server's context is ${limits.contextLength} tokens, which leaves no room for a reply`, 'context_length_exceeded');
  }
  if (asked === undefined) return Math.min(room, limits.maxTokens);
  if (asked > limits.maxTokens) throw badField('max_tokens', `max_tokens is ${asked}; this server allows at most ${limits.maxTokens} (its --max-tokens)`);
  if (asked > room) {
    throw badField('max_tokens', `the prompt (${promptTokens} tokens) plus max_tokens (${asked}) is ${promptTokens + asked} tokens, more than this server's context of ${limits.contextLength}`, 'context_length_exceeded');
  }
  return asked;
}
