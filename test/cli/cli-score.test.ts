// openelm score / eval / perplexity run as a user would: JSON on stdout parsed and checked against
// the fixture's reference logits and against in-process computations; usage errors exit 2 with
// one stderr line naming the option; Ctrl-C during eval prints the finished items as valid JSON.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { synthesizeCheckpoint } from '../../src/io/synth.ts';
import { loadModel, type OpenElmModel } from '../../src/index.ts';
import { assertClose, loadFixture, repoRoot, testGpu, LLAMA_VOCAB_CONFIG } from '../helpers.ts';

const fx = loadFixture('tiny-elm');
const ATOL = fx.manifest.tolerances.f32_engine_logits_atol as number;

function openelm(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin/openelm.js'), ...args], { encoding: 'utf8', timeout: 300_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function json(...args: string[]): Record<string, unknown> {
  const r = openelm(...args, '--json');
  assert.equal(r.code, 0, `openelm ${args.join(' ')} failed: ${r.stderr}`);
  assert.doesNotMatch(r.stdout, /NaN|Infinity/);
  return JSON.parse(r.stdout);
}

function usageError(pattern: RegExp, ...args: string[]): void {
  const r = openelm(...args);
  assert.equal(r.code, 2, `expected exit 2 from openelm ${args.join(' ')}: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one stderr line, got:\n${r.stderr}`);
  assert.match(lines[0], pattern);
  assert.equal(r.stdout, '');
}

function logSoftmaxAt(row: ArrayLike<number>, t: number): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  return row[t] - max - Math.log(sum);
}

const tmp = mkdtempSync(join(tmpdir(), 'openelm-score-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('score --context-ids --continuation-ids --json equals log-likelihoods from the reference logits', () => {
  const p = fx.manifest.prompts[1];
  const cont = p.greedy.tokens.slice(0, 4);
  const out = json('score', '--model', fx.dir, '--dtype', 'f32', '--context-ids', p.input_ids.join(','), '--continuation-ids', cont.join(','));
  assert.deepEqual(Object.keys(out), ['logprob', 'token_logprobs', 'greedy']);
  const V = 512;
  const steps = fx.array(p.greedy.step_logits);
  const want = cont.map((t, i) => logSoftmaxAt(steps.subarray(i * V, (i + 1) * V), t));
  assertClose(out.token_logprobs as number[], want, 2 * ATOL + 1e-5, 0, 'token_logprobs');
  assert.ok(Math.abs((out.logprob as number) - want.reduce((a, b) => a + b)) < 8 * ATOL + 1e-4);
  assert.equal(out.greedy, true);
  // One non-greedy token makes the whole continuation non-greedy.
  const other = json('score', '--model', fx.dir, '--context-ids', p.input_ids.join(','), '--continuation-ids', `${cont[0]},${(cont[1] + 1) % V}`);
  assert.equal(other.greedy, false);
});

test('usage errors: exit 2 and one line naming the option', () => {
  const m = ['--model', fx.dir];
  usageError(/--continuation-ids IDS is required/, 'score', ...m, '--context-ids', '1,5');
  usageError(/--context-ids IDS is required/, 'score', ...m, '--continuation-ids', '5');
  usageError(/not both kinds/, 'score', ...m, '--context-ids', '1', '--continuation', 'x');
  usageError(/--context TEXT is required with --continuation/, 'score', ...m, '--continuation', 'x');
  usageError(/--continuation-ids: "x" is not a token id/, 'score', ...m, '--context-ids', '1', '--continuation-ids', '5,x');
  usageError(/--continuation must not be empty/, 'score', ...m, '--context', 'a', '--continuation', '');
  usageError(/unknown option --input-ids/, 'score', ...m, '--input-ids', '1');
  usageError(/--task must be one of arc_easy, arc_challenge, boolq, hellaswag, piqa, sciq, winogrande, got "mmlu"/, 'eval', ...m, '--task', 'mmlu', '--data', 'x');
  usageError(/--task is required/, 'eval', ...m, '--data', 'x');
  usageError(/--data .*nope\.jsonl: cannot read it \(ENOENT\)/, 'eval', ...m, '--task', 'piqa', '--data', join(tmp, 'nope.jsonl'));
  usageError(/--limit must be an integer >= 1, got "0"/, 'eval', ...m, '--task', 'piqa', '--data', 'x', '--limit', '0');
  usageError(/--file FILE is required/, 'perplexity', ...m);
  usageError(/--window must be an integer >= 2, got "1"/, 'perplexity', ...m, '--file', join(repoRoot, 'package.json'), '--window', '1');
  usageError(/--window 999 exceeds the model's context of 256 tokens/, 'perplexity', ...m, '--file', join(repoRoot, 'package.json'), '--window', '999');
});

test('bad data: exit 1 and one line naming the file, the line and the layout', () => {
  const f = join(tmp, 'bad.jsonl');
  writeFileSync(f, '{"goal": "g", "sol1": "a", "sol2": "b", "label": 0}\n{"goal": "g", "sol1": "a", "label": 1}\n');
  const r = openelm('eval', '--model', fx.dir, '--task', 'piqa', '--data', f, '--json');
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr.trim(), /^openelm: .*bad\.jsonl:2: field "sol2" must be a string, got nothing \(missing\); piqa expects/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
});

describe('text through the CLI (a small random model with the Llama-2 vocabulary)', () => {
  const modelDir = join(tmp, 'llama-vocab');
  let model: OpenElmModel;
  before(async () => {
    await synthesizeCheckpoint(
      modelDir,
      LLAMA_VOCAB_CONFIG,
      { dtype: 'F16', seed: 5 },
    );
    model = await loadModel(modelDir, { dtype: 'f32', gemv: 'rows', gpu: await testGpu() });
  });
  after(() => model.dispose());

  test('score --context --continuation tokenizes as the harness does and matches model.score', async () => {
    const out = json('score', '--model', modelDir, '--dtype', 'f32', '--context', 'Question: Which is a gas?\nAnswer:', '--continuation', ' steam');
    const want = await model.score('Question: Which is a gas?\nAnswer:', ' steam');
    assert.equal((out.context_ids as number[])[0], 1, 'BOS first');
    assertClose(out.token_logprobs as number[], want.token_logprobs, 1e-5, 0, 'per token');
    // The continuation ids are the whole text's tokens after the context's.
    const whole = model.tokenizer!.encode('Question: Which is a gas?\nAnswer: steam');
    assert.deepEqual(out.continuation_ids, whole.slice((out.context_ids as number[]).length));
  });

  test('eval arc_easy --json: items in file order, log-likelihoods = model.score of each choice, acc from them; reuse off gives the same', async () => {
    const rows = [
      { question: 'Which is a gas?', choices: { text: ['ice', 'steam', 'rock', 'wood'], label: ['A', 'B', 'C', 'D'] }, answerKey: 'B' },
      { question: 'What does a plant need?', choices: { text: ['light', 'café au lait ☕', 'sand'], label: ['1', '2', '3'] }, answerKey: '1' },
      { question: 'Où est le soleil ?', choices: { text: ['dans le ciel', 'sous terre'], label: ['A', 'B'] }, answerKey: 'A' },
    ];
    const f = join(tmp, 'arc.jsonl');
    writeFileSync(f, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const out = json('eval', '--model', modelDir, '--dtype', 'f32', '--task', 'arc_easy', '--data', f);
    assert.deepEqual(Object.keys(out), ['task', 'n', 'acc', 'acc_stderr', 'acc_norm', 'acc_norm_stderr', 'items']);
    assert.equal(out.task, 'arc_easy');
    assert.equal(out.n, 3);
    const items = out.items as { gold: number; loglikelihoods: number[]; pred: number; pred_norm: number }[];
    let correct = 0;
    let correctNorm = 0;
    for (const [i, r] of rows.entries()) {
      const want = [];
      for (const c of r.choices.text) want.push((await model.score(`Question: ${r.question}\nAnswer:`, ` ${c}`)).logprob);
      assertClose(items[i].loglikelihoods, want, 1e-4, 0, `item ${i}`);
      assert.equal(items[i].gold, r.choices.label.indexOf(r.answerKey));
      const pred = want.indexOf(Math.max(...want));
      const norm = want.map((w, k) => w / [...r.choices.text[k]].length);
      assert.equal(items[i].pred, pred);
      assert.equal(items[i].pred_norm, norm.indexOf(Math.max(...norm)));
      correct += Number(pred === items[i].gold);
      correctNorm += Number(items[i].pred_norm === items[i].gold);
    }
    assert.equal(out.acc, correct / 3);
    assert.equal(out.acc_norm, correctNorm / 3);
    const alone = json('eval', '--model', modelDir, '--dtype', 'f32', '--task', 'arc_easy', '--data', f, '--no-context-reuse', '--limit', '2');
    assert.equal(alone.n, 2);
    (alone.items as typeof items).forEach((it, i) => assertClose(it.loglikelihoods, items[i].loglikelihoods, 1e-5, 0, `no reuse, item ${i}`));
  });

  test('eval winogrande: partial scoring (the shared continuation under each option), no acc_norm', async () => {
    const doc = { sentence: 'Sam gave the ball to Kim because _ was done playing.', option1: 'Sam', option2: 'Kim', answer: '1' };
    const f = join(tmp, 'wino.jsonl');
    writeFileSync(f, JSON.stringify(doc) + '\n' + JSON.stringify({ ...doc, answer: '2' }) + '\n');
    const out = json('eval', '--model', modelDir, '--dtype', 'f32', '--task', 'winogrande', '--data', f);
    const want = [
      (await model.score('Sam gave the ball to Kim because Sam', ' was done playing.')).logprob,
      (await model.score('Sam gave the ball to Kim because Kim', ' was done playing.')).logprob,
    ];
    const items = out.items as { gold: number; loglikelihoods: number[]; pred_norm: null }[];
    assertClose(items[0].loglikelihoods, want, 1e-4, 0, 'winogrande');
    assert.deepEqual(items.map((i) => i.gold), [0, 1]);
    assert.equal(out.acc, 0.5, 'the same prediction for both items, one of two gold answers');
    assert.equal(out.acc_norm, null);
    assert.equal(items[0].pred_norm, null);
  });

  test('perplexity --window --stride: the Hugging Face sliding-window rule, from model.logits on the CPU', async () => {
    const text = 'The quick brown fox jumps over the lazy dog. '.repeat(4) + 'Pack my box with five dozen liquor jugs.';
    const f = join(tmp, 'text.txt');
    writeFileSync(f, text);
    const out = json('perplexity', '--model', modelDir, '--dtype', 'f32', '--file', f, '--window', '24', '--stride', '10');
    const ids = model.encode(text);
    // Independent restatement of the guide's loop: targets are the tokens after the previous window's end.
    let nll = 0;
    let n = 0;
    let prevEnd = 0;
    for (let begin = 0; begin < ids.length; begin += 10) {
      const end = Math.min(begin + 24, ids.length);
      const rows = await model.logits(ids.slice(begin, end), { allPositions: true });
      for (let j = Math.max(begin + 1, prevEnd); j < end; j++) {
        nll -= logSoftmaxAt(rows[j - begin - 1], ids[j]);
        n++;
      }
      prevEnd = end;
      if (end === ids.length) break;
    }
    assert.equal(out.tokens, ids.length - 1);
    assert.equal(n, ids.length - 1);
    assert.ok(Math.abs((out.nll as number) - nll) < 1e-3, `nll ${out.nll} vs ${nll}`);
    assert.ok(Math.abs((out.ppl as number) - Math.exp(nll / n)) < 1e-3 * (out.ppl as number));
    assert.equal(out.window, 24);
    assert.equal(out.stride, 10);
  });

  test('Ctrl-C during eval prints the finished items as valid JSON', async () => {
    const f = join(tmp, 'many.jsonl');
    const line = JSON.stringify({ goal: 'Open a jar of pickles that is stuck', sol1: 'Twist the lid hard.', sol2: 'Put it in the oven for a day.', label: 0 });
    writeFileSync(f, Array.from({ length: 400 }, () => line).join('\n'));
    const child = spawn(process.execPath, [join(repoRoot, 'bin/openelm.js'), 'eval', '--model', modelDir, '--task', 'piqa', '--data', f, '--json']);
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      // The first progress line comes after the first finished item.
      if (!sent && /piqa \[.*\] \d+\/400/.test(stderr)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));
    assert.ok(sent, `a progress line: ${stderr}`);
    const out = JSON.parse(stdout);
    assert.equal(out.interrupted, true);
    assert.ok(out.n >= 1 && out.n < 400, `n = ${out.n}`);
    assert.equal(out.items.length, out.n);
    assert.notEqual(code, 0);
    assert.match(stderr, /interrupted by Ctrl-C after \d+ of 400 items/);
  });
});
