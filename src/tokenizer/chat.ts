// Chat templates as Hugging Face stores them (tokenizer_config.json `chat_template`, Jinja),
// rendered with @huggingface/jinja and tokenized with the special tokens mapped to their ids.
import { Template } from '@huggingface/jinja';
import type { Tokenizer } from './tokenizer.ts';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatTemplate {
  template: string;
  bosToken: string;
  eosToken: string;
  source: string;
}

function tokenText(v: unknown, fallback: string): string {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return fallback;
}

/** The chat template in a parsed tokenizer_config.json, or undefined when it has none. */
export function chatTemplateFromConfig(json: unknown, source: string): ChatTemplate | undefined {
  if (!json || typeof json !== 'object') throw new Error(`${source}: not a JSON object`);
  const cfg = json as Record<string, unknown>;
  let template = cfg.chat_template;
  // Newer files may hold several named templates; the one named "default" is the chat one.
  if (Array.isArray(template)) {
    const named = template.find((t) => t && typeof t === 'object' && (t as { name?: unknown }).name === 'default') as { template?: unknown } | undefined;
    template = named?.template;
  }
  if (template === undefined || template === null) return undefined;
  if (typeof template !== 'string') throw new Error(`${source}: chat_template must be a string, got ${typeof template}`);
  return { template, bosToken: tokenText(cfg.bos_token, '<s>'), eosToken: tokenText(cfg.eos_token, '</s>'), source };
}

const ROLES: readonly string[] = ['system', 'user', 'assistant'];

/** Checks a conversation's shape (from a request body or a caller), naming the first bad message. */
export function checkChatMessages(messages: unknown): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) throw new Error('messages must be a non-empty array of {role, content}');
  messages.forEach((m: unknown, i) => {
    const r = m as { role?: unknown; content?: unknown } | null;
    if (!r || typeof r !== 'object') throw new Error(`messages[${i}] must be an object {role, content}`);
    if (typeof r.role !== 'string' || !ROLES.includes(r.role)) throw new Error(`messages[${i}].role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(r.role)}`);
    if (typeof r.content !== 'string') throw new Error(`messages[${i}].content must be a string, got ${r.content === null ? 'null' : typeof r.content}`);
  });
}

export function renderChat(t: ChatTemplate, messages: readonly ChatMessage[], addGenerationPrompt = true): string {
  try {
    return new Template(t.template).render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: t.bosToken,
      eos_token: t.eosToken,
    });
  } catch (e) {
    throw new Error(`${t.source}: the chat template failed to render (${(e as Error).message.split('\n')[0]})`);
  }
}

/**
 * Token ids of a rendered chat: the bos/eos strings the template wrote become their ids, the text
 * between them is encoded without adding a bos (the template decides where bos goes).
 */
export function encodeChat(tok: Tokenizer, t: ChatTemplate, rendered: string): number[] {
  const specials = new Map([
    [t.bosToken, tok.bosId],
    [t.eosToken, tok.eosId],
  ]);
  const pattern = new RegExp([...specials.keys()].map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
  const ids: number[] = [];
  let last = 0;
  for (const m of rendered.matchAll(pattern)) {
    if (m.index > last) ids.push(...tok.encode(rendered.slice(last, m.index), { addBos: false }));
    ids.push(specials.get(m[0])!);
    last = m.index + m[0].length;
  }
  if (last < rendered.length) ids.push(...tok.encode(rendered.slice(last), { addBos: false }));
  return ids;
}
