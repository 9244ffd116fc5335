// KV cache reuse across calls: when a prompt extends what the engine's cache holds (the previous
// prompt and the tokens fed after it), only the rest is prefilled, and the tokens are exactly
// those of a fresh prefill, greedy and sampled, after plain, decode-ahead and speculative runs,
// after an abort and after logits().
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadModel, type OpenElmModel } from '../../src/index.ts';
import { synthesizeCheckpoint } from '../../src/io/synth.ts';
import type { ChatMessage } from '../../src/tokenizer/chat.ts';
import type { GenerateOptions } from '../../src/api/model.ts';
import { CHAT_TEMPLATE, LLAMA_VOCAB_CONFIG, testGpu } from '../helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'openelm-kv-reuse-'));
let model: OpenElmModel;
before(async () => {
  await synthesizeCheckpoint(tmp, LLAMA_VOCAB_CONFIG, { dtype: 'F16', seed: 11 });
  writeFileSync(join(tmp, 'tokenizer_config.json'), JSON.stringify({ chat_template: CHAT_TEMPLATE, bos_token: '<s>', eos_token: '</s>' }));
  model = await loadModel(tmp, { dtype: 'f32', gpu: await testGpu(), tuningStore: null });
});
after(() => {
  model.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/**
 * Three user turns; each reply is generated with reuse and checked against a fresh prefill of the
 * same prompt. The cached count must be exactly the common prefix of the new prompt with the
 * previous prompt plus the reply tokens fed (all but the last), capped one short of the prompt.
 */
async function threeTurns(opts: GenerateOptions, label: string): Promise<number[]> {
  const users = ['Name a colour.', 'Another one, please?', 'And a third, in one word.'];
  const messages: ChatMessage[] = [{ role: 'system', content: 'You are terse.' }];
  const cached: number[] = [];
  // Start from a cache that shares nothing with the conversation (token 0 is not bos).
  await model.logits([0]);
  let held: number[] = [0];
  for (const [turn, content] of users.entries()) {
    messages.push({ role: 'user', content });
    const ids = model.chatIds(messages);
    const reused = await model.chatText(messages, opts);
    const expected = Math.min(commonPrefix(ids, held), ids.length - 1);
    assert.equal(reused.stats.prompt_cached_tokens, expected, `${label}, turn ${turn + 1}: cached tokens`);
    cached.push(reused.stats.prompt_cached_tokens);
    const fresh = await model.chatText(messages, { ...opts, reuseCache: false });
    assert.equal(fresh.stats.prompt_cached_tokens, 0);
    assert.deepEqual(reused.ids, fresh.ids, `${label}, turn ${turn + 1}: the same tokens as a fresh prefill`);
    // The fresh run left the cache as the reused one did (same prompt, same tokens fed).
    held = [...ids, ...fresh.ids.slice(0, -1)];
    messages.push({ role: 'assistant', content: reused.text.trim() });
  }
  return cached;
}

test('a three-turn chat reuses the cache and gives the same greedy tokens as a fresh prefill', async () => {
  const cached = await threeTurns({ maxNewTokens: 8, stopAtEos: false }, 'greedy');
  assert.ok(cached[1] > 0 && cached[2] > cached[1], `turns 2 and 3 reuse the conversation so far, got ${cached.join(', ')}`);
});

test('reuse with sampling (seeded, repetition penalty), decode-ahead and prompt lookup', async () => {
  await threeTurns({ maxNewTokens: 8, stopAtEos: false, doSample: true, temperature: 0.9, topK: 40, topP: 0.95, repetitionPenalty: 1.2, seed: 3 }, 'sampled');
  await threeTurns({ maxNewTokens: 9, stopAtEos: false, decodeAhead: 4 }, 'decode-ahead');
  await threeTurns({ maxNewTokens: 8, stopAtEos: false, promptLookupNumTokens: 3, maxMatchingNgramSize: 1 }, 'prompt lookup');
});

test('greedy tokens after reuse equal the argmax of a fresh logits() pass', async () => {
  const prompt = [1, 450, 4996, 17354, 1701, 29916];
  const first = await model.generateText(prompt, { maxNewTokens: 5, stopAtEos: false });
  const next = [...prompt, ...first.ids, 393, 278];
  const reused = await model.generateText(next, { maxNewTokens: 1, stopAtEos: false });
  assert.equal(reused.stats.prompt_cached_tokens, prompt.length + first.ids.length - 1);
  const [row] = await model.logits(next);
  const argmax = row.reduce((best, v, i) => (v > row[best] ? i : best), 0);
  assert.equal(reused.ids[0], argmax);
  // logits() leaves its ids in the cache: a continuation of them reuses all but the last.
  const after = await model.generateText([...next, 3186], { maxNewTokens: 1, stopAtEos: false });
  assert.equal(after.stats.prompt_cached_tokens, next.length);
});

test('after an abort the cache holds only what was fed; reuse can be turned off', async () => {
  const prompt = [1, 306, 763, 304, 1708, 297, 278, 4799];
  const ctrl = new AbortController();
  const got: number[] = [];
  await assert.rejects(async () => {
    for await (const t of model.generate(prompt, { maxNewTokens: 10, stopAtEos: false, signal: ctrl.signal })) {
      got.push(t.id);
      if (got.length === 3) ctrl.abort();
    }
  }, /abort/i);
  const next = [...prompt, ...got, 322];
  const reused = await model.generateText(next, { maxNewTokens: 4, stopAtEos: false });
  assert.equal(reused.stats.prompt_cached_tokens, prompt.length + 2, 'the prompt and the two fed tokens');
  const fresh = await model.generateText(next, { maxNewTokens: 4, stopAtEos: false, reuseCache: false });
  assert.equal(fresh.stats.prompt_cached_tokens, 0);
  assert.deepEqual(reused.ids, fresh.ids);
  // The same prompt again: everything but its last token comes from the cache.
  const again = await model.generateText(next, { maxNewTokens: 4, stopAtEos: false });
  assert.equal(again.stats.prompt_cached_tokens, next.length - 1);
  assert.deepEqual(again.ids, fresh.ids);
  // A position set directly (benchmarks do) holds unknown ids: nothing is reused past it.
  model.engine.length = 3;
  const unknown = await model.generateText(next, { maxNewTokens: 4, stopAtEos: false });
  assert.equal(unknown.stats.prompt_cached_tokens, 0);
  assert.deepEqual(unknown.ids, fresh.ids);
  // A bad id after the cached part is named by its index in the prompt.
  await assert.rejects(model.generateText([...next.slice(0, 3), 99999], { maxNewTokens: 1 }), /^Error: token id 99999 at index 3 is outside the vocabulary \[0, 32000\)$/);
});
