// The scoring commands of `openelm`: score (one continuation's log-likelihood), perplexity
// (sliding window over a text file) and eval (the model card's zero-shot tasks from JSONL data).
// main.ts registers them with its shared options and model loader.
import { readFileSync } from 'node:fs';
import type { OpenElmModel } from '../api/model.ts';
import type { ScoreResult } from '../generate/score.ts';
import { evaluate, loadItems, summarizeEval } from '../eval/eval.ts';
import { countProgress } from '../eval/progress.ts';
import { isTaskName, TASK_NAMES, TASKS } from '../eval/tasks.ts';
import { helpText, intOption, parseIdList, UsageError, type Parsed, type Spec } from './args.ts';

export interface Command {
  summary: string;
  spec: Spec;
  run: (p: Parsed) => Promise<void>;
  help?: () => string;
}

export type OpenModel = (p: Parsed) => Promise<{ model: OpenElmModel; dir: string; loadMs: number }>;

/** JSON without NaN or Infinity: a non-finite number (broken weights) becomes null. */
export function safeJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v));
}

const tokenizerOption: Spec = {
  tokenizer: { kind: 'string', value: 'DIR|FILE', help: "tokenizer.json / tokenizer.model, or a folder with one (default: the model folder's, else the built-in Llama-2 tokenizer)" },
};

function readText(p: Parsed, option: string): { text: string; file: string } {
  const file = p.values.get(option);
  if (file === undefined) throw new UsageError(`--${option} FILE is required`);
  try {
    return { text: readFileSync(file, 'utf8'), file };
  } catch (e) {
    throw new UsageError(`--${option} ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** Ctrl-C stops after the unit of work in progress (a second one quits at once). */
function interruptible(what: string): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const onSig = () => {
    if (ac.signal.aborted) process.exit(130);
    ac.abort();
    process.stderr.write(`\ninterrupted: finishing the ${what} in progress, then printing the finished ones (Ctrl-C again quits now)\n`);
  };
  process.on('SIGINT', onSig);
  return { signal: ac.signal, dispose: () => process.off('SIGINT', onSig) };
}

function scoreCommand(common: Spec, openModel: OpenModel): Command {
  const spec: Spec = {
    ...common,
    'context-ids': { kind: 'string', value: 'IDS', help: 'comma-separated context token ids, fed as they are (include the BOS id 1 yourself)' },
    'continuation-ids': { kind: 'string', value: 'IDS', help: 'comma-separated token ids to score after the context' },
    context: { kind: 'string', value: 'TEXT', help: 'context text (BOS added), instead of --context-ids' },
    continuation: { kind: 'string', value: 'TEXT', help: "continuation text, tokenized as lm-evaluation-harness does (the tokens of context+continuation after the context's)" },
    ...tokenizerOption,
  };
  return {
    summary: 'log-probability of a continuation given a context (summed, per token, and whether greedy)',
    spec,
    run: async (p) => {
      const ids = p.values.has('context-ids') || p.values.has('continuation-ids');
      const text = p.values.has('context') || p.values.has('continuation');
      if (ids && text) throw new UsageError('give --context-ids/--continuation-ids or --context/--continuation, not both kinds');
      let context: string | number[];
      let continuation: string | number[];
      if (text) {
        if (!p.values.has('context') || !p.values.has('continuation')) throw new UsageError(`--${p.values.has('context') ? 'continuation' : 'context'} TEXT is required with --${p.values.has('context') ? 'context' : 'continuation'}`);
        context = p.values.get('context')!;
        continuation = p.values.get('continuation')!;
        if (continuation === '') throw new UsageError('--continuation must not be empty');
      } else {
        const c = p.values.get('context-ids');
        const k = p.values.get('continuation-ids');
        if (c === undefined) throw new UsageError('--context-ids IDS is required (or --context TEXT), e.g. --context-ids 1,5');
        if (k === undefined) throw new UsageError('--continuation-ids IDS is required (or --continuation TEXT), e.g. --continuation-ids 9,4');
        context = parseIdList(c, '--context-ids');
        continuation = parseIdList(k, '--continuation-ids');
      }
      const { model } = await openModel(p);
      try {
        const req = model.request(context, continuation);
        const r: ScoreResult = (await model.scoreRequests([req]))[0];
        if (p.flags.has('json')) {
          const extra = text ? { context_ids: req.context, continuation_ids: req.continuation } : {};
          process.stdout.write(`${safeJson({ logprob: r.logprob, token_logprobs: r.token_logprobs, greedy: r.greedy, ...extra })}\n`);
        } else {
          console.log(`log-probability ${r.logprob.toFixed(4)} nats over ${r.token_logprobs.length} tokens; greedy: ${r.greedy ? 'yes' : 'no'}`);
          r.token_logprobs.forEach((lp, i) => console.log(`  token ${req.continuation[i]}: ${lp.toFixed(4)}`));
        }
      } finally {
        model.dispose();
      }
    },
  };
}

function perplexityCommand(common: Spec, openModel: OpenModel): Command {
  const spec: Spec = {
    ...common,
    file: { kind: 'string', value: 'FILE', help: 'UTF-8 text file, tokenized whole (BOS first)' },
    window: { kind: 'string', value: 'N', help: "tokens per window (default: the model's context length)" },
    stride: { kind: 'string', value: 'S', help: 'tokens between window starts (default: the window); tokens an earlier window scored are context only' },
    ...tokenizerOption,
  };
  return {
    summary: "sliding-window perplexity of a text file (Hugging Face's perplexity guide)",
    spec,
    run: async (p) => {
      const { text, file } = readText(p, 'file');
      if (text.length === 0) throw new UsageError(`--file ${file} is empty`);
      const windowOpt = p.values.has('window') ? intOption(p, 'window', 2, 0) : undefined;
      const strideOpt = p.values.has('stride') ? intOption(p, 'stride', 1, 0) : undefined;
      const { model } = await openModel(p);
      const stop = interruptible('window');
      const bar = countProgress(process.stderr, 'perplexity', 'windows');
      try {
        const window = windowOpt ?? model.engine.contextLength;
        if (window > model.engine.contextLength) throw new UsageError(`--window ${window} exceeds the model's context of ${model.engine.contextLength} tokens (see --context-length)`);
        const ids = model.encode(text);
        if (ids.length < 2) throw new Error(`${file} is ${ids.length} token long; perplexity needs at least 2`);
        const r = await model.perplexity(ids, { window, stride: strideOpt ?? window, signal: stop.signal, onWindow: (_t, d, n) => bar.update(d, n) });
        bar.end();
        const interrupted = stop.signal.aborted;
        if (p.flags.has('json')) process.stdout.write(`${safeJson({ ...r, ...(interrupted ? { interrupted: true } : {}) })}\n`);
        else console.log(`perplexity ${r.ppl.toFixed(4)} over ${r.tokens} tokens (${r.nll.toFixed(2)} nats, ${r.nll_per_token.toFixed(4)} per token; window ${r.window}, stride ${r.stride}, ${r.windows} windows)`);
        if (interrupted) throw new Error(`interrupted by Ctrl-C after ${r.windows} windows; the result covers those`);
      } finally {
        bar.end();
        stop.dispose();
        model.dispose();
      }
    },
  };
}

function evalCommand(common: Spec, openModel: OpenModel): Command {
  const spec: Spec = {
    ...common,
    task: { kind: 'string', value: 'TASK', help: `one of ${TASK_NAMES.join(', ')}` },
    data: { kind: 'string', value: 'FILE.jsonl', help: "the task's dataset, one JSON object per line in the public layout (see --help)" },
    limit: { kind: 'string', value: 'N', help: 'score only the first N items' },
    'no-context-reuse': { kind: 'flag', help: "score every choice from an empty KV cache instead of running the item's context once (same numbers, slower; for timing)" },
    ...tokenizerOption,
  };
  const summary = 'zero-shot multiple-choice accuracy as lm-evaluation-harness scores it (acc, acc_norm)';
  return {
    summary,
    spec,
    help: () =>
      [
        helpText('eval', summary, spec),
        '',
        'Data layouts (one JSON object per line, as the Hugging Face datasets the harness uses):',
        ...TASK_NAMES.map((t) => `  ${t.padEnd(13)} ${TASKS[t].layout}\n  ${''.padEnd(13)} from ${TASKS[t].source}`),
      ].join('\n'),
    run: async (p) => {
      const task = p.values.get('task');
      if (task === undefined) throw new UsageError(`--task is required (one of ${TASK_NAMES.join(', ')})`);
      if (!isTaskName(task)) throw new UsageError(`--task must be one of ${TASK_NAMES.join(', ')}, got "${task}"`);
      const limit = p.values.has('limit') ? intOption(p, 'limit', 1, 0) : Infinity;
      const { text, file } = readText(p, 'data');
      // Data errors surface before the model loads.
      const items = loadItems(task, text, file, limit);
      const { model } = await openModel(p);
      const stop = interruptible('item');
      const bar = countProgress(process.stderr, task);
      const t0 = performance.now();
      try {
        const reuseContext = !p.flags.has('no-context-reuse');
        const done = await evaluate(model, task, items, { reuseContext, signal: stop.signal, onItem: (d, n) => bar.update(d, n) });
        bar.end();
        const s = (performance.now() - t0) / 1000;
        const report = summarizeEval(task, done);
        const interrupted = stop.signal.aborted && done.length < items.length;
        if (p.flags.has('json')) process.stdout.write(`${safeJson({ ...report, ...(interrupted ? { interrupted: true } : {}) })}\n`);
        else {
          const fmt = (v: number | null, e: number | null) => (v === null ? 'n/a' : `${v.toFixed(4)}${e === null ? '' : ` ± ${e.toFixed(4)}`}`);
          console.log(`${task}: n ${report.n}, acc ${fmt(report.acc, report.acc_stderr)}, acc_norm ${fmt(report.acc_norm, report.acc_norm_stderr)}`);
        }
        console.error(`[${done.length} items in ${s.toFixed(1)} s, ${(done.length / s).toFixed(3)} items/s, context reuse ${reuseContext ? 'on' : 'off'}]`);
        if (interrupted) throw new Error(`interrupted by Ctrl-C after ${done.length} of ${items.length} items; the result covers those`);
      } finally {
        bar.end();
        stop.dispose();
        model.dispose();
      }
    },
  };
}

/** The commands, for main.ts's table: `...evalCommands(common, openModel)`. */
export function evalCommands(shared: Spec, openModel: OpenModel): Record<'score' | 'perplexity' | 'eval', Command> {
  // --input-ids belongs to logits/generate; these commands name their token lists.
  const common: Spec = Object.fromEntries(Object.entries(shared).filter(([k]) => k !== 'input-ids'));
  return { score: scoreCommand(common, openModel), perplexity: perplexityCommand(common, openModel), eval: evalCommand(common, openModel) };
}
