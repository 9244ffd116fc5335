// The generation loop: prefill the prompt once, then one decode step per token, or with a drafter
// (prompt lookup, an assistant model) one verify pass per draft. The next token is chosen on the
// GPU (greedy, repetition penalty, temperature/top-k/top-p sampling), so a step reads back only
// 4 bytes a token; the CPU supplies the seeded random numbers, the n-th new token using the n-th,
// so speculative decoding with prompt lookup samples exactly the tokens plain decoding does.
import type { GenerationConfig } from './options.ts';
import type { TokenEngine } from './token-engine.ts';
import { seededRandom } from '../util/random.ts';
import { checkTokenIds } from '../util/token-ids.ts';

export interface GeneratedToken {
  id: number;
  /** Text that became complete with this token (may be empty, e.g. mid UTF-8 character). */
  text: string;
}

export interface GenerationStats {
  prompt_tokens: number;
  /**
   * Leading prompt tokens whose KV entries were already in the cache from the previous call (the
   * last prompt and the tokens fed after it), so only the rest were prefilled.
   */
  prompt_cached_tokens: number;
  new_tokens: number;
  prefill_ms: number;
  decode_ms: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  dispatches_per_token: number;
  /** Bytes read back from the GPU per decode step. */
  readback_bytes_per_token: number;
  /** Present when a drafter was used. */
  speculative?: SpeculativeStats;
}

export interface SpeculativeStats {
  method: DraftMethod;
  /** Draft tokens proposed to the main model, and how many of them it accepted. */
  drafted: number;
  accepted: number;
  acceptance_rate: number;
  /** Main-model forward passes (the prefill, then one a verification). */
  main_passes: number;
  /** Draft-model forward passes (one a token it processed; 0 for prompt lookup). */
  draft_passes: number;
  tokens_per_main_pass: number;
}

export type DraftMethod = 'prompt_lookup' | 'assistant';

/** Proposes tokens for the main model to verify (speculative decoding). */
export interface Drafter {
  readonly method: DraftMethod;
  /** Forward passes the drafter has run so far. */
  readonly passes: number;
  /**
   * Present when the drafts are sampled: the weights each was drawn from, [drafts, vocab] on the
   * main model's device, for speculative sampling's acceptance rule.
   */
  readonly distributions?: GPUBuffer;
  /** Up to `max` tokens to follow `seq` (the prompt and every token generated so far). */
  propose(seq: readonly number[], max: number): Promise<number[]>;
  /** How many of the last proposal the main model accepted. */
  feedback(accepted: number): void;
}

export function emptyStats(): GenerationStats {
  return {
    prompt_tokens: 0,
    prompt_cached_tokens: 0,
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

/** The n-th number of a seeded stream, for any n (numbers are kept once drawn). */
function indexedRandom(seed: number): (n: number) => number {
  const next = seededRandom(seed);
  const drawn: number[] = [];
  return (n) => {
    while (drawn.length <= n) drawn.push(next());
    return drawn[n];
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

/**
 * Prefills the prompt, yields its choice, then one decode step per token; with `ahead` > 1, that
 * many steps are submitted together (each choice fed to the next on the GPU) and their ids read
 * back at once, never past max_new_tokens. The tokens are the same either way.
 */
async function* plainIds(
  engine: TokenEngine,
  promptIds: readonly number[],
  maxNew: number,
  ahead: number,
  randomAt: (n: number) => number,
  stats: GenerationStats,
): AsyncGenerator<number> {
  let id = await prefillPrompt(engine, promptIds, randomAt, stats);
  yield id;
  for (let n = 1; n < maxNew; ) {
    const s = performance.now();
    const count = Math.min(ahead, maxNew - n, engine.maxSteps);
    let ids: number[];
    if (count === 1) {
      engine.setRandom(randomAt(n));
      ids = [await engine.decodeStep()];
    } else {
      ids = await engine.steps([id], count, Array.from({ length: count }, (_, c) => randomAt(n + c)));
    }
    n += ids.length;
    stats.decode_ms += performance.now() - s;
    stats.decode_tokens_per_s = (n - 1) / (stats.decode_ms / 1000);
    for (const t of ids) yield (id = t);
  }
}

/** Prefills the prompt after the `stats.prompt_cached_tokens` the cache already holds. */
async function prefillPrompt(engine: TokenEngine, promptIds: readonly number[], randomAt: (n: number) => number, stats: GenerationStats): Promise<number> {
  const t0 = performance.now();
  const fresh = promptIds.slice(stats.prompt_cached_tokens);
  engine.setRandom(randomAt(0));
  await engine.prefill(fresh, 'none');
  const id = await engine.lastChoice();
  stats.prefill_ms = performance.now() - t0;
  stats.prefill_tokens_per_s = fresh.length / (stats.prefill_ms / 1000);
  return id;
}

/**
 * Speculative decoding: after the prompt, each round asks the drafter for up to k tokens, runs
 * the main model once over the last token and the drafts, keeps the drafts up to the first one
 * the main model would not have chosen, plus the main model's own choice there, and rolls the KV
 * cache back past the rest. Every kept token is the main model's choice at its position, so the
 * output is plain decoding's (greedy, and sampling with the same random number per position).
 */
async function* speculativeIds(
  engine: TokenEngine,
  promptIds: readonly number[],
  cfg: GenerationConfig,
  maxNew: number,
  drafter: Drafter,
  randomAt: (n: number) => number,
  stats: GenerationStats,
): AsyncGenerator<number> {
  const spec: SpeculativeStats = { method: drafter.method, drafted: 0, accepted: 0, acceptance_rate: 0, main_passes: 1, draft_passes: 0, tokens_per_main_pass: 1 };
  stats.speculative = spec;
  let cur = await prefillPrompt(engine, promptIds, randomAt, stats);
  const seq = [...promptIds, cur];
  let produced = 1;
  const penalty = cfg.repetitionPenalty !== 1;
  // Sampled drafts go through speculative sampling's rule, with their own stream of uniforms.
  const sampled = cfg.doSample && drafter.distributions !== undefined;
  const acceptRandom = seededRandom(cfg.seed ^ 0x5bd1e995);
  yield cur;
  for (;;) {
    const s = performance.now();
    // A verify pass yields at most drafts + 1 tokens: never draft past max_new_tokens.
    const room = Math.min(maxNew - produced - 1, engine.maxSteps - 1);
    const drafts = room > 0 ? await drafter.propose(seq, room) : [];
    const base = engine.length;
    let m: number;
    if (sampled) {
      // The sampler in this mode leaves `seen` to us: the sequence so far, then each draft.
      if (penalty) engine.setSeen(seq);
      if (drafts.length > 0) {
        const randoms = Array.from({ length: drafts.length + 1 }, () => acceptRandom());
        const r = await engine.verifySampled([cur, ...drafts], drafter.distributions!, randoms);
        m = r.accepted;
        cur = r.next;
      } else {
        m = 0;
        cur = (await engine.verify([cur], [acceptRandom()]))[0];
      }
    } else {
      const randoms = Array.from({ length: drafts.length + 1 }, (_, j) => randomAt(produced + j));
      const choices = await engine.verify([cur, ...drafts], randoms);
      m = 0;
      while (m < drafts.length && choices[m] === drafts[m]) m++;
      cur = choices[m];
    }
    engine.rollback(base + 1 + m);
    const fresh = [...drafts.slice(0, m), cur];
    seq.push(...fresh);
    // Rows after the first rejection marked their (discarded) choices as seen.
    if (penalty && !sampled && m < drafts.length) engine.setSeen(seq);
    if (drafts.length > 0) drafter.feedback(m);
    produced += fresh.length;
    spec.drafted += drafts.length;
    spec.accepted += m;
    spec.acceptance_rate = spec.drafted > 0 ? spec.accepted / spec.drafted : 0;
    spec.main_passes++;
    spec.draft_passes = drafter.passes;
    spec.tokens_per_main_pass = produced / spec.main_passes;
    stats.decode_ms += performance.now() - s;
    stats.decode_tokens_per_s = (produced - 1) / (stats.decode_ms / 1000);
    for (const id of fresh) yield id;
  }
}

/** max_new_tokens, or what max_length (prompt included) leaves after the prompt. */
export function newTokenBudget(cfg: GenerationConfig, promptLength: number): number {
  if (cfg.maxLength === undefined) return cfg.maxNewTokens;
  if (cfg.maxLength <= promptLength) {
    throw new Error(`max_length (${cfg.maxLength}) must be greater than the prompt's length (${promptLength} tokens)`);
  }
  return cfg.maxLength - promptLength;
}

export async function* generateTokens(
  engine: TokenEngine,
  promptIds: readonly number[],
  cfg: GenerationConfig,
  opts: { eosTokenId: number; text?: TextStream; signal?: AbortSignal; stats?: GenerationStats; drafter?: Drafter },
): AsyncGenerator<GeneratedToken> {
  const stats = opts.stats ?? emptyStats();
  const maxNew = newTokenBudget(cfg, promptIds.length);
  const total = promptIds.length + maxNew;
  if (total > engine.contextLength) {
    throw new Error(
      `prompt (${promptIds.length} tokens) plus max_new_tokens (${maxNew}) is ${total} tokens, more than the context of ${engine.contextLength}`,
    );
  }
  opts.signal?.throwIfAborted();
  checkTokenIds(promptIds, engine.vocabSize);
  // The cache's entries for a shared prefix are the ones a fresh prefill would write (attention
  // reads only positions before the current one), so keep them; the last prompt token is always
  // fed again, for the logits after it.
  const reuse = cfg.reuseCache && maxNew > 0 && promptIds.length > 1 ? Math.min(engine.cachedPrefix(promptIds), promptIds.length - 1) : 0;
  if (reuse > 0) engine.rollback(reuse);
  else engine.reset();
  stats.prompt_cached_tokens = reuse;
  engine.configureChooser(cfg, promptIds, { distributions: cfg.doSample && opts.drafter?.distributions !== undefined });
  const randomAt = indexedRandom(cfg.seed);
  stats.prompt_tokens = promptIds.length;
  stats.dispatches_per_token = engine.dispatchesPerToken;
  if (maxNew === 0) return;

  const source = opts.drafter
    ? speculativeIds(engine, promptIds, cfg, maxNew, opts.drafter, randomAt, stats)
    : plainIds(engine, promptIds, maxNew, cfg.decodeAhead, randomAt, stats);
  let pending = ''; // text not yet yielded because it may begin a stop string
  let emitted = 0;
  try {
    for (;;) {
      const next = await source.next();
      if (next.done) return;
      const id = next.value;
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
      const last = isEos || emitted === maxNew;
      if (last && opts.text) text += pending + opts.text.flush();
      yield { id, text };
      if (last) return;
      opts.signal?.throwIfAborted();
    }
  } finally {
    await source.return(undefined);
  }
}
