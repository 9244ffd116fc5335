// A compact checkpoint (openelm convert) in the browser: the demo server lists it with its format
// and size, the demo page offers it as a compact preset that selects its format, loads it over
// HTTP, generates the same tokens as the float folder quantized on load, and reports download
// size, load time and peak memory (window.openelmDemo.state.load).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { convertCheckpoint } from '../../src/convert/compact.ts';
import { fixtureDir, repoRoot } from '../helpers.ts';
import { CHROMIUM, startDemoServer } from '../browser-session.ts';

const skip = !existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM}` : !existsSync(join(repoRoot, 'demo/dist/app.js')) ? 'run npm run build first' : false;
const root = mkdtempSync(join(tmpdir(), 'openelm-compact-browser-'));
after(() => rmSync(root, { recursive: true, force: true }));

interface DemoState {
  runs: number;
  error?: string;
  model?: { dtype: string };
  lastRun?: { ids: number[] };
  load?: { load_ms: number; download_bytes: number; weight_file_bytes: number; peak_js_heap_bytes?: number; gpu_bytes_after_load: number; peak_gpu_bytes: number };
}

test('the demo offers a compact preset, loads it in its format and reports the load figures', { skip, timeout: 600_000 }, async () => {
  const tiny = fixtureDir('tiny-elm');
  const q4 = join(root, 'tiny-q4');
  await convertCheckpoint(tiny, q4, { format: 'q4' });
  const { startDemoServer } = (await import(join(repoRoot, 'scripts/demo.mjs'))) as {
    startDemoServer: (o: { port: number; models: Record<string, string> }) => Promise<{ url: string; close: () => Promise<void> }>;
  };
  const server = await startDemoServer({ port: 0, models: { tiny, 'tiny-q4': q4 } });
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--enable-unsafe-webgpu', '--enable-precise-memory-info', '--no-first-run', '--no-sandbox'] });
  try {
    const list = (await (await fetch(`${server.url}models/`)).json()) as { name: string; format?: string; bytes: number }[];
    const entry = list.find((m) => m.name === 'tiny-q4');
    assert.equal(entry?.format, 'q4');
    assert.equal(entry?.bytes, statSync(join(q4, 'model.safetensors')).size + statSync(join(q4, 'config.json')).size);
    assert.equal(list.find((m) => m.name === 'tiny')?.format, undefined);

    const page = await (await browser.newContext()).newPage();
    const run = async (query: string): Promise<DemoState> => {
      await page.goto(`${server.url}demo/?${query}&ids=1,357,111&max_new_tokens=3&cache=0&autorun=1`);
      await page.waitForFunction(() => ((globalThis as unknown as { openelmDemo?: { state: DemoState } }).openelmDemo?.state.runs ?? 0) >= 1, null, { timeout: 300_000 });
      return page.evaluate(() => {
        const st = (globalThis as unknown as { openelmDemo: { state: DemoState } }).openelmDemo.state;
        return { runs: st.runs, error: st.error, model: st.model && { dtype: st.model.dtype }, lastRun: st.lastRun && { ids: st.lastRun.ids }, load: st.load };
      });
    };
    // The compact preset: no dtype in the query, the preset selects q4.
    const compact = await run('model=/models/tiny-q4/');
    assert.equal(compact.error, undefined, compact.error);
    const label = await page.$eval('#preset', (s) => (s as HTMLSelectElement).selectedOptions[0].textContent);
    assert.match(label ?? '', /^tiny-q4 \(compact q4 checkpoint, [\d.]+ [KMG]i?B\)$/);
    assert.equal(compact.model?.dtype, 'q4');
    const l = compact.load!;
    const weights = statSync(join(q4, 'model.safetensors')).size;
    assert.equal(l.weight_file_bytes, weights);
    assert.ok(l.download_bytes >= weights && l.download_bytes < weights + 64 * 1024, `downloaded ${l.download_bytes} for ${weights} bytes of weights`);
    assert.ok(l.load_ms > 0);
    assert.ok(l.peak_js_heap_bytes !== undefined && l.peak_js_heap_bytes > 0, 'performance.memory in Chromium');
    assert.ok(l.gpu_bytes_after_load > 0 && l.peak_gpu_bytes >= l.gpu_bytes_after_load);
    assert.match(await page.$eval('#stat-load', (e) => e.textContent ?? ''), /ms; downloaded .* \(weights .*\); peak JS heap .*; GPU .* \(peak .*\)$/);

    const float = await run('model=/models/tiny/&dtype=q4');
    assert.equal(float.error, undefined, float.error);
    assert.deepEqual(compact.lastRun?.ids, float.lastRun?.ids, 'same tokens as q4 quantized on load');
    assert.ok(float.load!.download_bytes > 3 * l.download_bytes, `float ${float.load!.download_bytes}, compact ${l.download_bytes}`);
  } finally {
    await browser.close();
    await server.close();
  }
});
