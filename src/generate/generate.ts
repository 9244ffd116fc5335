// The generation loop: prefill the prompt once, then one decode step per token. The next token is
// chosen on the GPU (greedy, repetition penalty, temperature/top-k/top-p sampling), so each step
// reads back only its 4-byte id; the CPU supplies one seeded random number per step.
import type { Engine } from '../runtime/engine.ts';
import type { GenerationConfig } from './options.ts';

export interface GeneratedToken {
  id: number;
  /** Text that became complete with this token (may be empty, e.g. mid UTF-8 character). */
  text: string;
}

export interface GenerationStats {
  prompt_tokens: number;
  new_tokens: number;
  prefill_ms: number;
  decode_ms: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  dispatches_per_token: number;
  /** Bytes read back from the GPU per decode step. */
  readback_bytes_per_token: number;
}

export function emptyStats(): GenerationStats {
  return {
    prompt_tokens: 0,
    new_tokens: 0,
    prefill_ms: 0,
    decode_ms: 0,
    prefill_tokens_per_s: 0,
    decode_tokens_per_s: 0,
    dispatches_per_token: 0,
    readback_bytes_per_token: 4,
  };
}

/** Turns token ids into text incrementally (see tokenizer/StreamDecoder). */
export interface TextStream {
  push(id: number): string;
  flush(): string;
}

/** mulberry32: small, fast and seedable, so the same seed gives the same samples everywhere. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
function heldBack(text: string, stops: readonly string[]): number {
  let keep = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > keep; n--) {
      if (text.endsWith(s.slice(0, n))) {
        keep = n;
        break;
      }
    }
  }
  return keep;
}

export async function* generateTokens(
  engine: Engine,
  promptIds: readonly number[],
  cfg: GenerationConfig,
  opts: { eosTokenId: number; text?: TextStream; signal?: AbortSignal; stats?: GenerationStats },
): AsyncGenerator<GeneratedToken> {
  const stats = opts.stats ?? emptyStats();
  const total = promptIds.length + cfg.maxNewTokens;
  if (total > engine.contextLength) {
    throw new Error(
      `prompt (${promptIds.length} tokens) plus max_new_tokens (${cfg.maxNewTokens}) is ${total} tokens, more than the context of ${engine.contextLength}`,
    );
  }
  opts.signal?.throwIfAborted();
  engine.reset();
  engine.configureChooser(cfg, promptIds);
  const random = seededRandom(cfg.seed);
  stats.prompt_tokens = promptIds.length;
  stats.dispatches_per_token = engine.dispatchesPerToken;
  if (cfg.maxNewTokens === 0) return;

  const t0 = performance.now();
  engine.setRandom(random());
  await engine.prefill(promptIds, 'none');
  let id = await engine.lastChoice();
  stats.prefill_ms = performance.now() - t0;
  stats.prefill_tokens_per_s = promptIds.length / (stats.prefill_ms / 1000);

  let pending = ''; // text not yet yielded because it may begin a stop string
  let emitted = 0;
  for (;;) {
    emitted++;
    stats.new_tokens = emitted;
    const isEos = cfg.stopAtEos && id === opts.eosTokenId;
    let text = '';
    if (opts.text && !isEos) {
      pending += opts.text.push(id);
      const hit = cfg.stopStrings.map((s) => pending.indexOf(s)).filter((i) => i >= 0);
      if (hit.length > 0) {
        yield { id, text: pending.slice(0, Math.min(...hit)) };
        return;
      }
      const keep = heldBack(pending, cfg.stopStrings);
      text = pending.slice(0, pending.length - keep);
      pending = pending.slice(pending.length - keep);
    }
    const last = isEos || emitted === cfg.maxNewTokens;
    if (last && opts.text) text += pending + opts.text.flush();
    yield { id, text };
    if (last) return;
    opts.signal?.throwIfAborted();
    const s = performance.now();
    engine.setRandom(random());
    id = await engine.decodeStep();
    stats.decode_ms += performance.now() - s;
    stats.decode_tokens_per_s = emitted / (stats.decode_ms / 1000);
  }
}
