// Load on `openelm serve`: 16 concurrent clients (the official `openai` client) for a bounded time
// (OPENELM_LOAD_SECONDS, default 30), streamed and whole chat requests mixed. Every request is
// answered with exactly the greedy reply to its own prompt (no token lost or taken from another
// stream) or refused with 429 when the queue is full; nothing else. The server's resident memory
// after the run stays near its level after warm-up. Prints requests/s and tokens/s.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import type { GenerateResult, OpenElmModel } from '../../src/index.ts';
import type { ChatMessage } from '../../src/tokenizer/chat.ts';
import { chatModelDir, localModel, serve, type Served } from '../serve-spawn.ts';

const CLIENTS = 16;
const MAX_TOKENS = 16;
const MAX_QUEUE = 6;
const KEY = 'key-from-the-environment';
const SECONDS = Number(process.env.OPENELM_LOAD_SECONDS ?? 30);
let dir: string;
let srv: Served;
let local: OpenElmModel;

before(async () => {
  dir = await chatModelDir(11);
  srv = await serve(dir, ['--max-queue', String(MAX_QUEUE), '--max-tokens', String(MAX_TOKENS)], { OPENELM_API_KEY: KEY });
  local = await localModel(dir);
});
after(async () => {
  local?.dispose();
  await srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const TOPICS = ['rivers', 'owls', 'glass', 'tea', 'trains', 'moss', 'jazz', 'salt', 'comets', 'bees', 'maps', 'fog', 'clocks', 'kelp', 'wool', 'lava'];

async function rss(): Promise<number> {
  const h = (await (await fetch(`${srv.url}/health`)).json()) as { rss_bytes: number };
  return h.rss_bytes;
}

test(`${CLIENTS} concurrent clients for ${SECONDS} s: answered exactly or refused with 429, memory flat`, { timeout: (SECONDS + 300) * 1000 }, async () => {
  const conversations: ChatMessage[][] = TOPICS.slice(0, CLIENTS).map((t) => [{ role: 'user', content: `Tell me one thing about ${t}.` }]);
  const expected: GenerateResult[] = [];
  for (const c of conversations) expected.push(await local.chatText(c, { maxNewTokens: MAX_TOKENS }));
  assert.ok(new Set(expected.map((e) => e.text)).size > CLIENTS / 2, 'the prompts have different replies, so a mix-up would show');
  // The key comes from $OPENELM_API_KEY here: without it nothing is served.
  assert.equal((await fetch(`${srv.url}/v1/models`)).status, 401);
  const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: KEY, maxRetries: 0 });
  const model = (await client.models.list()).data[0].id;

  // Warm-up: every prompt once, so allocations that happen once are behind us; the second half,
  // one client at a time, is the baseline the concurrent run is compared with.
  let tSeq = 0;
  let seqTokens = 0;
  for (const [i, c] of conversations.entries()) {
    if (i === CLIENTS / 2) tSeq = performance.now();
    const r = await client.chat.completions.create({ model, messages: c, temperature: 0, max_tokens: MAX_TOKENS });
    if (i >= CLIENTS / 2) seqTokens += r.usage?.completion_tokens ?? 0;
  }
  const seqSeconds = (performance.now() - tSeq) / 1000;
  const rssBefore = await rss();

  const counts = { answered: 0, streamed: 0, refused: 0, tokens: 0 };
  const wrong: string[] = [];
  const rssSamples: number[] = [];
  const sampler = setInterval(() => void rss().then((r) => rssSamples.push(r), () => {}), 2000);
  const t0 = performance.now();
  const deadline = t0 + SECONDS * 1000;
  await Promise.all(
    conversations.map(async (messages, i) => {
      for (let round = 0; performance.now() < deadline; round++) {
        const stream = (i + round) % 2 === 0;
        try {
          let text = '';
          let tokens: number | undefined;
          if (stream) {
            const s = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: MAX_TOKENS, stream: true, stream_options: { include_usage: true } });
            for await (const c of s) {
              if (c.choices.length > 0) text += c.choices[0].delta.content ?? '';
              if (c.usage) tokens = c.usage.completion_tokens;
            }
          } else {
            const r = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: MAX_TOKENS });
            text = r.choices[0].message.content ?? '';
            tokens = r.usage?.completion_tokens;
          }
          if (text !== expected[i].text || tokens !== expected[i].ids.length) {
            wrong.push(`client ${i} round ${round} (${stream ? 'stream' : 'whole'}): ${JSON.stringify(text)} (${tokens} tokens), expected ${JSON.stringify(expected[i].text)} (${expected[i].ids.length})`);
          }
          counts.answered++;
          if (stream) counts.streamed++;
          counts.tokens += tokens ?? 0;
        } catch (e) {
          if (e instanceof OpenAI.APIError && e.status === 429) {
            assert.equal(e.code, 'queue_full');
            counts.refused++;
            // Back off a little, as a client told to retry later would.
            await new Promise((r) => setTimeout(r, 200 + 25 * i));
          } else wrong.push(`client ${i} round ${round}: ${(e as Error).message}`);
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  const rssAfter = await rss();
  const mb = (b: number) => (b / 2 ** 20).toFixed(1);
  console.log(
    `load: ${CLIENTS} clients, ${seconds.toFixed(1)} s: ${counts.answered} answered (${counts.streamed} streamed), ${counts.refused} refused with 429; ` +
      `${(counts.answered / seconds).toFixed(2)} requests/s, ${(counts.tokens / seconds).toFixed(1)} tokens/s; ` +
      `one client at a time ${(CLIENTS / 2 / seqSeconds).toFixed(2)} requests/s, ${(seqTokens / seqSeconds).toFixed(1)} tokens/s; ` +
      `server RSS ${mb(rssBefore)} MiB after warm-up, ${mb(rssAfter)} MiB after (samples ${rssSamples.map(mb).join(' ')})`,
  );
  assert.deepEqual(wrong, []);
  assert.ok(counts.answered >= CLIENTS, `${counts.answered} answered`);
  assert.ok(counts.streamed > 0 && counts.streamed < counts.answered, 'both kinds ran');
  assert.ok(counts.refused > 0, `with ${CLIENTS} clients and a queue of ${MAX_QUEUE}, some requests are refused (${counts.refused})`);
  // Flat: concurrency costs some memory at first (sockets, buffers, a larger heap), then RSS levels
  // off; it must not keep growing with the requests served. Bounds: 64 MiB over warm-up overall,
  // 24 MiB over the last two thirds of the run (a leak of ~0.5 MiB a request would break that).
  assert.ok(rssAfter - rssBefore < 64 * 2 ** 20, `RSS grew from ${mb(rssBefore)} to ${mb(rssAfter)} MiB`);
  const third = rssSamples[Math.floor(rssSamples.length / 3)];
  assert.ok(rssSamples.length >= 6, `${rssSamples.length} RSS samples`);
  assert.ok(rssAfter - third < 24 * 2 ** 20, `RSS still growing: ${mb(third)} MiB a third of the way in, ${mb(rssAfter)} MiB at the end`);
  const h = (await (await fetch(`${srv.url}/health`)).json()) as { queue: { running: number; waiting: number } };
  assert.deepEqual([h.queue.running, h.queue.waiting], [0, 0], 'the queue is empty afterwards');
});
