// The seven model-card tasks built from hand-made dataset lines, checked against the prompts,
// continuations and gold indices lm-evaluation-harness builds; metrics (acc, acc_norm by code
// points, stderr) on scores with known answers; JSONL errors that name the file and line.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TASKS, TASK_NAMES, hellaswagPreprocess, pyCapitalize, type TaskName } from '../../src/eval/tasks.ts';
import { evaluate, itemResult, loadItems, meanStderr, summarizeEval, type EvalScorer } from '../../src/eval/eval.ts';
import type { ScoreResult, TokenRequest } from '../../src/generate/score.ts';

const line = (o: unknown) => JSON.stringify(o);

test('arc_easy / arc_challenge: "Question: ...\\nAnswer:", " " + choice, gold from answerKey', () => {
  for (const t of ['arc_easy', 'arc_challenge'] as const) {
    const [it] = loadItems(t, line({ id: 'x', question: 'Which is a gas?', choices: { text: ['ice', 'steam', 'rock'], label: ['A', 'B', 'C'] }, answerKey: 'B' }), 'f.jsonl');
    assert.deepEqual(it.requests, [
      { context: 'Which is a gas?'.replace(/^/, 'Question: ') + '\nAnswer:', continuation: ' ice' },
      { context: 'Question: Which is a gas?\nAnswer:', continuation: ' steam' },
      { context: 'Question: Which is a gas?\nAnswer:', continuation: ' rock' },
    ]);
    assert.equal(it.gold, 1);
    assert.deepEqual(it.choices, ['ice', 'steam', 'rock']);
  }
  // Numeric labels (some ARC items use "1".."4").
  const [n] = loadItems('arc_easy', line({ question: 'q', choices: { text: ['a', 'b', 'c', 'd'], label: ['1', '2', '3', '4'] }, answerKey: '4' }), 'f');
  assert.equal(n.gold, 3);
});

test('boolq: "{passage}\\nQuestion: {question}?\\nAnswer:" with " no" / " yes"', () => {
  const [it] = loadItems('boolq', line({ passage: 'Cats are mammals.', question: 'is a cat a mammal', idx: 0, label: 1 }), 'f');
  const context = 'Cats are mammals.\nQuestion: is a cat a mammal?\nAnswer:';
  assert.deepEqual(it.requests, [{ context, continuation: ' no' }, { context, continuation: ' yes' }]);
  assert.equal(it.gold, 1);
  const [g] = loadItems('boolq', line({ passage: 'p', question: 'q', answer: false }), 'f');
  assert.equal(g.gold, 0);
  assert.equal(TASKS.boolq.accNorm, false);
});

test('hellaswag: capitalized ctx_b, " [title]" -> ". ", [brackets] removed, double spaces collapsed once', () => {
  assert.equal(pyCapitalize('tHE dog ÉTÉ'), 'The dog été');
  // Python's result (checked): removing "[step]" leaves three spaces, and one replace pass leaves two.
  assert.equal(hellaswagPreprocess('  How to cook [title] Boil water.  [step] Add  salt. '), 'How to cook. Boil water.  Add salt.');
  // One pass of "  " -> " ": three spaces become two, as Python's str.replace does.
  assert.equal(hellaswagPreprocess('a   b'), 'a  b');
  const doc = {
    ind: 4, activity_label: 'Home and Garden', ctx_a: 'A man is in a yard.', ctx_b: 'he PICKS up a rake', ctx: 'unused',
    endings: ['and rakes the leaves [title] Done.', 'then eats it.', 'flies away.', 'sleeps [header] now.'], source_id: 's', split: 'val', split_type: 'indomain', label: '0',
  };
  const [it] = loadItems('hellaswag', line(doc), 'f');
  const context = 'Home and Garden: A man is in a yard. He picks up a rake';
  assert.deepEqual(it.requests.map((r) => r.context), [context, context, context, context]);
  assert.deepEqual(it.requests.map((r) => r.continuation), [' and rakes the leaves. Done.', ' then eats it.', ' flies away.', ' sleeps now.']);
  assert.deepEqual(it.choices, ['and rakes the leaves. Done.', 'then eats it.', 'flies away.', 'sleeps now.']);
  assert.equal(it.gold, 0);
});

test('piqa: "Question: {goal}\\nAnswer:" with the two solutions', () => {
  const [it] = loadItems('piqa', line({ goal: 'Open a jar', sol1: 'Twist the lid.', sol2: 'Bake it.', label: 0 }), 'f');
  assert.deepEqual(it.requests, [
    { context: 'Question: Open a jar\nAnswer:', continuation: ' Twist the lid.' },
    { context: 'Question: Open a jar\nAnswer:', continuation: ' Bake it.' },
  ]);
  assert.equal(it.gold, 0);
});

test('sciq: support (left-stripped) + question; distractors then the correct answer, gold 3', () => {
  const doc = { question: 'What do plants make?', distractor1: 'rocks', distractor2: 'salt', distractor3: 'iron', correct_answer: 'sugar', support: '\n  Plants photosynthesize. ' };
  const [it] = loadItems('sciq', line(doc), 'f');
  const context = 'Plants photosynthesize. \nQuestion: What do plants make?\nAnswer:';
  assert.deepEqual(it.requests.map((r) => r.context), [context, context, context, context]);
  assert.deepEqual(it.requests.map((r) => r.continuation), [' rocks', ' salt', ' iron', ' sugar']);
  assert.equal(it.gold, 3);
  // Empty support (some SciQ items): the prompt starts with the newline.
  const [e] = loadItems('sciq', line({ ...doc, support: '' }), 'f');
  assert.equal(e.requests[0].context, '\nQuestion: What do plants make?\nAnswer:');
});

test('winogrande: each option fills the blank in the context; the rest of the sentence is the shared continuation', () => {
  const doc = { sentence: 'The trophy did not fit in the suitcase because the _ was too big.', option1: 'trophy', option2: 'suitcase', answer: '1' };
  const [it] = loadItems('winogrande', line(doc), 'f');
  assert.deepEqual(it.requests, [
    { context: 'The trophy did not fit in the suitcase because the trophy', continuation: ' was too big.' },
    { context: 'The trophy did not fit in the suitcase because the suitcase', continuation: ' was too big.' },
  ]);
  assert.equal(it.gold, 0);
  assert.equal(TASKS.winogrande.accNorm, false);
});

test('acc_norm divides by code points (not UTF-16 units); acc by raw sums; ties go to the first', () => {
  // "😀😀😀" is 3 code points but 6 UTF-16 units: per code point -1.1 < -1.0, per unit -0.55 > -1.0.
  const item = { requests: [], gold: 1, choices: ['😀😀😀', 'abcd'] };
  const r = itemResult('arc_easy', item, [-3.3, -4]);
  assert.deepEqual(r, { gold: 1, loglikelihoods: [-3.3, -4], pred: 0, pred_norm: 1 });
  // "é" as e + combining accent is 2 code points (Python len), "ü" precomposed is 1.
  const accents = itemResult('piqa', { requests: [], gold: 0, choices: ['e\u0301', 'ü'] }, [-1.8, -1]);
  assert.equal(accents.pred_norm, 0);
  assert.equal(itemResult('arc_easy', { requests: [], gold: 0, choices: ['a', 'b'] }, [-2, -2]).pred, 0);
  assert.equal(itemResult('boolq', { requests: [], gold: 0, choices: ['no', 'yes'] }, [-2, -1]).pred_norm, null);
});

test('summary: means and the harness stderr (sample stddev / sqrt(n)); no NaN for tiny n', () => {
  assert.deepEqual(meanStderr([1, 0, 1, 1]), { mean: 0.75, stderr: 0.25 });
  assert.deepEqual(meanStderr([1]), { mean: 1, stderr: null });
  const items = [
    { gold: 0, loglikelihoods: [-1, -2], pred: 0, pred_norm: 1 },
    { gold: 1, loglikelihoods: [-1, -2], pred: 0, pred_norm: 1 },
  ];
  const s = summarizeEval('piqa', items);
  assert.equal(s.acc, 0.5);
  assert.equal(s.acc_norm, 0.5);
  assert.ok(Math.abs(s.acc_stderr! - 0.5) < 1e-12);
  const b = summarizeEval('winogrande', items);
  assert.equal(b.acc_norm, null);
  assert.equal(b.acc_norm_stderr, null);
  assert.doesNotMatch(JSON.stringify(summarizeEval('arc_easy', [items[0]])), /NaN|Infinity/);
});

test('evaluate: items in order, each choice scored once, a shared-prefix call per item; abort keeps finished items', async () => {
  // A fake model: one token per character; the log-likelihood is known per continuation text.
  const table: Record<string, number> = { ' steam': -1, ' ice': -2, ' rock': -3, ' yes': -0.5, ' no': -0.25 };
  const calls: number[] = [];
  const scorer: EvalScorer = {
    request: (context, continuation) => ({ context: [1, ...[...context].map((c) => c.codePointAt(0)!)], continuation: [...continuation].map((c) => c.codePointAt(0)!) }),
    async scoreRequests(reqs: readonly TokenRequest[]): Promise<ScoreResult[]> {
      calls.push(reqs.length);
      return reqs.map((r) => {
        const text = String.fromCodePoint(...r.continuation);
        return { logprob: table[text], token_logprobs: [table[text]], greedy: false };
      });
    },
  };
  const data = [
    line({ question: 'q1', choices: { text: ['ice', 'steam', 'rock'], label: ['A', 'B', 'C'] }, answerKey: 'B' }),
    line({ question: 'q2', choices: { text: ['rock', 'ice'], label: ['A', 'B'] }, answerKey: 'A' }),
    line({ question: 'q3', choices: { text: ['steam', 'ice'], label: ['A', 'B'] }, answerKey: 'A' }),
  ].join('\n');
  const items = loadItems('arc_easy', data, 'f');
  const res = await evaluate(scorer, 'arc_easy', items);
  assert.deepEqual(calls, [3, 2, 2]);
  assert.deepEqual(res.map((r) => [r.gold, r.pred]), [[1, 1], [0, 1], [0, 0]]);
  assert.deepEqual(res[0].loglikelihoods, [-2, -1, -3]);
  const ac = new AbortController();
  const partial = await evaluate(scorer, 'arc_easy', items, { onItem: (done) => done === 2 && ac.abort(), signal: ac.signal });
  assert.equal(partial.length, 2);
});

test('JSONL errors name the file, the line and the layout expected', () => {
  assert.throws(() => loadItems('piqa', '{"goal": "g", "sol1": "a", "sol2": "b", "label": 0}\n{oops', 'd.jsonl'), /^Error: d\.jsonl:2: not valid JSON/);
  assert.throws(() => loadItems('piqa', '\n{"goal": "g", "sol1": "a", "label": 0}', 'd.jsonl'), /d\.jsonl:2: field "sol2" must be a string, got nothing \(missing\); piqa expects \{"goal"/);
  assert.throws(() => loadItems('winogrande', line({ sentence: 'no blank', option1: 'a', option2: 'b', answer: '1' }), 'w'), /w:1: field "sentence" has no "_"/);
  assert.throws(() => loadItems('hellaswag', line({ activity_label: 'a', ctx_a: 'b', ctx_b: 'c', endings: ['x', 'y'], label: '' }), 'h'), /h:1: field "label" must be an index in \[0, 2\)/);
  assert.throws(() => loadItems('arc_easy', '\n\n', 'e.jsonl'), /e\.jsonl: no items/);
  assert.throws(() => loadItems('boolq', '[1,2]', 'b'), /b:1: expected a JSON object per line/);
  // --limit stops reading early.
  assert.equal(loadItems('boolq', [1, 2, 3].map((i) => line({ passage: 'p', question: `q${i}`, label: 0 })).join('\n'), 'b', 2).length, 2);
  for (const t of TASK_NAMES) assert.ok(TASKS[t as TaskName].layout.length > 10 && TASKS[t].source.length > 5);
});
