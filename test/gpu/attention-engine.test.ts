// The engine's attention options on the tiny-elm fixture: an f16 KV cache (half the memory, logits
// close to the f32 cache's, the same greedy tokens) and split-K decode attention forced on (what a
// verify pass chooses equals what decode steps choose; speculative and decode-ahead output equals
// plain greedy; logits within a bound of the single-pass kernel's).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { argmaxRef } from '../../kernels/argmax.ts';
import { kvCacheBytes } from '../../kernels/attention.ts';
import { loadModel, type OpenElmModel } from '../../src/index.ts';
import type { LoadOptions } from '../../src/index.ts';
import { loadFixture, maxAbsDiff, randInt, rng, testGpu } from '../helpers.ts';

const fx = loadFixture('tiny-elm');
const pad16 = (n: number) => Math.max(16, Math.ceil(n / 16) * 16);

/** Loads a model and returns it with the GPU bytes its load allocated. */
async function loadCounting(opts: LoadOptions): Promise<{ model: OpenElmModel; bytes: number }> {
  const gpu = await testGpu();
  const before = gpu.allocatedBytes;
  const model = await loadModel(fx.dir, { dtype: 'f32', gemv: 'rows', gpu, ...opts });
  return { model, bytes: gpu.allocatedBytes - before };
}

async function greedy(m: OpenElmModel, ids: readonly number[], n: number, extra = {}): Promise<number[]> {
  return (await m.generateText(ids, { maxNewTokens: n, stopAtEos: false, ...extra })).ids;
}

describe('f16 KV cache (tiny-elm)', () => {
  let f32: { model: OpenElmModel; bytes: number };
  let f16: { model: OpenElmModel; bytes: number };
  before(async () => {
    f32 = await loadCounting({ kvDtype: 'f32', attention: 'single' });
    f16 = await loadCounting({ kvDtype: 'f16', attention: 'single' });
  });
  after(() => {
    f32?.model.dispose();
    f16?.model.dispose();
  });

  test('the cache takes half the bytes (everything else allocated alike)', () => {
    const { plan, engine } = f32.model;
    assert.equal(f16.model.engine.kvDtype, 'f16');
    let saved = 0;
    for (const l of plan.layers) {
      const b32 = kvCacheBytes(l.numKvHeads, engine.contextLength, plan.headDim, 'f32');
      const b16 = kvCacheBytes(l.numKvHeads, engine.contextLength, plan.headDim, 'f16');
      assert.equal(b16 * 2, b32);
      saved += 2 * (pad16(b32) - pad16(b16)); // keys and values
    }
    assert.equal(f32.bytes - f16.bytes, saved);
  });

  test('logits at every position close to the f32 cache\'s; the same greedy tokens as the reference', async () => {
    // Each cached k and v is rounded to f16 (relative error <= 2^-11). Attention outputs are convex
    // combinations of the v rows and scores are q.k / sqrt(hd), so each moves by ~2^-11 of its
    // size; through 4 layers the logits (|x| ~ 1..10 here) moved by 3.4e-3 when measured, and the
    // bound leaves 3x head room. A real checkpoint's larger activations move more in absolute terms:
    // the option trades that for memory and bandwidth, and greedy tokens are what users see.
    const WORST = 1e-2;
    let worst = 0;
    for (const p of fx.manifest.prompts) {
      const a = await f32.model.logits(p.input_ids, { allPositions: true });
      const b = await f16.model.logits(p.input_ids, { allPositions: true });
      for (let t = 0; t < a.length; t++) worst = Math.max(worst, maxAbsDiff(a[t], b[t]));
      assert.deepEqual(await greedy(f16.model, p.input_ids, 16), p.greedy.tokens, p.name);
    }
    console.log(`# f16 KV cache: max |logit difference| from the f32 cache ${worst.toExponential(2)}`);
    assert.ok(worst > 0 && worst < WORST, `max |f16 cache - f32 cache| = ${worst}`);
  });
});

describe('split-K attention forced on (tiny-elm)', () => {
  let single: OpenElmModel;
  let split: OpenElmModel;
  let split16: OpenElmModel;
  const r = rng(31);
  // Long prompts, so rows reach past 32 keys (several splits): p3 (100 tokens) and a repetitive one.
  const long = fx.manifest.prompts[3].input_ids;
  const base = Array.from({ length: 9 }, () => randInt(r, 3, 500));
  const repeats = [1, ...base, ...base, ...base, ...base, ...base.slice(0, 4)];
  before(async () => {
    const gpu = await testGpu();
    single = await loadModel(fx.dir, { dtype: 'f32', gemv: 'rows', gpu, attention: 'single' });
    split = await loadModel(fx.dir, { dtype: 'f32', gemv: 'rows', gpu, attention: 'split' });
    split16 = await loadModel(fx.dir, { dtype: 'f16', gemv: 'rows', gpu, attention: 'split', kvDtype: 'f16' });
  });
  after(() => {
    for (const m of [single, split, split16]) m?.dispose();
  });

  test('one combine dispatch more per layer and token', () => {
    assert.equal(split.engine.attention, 'split');
    assert.equal(split.engine.dispatchesPerToken, single.engine.dispatchesPerToken + split.plan.numLayers);
  });

  test('decode logits within 5e-5 of the single-pass kernel\'s; identical while a row is one split', async () => {
    let worst = 0;
    for (const m of [single, split]) m.engine.reset();
    const ids = [...long.slice(0, 20), ...repeats.slice(0, 30)];
    await single.engine.prefill(ids.slice(0, 1), 'none');
    await split.engine.prefill(ids.slice(0, 1), 'none');
    for (let t = 1; t < ids.length; t++) {
      const a = await single.engine.stepLogits(ids[t]);
      const b = await split.engine.stepLogits(ids[t]);
      // Up to 32 keys a row is one split, whose arithmetic is the single-pass kernel's.
      if (t + 1 <= 32) assert.equal(maxAbsDiff(a, b), 0, `position ${t}: one split`);
      else worst = Math.max(worst, maxAbsDiff(a, b));
    }
    console.log(`# split-K vs single-pass decode: max |logit difference| ${worst.toExponential(2)}`);
    // Splits change the order of the softmax sums (f32 rounding), nothing else.
    assert.ok(worst < 5e-5, `max |split - single| = ${worst}`);
  });

  test('a verify pass chooses, row by row, what decode steps choose (split also serves verify rows)', async () => {
    for (const m of [split, split16]) {
      const V = m.plan.vocabSize;
      for (const prompt of [long, repeats, long.slice(0, 30)]) {
        const tokens = Array.from({ length: randInt(r, 2, 20) }, () => randInt(r, 0, V - 1));
        const e = m.engine;
        e.reset();
        e.configureChooser(null);
        await e.prefill(prompt, 'none');
        const got = await e.verify(tokens);
        e.reset();
        await e.prefill(prompt, 'none');
        const want: number[] = [];
        for (const t of tokens) want.push(argmaxRef(await e.stepLogits(t), V));
        assert.deepEqual(got, want, `${m.engine.kvDtype} cache, ${prompt.length}-token prompt + ${tokens.length}`);
      }
    }
  });

  // Decode ahead of 7 over 30 tokens ends on a single decode step after `steps` submissions, which
  // once fed a stale token (steps did not leave its last choice as the next input).
  test('prompt lookup and decode ahead give plain greedy output', async () => {
    for (const m of [split, split16]) {
      for (const prompt of [repeats, long]) {
        const plain = await greedy(m, prompt, 30);
        assert.deepEqual(await greedy(m, prompt, 30, { promptLookupNumTokens: 10 }), plain, 'prompt lookup');
        assert.deepEqual(await greedy(m, prompt, 30, { decodeAhead: 7 }), plain, 'decode ahead');
      }
    }
    // And the reference's greedy tokens, with and without an f16 cache.
    for (const p of fx.manifest.prompts) for (const m of [split, split16]) assert.deepEqual(await greedy(m, p.input_ids, 16), p.greedy.tokens, p.name);
  });

  test('bad options fail with one clear message', async () => {
    const gpu = await testGpu();
    await assert.rejects(loadModel(fx.dir, { gpu, attention: 'fast' as 'split' }), /attention must be auto, single, split, got fast/);
    await assert.rejects(loadModel(fx.dir, { gpu, kvDtype: 'bf16' as 'f16' }), /kvDtype must be f32 or f16, got bf16/);
  });
});
