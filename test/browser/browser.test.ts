// The browser build in headless Chromium (playwright-core driving Debian's /usr/bin/chromium with
// --enable-unsafe-webgpu, SwiftShader underneath): the bundle holds no Node code, the demo page
// generates the fixture's greedy tokens exactly, a reload takes the weights from the Cache API (storage=cache)
// (zero requests for model.safetensors), Stop aborts, the missing-WebGPU and full-storage messages
// show, and the benchmark page completes with a table, a chart and JSON. Screenshots are written
// to $OPENELM_SCREENSHOTS (default <tmp>/openelm-screenshots) for people to look at.
//
// Needs `npm run build` (dist/browser, demo/dist) first; `npm test` does that.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { loadFixture, repoRoot } from '../helpers.ts';
import type { GenerationStats } from '../../src/generate/generate.ts';
import { CHROMIUM, startDemoServer, launchChromium } from '../browser-session.ts';

const BUNDLE_DIR = join(repoRoot, 'dist/browser');
const SHOTS = process.env.OPENELM_SCREENSHOTS ?? join(tmpdir(), 'openelm-screenshots');
const fx = loadFixture('tiny-elm');
const skip = !existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM} (apt-get install chromium)` : !existsSync(join(BUNDLE_DIR, 'openelm.js')) ? 'no dist/browser/openelm.js: run npm run build' : false;

/** Every .js file of the browser bundle (entry and chunks). */
function bundleFiles(): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.js')) out.push(p);
    }
  };
  walk(BUNDLE_DIR);
  return out;
}

describe('browser bundle', { skip: existsSync(join(BUNDLE_DIR, 'openelm.js')) ? false : 'run npm run build first' }, () => {
  test('holds no Node-only code: no node:* / fs / webgpu imports, no require()', (t) => {
    let total = 0;
    for (const f of bundleFiles()) {
      const s = readFileSync(f, 'utf8');
      total += s.length;
      const name = f.slice(repoRoot.length + 1);
      assert.doesNotMatch(s, /["']node:[a-z_/]+["']/, `${name} mentions a node: module`);
      assert.doesNotMatch(s, /\bfrom\s*["'](?:fs|path|os|url|crypto|child_process|module|worker_threads|webgpu)(?:\/[^"']*)?["']/, `${name} imports a Node module or the webgpu package`);
      assert.doesNotMatch(s, /\bimport\s*\(\s*["'](?:webgpu|fs|path|os)["']\s*\)/, `${name} imports a Node module dynamically`);
      assert.doesNotMatch(s, /\brequire\s*\(\s*["']/, `${name} calls require()`);
      assert.doesNotMatch(s, /\bprocess\.(?:env|platform|argv)\b/, `${name} reads process.*`);
      // Every static import is one of the bundle's own chunks.
      for (const m of s.matchAll(/\b(?:import|export)\s*(?:[\w*{}\s,$]+from\s*)?["']([^"']+)["']/g)) {
        assert.match(m[1], /^\.\.?\//, `${name} imports "${m[1]}", which is not a chunk of the bundle`);
      }
    }
    const entry = statSync(join(BUNDLE_DIR, 'openelm.js')).size;
    t.diagnostic(`bundle: openelm.js ${(entry / 1024).toFixed(0)} KiB; all chunks ${(total / 1024).toFixed(0)} KiB (the built-in tokenizer chunk loads only when text is tokenized)`);
    // WGSL is inlined as text.
    assert.match(readFileSync(join(BUNDLE_DIR, 'openelm.js'), 'utf8'), /@compute\s*@workgroup_size/);
  });
});

describe('demo pages in headless Chromium', { skip, timeout: 240_000 }, () => {
  let server: ChildProcess;
  let base = '';
  let ctx: BrowserContext;
  let profile = '';
  const pageErrors: string[] = [];

  const requests = async (reset = false): Promise<Record<string, number>> => {
    const r = await fetch(`${base}__demo/requests`, { method: reset ? 'POST' : 'GET' });
    return (await r.json()) as Record<string, number>;
  };

  async function newPage(): Promise<Page> {
    const page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    return page;
  }

  async function visible(page: Page, selectors: string[]): Promise<void> {
    for (const sel of selectors) {
      const loc = page.locator(sel).first();
      assert.ok(await loc.isVisible(), `${sel} is not visible`);
      const box = await loc.boundingBox();
      assert.ok(box && box.width > 4 && box.height > 4, `${sel} has no size on screen`);
    }
  }

  async function shot(page: Page, name: string): Promise<string> {
    mkdirSync(SHOTS, { recursive: true });
    const path = join(SHOTS, name);
    await page.screenshot({ path, fullPage: true });
    return path;
  }

  type DemoState = { runs: number; pageToFirstTokenMs?: number; loadMs?: number; error?: string; lastRun?: { ids: number[]; stopped: boolean; text: string; gpuBytes: number; stats: GenerationStats } };
  const demoState = (page: Page) => page.evaluate(() => {
    const s = (globalThis as unknown as { openelmDemo: { state: Record<string, unknown> } }).openelmDemo.state;
    return { runs: s.runs, pageToFirstTokenMs: s.pageToFirstTokenMs, loadMs: s.loadMs, error: s.error, lastRun: s.lastRun } as DemoState;
  });
  const waitRuns = (page: Page, n: number, timeout = 120_000) =>
    page.waitForFunction((k) => ((globalThis as unknown as { openelmDemo?: { state: { runs: number } } }).openelmDemo?.state.runs ?? 0) >= k, n, { timeout });

  before(async () => {
    ({ server, base } = await startDemoServer([]));
    profile = mkdtempSync(join(tmpdir(), 'openelm-chromium-'));
    ctx = await launchChromium(profile, { viewport: { width: 1280, height: 900 } });
  });

  after(async () => {
    await ctx?.close();
    server?.kill();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  const p1 = fx.manifest.prompts[1];
  const p0 = fx.manifest.prompts[0];

  test('the generation page gives the fixture greedy tokens; a reload takes the weights from the cache', async (t) => {
    await requests(true);
    const page = await newPage();
    const url = `${base}demo/?model=/models/tiny-elm/&ids=${p1.input_ids.join(',')}&max_new_tokens=16&storage=cache&autorun=1`;
    await page.goto(url);
    await waitRuns(page, 1);
    let s = await demoState(page);
    assert.equal(s.error, undefined, s.error);
    assert.deepEqual(s.lastRun!.ids, p1.greedy.tokens, 'the same greedy tokens as the reference (and as Node)');
    assert.equal(s.lastRun!.stats.dispatches_per_token > 0, true);
    assert.ok(s.lastRun!.gpuBytes > 0);
    assert.equal((await page.locator('#output-ids').textContent())?.replace(/\s/g, ''), p1.greedy.tokens.join(','));
    const cold = await requests();
    assert.ok((cold['/models/tiny-elm/model.safetensors'] ?? 0) > 10, `the first load reads the weights in ranges (${cold['/models/tiny-elm/model.safetensors']} requests)`);
    assert.equal(cold['/dist/browser/openelm.js'], 1, 'the page loads the bundle');
    t.diagnostic(`fixture, cold: page load to first token ${s.pageToFirstTokenMs?.toFixed(0)} ms (model load ${s.loadMs?.toFixed(0)} ms), ${cold['/models/tiny-elm/model.safetensors']} range requests`);

    // Drive the form like a person: other ids, click Generate.
    await page.fill('#prompt', p0.input_ids.join(', '));
    await page.fill('#max-new-tokens', '16');
    await page.click('#generate');
    await waitRuns(page, 2);
    s = await demoState(page);
    assert.deepEqual(s.lastRun!.ids, p0.greedy.tokens);
    await visible(page, ['#prompt', '#generate', '#stop', '#output', '#stats', '#stat-decode', '#stat-gpu-mem', '#stat-dispatches', '#support', '#model-url', '#load']);
    assert.match((await page.locator('#stat-gpu-mem').textContent()) ?? '', /\d+(\.\d+)? (MiB|KiB)/);
    assert.match((await page.locator('#support').textContent()) ?? '', /shader-f16.*subgroups.*timestamp-query/);
    t.diagnostic(`screenshot: ${await shot(page, 'generate.png')}`);

    // Reload: everything from the Cache API (storage=cache; OPFS has its own test, browser-storage).
    await requests(true);
    await page.reload();
    await waitRuns(page, 1);
    s = await demoState(page);
    assert.deepEqual(s.lastRun!.ids, p1.greedy.tokens);
    const warm = await requests();
    assert.equal(warm['/models/tiny-elm/model.safetensors'] ?? 0, 0, `no request for the weights after a reload: ${JSON.stringify(warm)}`);
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer.model']) assert.equal(warm[`/models/tiny-elm/${f}`] ?? 0, 0, `no request for ${f}`);
    t.diagnostic(`fixture, cached: page load to first token ${s.pageToFirstTokenMs?.toFixed(0)} ms (model load ${s.loadMs?.toFixed(0)} ms)`);
    await page.waitForFunction(() => /Stored: 1 model, 2 files/.test(document.getElementById('cache-info')?.textContent ?? ''));
    await page.close();
  });

  test('speculative decoding on the page: prompt lookup and the same model in q8 as assistant give the greedy tokens', async () => {
    const page = await newPage();
    for (const [query, method] of [['spec=lookup&lookup_tokens=4', 'prompt_lookup'], ['spec=assistant&assistant_dtype=q8&assistant_tokens=3', 'assistant']]) {
      await page.goto(`${base}demo/?model=/models/tiny-elm/&ids=${p1.input_ids.join(',')}&max_new_tokens=16&${query}&autorun=1`);
      await waitRuns(page, 1);
      const s = await demoState(page);
      assert.equal(s.error, undefined, s.error);
      assert.deepEqual(s.lastRun!.ids, p1.greedy.tokens, `${method}: the greedy tokens`);
      assert.equal(s.lastRun!.stats.speculative?.method, method);
      assert.match((await page.locator('#stat-spec').textContent()) ?? '', /drafts accepted .* tokens per main pass/);
    }
    await page.close();
  });

  test('text prompt with the built-in tokenizer on the synthetic model; Stop aborts', async () => {
    const page = await newPage();
    await page.goto(`${base}demo/?model=/models/synth-small/&max_new_tokens=400`);
    await page.waitForFunction(() => (globalThis as unknown as { openelmDemo?: unknown }).openelmDemo !== undefined);
    await page.evaluate(() => (globalThis as unknown as { openelmDemo: { ready: Promise<void> } }).openelmDemo.ready);
    assert.equal(await page.inputValue('#prompt'), 'Once upon a time');
    await page.click('#generate');
    await page.waitForFunction(() => (document.getElementById('output-ids')?.textContent ?? '').split(',').length >= 3, null, { timeout: 120_000 });
    assert.equal(await page.locator('#stop').isEnabled(), true);
    await page.click('#stop');
    await waitRuns(page, 1);
    const s = await demoState(page);
    assert.equal(s.error, undefined, s.error);
    assert.equal(s.lastRun!.stopped, true);
    assert.ok(s.lastRun!.ids.length >= 3 && s.lastRun!.ids.length < 400, `stopped after ${s.lastRun!.ids.length} tokens`);
    assert.match((await page.locator('#run-status').textContent()) ?? '', /^stopped/);
    assert.ok(((await page.locator('#output').textContent()) ?? '').length > 0, 'decoded text is shown');
    await page.close();
  });

  test('a picked folder (input webkitdirectory) and picked files load like a URL', async () => {
    const page = await newPage();
    await page.goto(`${base}demo/?max_new_tokens=16`);
    await page.evaluate(() => (globalThis as unknown as { openelmDemo: { ready: Promise<void> } }).openelmDemo.ready);
    await page.setInputFiles('#pick-folder', fx.dir);
    assert.match((await page.locator('#picked').textContent()) ?? '', /files? picked/);
    await page.check('#mode-ids');
    await page.fill('#prompt', p1.input_ids.join(','));
    await page.click('#generate');
    await waitRuns(page, 1);
    let s = await demoState(page);
    assert.equal(s.error, undefined, s.error);
    assert.deepEqual(s.lastRun!.ids, p1.greedy.tokens);

    await page.setInputFiles('#pick-files', [join(fx.dir, 'config.json'), join(fx.dir, 'model.safetensors')]);
    await page.fill('#prompt', p0.input_ids.join(','));
    await page.click('#generate');
    await waitRuns(page, 2);
    s = await demoState(page);
    assert.equal(s.error, undefined, s.error);
    assert.deepEqual(s.lastRun!.ids, p0.greedy.tokens);

    // Files without a config.json: one clear line.
    await page.setInputFiles('#pick-files', [join(fx.dir, 'model.safetensors')]);
    await page.click('#generate');
    await waitRuns(page, 3);
    assert.match((await page.locator('#error').textContent()) ?? '', /the picked files hold no config\.json/);
    await page.close();
  });

  test('the benchmark page completes with a table, a chart and JSON', async (t) => {
    const page = await newPage();
    await page.goto(`${base}demo/bench.html?model=/models/tiny-elm/&prompt_lengths=8,32&decode_tokens=8&runs=2&autorun=1`);
    await page.waitForFunction(
      () => {
        const b = (globalThis as unknown as { openelmBench?: { result?: unknown; error?: string } }).openelmBench;
        return b?.result !== undefined || b?.error !== undefined;
      },
      null,
      { timeout: 180_000 },
    );
    const r = await page.evaluate(() => (globalThis as unknown as { openelmBench: { result?: Record<string, unknown>; error?: string } }).openelmBench);
    assert.equal(r.error, undefined, r.error);
    const res = r.result as {
      schema: string;
      dispatches_per_token: number;
      dispatches_counted_per_step: number;
      prefill: { prompt_tokens: number; tokens_per_s: number }[];
      decode: { step_ms: { n: number; median: number }; tokens_per_s: number };
      matmul: { name: string; check: number; gb_s: number }[];
      model: { layers: number };
    };
    assert.equal(res.schema, 'openelm-webgpu/browser-bench/1');
    assert.deepEqual(res.prefill.map((p) => p.prompt_tokens), [8, 32]);
    assert.ok(res.prefill.every((p) => p.tokens_per_s > 0));
    assert.ok(res.decode.step_ms.n >= 8 && res.decode.tokens_per_s > 0);
    assert.ok(res.dispatches_per_token > 0 && res.dispatches_counted_per_step > 0);
    // The harness's shapes (bench/matmul.ts kernelShapes): three GEMV, two GEMM.
    assert.equal(res.matmul.length, 5);
    for (const m of res.matmul) assert.ok(m.check < 1 && m.gb_s > 0, `matmul ${m.name}: check ${m.check}`);
    // The download link holds the same JSON.
    const downloaded = await page.evaluate(async () => {
      const a = document.getElementById('download') as HTMLAnchorElement;
      return { name: a.download, json: await (await fetch(a.href)).json() };
    });
    assert.match(downloaded.name, /^openelm-browser-bench-f16-.*\.json$/);
    assert.deepEqual(downloaded.json, res);
    await visible(page, ['#results-table', '#chart svg', '#download', '#run-bench', '#model-url']);
    assert.ok((await page.locator('#results-table tbody tr').count()) >= 8);
    t.diagnostic(`bench: dispatches/token ${res.dispatches_per_token} (counted ${res.dispatches_counted_per_step}), decode ${res.decode.tokens_per_s.toFixed(1)} tok/s`);
    t.diagnostic(`screenshot: ${await shot(page, 'bench.png')}`);
    await page.close();
  });

  test('clear messages: no WebGPU, and a full cache', async (t) => {
    const page = await newPage();
    await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true }));
    await page.goto(`${base}demo/`);
    await page.waitForFunction(() => document.getElementById('support')?.classList.contains('missing'));
    // The page disables its buttons once set up; wait for that rather than racing it.
    await page.evaluate(() => (globalThis as unknown as { openelmDemo: { ready: Promise<void> } }).openelmDemo.ready);
    assert.match((await page.locator('#support').textContent()) ?? '', /No WebGPU\..*navigator\.gpu is missing.*Chrome/);
    assert.equal(await page.locator('#generate').isDisabled(), true);
    t.diagnostic(`screenshot: ${await shot(page, 'no-webgpu.png')}`);
    await page.close();

    // The browser refuses to store weight ranges (QuotaExceededError): the load fails with the figures.
    const q = await newPage();
    await q.addInitScript(() => {
      const put = Cache.prototype.put;
      Cache.prototype.put = function (this: Cache, req: RequestInfo | URL, res: Response) {
        const url = typeof req === 'string' ? req : req instanceof URL ? req.href : req.url;
        if (url.includes('openelm-cache=bytes')) return Promise.reject(new DOMException('Quota exceeded', 'QuotaExceededError'));
        return put.call(this, req, res);
      };
    });
    // The Cache API is patched in the page only (not in workers): load on the page thread.
    await q.goto(`${base}demo/?model=/models/synth-small/&worker=0&storage=cache`);
    await q.evaluate(() => (globalThis as unknown as { openelmDemo: { ready: Promise<void> } }).openelmDemo.ready);
    await q.click('#clear-cache');
    await q.waitForFunction(() => /Storage cleared/.test(document.getElementById('cache-info')?.textContent ?? ''));
    await q.click('#load');
    await q.waitForSelector('#error:not([hidden])', { timeout: 60_000 });
    const msg = (await q.locator('#error').textContent()) ?? '';
    assert.match(msg, /^Out of browser storage while storing .*synth-small\/model\.safetensors bytes/);
    assert.match(msg, /the model's files take 20\.7 MiB, .* so about .* more is needed\./);
    assert.match(msg, /"Stored models" list/);
    t.diagnostic(`quota message: ${msg}`);
    t.diagnostic(`screenshot: ${await shot(q, 'quota.png')}`);
    await q.close();
  });

  test('no uncaught page errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});
