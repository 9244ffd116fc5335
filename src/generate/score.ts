// Scoring: log-likelihoods of continuations given contexts, as lm-evaluation-harness computes
// them. Works against a small engine interface (the Engine class satisfies it). Requests that
// share a token prefix run that prefix once; each then rolls the KV cache back to it and feeds
// only its own tokens. The log-softmax and the gather run on the GPU (Engine.scoreTokens).

export interface ScoringEngine {
  readonly contextLength: number;
  reset(): void;
  rollback(length: number): void;
  prefill(ids: readonly number[], mode: 'none'): Promise<unknown>;
  scoreTokens(ids: readonly number[], targets: readonly number[]): Promise<{ logprobs: number[]; greedy: boolean[] }>;
}

/** One log-likelihood request in token ids: the continuation is scored after the context. */
export interface TokenRequest {
  context: readonly number[];
  continuation: readonly number[];
}

export interface ScoreResult {
  /** Summed log-probability (nats) of the continuation's tokens. */
  logprob: number;
  token_logprobs: number[];
  /** Whether every continuation token was the argmax of its position's logits. */
  greedy: boolean;
}

export interface ScoreOptions {
  /**
   * Run a prefix shared by the requests once and roll the KV cache back to it for each (default
   * true). False scores every request from an empty cache: the same numbers, more work.
   */
  reuseContext?: boolean;
}

/**
 * Left-truncates a request that does not fit `maxLength` model inputs, as the harness does: the
 * inputs are the last maxLength + 1 tokens of context + continuation, minus the very last.
 */
export function fitRequest(r: TokenRequest, maxLength: number): TokenRequest {
  if (r.context.length === 0) throw new Error('the context is empty: give at least one token (the BOS id)');
  if (r.continuation.length === 0) throw new Error('the continuation is empty: give at least one token to score');
  if (r.continuation.length > maxLength) {
    throw new Error(`a continuation of ${r.continuation.length} tokens does not fit the context of ${maxLength} tokens`);
  }
  const over = r.context.length + r.continuation.length - (maxLength + 1);
  return over > 0 ? { context: r.context.slice(over), continuation: r.continuation } : r;
}

function sharedPrefix(a: readonly number[], b: readonly number[], max: number): number {
  let n = 0;
  while (n < max && n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

/**
 * Scores every request; results are in request order. With reuse, the longest token prefix the
 * requests' inputs share (up to each one's last context token, whose logits score the first
 * continuation token) is prefilled once. The last context token is always fed together with the
 * continuation, so the first continuation token is scored on the GPU like the others.
 */
export async function scoreRequests(engine: ScoringEngine, requests: readonly TokenRequest[], opts: ScoreOptions = {}): Promise<ScoreResult[]> {
  const reqs = requests.map((r) => fitRequest(r, engine.contextLength));
  const inputs = reqs.map((r) => [...r.context, ...r.continuation.slice(0, -1)]);
  const reuse = opts.reuseContext ?? true;
  let prefix = 0;
  if (reuse && reqs.length > 0) {
    prefix = Math.min(...reqs.map((r) => r.context.length - 1));
    for (const inp of inputs.slice(1)) prefix = sharedPrefix(inputs[0], inp, prefix);
    engine.reset();
    if (prefix > 0) await engine.prefill(inputs[0].slice(0, prefix), 'none');
  }
  const out: ScoreResult[] = [];
  for (let k = 0; k < reqs.length; k++) {
    const { context, continuation } = reqs[k];
    const start = reuse ? prefix : 0;
    if (reuse) engine.rollback(prefix);
    else engine.reset();
    // Context tokens after the shared prefix but before the last one need no logits.
    const firstScored = context.length - 1;
    if (firstScored > start) await engine.prefill(inputs[k].slice(start, firstScored), 'none');
    const s = await engine.scoreTokens(inputs[k].slice(firstScored), continuation);
    let logprob = 0;
    for (const lp of s.logprobs) logprob += lp;
    out.push({ logprob, token_logprobs: s.logprobs, greedy: s.greedy.every((g) => g) });
  }
  return out;
}

// The characters Python's str.rstrip() removes (str.isspace), which the harness uses.
const PY_TRAILING_SPACE = /[\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/u;

/** What pair encoding needs of a tokenizer. */
export interface PairTokenizer {
  readonly bosId: number;
  encode(text: string, opts?: { addBos?: boolean }): number[];
}

/**
 * Token ids of a (context, continuation) text pair as lm-evaluation-harness's HFLM builds them
 * with add_bos_token=True (how OpenELM was evaluated): whitespace at the end of the context moves
 * to the front of the continuation; the continuation's tokens are those of context+continuation
 * after as many tokens as the context alone has. An empty context becomes the BOS token.
 */
export function encodePair(tok: PairTokenizer, context: string, continuation: string): TokenRequest {
  if (context === '') {
    const cont = tok.encode(continuation, { addBos: false });
    return cont[0] === tok.bosId ? { context: cont.slice(0, 1), continuation: cont.slice(1) } : { context: [tok.bosId], continuation: cont };
  }
  const trimmed = context.replace(PY_TRAILING_SPACE, '');
  const moved = context.slice(trimmed.length);
  const whole = tok.encode(trimmed + moved + continuation);
  const ctx = tok.encode(trimmed);
  return { context: ctx, continuation: whole.slice(ctx.length) };
}
