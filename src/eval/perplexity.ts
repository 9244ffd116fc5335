// Sliding-window perplexity as Hugging Face's perplexity guide computes it: windows of `window`
// tokens start every `stride` tokens; in each, only the tokens no earlier window scored are
// targets (the rest are context, label -100). Every window starts from an empty KV cache.
import type { ScoringEngine } from '../generate/score.ts';

export interface PerplexityResult {
  /** Tokens scored (every token but the first, when stride <= window). */
  tokens: number;
  /** Summed negative log-likelihood, nats. */
  nll: number;
  nll_per_token: number;
  ppl: number;
  window: number;
  stride: number;
  windows: number;
}

export interface PerplexityOptions {
  window: number;
  stride: number;
  signal?: AbortSignal;
  onWindow?: (scoredSoFar: number, done: number, total: number) => void;
}

/** The windows [begin, end) and the index inside each of its first scored token. */
export function slidingWindows(n: number, window: number, stride: number): { begin: number; end: number; firstScored: number }[] {
  if (!(Number.isInteger(window) && window >= 2)) throw new Error(`window must be an integer >= 2, got ${window}`);
  if (!(Number.isInteger(stride) && stride >= 1)) throw new Error(`stride must be an integer >= 1, got ${stride}`);
  const out: { begin: number; end: number; firstScored: number }[] = [];
  let prevEnd = 0;
  for (let begin = 0; begin < n; begin += stride) {
    const end = Math.min(begin + window, n);
    const trgLen = end - prevEnd;
    const len = end - begin;
    // The first token of a window has no logits before it, so it is never a target.
    out.push({ begin, end, firstScored: Math.max(1, len - trgLen) });
    prevEnd = end;
    if (end === n) break;
  }
  return out;
}

export async function perplexity(engine: ScoringEngine, ids: readonly number[], o: PerplexityOptions): Promise<PerplexityResult> {
  if (ids.length < 2) throw new Error(`perplexity needs at least 2 tokens, got ${ids.length}`);
  if (o.window > engine.contextLength) throw new Error(`window ${o.window} exceeds the context of ${engine.contextLength} tokens`);
  const wins = slidingWindows(ids.length, o.window, o.stride);
  let nll = 0;
  let tokens = 0;
  let done = 0;
  for (const w of wins) {
    if (o.signal?.aborted) break;
    const inp = ids.slice(w.begin, w.end);
    engine.reset();
    if (w.firstScored > 1) await engine.prefill(inp.slice(0, w.firstScored - 1), 'none');
    const s = await engine.scoreTokens(inp.slice(w.firstScored - 1, -1), inp.slice(w.firstScored));
    for (const lp of s.logprobs) nll -= lp;
    tokens += s.logprobs.length;
    o.onWindow?.(tokens, ++done, wins.length);
  }
  const perToken = tokens > 0 ? nll / tokens : 0;
  return { tokens, nll, nll_per_token: perToken, ppl: Math.exp(perToken), window: o.window, stride: o.stride, windows: done };
}
