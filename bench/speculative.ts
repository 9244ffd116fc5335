// The speculative-decoding benchmark: decode speed and main-model passes per generated token,
// plain and with each drafter, on a prompt whose continuation repeats earlier text (a quote) and
// on one whose does not; output equality with plain greedy is checked on every run.
import { loadModel, type DType, type GenerationStats, type OpenElmModel } from '../src/index.ts';
import { seededRandom } from '../src/util/random.ts';

export interface SpeculativeRow {
  prompt: 'quote' | 'fresh';
  method: string;
  prompt_tokens: number;
  new_tokens: number;
  decode_tokens_per_s: number;
  /** Main-model forward passes per generated token (1 for plain decoding). */
  main_passes_per_token: number;
  acceptance_rate: number | null;
  tokens_per_main_pass: number;
  same_tokens_as_plain: boolean;
}

export interface SpeculativeBenchOptions {
  modelDir: string;
  dtype: DType;
  newTokens: number;
  /** Assistant formats of the same checkpoint (self-drafting), e.g. ['q4', 'q8']. */
  assistantDtypes: DType[];
  promptLookupNumTokens: number;
  log: (s: string) => void;
}

/**
 * Two prompts: 'quote' is a seed, the model's own greedy continuation of it, then the seed again,
 * so a faithful continuation repeats text the prompt holds; 'fresh' is random tokens.
 */
async function prompts(model: OpenElmModel, newTokens: number): Promise<Record<SpeculativeRow['prompt'], number[]>> {
  const r = seededRandom(7);
  const V = model.plan.vocabSize;
  const token = () => 3 + Math.floor(r() * (V - 3));
  const seed = [1, ...Array.from({ length: 16 }, token)];
  const { ids: said } = await model.generateText(seed, { maxNewTokens: newTokens + 16, stopAtEos: false });
  return { quote: [...seed, ...said, ...seed.slice(1)], fresh: [1, ...Array.from({ length: seed.length + said.length + 15 }, token)] };
}

export async function benchSpeculative(o: SpeculativeBenchOptions): Promise<{ rows: SpeculativeRow[]; command_note: string }> {
  const model = await loadModel(o.modelDir, { dtype: o.dtype });
  const assistants: [string, OpenElmModel][] = [];
  try {
    for (const d of o.assistantDtypes) assistants.push([`assistant ${d} -> ${o.dtype}`, await loadModel(o.modelDir, { dtype: d, gpu: model.gpu })]);
    const ps = await prompts(model, o.newTokens);
    const rows: SpeculativeRow[] = [];
    for (const [name, ids] of Object.entries(ps) as [SpeculativeRow['prompt'], number[]][]) {
      const base = { maxNewTokens: o.newTokens, stopAtEos: false, reuseCache: false };
      const runs: [string, Parameters<OpenElmModel['generateText']>[1]][] = [
        ['plain', base],
        [`prompt lookup ${o.promptLookupNumTokens}`, { ...base, promptLookupNumTokens: o.promptLookupNumTokens }],
        ...assistants.map(([n, a]) => [n, { ...base, assistant: a }] as [string, Parameters<OpenElmModel['generateText']>[1]]),
      ];
      let plainIds: number[] = [];
      for (const [method, opts] of runs) {
        o.log(`speculative: ${name} prompt (${ids.length} tokens), ${method}`);
        const { ids: out, stats } = await model.generateText(ids, opts);
        if (method === 'plain') plainIds = out;
        rows.push(row(name, method, stats, out.length > 0 && out.every((t, i) => t === plainIds[i])));
      }
    }
    return { rows, command_note: `main ${o.dtype}, ${o.newTokens} new tokens, greedy` };
  } finally {
    for (const [, a] of assistants) a.dispose();
    model.dispose();
  }
}

function row(prompt: SpeculativeRow['prompt'], method: string, s: GenerationStats, same: boolean): SpeculativeRow {
  const sp = s.speculative;
  const passes = sp ? sp.main_passes : s.new_tokens;
  return {
    prompt,
    method,
    prompt_tokens: s.prompt_tokens,
    new_tokens: s.new_tokens,
    decode_tokens_per_s: s.decode_tokens_per_s,
    main_passes_per_token: passes / s.new_tokens,
    acceptance_rate: sp ? sp.acceptance_rate : null,
    tokens_per_main_pass: sp ? sp.tokens_per_main_pass : 1,
    same_tokens_as_plain: same,
  };
}

export function speculativeTable(rows: readonly SpeculativeRow[]): string {
  const head = ['prompt', 'method', 'decode tok/s', 'main passes / token', 'acceptance', 'tokens / main pass', 'same as plain'];
  const lines = rows.map((r) => [
    r.prompt,
    r.method,
    r.decode_tokens_per_s.toFixed(2),
    r.main_passes_per_token.toFixed(2),
    r.acceptance_rate === null ? '' : `${(r.acceptance_rate * 100).toFixed(0)}%`,
    r.tokens_per_main_pass.toFixed(2),
    r.same_tokens_as_plain ? 'yes' : 'NO',
  ]);
  return [head, ...lines].map((l) => `| ${l.join(' | ')} |`).join('\n');
}
