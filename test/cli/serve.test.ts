// `openelm serve` through the official `openai` client: chat and completions, streamed and not,
// equal to the library's greedy output on the same model; errors in OpenAI's shape with the right
// status; a client that disconnects mid-stream frees the server at once; SIGTERM stops it.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { basename } from 'node:path';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import type { OpenElmModel } from '../../src/index.ts';
import type { ChatMessage } from '../../src/tokenizer/chat.ts';
import { createServer } from 'node:net';
import { runCli } from '../cli-spawn.ts';
import { chatModelDir, localModel, PINNED, serve, type Served } from '../serve-spawn.ts';

const KEY = 'test-key-123';
let dir: string;
let srv: Served;
let local: OpenElmModel;
let client: OpenAI;

before(async () => {
  dir = await chatModelDir();
  srv = await serve(dir, ['--api-key', KEY, '--max-tokens', '64', '--max-body', '4096']);
  local = await localModel(dir);
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: KEY, maxRetries: 0 });
});
after(async () => {
  local?.dispose();
  await srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const conversation: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Name a colour.' },
];

async function health(): Promise<{ status: string; queue: { running: number; waiting: number }; rss_bytes: number }> {
  return (await fetch(`${srv.url}/health`)).json();
}

test('GET /v1/models lists the served model under the folder name', async () => {
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => m.id), [basename(dir)]);
  assert.equal((await client.models.retrieve(basename(dir))).id, basename(dir));
});

test('chat: whole and streamed replies equal the library greedy output, with usage', async () => {
  const expected = await local.chatText(conversation, { maxNewTokens: 12 });
  const promptTokens = local.chatIds(conversation).length;
  const whole = await client.chat.completions.create({ model: basename(dir), messages: conversation, temperature: 0, max_tokens: 12 });
  assert.equal(whole.object, 'chat.completion');
  assert.equal(whole.choices.length, 1);
  assert.equal(whole.choices[0].message.role, 'assistant');
  assert.equal(whole.choices[0].message.content, expected.text);
  assert.equal(whole.choices[0].finish_reason, expected.ids.length === 12 && expected.ids[11] !== 2 ? 'length' : 'stop');
  assert.deepEqual(whole.usage && { p: whole.usage.prompt_tokens, c: whole.usage.completion_tokens, t: whole.usage.total_tokens }, { p: promptTokens, c: expected.ids.length, t: promptTokens + expected.ids.length });

  const stream = await client.chat.completions.create({ model: basename(dir), messages: conversation, temperature: 0, max_completion_tokens: 12, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | undefined | null;
  let chunks = 0;
  let id: string | undefined;
  for await (const c of stream) {
    chunks++;
    id ??= c.id;
    assert.equal(c.id, id, 'every chunk of one stream carries its id');
    assert.equal(c.object, 'chat.completion.chunk');
    if (c.choices.length > 0) {
      text += c.choices[0].delta.content ?? '';
      finish = c.choices[0].finish_reason ?? finish;
    } else usage = c.usage;
  }
  assert.equal(text, expected.text);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.equal(usage?.completion_tokens, expected.ids.length);
  assert.equal(usage?.prompt_tokens, promptTokens);
  assert.ok(chunks >= 3, `${chunks} chunks: a role chunk, content, the finish`);
});

test('completions: text and token-id prompts, whole and streamed, equal the library', async () => {
  for (const prompt of ['The quick brown fox', [1, 450, 4996, 17354]]) {
    const expected = await local.generateText(prompt, { maxNewTokens: 10 });
    const whole = await client.completions.create({ model: basename(dir), prompt, temperature: 0, max_tokens: 10 });
    assert.equal(whole.choices[0].text, expected.text, `prompt ${JSON.stringify(prompt)}`);
    assert.equal(whole.usage?.completion_tokens, expected.ids.length);
    assert.equal(whole.usage?.prompt_tokens, typeof prompt === 'string' ? local.encode(prompt).length : prompt.length);
    let text = '';
    for await (const c of await client.completions.create({ model: basename(dir), prompt, temperature: 0, max_tokens: 10, stream: true })) text += c.choices[0]?.text ?? '';
    assert.equal(text, expected.text);
  }
});

test('stop strings cut the text and finish with "stop"; seeded sampling repeats and matches the library', async () => {
  const full = await local.generateText('Once upon a time', { maxNewTokens: 12 });
  const stop = full.text.slice(Math.floor(full.text.length / 2), Math.floor(full.text.length / 2) + 2);
  assert.ok(stop.length === 2, `a stop string from ${JSON.stringify(full.text)}`);
  const cut = await client.completions.create({ model: basename(dir), prompt: 'Once upon a time', temperature: 0, max_tokens: 12, stop: [stop] });
  assert.equal(cut.choices[0].text, full.text.slice(0, full.text.indexOf(stop)));
  assert.equal(cut.choices[0].finish_reason, 'stop');
  // prompt_lookup_num_tokens reaches the engine (speculative decoding): greedy text is unchanged.
  const pl = await client.completions.create({ model: basename(dir), prompt: 'Once upon a time', temperature: 0, max_tokens: 12, prompt_lookup_num_tokens: 3 } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.equal(pl.choices[0].text, full.text);

  const ask = { model: basename(dir), prompt: 'Once upon a time', temperature: 0.9, top_p: 0.95, max_tokens: 12, seed: 7 };
  const a = await client.completions.create(ask);
  const b = await client.completions.create(ask);
  assert.equal(a.choices[0].text, b.choices[0].text);
  const lib = await local.generateText('Once upon a time', { maxNewTokens: 12, doSample: true, temperature: 0.9, topP: 0.95, topK: 0, seed: 7 });
  assert.equal(a.choices[0].text, lib.text);
  // The extensions reach the engine: a repetition penalty and top_k change what is sampled the same way.
  const ext = await client.completions.create({ ...ask, top_k: 5, repetition_penalty: 1.3 } as OpenAI.CompletionCreateParamsNonStreaming);
  const libExt = await local.generateText('Once upon a time', { maxNewTokens: 12, doSample: true, temperature: 0.9, topP: 0.95, topK: 5, repetitionPenalty: 1.3, seed: 7 });
  assert.equal(ext.choices[0].text, libExt.text);
});

async function apiError(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (e) {
    if (e instanceof OpenAI.APIError) return e;
    throw e;
  }
  throw new Error('the request succeeded; expected an error');
}

test('bad requests are refused in the OpenAI error shape with the right status, field and code', async () => {
  const m = basename(dir);
  const msgs = conversation;
  const cases: [() => Promise<unknown>, number, string | null, RegExp][] = [
    [() => client.chat.completions.create({ model: m, messages: msgs, temperature: 5 }), 400, 'temperature', /temperature must be a number in \[0, 2\]/],
    [() => client.chat.completions.create({ model: m, messages: msgs, n: 2 }), 400, 'n', /n must be 1/],
    [() => client.chat.completions.create({ model: m, messages: msgs, presence_penalty: 0.5 }), 400, 'presence_penalty', /not supported.*repetition_penalty/],
    [() => client.chat.completions.create({ model: m, messages: [{ role: 'tool', content: 'x', tool_call_id: 'a' }] }), 400, 'messages', /messages\[0\]\.role must be one of/],
    [() => client.chat.completions.create({ model: m, messages: msgs, max_tokens: 65 }), 400, 'max_tokens', /at most 64/],
    [() => client.chat.completions.create({ model: m, messages: [{ role: 'user', content: 'word '.repeat(200) }] }), 400, 'messages', /context is 128 tokens/],
    [() => client.chat.completions.create({ model: 'gpt-4o', messages: msgs }), 404, 'model', /"gpt-4o" does not exist here/],
    [() => client.completions.create({ model: m, prompt: ['a', 'b'] }), 400, 'prompt', /one prompt a request/],
    [() => client.completions.create({ model: m, prompt: [1, 99999] }), 400, 'prompt', /outside the model's vocabulary of 32000/],
    [() => client.completions.create({ model: m, prompt: 'x', frobnicate: 1 } as OpenAI.CompletionCreateParamsNonStreaming), 400, 'frobnicate', /unknown field "frobnicate"/],
    [() => client.completions.create({ model: m, prompt: 'x'.repeat(5000) }), 413, null, /larger than this server's limit of 4096 bytes/],
    [() => new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'wrong', maxRetries: 0 }).models.list(), 401, null, /API key is wrong/],
  ];
  for (const [p, status, param, re] of cases) {
    const e = await apiError(p());
    assert.equal(e.status, status, e.message);
    assert.equal(e.param ?? null, param, e.message);
    assert.match(e.message, re);
    assert.ok(typeof e.type === 'string' && e.type.length > 0);
  }
  // What the SDK cannot send: no key, bad JSON, wrong method, unknown route.
  const raw: [RequestInit & { path: string }, number, RegExp][] = [
    [{ path: '/v1/models' }, 401, /needs an API key/],
    [{ path: '/v1/completions', method: 'POST', body: '{"prompt": ', headers: { authorization: `Bearer ${KEY}` } }, 400, /not valid JSON/],
    [{ path: '/v1/completions', method: 'POST', body: '[]', headers: { authorization: `Bearer ${KEY}` } }, 400, /must be a JSON object/],
    [{ path: '/v1/chat/completions', headers: { authorization: `Bearer ${KEY}` } }, 405, /takes POST, not GET/],
    [{ path: '/v2/anything', headers: { authorization: `Bearer ${KEY}` } }, 404, /no route GET \/v2\/anything/],
  ];
  for (const [{ path, ...init }, status, re] of raw) {
    const r = await fetch(`${srv.url}${path}`, init);
    assert.equal(r.status, status, path);
    const body = (await r.json()) as { error: { message: string; type: string; param: unknown; code: unknown } };
    assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
    assert.match(body.error.message, re);
  }
  // `model` may be left out (curl users): the served model answers.
  const ok = await fetch(`${srv.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'Hi', max_tokens: 2, temperature: 0 }), headers: { authorization: `Bearer ${KEY}` } });
  assert.equal(ok.status, 200);
  assert.equal(((await ok.json()) as { model: string }).model, basename(dir));
  assert.equal((await health()).status, 'ok');
});

test('a client that disconnects mid-stream frees the GPU at once; the next request runs', async () => {
  const ask = { model: basename(dir), prompt: 'It was a dark and stormy night', temperature: 0, max_tokens: 64 };
  const t0 = performance.now();
  const full = await client.completions.create(ask);
  const fullMs = performance.now() - t0;
  assert.equal(full.usage?.completion_tokens, 64, 'a long generation to interrupt');

  const ac = new AbortController();
  const stream = await client.completions.create({ ...ask, stream: true }, { signal: ac.signal });
  let seen = 0;
  // The SDK ends the iteration quietly or with an abort error, depending on where the abort lands.
  await (async () => {
    for await (const c of stream) {
      if ((c.choices[0]?.text ?? '') !== '' && ++seen === 3) ac.abort();
    }
  })().catch((e: unknown) => assert.ok(ac.signal.aborted, String(e)));
  assert.equal(seen, 3);
  const tAbort = performance.now();
  for (;;) {
    const h = await health();
    if (h.queue.running === 0) break;
    assert.ok(performance.now() - tAbort < fullMs, `still running ${(performance.now() - tAbort).toFixed(0)} ms after the abort; the whole generation takes ${fullMs.toFixed(0)} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const idleMs = performance.now() - tAbort;
  const t1 = performance.now();
  const next = await client.completions.create({ ...ask, max_tokens: 4 });
  assert.equal(next.choices[0].text, (await local.generateText(ask.prompt, { maxNewTokens: 4 })).text);
  console.log(`cancel: idle ${idleMs.toFixed(0)} ms after the abort (whole generation ${fullMs.toFixed(0)} ms); next 4-token request ${(performance.now() - t1).toFixed(0)} ms`);
  assert.match(srv.stderr(), /POST \/v1\/completions disconnected/);
});

test('SIGTERM: the running request finishes, a waiting one gets 503, the process exits 143', async () => {
  const ask = { model: basename(dir), prompt: 'The old lighthouse keeper', temperature: 0, max_tokens: 24 };
  const expected = await local.generateText(ask.prompt, { maxNewTokens: 24 });
  const stream = await client.completions.create({ ...ask, stream: true });
  const it = stream[Symbol.asyncIterator]();
  let text = '';
  const first = await it.next(); // the request holds the GPU now
  text += first.done ? '' : (first.value.choices[0]?.text ?? '');
  const waiting = apiError(client.completions.create({ ...ask, max_tokens: 2 }));
  while ((await health()).queue.waiting < 1) await new Promise((r) => setTimeout(r, 10));
  const exited = srv.stop();
  const refused = await waiting;
  assert.equal(refused.status, 503);
  assert.match(refused.message, /shutting down/);
  for (let r = await it.next(); !r.done; r = await it.next()) text += r.value.choices[0]?.text ?? '';
  assert.equal(text, expected.text, 'the running generation completed');
  const r = await exited;
  assert.equal(r.code, 143, srv.stderr());
  assert.match(srv.stderr(), /shutting down/);
});

test('serve: bad options and a taken port end with one clear line', async () => {
  const bad = await runCli(['serve', '--model', dir, '--port', '70000']);
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr.trim(), 'openelm: --port must be an integer in 0..65535, got "70000"');
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
  try {
    const port = (taken.address() as { port: number }).port;
    const r = await runCli(['serve', '--model', dir, '--port', String(port), '--dtype', PINNED.dtype, '--gemv', PINNED.gemv, '--prefill-matmul', PINNED.prefillMatmul]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`openelm: cannot listen on 127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\): the port is taken; pick another with --port`));
  } finally {
    taken.close();
  }
});
