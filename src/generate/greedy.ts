// Greedy generation over the engine: the prompt is prefilled once, then each step feeds back the
// token the GPU chose and reads only its id.
import type { Engine } from '../runtime/engine.ts';

export interface GreedyOptions {
  maxNewTokens: number;
  /** Stop after emitting this id (it is yielded). */
  eosTokenId?: number;
  signal?: AbortSignal;
}

export interface GenerationStats {
  prompt_tokens: number;
  new_tokens: number;
  prefill_ms: number;
  decode_ms: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  dispatches_per_token: number;
}

export async function* greedyTokens(engine: Engine, promptIds: readonly number[], opts: GreedyOptions, stats?: GenerationStats): AsyncGenerator<number> {
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 0) {
    throw new Error(`max_new_tokens must be a non-negative integer, got ${opts.maxNewTokens}`);
  }
  const total = promptIds.length + opts.maxNewTokens;
  if (total > engine.contextLength) {
    throw new Error(
      `prompt (${promptIds.length} tokens) plus max_new_tokens (${opts.maxNewTokens}) is ${total} tokens, more than the context of ${engine.contextLength}`,
    );
  }
  engine.reset();
  const t0 = performance.now();
  await engine.prefill(promptIds, 'none');
  let id = opts.maxNewTokens > 0 ? await engine.lastChoice() : -1;
  const t1 = performance.now();
  if (stats) {
    stats.prompt_tokens = promptIds.length;
    stats.prefill_ms = t1 - t0;
    stats.prefill_tokens_per_s = promptIds.length / ((t1 - t0) / 1000);
    stats.dispatches_per_token = engine.dispatchesPerToken;
  }
  let produced = 0;
  let decodeMs = 0;
  while (produced < opts.maxNewTokens) {
    opts.signal?.throwIfAborted();
    produced++;
    if (stats) stats.new_tokens = produced;
    yield id;
    if (id === opts.eosTokenId || produced === opts.maxNewTokens) break;
    const s = performance.now();
    id = await engine.decodeGreedy();
    decodeMs += performance.now() - s;
    if (stats) {
      stats.decode_ms = decodeMs;
      stats.decode_tokens_per_s = (produced) / (decodeMs / 1000);
    }
  }
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
  };
}
