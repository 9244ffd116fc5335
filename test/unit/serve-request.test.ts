// The server's request mapping (OpenAI fields -> generation options, refusals naming the field),
// its token budget, and its bounded FIFO queue, without a GPU or a socket.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApiError } from '../../src/serve/errors.ts';
import { RequestQueue } from '../../src/serve/queue.ts';
import { parseGenRequest, tokenBudget } from '../../src/serve/request.ts';

const user = [{ role: 'user', content: 'hi' }];

test('OpenAI fields map to generation options; defaults follow OpenAI (temperature 1, whole distribution)', () => {
  const r = parseGenRequest({ model: 'm', messages: user, temperature: 0.5, top_p: 0.9, seed: 3, stop: 'END', max_tokens: 7, top_k: 4, repetition_penalty: 1.2, prompt_lookup_num_tokens: 3 }, 'chat');
  assert.equal(r.model, 'm');
  assert.equal(r.maxTokens, 7);
  assert.deepEqual(r.options, { temperature: 0.5, doSample: true, topP: 0.9, topK: 4, repetitionPenalty: 1.2, promptLookupNumTokens: 3, seed: 3, stopStrings: ['END'], stopAtEos: true });
  const d = parseGenRequest({ prompt: 'x' }, 'completion');
  assert.equal(d.options.temperature, 1);
  assert.equal(d.options.doSample, true);
  assert.equal(d.options.topK, 0);
  assert.ok(Number.isSafeInteger(d.options.seed), 'a seed is drawn when none is given');
  assert.equal(parseGenRequest({ prompt: 'x', temperature: 0 }, 'completion').options.doSample, false);
  assert.equal(parseGenRequest({ messages: user, max_completion_tokens: 9 }, 'chat').maxTokens, 9);
  assert.deepEqual(parseGenRequest({ prompt: [[1, 2, 3]] }, 'completion').prompt, [1, 2, 3]);
  assert.equal(parseGenRequest({ prompt: ['text'] }, 'completion').prompt, 'text');
  const s = parseGenRequest({ messages: user, stream: true, stream_options: { include_usage: true } }, 'chat');
  assert.deepEqual([s.stream, s.includeUsage], [true, true]);
  // Content parts and the "developer" role, as newer clients send them.
  const parts = parseGenRequest({ messages: [{ role: 'developer', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }] }, 'chat');
  assert.deepEqual(parts.messages, [{ role: 'system', content: 'ab' }]);
  // Fields that ask for nothing are accepted.
  parseGenRequest({ messages: user, n: 1, logprobs: false, frequency_penalty: 0, presence_penalty: 0, tools: [], logit_bias: {}, user: 'u', response_format: { type: 'text' } }, 'chat');
});

test('bad fields are refused with a 400 naming the field', () => {
  const cases: [unknown, 'chat' | 'completion', string, RegExp][] = [
    [[], 'chat', 'body', /must be a JSON object/],
    [{ messages: user, temperature: -1 }, 'chat', 'temperature', /temperature must be a number in \[0, 2\]/],
    [{ messages: user, top_p: 0 }, 'chat', 'top_p', /top_p must be a number in \(0, 1\]/],
    [{ messages: user, max_tokens: 0 }, 'chat', 'max_tokens', /max_tokens must be an integer >= 1/],
    [{ messages: user, max_tokens: 2, max_completion_tokens: 3 }, 'chat', 'max_completion_tokens', /not both/],
    [{ messages: user, n: 3 }, 'chat', 'n', /n must be 1/],
    [{ messages: user, stop: ['a', 'b', 'c', 'd', 'e'] }, 'chat', 'stop', /up to 4/],
    [{ messages: user, stop: '' }, 'chat', 'stop', /non-empty/],
    [{ messages: user, seed: -1 }, 'chat', 'seed', /seed must be an integer >= 0/],
    [{ messages: user, frequency_penalty: 0.3 }, 'chat', 'frequency_penalty', /use repetition_penalty/],
    [{ messages: user, logprobs: true }, 'chat', 'logprobs', /not supported/],
    [{ messages: user, tools: [{ type: 'function' }] }, 'chat', 'tools', /not supported/],
    [{ messages: user, stream_options: { include_usage: true } }, 'chat', 'stream_options', /only allowed with stream: true/],
    [{ messages: user, stream: 'yes' }, 'chat', 'stream', /stream must be true or false/],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }, 'chat', 'messages[0].content[0]', /text part/],
    [{ messages: [] }, 'chat', 'messages', /non-empty array/],
    [{ messages: user, prompt: 'x' }, 'chat', 'prompt', /unknown field "prompt"/],
    [{}, 'completion', 'prompt', /prompt is required/],
    [{ prompt: '' }, 'completion', 'prompt', /must not be empty/],
    [{ prompt: [1, -2] }, 'completion', 'prompt', /array of token ids/],
    [{ prompt: ['a', 'b'] }, 'completion', 'prompt', /one prompt a request/],
    [{ prompt: 'x', echo: true }, 'completion', 'echo', /not supported/],
    [{ prompt: 'x', model: 5 }, 'completion', 'model', /model must be a string/],
  ];
  for (const [body, endpoint, param, re] of cases) {
    assert.throws(
      () => parseGenRequest(body, endpoint),
      (e: unknown) => e instanceof ApiError && e.status === 400 && e.param === param && re.test(e.message) && e.body().error.type === 'invalid_request_error',
      `${JSON.stringify(body)} -> ${param}`,
    );
  }
});

test('the token budget: what the context leaves by default, refusals past the cap or the context', () => {
  const limits = { contextLength: 100, maxTokens: 30 };
  assert.equal(tokenBudget(10, undefined, limits, 'prompt'), 30);
  assert.equal(tokenBudget(90, undefined, limits, 'prompt'), 10);
  assert.equal(tokenBudget(10, 20, limits, 'prompt'), 20);
  assert.throws(() => tokenBudget(10, 31, limits, 'prompt'), /at most 30/);
  assert.throws(() => tokenBudget(80, 25, limits, 'prompt'), (e: unknown) => e instanceof ApiError && e.code === 'context_length_exceeded' && /more than this server's context of 100/.test(e.message));
  assert.throws(() => tokenBudget(100, undefined, limits, 'messages'), (e: unknown) => e instanceof ApiError && e.param === 'messages' && /no room for a reply/.test(e.message));
});

test('the queue runs one at a time in arrival order, bounds the wait, frees a place on abort, refuses after close', async () => {
  const q = new RequestQueue(2);
  const never = new AbortController().signal;
  const order: string[] = [];
  const r1 = await q.acquire(never);
  const p2 = q.acquire(never).then((r) => (order.push('2'), r));
  const ac3 = new AbortController();
  const p3 = q.acquire(ac3.signal);
  assert.deepEqual(q.state(), { running: 1, waiting: 2, max_waiting: 2 });
  await assert.rejects(q.acquire(never), (e: unknown) => e instanceof ApiError && e.status === 429 && e.code === 'queue_full' && /--max-queue 2/.test(e.message));
  ac3.abort(new Error('gone'));
  await assert.rejects(p3, /gone/);
  assert.equal(q.state().waiting, 1, 'the aborted request left the queue');
  const p4 = q.acquire(never).then((r) => (order.push('4'), r));
  r1();
  r1(); // releasing twice is harmless
  const r2 = await p2;
  assert.deepEqual(order, ['2']);
  r2();
  const r4 = await p4;
  assert.deepEqual(order, ['2', '4']);
  const p5 = q.acquire(never);
  const idle = q.idle();
  q.close(new ApiError(503, 'shutting down', 'service_unavailable'));
  await assert.rejects(p5, (e: unknown) => e instanceof ApiError && e.status === 503);
  await assert.rejects(q.acquire(never), (e: unknown) => e instanceof ApiError && e.status === 503);
  r4();
  await idle;
  assert.deepEqual(q.state(), { running: 0, waiting: 0, max_waiting: 2 });
});
