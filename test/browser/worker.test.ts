// The worker engine (createWorkerModel) and the chat page in headless Chromium: the worker gives
// the fixture's reference tokens and the Node engine's logits, errors cross with their one-line
// message, abort works, the page's timer keeps ticking while the worker generates, and a
// three-turn chat on a synthetic model with a chat template gives Node's tokens and shows the KV
// cache reused on turns 2 and 3. Screenshots go to $OPENELM_SCREENSHOTS (default
// <tmp>/openelm-screenshots).
//
// Needs `npm run build` (dist/browser/worker.js, demo/dist) first.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { loadModel } from '../../src/index.ts';
import { synthesizeCheckpoint } from '../../src/io/synth.ts';
import type { ChatMessage } from '../../src/tokenizer/chat.ts';
import { CHAT_TEMPLATE, LLAMA_VOCAB_CONFIG, loadFixture, maxAbsDiff, repoRoot, testGpu } from '../helpers.ts';
import { CHROMIUM, startDemoServer, launchChromium } from '../browser-session.ts';

const SHOTS = process.env.OPENELM_SCREENSHOTS ?? join(tmpdir(), 'openelm-screenshots');
const fx = loadFixture('tiny-elm');
const skip = !existsSync(CHROMIUM)
  ? `no Chromium at ${CHROMIUM} (apt-get install chromium)`
  : !existsSync(join(repoRoot, 'dist/browser/worker.js'))
    ? 'no dist/browser/worker.js: run npm run build'
    : false;

type Turn = { prompt_tokens: number; cached_tokens: number; new_tokens: number; ids: number[]; text: string; stopped: boolean };
type ChatState = { runs: number; turns: Turn[]; error?: string; messages: ChatMessage[] };

describe('the worker engine and the chat page in headless Chromium', { skip, timeout: 600_000 }, () => {
  let server: ChildProcess;
  let base = '';
  let ctx: BrowserContext;
  let profile = '';
  const chatDir = mkdtempSync(join(tmpdir(), 'openelm-chat-model-'));
  const pageErrors: string[] = [];

  async function newPage(): Promise<Page> {
    const page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    return page;
  }

  async function shot(page: Page, name: string): Promise<string> {
    mkdirSync(SHOTS, { recursive: true });
    const path = join(SHOTS, name);
    await page.screenshot({ path, fullPage: true });
    return path;
  }

  before(async () => {
    await synthesizeCheckpoint(chatDir, LLAMA_VOCAB_CONFIG, { dtype: 'F16', seed: 21 });
    writeFileSync(join(chatDir, 'tokenizer_config.json'), JSON.stringify({ chat_template: CHAT_TEMPLATE, bos_token: '<s>', eos_token: '</s>' }));
    ({ server, base } = await startDemoServer(['--model', `chat=${chatDir}`]));
    profile = mkdtempSync(join(tmpdir(), 'openelm-chromium-worker-'));
    ctx = await launchChromium(profile, { viewport: { width: 1280, height: 900 } });
  });

  after(async () => {
    await ctx?.close();
    server?.kill();
    if (profile) rmSync(profile, { recursive: true, force: true });
    rmSync(chatDir, { recursive: true, force: true });
  });

  test('createWorkerModel: the fixture tokens and logits, errors with their message, abort, dispose', async () => {
    const p = fx.manifest.prompts[1];
    const page = await newPage();
    await page.goto(`${base}demo/gpu.html`);
    const r = await page.evaluate(
      async ({ ids, bundle }) => {
        const lib = (await import(bundle)) as typeof import('../../src/browser.ts');
        const stages = new Set<string>();
        const m = await lib.createWorkerModel('/models/tiny-elm/', { dtype: 'f32', onLoadProgress: (e) => stages.add(e.stage) });
        const text = await m.generateText(ids, { maxNewTokens: 16, stopAtEos: false });
        const [last] = await m.logits(ids);
        let badMessage = '';
        try {
          await m.generateText([1, 99999], { maxNewTokens: 2 });
        } catch (e) {
          badMessage = (e as Error).message;
        }
        const ctrl = new AbortController();
        const got: number[] = [];
        let abortName = '';
        try {
          for await (const t of m.generate(ids, { maxNewTokens: 200, stopAtEos: false, signal: ctrl.signal })) {
            got.push(t.id);
            if (got.length === 2) ctrl.abort();
          }
        } catch (e) {
          abortName = (e as Error).name;
        }
        // Still usable after an abort, and the cache reuse crosses in the stats.
        const again = await m.generateText(ids, { maxNewTokens: 16, stopAtEos: false });
        const info = m.info;
        m.dispose();
        let afterDispose = '';
        try {
          await m.generateText(ids, { maxNewTokens: 1 });
        } catch (e) {
          afterDispose = (e as Error).message;
        }
        return { ids: text.ids, stats: text.stats, again: again.ids, againCached: again.stats.prompt_cached_tokens, last: Array.from(last), badMessage, got, abortName, stages: [...stages], info: { layers: info.plan.numLayers, gpuBytes: info.gpuBytes, dispatches: info.dispatchesPerToken }, afterDispose };
      },
      { ids: p.input_ids, bundle: `${base}dist/browser/openelm.js` },
    );
    assert.deepEqual(r.ids, p.greedy.tokens, 'the reference greedy tokens');
    assert.deepEqual(r.again, p.greedy.tokens, 'the same after an abort, with the cache reused');
    assert.equal(r.againCached, p.input_ids.length - 1);
    assert.ok(r.stats.decode_tokens_per_s > 0 && r.stats.dispatches_per_token > 0);
    // The Node engine on the same weights and ids.
    const node = await loadModel(fx.dir, { dtype: 'f32', gpu: await testGpu(), tuningStore: null });
    try {
      const [row] = await node.logits(p.input_ids);
      assert.ok(maxAbsDiff(r.last, row) < 1e-3, `worker logits within 1e-3 of Node's (max diff ${maxAbsDiff(r.last, row)})`);
      let nodeMessage = '';
      try {
        await node.generateText([1, 99999], { maxNewTokens: 2 });
      } catch (e) {
        nodeMessage = (e as Error).message;
      }
      assert.equal(r.badMessage, nodeMessage, 'the same one-line error as Node');
      assert.match(r.badMessage, /token id 99999 at index 1 is outside the vocabulary/);
    } finally {
      node.dispose();
    }
    assert.equal(r.abortName, 'AbortError');
    assert.equal(r.got.length, 2);
    assert.deepEqual(r.stages.filter((s) => ['files', 'gpu', 'weights', 'done'].includes(s)), ['files', 'gpu', 'weights', 'done']);
    assert.equal(r.info.layers, fx.manifest.derived_config.num_transformer_layers ?? r.info.layers);
    assert.ok(r.info.gpuBytes > 0 && r.info.dispatches > 0);
    assert.match(r.afterDispose, /disposed/);
    await page.close();
  });

  test('the generation page runs in the worker: reference tokens, and its timer keeps ticking during generation', async (t) => {
    const p = fx.manifest.prompts[1];
    const page = await newPage();
    await page.goto(`${base}demo/?model=/models/tiny-elm/&ids=${p.input_ids.join(',')}&max_new_tokens=16&autorun=1`);
    await page.waitForFunction(() => ((globalThis as unknown as { openelmDemo?: { state: { runs: number } } }).openelmDemo?.state.runs ?? 0) >= 1, null, { timeout: 120_000 });
    const first = await page.evaluate(() => (globalThis as unknown as { openelmDemo: { state: { error?: string; lastRun?: { ids: number[] } } } }).openelmDemo.state);
    assert.equal(first.error, undefined, first.error);
    assert.deepEqual(first.lastRun!.ids, p.greedy.tokens);

    // A longer run on the synthetic model, with a 10 ms timer on the page from before the load.
    const gaps = async (query: string) => {
      await page.goto(`${base}demo/?model=/models/synth-small/&max_new_tokens=48&${query}`);
      await page.evaluate(() => (globalThis as unknown as { openelmDemo: { ready: Promise<void> } }).openelmDemo.ready);
      return page.evaluate(async () => {
        const demo = (globalThis as unknown as { openelmDemo: { state: { runs: number; error?: string; lastRun?: { ids: number[] } } } }).openelmDemo;
        const ticks: number[] = [];
        const timer = setInterval(() => ticks.push(performance.now()), 10);
        const window = (t0: number, t1: number) => {
          const during = ticks.filter((x) => x >= t0 && x <= t1);
          let maxGap = during.length ? during[0] - t0 : t1 - t0;
          for (let i = 1; i < during.length; i++) maxGap = Math.max(maxGap, during[i] - during[i - 1]);
          return { ms: t1 - t0, ticks: during.length, maxGap };
        };
        const l0 = performance.now();
        (document.getElementById('load') as HTMLButtonElement).click();
        while (!/loaded in|failed|not loaded/.test(document.getElementById('load-status')?.textContent ?? '') || (document.getElementById('load') as HTMLButtonElement).disabled) {
          await new Promise((r) => setTimeout(r, 20));
        }
        const l1 = performance.now();
        (document.getElementById('generate') as HTMLButtonElement).click();
        while (demo.state.runs < 1) await new Promise((r) => setTimeout(r, 20));
        const g1 = performance.now();
        clearInterval(timer);
        return { load: window(l0, l1), gen: window(l1, g1), tokens: demo.state.lastRun?.ids.length ?? 0, error: demo.state.error };
      });
    };
    const line = (r: { ms: number; ticks: number; maxGap: number }) => `${r.ms.toFixed(0)} ms, timer ticked ${r.ticks} times, longest gap ${r.maxGap.toFixed(0)} ms`;
    const w = await gaps('');
    assert.equal(w.error, undefined, w.error);
    assert.equal(w.tokens, 48);
    t.diagnostic(`worker: load ${line(w.load)}; 48 tokens ${line(w.gen)}`);
    assert.ok(w.gen.maxGap < Math.max(200, w.gen.ms / 10), `the page's timer kept ticking: longest gap ${w.gen.maxGap.toFixed(0)} ms over ${w.gen.ms.toFixed(0)} ms of generation`);
    assert.ok(w.gen.ticks > w.gen.ms / 10 / 4, `${w.gen.ticks} ticks in ${w.gen.ms.toFixed(0)} ms`);
    // For comparison (not asserted): the same on the page's thread.
    const main = await gaps('worker=0');
    t.diagnostic(`page thread (worker=0): load ${line(main.load)}; 48 tokens ${line(main.gen)}`);
    await page.close();
  });

  test('the chat page: three turns with the chat template, Node\'s tokens, the KV cache reused; regenerate, stop; no template', async (t) => {
    const page = await newPage();
    const opts = { maxNewTokens: 8, repetitionPenalty: 1.2 };
    await page.goto(`${base}demo/chat.html?model=/models/chat/&max_new_tokens=${opts.maxNewTokens}&repetition_penalty=${opts.repetitionPenalty}&system=You%20are%20terse.`);
    await page.evaluate(() => (globalThis as unknown as { openelmChat: { ready: Promise<void> } }).openelmChat.ready);
    const chatState = () => page.evaluate(() => (globalThis as unknown as { openelmChat: { state: ChatState } }).openelmChat.state as unknown as ChatState);
    const waitRuns = (n: number) => page.waitForFunction((k) => (globalThis as unknown as { openelmChat: { state: { runs: number } } }).openelmChat.state.runs >= k, n, { timeout: 120_000 });
    const users = ['Name a colour.', 'Another one?', 'And a third, please.'];
    for (const [i, text] of users.entries()) {
      await page.fill('#user-input', text);
      await page.press('#user-input', 'Enter');
      await waitRuns(i + 1);
    }
    const s = await chatState();
    assert.equal(s.error, undefined, s.error);
    assert.equal(s.turns.length, 3);
    assert.equal(s.turns[0].cached_tokens, 0);
    assert.ok(s.turns[1].cached_tokens > 0 && s.turns[2].cached_tokens > s.turns[1].cached_tokens, `reused ${s.turns.map((x) => x.cached_tokens).join(', ')}`);
    // Each turn's tokens are Node's for the same conversation (prefilled fresh there).
    const node = await loadModel(chatDir, { dtype: 'f16', gpu: await testGpu(), tuningStore: null });
    try {
      const convo: ChatMessage[] = [{ role: 'system', content: 'You are terse.' }];
      for (const [i, text] of users.entries()) {
        convo.push({ role: 'user', content: text });
        const r = await node.chatText(convo, { ...opts, reuseCache: false });
        assert.deepEqual(s.turns[i].ids, r.ids, `turn ${i + 1}: the worker's tokens are Node's`);
        assert.equal(s.turns[i].prompt_tokens, r.stats.prompt_tokens);
        convo.push({ role: 'assistant', content: s.turns[i].text });
      }
    } finally {
      node.dispose();
    }
    const feet = await page.locator('.msg.assistant .turn-stats').allTextContents();
    assert.equal(feet.length, 3);
    for (const [i, f] of feet.entries()) assert.match(f, new RegExp(`prefilled ${s.turns[i].prompt_tokens - s.turns[i].cached_tokens} new tokens, reused ${s.turns[i].cached_tokens}\\b`));
    assert.match((await page.locator('#chat-stats').textContent()) ?? '', /reused \d+ from the KV cache/);
    t.diagnostic(`chat turns: ${s.turns.map((x) => `prompt ${x.prompt_tokens}, reused ${x.cached_tokens}`).join('; ')}`);
    t.diagnostic(`screenshot: ${await shot(page, 'chat.png')}`);

    // Regenerate: the same prompt again, everything but its last token from the cache, the same greedy reply.
    await page.click('#regenerate');
    await waitRuns(4);
    const g = await chatState();
    assert.equal(g.turns.length, 3);
    assert.deepEqual(g.turns[2].ids, s.turns[2].ids);
    assert.equal(g.turns[2].cached_tokens, g.turns[2].prompt_tokens - 1);

    // Stop a long reply (in a new conversation: the model's context is 128 tokens).
    await page.click('#new-chat');
    await page.fill('#max-new-tokens', '80');
    await page.fill('#user-input', 'Tell me a long story.');
    await page.click('#send');
    await page.waitForFunction(() => ((globalThis as unknown as { openelmChat: { state: { busy: boolean } } }).openelmChat.state.busy && /generated/.test(Array.from(document.querySelectorAll('.msg.assistant .turn-stats')).pop()?.textContent ?? '')), null, { timeout: 120_000 });
    await page.click('#stop');
    await waitRuns(5);
    const st = await chatState();
    assert.equal(st.error, undefined, st.error);
    assert.equal(st.turns.length, 1);
    assert.ok(st.turns[0].stopped && st.turns[0].new_tokens < 80, `stopped after ${st.turns[0].new_tokens} tokens`);
    assert.match((await page.locator('#run-status').textContent()) ?? '', /^stopped/);
    t.diagnostic(`screenshot: ${await shot(page, 'chat-stopped.png')}`);

    // A model without a chat template: a clear message, and Send is disabled.
    await page.goto(`${base}demo/chat.html?model=/models/tiny-elm/`);
    await page.evaluate(() => (globalThis as unknown as { openelmChat: { ready: Promise<void> } }).openelmChat.ready);
    await page.click('#load');
    await page.waitForSelector('#no-template:not([hidden])', { timeout: 120_000 });
    assert.match((await page.locator('#no-template').textContent()) ?? '', /This model has no chat template: .*tokenizer_config\.json has no chat_template/);
    assert.equal(await page.locator('#send').isDisabled(), true);
    t.diagnostic(`screenshot: ${await shot(page, 'chat-no-template.png')}`);
    await page.close();
  });

  test('no uncaught page errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});
