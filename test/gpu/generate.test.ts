// Generation options with Hugging Face semantics on the tiny fixture: the GPU chooser against a
// CPU implementation of the same rules over the engine's (fixture-checked) logits.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loadModel, type OpenElmModel } from '../../src/index.ts';
import { applyKwargs, resolveGeneration } from '../../src/generate/options.ts';
import { loadFixture, testGpu } from '../helpers.ts';

const fx = loadFixture('tiny-elm');
let model: OpenElmModel;
before(async () => {
  model = await loadModel(fx.dir, { dtype: 'f32', gpu: await testGpu() });
});
after(() => model.dispose());

async function ids(prompt: readonly number[], opts: Parameters<OpenElmModel['generate']>[1]): Promise<number[]> {
  const out: number[] = [];
  for await (const t of model.generate(prompt, opts)) out.push(t.id);
  return out;
}

/** Hugging Face's RepetitionPenaltyLogitsProcessor then argmax, step by step on the CPU. */
async function penalisedGreedyRef(prompt: number[], penalty: number, n: number): Promise<number[]> {
  const seq = [...prompt];
  let [logits] = await model.logits(prompt);
  const out: number[] = [];
  for (let s = 0; s < n; s++) {
    const l = Float32Array.from(logits);
    for (const id of new Set(seq)) l[id] = l[id] > 0 ? l[id] / penalty : l[id] * penalty;
    let best = 0;
    for (let i = 1; i < l.length; i++) if (l[i] > l[best]) best = i;
    out.push(best);
    seq.push(best);
    if (s < n - 1) logits = await model.engine.stepLogits(best);
  }
  return out;
}

test('repetition_penalty=1.2 greedy follows the Hugging Face rule', async () => {
  for (const p of fx.manifest.prompts.slice(0, 3)) {
    const ref = await penalisedGreedyRef(p.input_ids, 1.2, 16);
    assert.deepEqual(await ids(p.input_ids, { maxNewTokens: 16, repetitionPenalty: 1.2, stopAtEos: false }), ref, p.name);
    assert.notDeepEqual(ref, p.greedy.tokens, 'the penalty should change these random-weight continuations');
  }
});

test('do_sample=false and temperature=0 are greedy', async () => {
  const p = fx.manifest.prompts[1];
  assert.deepEqual(await ids(p.input_ids, { maxNewTokens: 16, stopAtEos: false }), p.greedy.tokens);
  assert.deepEqual(await ids(p.input_ids, { maxNewTokens: 16, stopAtEos: false, doSample: true, temperature: 0 }), p.greedy.tokens);
  assert.deepEqual(await ids(p.input_ids, { maxNewTokens: 16, stopAtEos: false, doSample: true, topK: 1 }), p.greedy.tokens);
});

test('the same seed samples the same tokens, another seed others', async () => {
  const p = fx.manifest.prompts[0].input_ids;
  const o = { maxNewTokens: 16, stopAtEos: false, doSample: true, temperature: 1.5, topK: 0, topP: 0.95 };
  const a = await ids(p, { ...o, seed: 7 });
  const b = await ids(p, { ...o, seed: 7 });
  const c = await ids(p, { ...o, seed: 8 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.notDeepEqual(a, fx.manifest.prompts[0].greedy.tokens);
});

test('eos stops generation when asked', async () => {
  const p = fx.manifest.prompts[0];
  const eos = p.greedy.tokens[3];
  const out = await ids(p.input_ids, { maxNewTokens: 16, eosTokenId: eos });
  assert.deepEqual(out, p.greedy.tokens.slice(0, p.greedy.tokens.indexOf(eos) + 1));
});

test('an aborted generation stops with the abort reason', async () => {
  const ctl = new AbortController();
  const out: number[] = [];
  await assert.rejects(async () => {
    for await (const t of model.generate([1, 5, 9], { maxNewTokens: 16, stopAtEos: false, signal: ctl.signal })) {
      out.push(t.id);
      if (out.length === 3) ctl.abort(new Error('stop now'));
    }
  }, /stop now/);
  assert.equal(out.length, 3);
});

test('bad generation options are clear errors', async () => {
  assert.throws(() => resolveGeneration({ temperature: -1 }), /temperature must be a number >= 0/);
  assert.throws(() => resolveGeneration({ topP: 0 }), /top_p must be in \(0, 1\]/);
  assert.throws(() => resolveGeneration({ topP: 1.5 }), /top_p must be in \(0, 1\]/);
  assert.throws(() => resolveGeneration({ topK: -2 }), /top_k must be an integer >= 0/);
  assert.throws(() => resolveGeneration({ repetitionPenalty: 0 }), /repetition_penalty must be a number > 0/);
  assert.throws(() => applyKwargs({}, ['num_beams=2']), /unsupported option "num_beams"/);
  assert.throws(() => applyKwargs({}, ['do_sample=maybe']), /do_sample must be true or false/);
  assert.throws(() => applyKwargs({}, ['temperature']), /not KEY=VALUE/);
  assert.throws(() => model.generate(''), /the prompt is empty/);
  // The built-in Llama-2 tokenizer makes ids past this 512-token model's vocabulary.
  assert.throws(() => model.generate('Once upon a time'), /outside this model's vocabulary of 512/);
});
