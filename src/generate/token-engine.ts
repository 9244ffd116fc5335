// What the generation loop needs from an engine (prefill, one-token and multi-token steps, rollback,
// the chooser), so generate/ works against this interface and not the engine class, and so
// speculative decoding can drive two models (the main model and its assistant) the same way.
import type { SamplingParams } from '../../kernels/sample.ts';

export interface TokenEngine {
  readonly contextLength: number;
  readonly vocabSize: number;
  /** Tokens currently held in the KV cache. */
  readonly length: number;
  /** Most tokens a `verify` pass, and most choices a `steps` call, takes. */
  readonly maxSteps: number;
  readonly dispatchesPerToken: number;
  reset(): void;
  /** How many leading ids of `ids` the KV cache holds at the same positions (see Engine.cachedPrefix). */
  cachedPrefix(ids: readonly number[]): number;
  /** Forgets every token after the first `length`. */
  rollback(length: number): void;
  /**
   * How the next token is chosen (null: greedy argmax); `history` seeds the repetition penalty.
   * `distributions`: when sampling, choosers also keep the weights they drew from and leave the
   * seen set to the caller (speculative sampling; see draftDistributions and verifySampled).
   */
  configureChooser(p: SamplingParams | null, history?: readonly number[], opts?: { distributions?: boolean }): void;
  /** The kept weights behind the last `steps` call's choices, f32 [count, vocab]. */
  readonly draftDistributions: GPUBuffer;
  /** Rewrites the repetition penalty's seen set. */
  setSeen(history: readonly number[]): void;
  /** The sampler's random number for the next prefill or decode step. */
  setRandom(u: number): void;
  /** Appends tokens; the choice after the last one stays on the GPU (see lastChoice/decodeStep). */
  prefill(ids: readonly number[], mode?: 'none' | 'last' | 'all'): Promise<Float32Array>;
  lastChoice(): Promise<number>;
  /** Feeds the last choice (on the GPU) and returns the next. */
  decodeStep(): Promise<number>;
  /** Appends `tokens` in one pass; returns the choice after each of them. */
  verify(tokens: readonly number[], randoms?: readonly number[]): Promise<number[]>;
  /**
   * Speculative sampling: appends the last token and k drafts in one pass and applies the
   * acceptance rule against the draft model's weights; returns how many drafts were accepted and
   * the token after them.
   */
  verifySampled(tokens: readonly number[], draftDists: GPUBuffer, randoms: readonly number[]): Promise<{ accepted: number; next: number }>;
  /** Feeds `known`, then `count - 1` of its own choices, in one submission; returns the `count` choices. */
  steps(known: readonly number[], count: number, randoms?: readonly number[]): Promise<number[]>;
}
