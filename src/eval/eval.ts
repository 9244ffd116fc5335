// Multiple-choice evaluation as lm-evaluation-harness scores it: each choice's summed
// log-likelihood; acc = argmax of them, acc_norm = argmax after dividing by the choice's length
// in characters (code points); stderr = sample standard deviation of the per-item scores / sqrt(n).
import type { ScoreOptions, ScoreResult, TokenRequest } from '../generate/score.ts';
import { DataError, TASKS, type McItem, type TaskName, type TextRequest } from './tasks.ts';

export interface EvalItem {
  gold: number;
  loglikelihoods: number[];
  pred: number;
  /** null for tasks where the harness reports no acc_norm (boolq, winogrande). */
  pred_norm: number | null;
}

export interface EvalReport {
  task: TaskName;
  n: number;
  acc: number | null;
  acc_stderr: number | null;
  acc_norm: number | null;
  acc_norm_stderr: number | null;
  items: EvalItem[];
}

/** numpy's argmax: the first index of the maximum. */
export function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

/** Length in Unicode code points, as Python's len(str). */
export const codePoints = (s: string): number => [...s].length;

export function itemResult(task: TaskName, item: McItem, loglikelihoods: number[]): EvalItem {
  const pred = argmax(loglikelihoods);
  const pred_norm = TASKS[task].accNorm ? argmax(loglikelihoods.map((ll, i) => ll / codePoints(item.choices[i]))) : null;
  return { gold: item.gold, loglikelihoods, pred, pred_norm };
}

/** Mean and harness stderr (sample stddev / sqrt(n)); stderr is null below two items. */
export function meanStderr(xs: readonly number[]): { mean: number | null; stderr: number | null } {
  const n = xs.length;
  if (n === 0) return { mean: null, stderr: null };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, stderr: null };
  const variance = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1);
  return { mean, stderr: Math.sqrt(variance) / Math.sqrt(n) };
}

export function summarizeEval(task: TaskName, items: EvalItem[]): EvalReport {
  const acc = meanStderr(items.map((it) => (it.pred === it.gold ? 1 : 0)));
  const norm = TASKS[task].accNorm ? meanStderr(items.map((it) => (it.pred_norm === it.gold ? 1 : 0))) : { mean: null, stderr: null };
  return { task, n: items.length, acc: acc.mean, acc_stderr: acc.stderr, acc_norm: norm.mean, acc_norm_stderr: norm.stderr, items };
}

/** Parses a JSONL file's text into built items (at most `limit`); errors name the file and line. */
export function loadItems(task: TaskName, text: string, file: string, limit = Infinity): McItem[] {
  const items: McItem[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length && items.length < limit; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    let doc: unknown;
    try {
      doc = JSON.parse(line);
    } catch (e) {
      throw new DataError(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`);
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new DataError(`${file}:${i + 1}: expected a JSON object per line`);
    try {
      items.push(TASKS[task].build(doc as Record<string, unknown>));
    } catch (e) {
      if (e instanceof DataError) throw new DataError(`${file}:${i + 1}: ${e.message}; ${task} expects ${TASKS[task].layout}`);
      throw e;
    }
  }
  if (items.length === 0) throw new DataError(`${file}: no items (expected one JSON object per line: ${TASKS[task].layout})`);
  return items;
}

/** What evaluation needs of a model: pair encoding and batched scoring (OpenElmModel has both). */
export interface EvalScorer {
  request(context: string, continuation: string): TokenRequest;
  scoreRequests(requests: readonly TokenRequest[], opts?: ScoreOptions): Promise<ScoreResult[]>;
}

export interface EvalRunOptions extends ScoreOptions {
  /** Stops after the item in progress; the finished items are returned. */
  signal?: AbortSignal;
  onItem?: (done: number, total: number) => void;
}

/** Scores items in order; all choices of an item go in one scoreRequests call (shared prefix). */
export async function evaluate(scorer: EvalScorer, task: TaskName, items: readonly McItem[], opts: EvalRunOptions = {}): Promise<EvalItem[]> {
  const out: EvalItem[] = [];
  for (const item of items) {
    if (opts.signal?.aborted) break;
    const reqs = item.requests.map((r: TextRequest) => scorer.request(r.context, r.continuation));
    const scores = await scorer.scoreRequests(reqs, { reuseContext: opts.reuseContext });
    out.push(itemResult(task, item, scores.map((s) => s.logprob)));
    opts.onItem?.(out.length, items.length);
  }
  return out;
}
