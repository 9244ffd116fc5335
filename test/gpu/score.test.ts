// Scoring on the engine: log-likelihoods against the fixture's reference logits, per-token results
// against a CPU log-softmax of the engine's own logits, and context reuse (one prefix, KV cache
// rolled back between continuations) against scoring each request alone and in one pass.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadModel, type OpenElmModel } from '../../src/index.ts';
import { encodePair, type PairTokenizer } from '../../src/generate/score.ts';
import { assertClose, loadFixture, randInt, rng, testGpu } from '../helpers.ts';

const fx = loadFixture('tiny-elm');
const ATOL = fx.manifest.tolerances.f32_engine_logits_atol as number;

/** log-softmax of row `row` (float64) at `target`, and whether target is the argmax (lowest index). */
function cpuLogprob(logits: ArrayLike<number>, V: number, row: number, target: number): { lp: number; greedy: boolean } {
  let max = -Infinity;
  let arg = 0;
  for (let i = 0; i < V; i++) if (logits[row * V + i] > max) [max, arg] = [logits[row * V + i], i];
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(logits[row * V + i] - max);
  return { lp: logits[row * V + target] - max - Math.log(sum), greedy: arg === target };
}

describe('scoring on tiny-elm (f32 weights)', () => {
  let model: OpenElmModel;
  before(async () => {
    // A small prefill chunk, so a 100-token prompt spans several scoring passes.
    model = await loadModel(fx.dir, { dtype: 'f32', gemv: 'rows', prefillChunk: 16, gpu: await testGpu() });
  });
  after(() => model.dispose());

  test('continuation = the reference greedy tokens: log-likelihoods from the reference step logits', async () => {
    const V = model.plan.vocabSize;
    for (const p of fx.manifest.prompts) {
      const steps = fx.array(p.greedy.step_logits);
      const r = await model.score(p.input_ids, p.greedy.tokens);
      const want = p.greedy.tokens.map((t, i) => cpuLogprob(steps, V, i, t).lp);
      // A logit off by at most ATOL moves a log-softmax entry by at most 2 ATOL.
      assertClose(r.token_logprobs, want, 2 * ATOL + 1e-5, 0, `${p.name} token log-probabilities`);
      assert.ok(Math.abs(r.logprob - want.reduce((a, b) => a + b, 0)) < 2 * ATOL * want.length + 1e-4, `${p.name} sum`);
      // Every reference greedy margin exceeds 2 ATOL, so the engine must agree on each.
      assert.equal(r.greedy, true, `${p.name}: the reference greedy tokens are greedy`);
    }
  });

  test('every position of a prompt scored from the reference prompt logits', async () => {
    const p = fx.manifest.prompts.find((q) => q.logits_positions.length === q.input_ids.length && q.input_ids.length > 2)!;
    const V = model.plan.vocabSize;
    const ref = fx.array(p.logits);
    for (const k of [1, 3]) {
      const r = await model.score(p.input_ids.slice(0, k), p.input_ids.slice(k));
      const want = p.input_ids.slice(k).map((t, j) => cpuLogprob(ref, V, k - 1 + j, t));
      assertClose(r.token_logprobs, want.map((w) => w.lp), 2 * ATOL + 1e-5, 0, `${p.name} from position ${k}`);
      assert.equal(r.greedy, want.every((w) => w.greedy));
    }
  });

  test('per-token results equal a CPU log-softmax of model.logits over every position (random targets)', async () => {
    const r = rng(77);
    const V = model.plan.vocabSize;
    const p = fx.manifest.prompts[fx.manifest.prompts.length - 1];
    const ids = p.input_ids;
    const rows = await model.logits(ids, { allPositions: true });
    const flat = new Float32Array(ids.length * V);
    rows.forEach((row, i) => flat.set(row, i * V));
    // Targets: the next prompt token, or a random one; a few rows get their argmax as target.
    const targets = ids.slice(1).map((t) => (r() < 0.5 ? t : randInt(r, 0, V - 1)));
    for (let i = 0; i < targets.length; i += 7) targets[i] = cpuArgmax(flat, V, i);
    model.engine.reset();
    const got = await model.engine.scoreTokens(ids.slice(0, -1), targets);
    const want = targets.map((t, i) => cpuLogprob(flat, V, i, t));
    assertClose(got.logprobs, want.map((w) => w.lp), 2e-5, 1e-6, 'scoreTokens vs CPU log-softmax');
    assert.deepEqual(got.greedy, want.map((w) => w.greedy));
    assert.ok(got.greedy.some((g) => g) && got.greedy.some((g) => !g));
  });

  test('context reuse (rollback between choices) equals each choice alone and one full pass', async () => {
    const r = rng(91);
    const V = model.plan.vocabSize;
    for (const ctxLen of [1, 2, 23]) {
      const context = [1, ...Array.from({ length: ctxLen - 1 }, () => randInt(r, 3, V - 1))];
      // Longest first: a short choice after a long one must not see the long one's KV entries.
      const choices = [19, 1, 4, 33].map((n) => Array.from({ length: n }, () => randInt(r, 3, V - 1)));
      const reqs = choices.map((c) => ({ context, continuation: c }));
      const reused = await model.scoreRequests(reqs);
      const alone = await model.scoreRequests(reqs, { reuseContext: false });
      for (let k = 0; k < choices.length; k++) {
        assertClose(reused[k].token_logprobs, alone[k].token_logprobs, 1e-5, 0, `ctx ${ctxLen} choice ${k}: reuse vs alone`);
        assert.equal(reused[k].greedy, alone[k].greedy);
        // One pass over the whole sequence, no prefill and no rollback.
        model.engine.reset();
        const seq = [...context, ...choices[k]];
        const full = await model.engine.scoreTokens(seq.slice(0, -1), seq.slice(1));
        assertClose(reused[k].token_logprobs, full.logprobs.slice(context.length - 1), 1e-4, 0, `ctx ${ctxLen} choice ${k}: reuse vs one pass`);
      }
    }
  });

  test('winogrande-style requests (different contexts, shared start and continuation) share a prefix exactly', async () => {
    const shared = [1, 40, 41, 42, 43];
    const reqs = [
      { context: [...shared, 100, 101], continuation: [7, 8, 9] },
      { context: [...shared, 200], continuation: [7, 8, 9] },
      { context: [1, 300], continuation: [7, 8, 9] },
    ];
    const reused = await model.scoreRequests(reqs);
    for (const [k, q] of reqs.entries()) {
      const alone = await model.score(q.context, q.continuation);
      assertClose(reused[k].token_logprobs, alone.token_logprobs, 1e-5, 0, `request ${k}`);
    }
  });

  test('bad requests are refused with a clear message', async () => {
    await assert.rejects(model.score([], [5]), /context is empty/);
    await assert.rejects(model.score([1], []), /continuation is empty/);
    await assert.rejects(model.score([1], [model.plan.vocabSize]), /outside the vocabulary/);
    await assert.rejects(model.score([1], Array.from({ length: model.engine.contextLength + 1 }, () => 5)), /does not fit the context/);
    // A context longer than the cache is left-truncated as the harness does.
    const long = Array.from({ length: model.engine.contextLength + 10 }, (_, i) => 3 + (i % 50));
    const t = await model.score(long, [9, 10]);
    const cut = await model.score(long.slice(long.length - (model.engine.contextLength - 1)), [9, 10]);
    assert.deepEqual(t.token_logprobs, cut.token_logprobs);
  });
});

function cpuArgmax(flat: Float32Array, V: number, row: number): number {
  let best = 0;
  for (let i = 1; i < V; i++) if (flat[row * V + i] > flat[row * V + best]) best = i;
  return best;
}

test('encodePair: trailing context whitespace moves to the continuation; BOS once; empty context', () => {
  // A toy tokenizer: one token per character (id = code point + 10), bos 1, a dummy prefix space.
  const tok: PairTokenizer = {
    bosId: 1,
    encode(text: string, opts: { addBos?: boolean } = {}) {
      const ids = [...(' ' + text)].map((c) => c.codePointAt(0)! + 10);
      return (opts.addBos ?? true) ? [1, ...ids] : ids;
    },
  };
  const sp = 32 + 10;
  const code = (s: string) => [...s].map((c) => c.codePointAt(0)! + 10);
  assert.deepEqual(encodePair(tok, 'Q: a\nAnswer:', ' yes'), { context: [1, sp, ...code('Q: a\nAnswer:')], continuation: code(' yes') });
  // "ctx  " + "x": the two spaces belong to the continuation.
  assert.deepEqual(encodePair(tok, 'ab  ', 'x'), { context: [1, sp, ...code('ab')], continuation: code('  x') });
  assert.deepEqual(encodePair(tok, '', 'hi'), { context: [1], continuation: [sp, ...code('hi')] });
});
