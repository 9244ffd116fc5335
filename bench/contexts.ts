// Decode speed as the context grows: at each context length, decode steps after the KV cache
// holds that many tokens, and the step's per-kernel breakdown there (step.ts).
//
// The cache is filled one of two ways: 'prefill' runs a real prefill of that many prompt tokens;
// 'positions' prefills a short prompt and then sets the engine's token count to the context
// length, so the steps run at those positions over a cache whose other entries are zeros. A
// step's work depends on the position only (attention reads every key up to it, whatever their
// values), so both time the same work; 'positions' skips a prefill that takes minutes on a CPU
// adapter.
import type { Engine } from '../src/runtime/engine.ts';
import { GpuTimer } from './gpu-timer.ts';
import { promptIds } from './prompt.ts';
import { stepBreakdown, type StepBreakdown } from './step.ts';
import { rate, summarize, type Stat } from './stats.ts';

export const DECODE_CONTEXTS = [32, 512, 2048];
export const CONTEXT_FILLS = ['prefill', 'positions'] as const;
export type ContextFill = (typeof CONTEXT_FILLS)[number];

export interface ContextDecode {
  /** The context asked for. */
  requested: number;
  /** Tokens in the cache before the first timed step (the request, capped to fit the engine's context). */
  context_tokens: number;
  fill: ContextFill;
  /** Wall time of the real prefill ('prefill' only). */
  prefill_ms?: number;
  /** decodeStep until its id is back, after one warm-up step. */
  step_ms: Stat;
  tokens_per_s: Stat;
  breakdown?: StepBreakdown;
  error?: string;
}

export interface ContextOptions {
  contexts: number[];
  fill: ContextFill;
  /** Timed steps at each context. */
  steps: number;
  /** Breakdown runs (0: no breakdown). */
  breakdownRuns: number;
  copyGbs?: number;
}

export async function decodeAtContexts(engine: Engine, vocab: number, bos: number, o: ContextOptions, log: (s: string) => void): Promise<ContextDecode[]> {
  const out: ContextDecode[] = [];
  const timer = new GpuTimer(engine.gpu);
  // Warm-up step, timed steps and the breakdown's own step must fit behind the context.
  const room = engine.contextLength - 1 - o.steps - (o.breakdownRuns > 0 ? 1 : 0);
  try {
    for (const requested of o.contexts) {
      const c = Math.max(1, Math.min(requested, room));
      engine.reset();
      let prefillMs: number | undefined;
      if (o.fill === 'prefill') {
        const s = performance.now();
        await engine.prefill(promptIds(c, vocab, bos), 'none');
        await engine.lastChoice();
        prefillMs = performance.now() - s;
      } else {
        await engine.prefill(promptIds(Math.min(c, 8), vocab, bos), 'none');
        engine.length = c;
      }
      await engine.decodeStep(); // warm-up
      const times: number[] = [];
      const context = engine.length;
      for (let i = 0; i < Math.max(1, o.steps); i++) {
        const s = performance.now();
        await engine.decodeStep();
        times.push(performance.now() - s);
      }
      const step = summarize(times);
      const r: ContextDecode = { requested, context_tokens: context, fill: o.fill, prefill_ms: prefillMs, step_ms: step, tokens_per_s: rate(1, step) };
      log(`    context ${context}${o.fill === 'positions' ? ' (positions)' : ''}: decode ${(1000 / step.median).toFixed(2)} tok/s`);
      if (o.breakdownRuns > 0) {
        r.breakdown = await stepBreakdown(engine, timer, { runs: o.breakdownRuns, copyGbs: o.copyGbs });
        const b = r.breakdown;
        log(`    breakdown (${b.method}): step ${b.step_ms.toFixed(2)} ms, ${(b.bytes / 2 ** 20).toFixed(1)} MiB, ${b.gb_s.toFixed(2)} GB/s${b.roofline_fraction !== undefined ? `, ${(b.roofline_fraction * 100).toFixed(1)}% of copy bandwidth` : ''}`);
        log(`      ${b.kinds.map((k) => `${k.kind} ${k.ms.toFixed(2)} ms ${(k.share * 100).toFixed(0)}%`).join(', ')}`);
      }
      out.push(r);
    }
  } finally {
    timer.destroy();
  }
  return out;
}
