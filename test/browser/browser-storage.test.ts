// Browser storage in headless Chromium: the Origin Private File System keeps the model across a
// reload (no request for the weights the second time), a download cut half-way resumes with one
// Range request for the rest (and starts over when the file changed on the server), listing and
// deleting stored models (library and the demo page's list), the Cache API on request, and the
// one-line message when a model does not fit the quota. The model is a copy of the tiny-elm
// fixture served by scripts/demo.mjs, whose /__demo/cut drops connections at a byte offset.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { loadFixture, repoRoot } from '../helpers.ts';
import { CHROMIUM, startDemoServer, launchChromium } from '../browser-session.ts';

const SHOTS = process.env.OPENELM_SCREENSHOTS ?? join(tmpdir(), 'openelm-screenshots');
const fx = loadFixture('tiny-elm');
const skip = !existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM} (apt-get install chromium)` : !existsSync(join(repoRoot, 'dist/browser/openelm.js')) ? 'no dist/browser/openelm.js: run npm run build' : false;
const WEIGHTS = '/models/tiny/model.safetensors';

/** The page's handle on the bundle (set by an init script; a literal import() here would be bundled into the test). */
interface LibHost {
  openelmLib: () => Promise<typeof import('../../src/browser.ts')>;
}
const LIB_SCRIPT = "globalThis.openelmLib = () => import('/dist/browser/openelm.js');";

/** What a load in the page returned. */
interface PageLoad {
  error?: string;
  ids?: number[];
  storage?: { kind: string; requested: string; persisted?: boolean; reason?: string };
  networkBytes?: number;
  cacheBytes?: number;
  /** Load time, ms. */
  loadMs?: number;
}

interface Stored {
  url: string;
  storage: string;
  bytes: number;
  sizeBytes?: number;
  complete: boolean;
  files: { url: string; size?: number; storedBytes: number; complete: boolean; missing?: boolean }[];
}

describe('browser storage (OPFS, Cache API) in headless Chromium', { skip, timeout: 300_000 }, () => {
  let server: ChildProcess;
  let base = '';
  let ctx: BrowserContext;
  let profile = '';
  let modelDir = '';
  let page: Page;
  const pageErrors: string[] = [];
  const p1 = fx.manifest.prompts[1];
  const size = statSync(join(fx.dir, 'model.safetensors')).size;

  const demo = async (path: string, method = 'GET'): Promise<Record<string, unknown>> => (await (await fetch(`${base}__demo/${path}`, { method })).json()) as Record<string, unknown>;
  const resetRequests = () => demo('requests', 'POST');
  const ranges = async () => (await demo('ranges')) as Record<string, string[]>;
  const requests = async () => (await demo('requests')) as Record<string, number>;

  /** Loads /models/tiny/ in the page with `opts` and generates the fixture's greedy continuation. */
  const load = (opts: Record<string, unknown>): Promise<PageLoad> =>
    page.evaluate(
      async ({ opts, ids }) => {
        const m = await (globalThis as unknown as LibHost).openelmLib();
        const out: PageLoad = {};
        try {
          const t0 = performance.now();
          const model = await m.loadModel('/models/tiny/', {
            ...opts,
            onLoadProgress: (e: { storage?: PageLoad['storage']; networkBytes: number; cacheBytes: number }) => {
              if (e.storage) out.storage = e.storage;
              out.networkBytes = e.networkBytes;
              out.cacheBytes = e.cacheBytes;
            },
          });
          out.loadMs = performance.now() - t0;
          out.ids = (await model.generateText(ids, { maxNewTokens: 16 })).ids;
          model.dispose();
        } catch (e) {
          out.error = (e as Error).message;
        }
        return out;
      },
      { opts, ids: p1.input_ids as number[] },
    );

  const stored = (): Promise<Stored[]> => page.evaluate(async () => (await (globalThis as unknown as LibHost).openelmLib()).listStoredModels());
  const deleteAll = () => page.evaluate(async () => (await (globalThis as unknown as LibHost).openelmLib()).deleteStoredModel());
  const weightsOf = (list: Stored[]) => list.find((m) => m.url.endsWith('/models/tiny/'))?.files.find((f) => f.url.endsWith('model.safetensors'));

  before(async () => {
    modelDir = mkdtempSync(join(tmpdir(), 'openelm-storage-model-'));
    cpSync(fx.dir, modelDir, { recursive: true });
    ({ server, base } = await startDemoServer(['--model', `tiny=${modelDir}`]));
    profile = mkdtempSync(join(tmpdir(), 'openelm-chromium-'));
    ctx = await launchChromium(profile, { viewport: { width: 1280, height: 900 } });
    await ctx.addInitScript({ content: LIB_SCRIPT });
    page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${base}models/`);
  });

  after(async () => {
    await ctx?.close();
    server?.kill();
    for (const d of [profile, modelDir]) if (d) rmSync(d, { recursive: true, force: true });
  });

  test('auto picks OPFS; the model survives a reload with no request for the weights', async (t) => {
    await resetRequests();
    const cold = await load({});
    assert.equal(cold.error, undefined, cold.error);
    assert.deepEqual(cold.ids, p1.greedy.tokens, 'the fixture greedy tokens');
    assert.equal(cold.storage?.kind, 'opfs', `storage: ${JSON.stringify(cold.storage)}`);
    assert.equal(typeof cold.storage?.persisted, 'boolean', 'persist() was asked and answered');
    // One streamed request for the whole weight file, written to OPFS as it arrived.
    assert.deepEqual((await ranges())[WEIGHTS], ['bytes=0-']);
    const list = await stored();
    const tiny = list.find((m) => m.url === `${base}models/tiny/`);
    assert.ok(tiny, `listed: ${JSON.stringify(list.map((m) => m.url))}`);
    assert.equal(tiny.storage, 'opfs');
    assert.equal(tiny.complete, true);
    assert.equal(weightsOf(list)?.storedBytes, size);
    assert.equal(tiny.sizeBytes, tiny.bytes);
    // Nothing went to the Cache API.
    assert.deepEqual(await page.evaluate(async () => (await (globalThis as unknown as LibHost).openelmLib()).listCache()), []);
    t.diagnostic(`stored: ${JSON.stringify(tiny.files.map((f) => [f.url.slice(base.length), f.storedBytes, f.missing ?? false]))}; persisted: ${cold.storage?.persisted}`);

    await page.reload();
    await resetRequests();
    const warm = await load({});
    assert.equal(warm.error, undefined, warm.error);
    assert.deepEqual(warm.ids, p1.greedy.tokens);
    assert.equal(warm.storage?.kind, 'opfs');
    const r = await requests();
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json', 'tokenizer.model']) assert.equal(r[`/models/tiny/${f}`] ?? 0, 0, `no request for ${f}: ${JSON.stringify(r)}`);
    assert.equal(warm.networkBytes, 0);
    assert.ok((warm.cacheBytes ?? 0) >= size, `served from OPFS: ${warm.cacheBytes}`);
    t.diagnostic(`fixture load through OPFS: cold ${cold.loadMs?.toFixed(0)} ms, after a reload ${warm.loadMs?.toFixed(0)} ms`);
  });

  test('a download cut half-way keeps its bytes and resumes with one Range request for the rest', async () => {
    await deleteAll();
    assert.equal(weightsOf(await stored()), undefined, 'deleted');
    const cut = Math.floor(size / 2) + 12345;
    await demo(`cut?path=${encodeURIComponent(WEIGHTS)}&at=${cut}`, 'POST');
    await resetRequests();
    const failed = await load({ storage: 'opfs' });
    assert.match(failed.error ?? '', new RegExp(`model\\.safetensors: the download broke off at byte ${cut} of ${size} \\(.*\\); the bytes received are kept and the next load resumes from there$`), `load error: ${failed.error}`);
    let w = weightsOf(await stored());
    assert.equal(w?.storedBytes, cut, `kept the bytes before the cut: ${JSON.stringify(w)}`);
    assert.equal(w?.complete, false);
    assert.equal((await stored()).find((m) => m.url.endsWith('/models/tiny/'))?.complete, false);

    await demo(`cut?path=${encodeURIComponent(WEIGHTS)}`, 'POST');
    await resetRequests();
    const resumed = await load({ storage: 'opfs' });
    assert.equal(resumed.error, undefined, resumed.error);
    assert.deepEqual(resumed.ids, p1.greedy.tokens, 'the fixture tokens from the resumed file');
    assert.deepEqual((await ranges())[WEIGHTS], [`bytes=${cut}-`], 'only the rest was fetched');
    assert.equal(resumed.networkBytes, size - cut, 'network bytes are the missing part only');
    w = weightsOf(await stored());
    assert.equal(w?.storedBytes, size);
    assert.equal(w?.complete, true);
  });

  test('a tab closed mid-download keeps the parts it finished; the next load fetches from there', async () => {
    await deleteAll();
    const partBytes = 64 * 1024;
    const cut = 10 * partBytes + 5000;
    await demo(`cut?path=${encodeURIComponent(WEIGHTS)}&at=${cut}&stall=1`, 'POST');
    const tab = await ctx.newPage();
    tab.on('pageerror', (e) => pageErrors.push(e.message));
    await tab.goto(`${base}models/`);
    // Start a load that hangs at the cut, wait until it got there, then close the tab.
    void tab.evaluate((pb) => {
      void (globalThis as unknown as LibHost).openelmLib().then((m) => m.loadModel('/models/tiny/', { storage: 'opfs', storagePartBytes: pb }).catch(() => {}));
    }, partBytes);
    const deadline = Date.now() + 60_000;
    while ((weightsOf(await stored())?.storedBytes ?? 0) < 10 * partBytes) {
      assert.ok(Date.now() < deadline, `the download reached ${weightsOf(await stored())?.storedBytes} bytes`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await tab.close();
    // The ten full parts survive; the part being filled (5000 bytes in memory) is lost with the tab.
    assert.equal(weightsOf(await stored())?.storedBytes, 10 * partBytes);
    await demo(`cut?path=${encodeURIComponent(WEIGHTS)}`, 'POST');
    await resetRequests();
    const resumed = await load({ storage: 'opfs', storagePartBytes: partBytes });
    assert.equal(resumed.error, undefined, resumed.error);
    assert.deepEqual(resumed.ids, p1.greedy.tokens);
    assert.deepEqual((await ranges())[WEIGHTS], [`bytes=${10 * partBytes}-`]);
    assert.equal(weightsOf(await stored())?.storedBytes, size);
  });

  test('a file that changed on the server since the cut is fetched again from the start', async () => {
    await deleteAll();
    const cut = Math.floor(size / 3);
    await demo(`cut?path=${encodeURIComponent(WEIGHTS)}&at=${cut}`, 'POST');
    const failed = await load({ storage: 'opfs' });
    assert.ok(failed.error, 'the cut load fails');
    assert.equal(weightsOf(await stored())?.storedBytes, cut);
    // Same bytes, new modification time: a new ETag and Last-Modified.
    const later = new Date(Date.now() + 60_000);
    utimesSync(join(modelDir, 'model.safetensors'), later, later);
    await demo(`cut?path=${encodeURIComponent(WEIGHTS)}`, 'POST');
    await resetRequests();
    const again = await load({ storage: 'opfs' });
    assert.equal(again.error, undefined, again.error);
    assert.deepEqual(again.ids, p1.greedy.tokens);
    assert.deepEqual((await ranges())[WEIGHTS], [`bytes=${cut}-`, 'bytes=0-'], 'the resume saw a changed file and started over');
    assert.equal(weightsOf(await stored())?.storedBytes, size);
  });

  test('storage: cache keeps the files in the Cache API; listing shows both backends; deleting one model', async (t) => {
    await resetRequests();
    const first = await load({ storage: 'cache' });
    assert.equal(first.error, undefined, first.error);
    assert.equal(first.storage?.kind, 'cache');
    await resetRequests();
    const second = await load({ storage: 'cache' });
    assert.deepEqual(second.ids, p1.greedy.tokens);
    assert.equal((await requests())[WEIGHTS] ?? 0, 0, 'the Cache API served the weights');
    t.diagnostic(`fixture load through the Cache API: cold ${first.loadMs?.toFixed(0)} ms, cached ${second.loadMs?.toFixed(0)} ms`);
    const list = await stored();
    assert.deepEqual(list.filter((m) => m.url.endsWith('/models/tiny/')).map((m) => [m.storage, m.complete]), [['cache', true], ['opfs', true]]);
    const removed = await page.evaluate(async (u) => (await (globalThis as unknown as LibHost).openelmLib()).deleteStoredModel(u), '/models/tiny/');
    assert.ok(removed.files >= 2 && removed.bytes >= 2 * size, `removed ${JSON.stringify(removed)}`);
    assert.deepEqual(await stored(), []);
  });

  test('the demo page lists stored models with Delete buttons', async (t) => {
    const demoPage = await ctx.newPage();
    demoPage.on('pageerror', (e) => pageErrors.push(e.message));
    await demoPage.goto(`${base}demo/?model=/models/tiny/&ids=${p1.input_ids.join(',')}&max_new_tokens=16&storage=opfs&autorun=1`);
    await demoPage.waitForFunction(() => ((globalThis as unknown as { openelmDemo?: { state: { runs: number } } }).openelmDemo?.state.runs ?? 0) >= 1, null, { timeout: 120_000 });
    const s = await demoPage.evaluate(() => (globalThis as unknown as { openelmDemo: { state: { error?: string; storage?: { kind: string }; lastRun?: { ids: number[] } } } }).openelmDemo.state);
    assert.equal(s.error, undefined, s.error);
    assert.deepEqual(s.lastRun?.ids, p1.greedy.tokens);
    assert.equal(s.storage?.kind, 'opfs');
    assert.match((await demoPage.locator('#load-status').textContent()) ?? '', /files kept in OPFS/);
    const row = demoPage.locator(`#stored-models li[data-url="${base}models/tiny/"]`);
    await row.waitFor({ timeout: 30_000 });
    assert.equal(await row.getAttribute('data-storage'), 'opfs');
    assert.equal(await row.getAttribute('data-complete'), 'true');
    assert.match((await row.textContent()) ?? '', /OPFS · 1\.3 MiB/);
    mkdirSync(SHOTS, { recursive: true });
    await demoPage.screenshot({ path: join(SHOTS, 'stored-models.png'), fullPage: true });
    t.diagnostic(`screenshot: ${join(SHOTS, 'stored-models.png')}`);
    await row.locator('button').click();
    await demoPage.waitForFunction(() => document.querySelectorAll('#stored-models li').length === 0);
    assert.match((await demoPage.locator('#cache-info').textContent()) ?? '', /Stored: nothing/);
    assert.deepEqual(await stored(), []);
    await demoPage.close();
  });

  test('in a worker OPFS is written with createSyncAccessHandle; a second worker loads with no request for the weights', async () => {
    await deleteAll();
    // The worker's code is a string so the test bundler leaves its import() alone.
    const WORKER = `self.onmessage = async (e) => {
      try {
        const m = await import(e.data.lib);
        let storage;
        const model = await m.loadModel(e.data.model, { storage: 'opfs', onLoadProgress: (ev) => { if (ev.storage) storage = ev.storage; } });
        const r = await model.generateText(e.data.ids, { maxNewTokens: 16 });
        model.dispose();
        self.postMessage({ ids: r.ids, storage, sah: typeof FileSystemFileHandle.prototype.createSyncAccessHandle === 'function' });
      } catch (err) {
        self.postMessage({ error: String((err && err.message) || err) });
      }
    };`;
    const inWorker = () =>
      page.evaluate(
        async ({ code, ids }) => {
          const w = new Worker(URL.createObjectURL(new Blob([code], { type: 'text/javascript' })), { type: 'module' });
          const out = await new Promise<{ ids?: number[]; storage?: { kind: string }; sah?: boolean; error?: string }>((res) => {
            w.onmessage = (e) => res(e.data);
            w.onerror = (e) => res({ error: e.message });
            w.postMessage({ lib: `${location.origin}/dist/browser/openelm.js`, model: `${location.origin}/models/tiny/`, ids });
          });
          w.terminate();
          return out;
        },
        { code: WORKER, ids: p1.input_ids as number[] },
      );
    await resetRequests();
    const cold = await inWorker();
    assert.equal(cold.error, undefined, cold.error);
    assert.equal(cold.sah, true, 'workers have createSyncAccessHandle');
    assert.equal(cold.storage?.kind, 'opfs');
    assert.deepEqual(cold.ids, p1.greedy.tokens);
    assert.deepEqual((await ranges())[WEIGHTS], ['bytes=0-']);
    assert.equal(weightsOf(await stored())?.storedBytes, size, 'the page lists what the worker stored');
    await resetRequests();
    const warm = await inWorker();
    assert.equal(warm.error, undefined, warm.error);
    assert.deepEqual(warm.ids, p1.greedy.tokens);
    assert.equal((await requests())[WEIGHTS] ?? 0, 0, 'no request for the weights');
  });

  test('a model that does not fit the quota: one line with the model, its size, the free space and what to do', async (t) => {
    await deleteAll(); // nothing held: the whole model must fit
    const q = await ctx.newPage();
    q.on('pageerror', (e) => pageErrors.push(e.message));
    // 1 MiB used of 1.5 MiB: 0.5 MiB free, the fixture needs 1.3 MiB.
    await q.addInitScript(() => {
      StorageManager.prototype.estimate = async () => ({ usage: 1 << 20, quota: 3 << 19 });
    });
    await q.goto(`${base}models/`);
    await resetRequests();
    const r = await q.evaluate(async () => {
      const m = await (globalThis as unknown as LibHost).openelmLib();
      try {
        await m.loadModel('/models/tiny/', { storage: 'opfs' });
        return { error: undefined as string | undefined, name: '' };
      } catch (e) {
        return { error: (e as Error).message, name: (e as Error).name };
      }
    });
    const msg = r.error ?? '';
    assert.equal(r.name, 'QuotaError');
    assert.doesNotMatch(msg, /\n/, 'one line');
    assert.match(msg, new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}models/tiny/ does not fit in this browser's storage: its files take 1\\.3 MiB \\(.* already stored\\), .* more is needed but only 512\\.0 KiB is free \\(this site uses 1\\.0 MiB of 1\\.5 MiB\\)\\.`));
    assert.match(msg, /deleteStoredModel\(url\).*storage: 'none'/);
    t.diagnostic(`quota message: ${msg}`);
    // With storage: 'none' the same page loads it.
    const none = await q.evaluate(async (ids) => {
      const m = await (globalThis as unknown as LibHost).openelmLib();
      const model = await m.loadModel('/models/tiny/', { storage: 'none' });
      const out = (await model.generateText(ids, { maxNewTokens: 16 })).ids as number[];
      model.dispose();
      return out;
    }, p1.input_ids as number[]);
    assert.deepEqual(none, p1.greedy.tokens);
    await q.close();
  });

  test('without OPFS and the Cache API: the check page says exactly what is missing, and auto loads without storing', async (t) => {
    const p = await ctx.newPage();
    p.on('pageerror', (e) => pageErrors.push(e.message));
    await p.addInitScript(() => {
      delete (StorageManager.prototype as Partial<StorageManager>).getDirectory;
      delete (globalThis as { caches?: CacheStorage }).caches;
    });
    await p.goto(`${base}demo/gpu.html`);
    await p.waitForFunction(() => (globalThis as unknown as { openelmDoctor?: { features?: unknown } }).openelmDoctor?.features !== undefined);
    const features = await p.evaluate(() => (globalThis as unknown as { openelmDoctor: { features: { name: string; ok: boolean; required: boolean; detail: string }[] } }).openelmDoctor.features);
    const byName = new Map(features.map((f) => [f.name, f]));
    assert.equal(byName.get('WebGPU (navigator.gpu)')?.ok, true);
    assert.equal(byName.get('Secure context')?.ok, true);
    assert.equal(byName.get('Origin Private File System')?.ok, false);
    assert.match(byName.get('Origin Private File System')!.detail, /no Origin Private File System \(navigator\.storage\.getDirectory\); with no Cache API either, models are not stored/);
    assert.equal(byName.get('Cache API')?.ok, false);
    assert.equal(byName.get('shader-f16')?.required, false, 'shader-f16 is optional: f16 weights are unpacked in the shaders');
    assert.match((await p.locator('#features-summary').textContent()) ?? '', /^Missing here: (shader-f16, )?Origin Private File System, Cache API\.$/);
    assert.equal(await p.locator('#features tr[data-feature="Cache API"] td.no').count(), 1);
    mkdirSync(SHOTS, { recursive: true });
    await p.screenshot({ path: join(SHOTS, 'features-missing-storage.png'), fullPage: true });
    t.diagnostic(`screenshot: ${join(SHOTS, 'features-missing-storage.png')}`);
    const r = await p.evaluate(async (ids) => {
      const m = await (globalThis as unknown as LibHost).openelmLib();
      let storage: { kind: string; reason?: string } | undefined;
      const model = await m.loadModel('/models/tiny/', { onLoadProgress: (e) => (storage ??= e.storage) });
      const out = (await model.generateText(ids, { maxNewTokens: 16 })).ids;
      model.dispose();
      return { out, storage };
    }, p1.input_ids as number[]);
    assert.deepEqual(r.out, p1.greedy.tokens);
    assert.equal(r.storage?.kind, 'none');
    assert.match(r.storage?.reason ?? '', /no Origin Private File System.*no Cache API.*not stored/);
    await p.close();
  });

  test('no uncaught page errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});
