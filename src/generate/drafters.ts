// The two drafters of speculative decoding: prompt lookup (n-grams of the text so far) and an
// assistant model (a smaller, or more quantized, OpenELM with the same vocabulary).
import type { Drafter } from './generate.ts';
import { seededRandom } from '../util/random.ts';
import type { GenerationConfig } from './options.ts';
import { promptLookupCandidates } from './prompt-lookup.ts';
import type { TokenEngine } from './token-engine.ts';

export class PromptLookupDrafter implements Drafter {
  readonly method = 'prompt_lookup';
  readonly passes = 0;
  constructor(
    private readonly numTokens: number,
    private readonly maxNgram: number,
    private readonly eosId?: number,
  ) {}

  async propose(seq: readonly number[], max: number): Promise<number[]> {
    return promptLookupCandidates(seq, Math.min(this.numTokens, max), this.maxNgram, this.eosId);
  }

  feedback(): void {}
}

/**
 * Drafts with another engine: catches its KV cache up with the sequence, then runs k decode steps
 * in one submission (each step's choice fed to the next on the GPU) and reads the k ids back at
 * once. Greedy generation drafts greedily; sampling drafts by sampling with the same options and
 * keeps the weights each draft was drawn from on the GPU (`distributions`) for the acceptance
 * rule. After verification its cache is rolled back to the accepted prefix.
 */
export class AssistantDrafter implements Drafter {
  readonly method = 'assistant';
  passes = 0;
  /** Hugging Face keeps num_assistant_tokens as a float and drafts its integer part. */
  private k: number;
  private proposedAt = 0; // sequence length at the last proposal
  private fedDrafts = 0; // drafts of the last proposal the assistant itself consumed
  private readonly random?: () => number;

  constructor(
    private readonly engine: TokenEngine,
    private readonly cfg: GenerationConfig,
    promptIds: readonly number[],
    private readonly eosId?: number,
  ) {
    this.k = cfg.numAssistantTokens;
    engine.reset();
    if (cfg.doSample) {
      engine.configureChooser(cfg, promptIds, { distributions: true });
      this.random = seededRandom(cfg.seed ^ 0x27d4eb2f);
    } else {
      // Greedy drafts under the same repetition penalty make the likeliest agreeing proposals.
      engine.configureChooser(cfg.repetitionPenalty !== 1 ? { ...cfg, doSample: false } : null, promptIds);
    }
  }

  get distributions(): GPUBuffer | undefined {
    return this.random ? this.engine.draftDistributions : undefined;
  }

  async propose(seq: readonly number[], max: number): Promise<number[]> {
    const k = Math.min(Math.floor(this.k), max, this.engine.maxSteps);
    const e = this.engine;
    let known = seq.slice(e.length);
    if (known.length > 1) {
      // The first round (the prompt) and rounds after a fully accepted draft: catch up in one pass.
      await e.prefill(known.slice(0, -1), 'none');
      this.passes += known.length - 1;
      known = known.slice(-1);
    }
    // Catch-up passes chose (and marked seen) tokens that are not in the sequence.
    if (this.cfg.repetitionPenalty !== 1) e.setSeen(seq);
    const random = this.random;
    const drafts = await e.steps(known, k, random ? Array.from({ length: k }, () => random()) : []);
    this.passes += known.length + k - 1;
    this.proposedAt = seq.length;
    this.fedDrafts = k - 1;
    const eos = this.eosId === undefined ? -1 : drafts.indexOf(this.eosId);
    return eos >= 0 ? drafts.slice(0, eos + 1) : drafts;
  }

  feedback(accepted: number): void {
    this.engine.rollback(this.proposedAt + Math.min(accepted, this.fedDrafts));
    if (this.cfg.numAssistantTokensSchedule === 'heuristic') {
      this.k = accepted === Math.floor(this.k) ? this.k + 2 : Math.max(1, this.k - 1);
    }
  }
}
