// A manual measurement, skipped unless OPENELM_BROWSER_TTFT_MODEL names a model folder: time from
// page load to the first generated token in headless Chromium, cold (fresh profile, weights over
// HTTP) and cached (a reload, weights from the browser's storage: OPFS or the Cache API, as
// OPENELM_BROWSER_TTFT_STORAGE=auto|opfs|cache says), plus the weight requests each made.
// The page runs the model in its Web Worker (createWorkerModel); OPENELM_BROWSER_TTFT_WORKER=0
// measures it on the page's thread instead.
//
//   node bin/openelm.js synth --size 270M --out /tmp/synth270
//   npm run build && OPENELM_BROWSER_TTFT_MODEL=/tmp/synth270 node scripts/run-tests.mjs browser-ttft
//
// Prints the figures as test diagnostics; asserts only that generation worked.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CHROMIUM, startDemoServer, launchChromium } from '../browser-session.ts';

const MODEL = process.env.OPENELM_BROWSER_TTFT_MODEL;
const DTYPE = process.env.OPENELM_BROWSER_TTFT_DTYPE ?? 'f16';
const WORKER = process.env.OPENELM_BROWSER_TTFT_WORKER === '0' ? '0' : '1';
const STORAGE = process.env.OPENELM_BROWSER_TTFT_STORAGE ?? 'auto';

test('page load to first token, cold and cached', { skip: MODEL ? (existsSync(CHROMIUM) ? false : `no ${CHROMIUM}`) : 'set OPENELM_BROWSER_TTFT_MODEL=DIR to measure', timeout: 1_800_000 }, async (t) => {
  const { server, base } = await startDemoServer(['--model', `m=${MODEL}`]);
  const profile = mkdtempSync(join(tmpdir(), 'openelm-ttft-'));
  try {
    const ctx = await launchChromium(profile);
    try {
      const page = await ctx.newPage();
      const reqs = async (reset = false) => (await (await fetch(`${base}__demo/requests`, { method: reset ? 'POST' : 'GET' })).json()) as Record<string, number>;
      const measure = async (label: string, go: () => Promise<unknown>) => {
        await reqs(true);
        await go();
        await page.waitForFunction(() => ((globalThis as unknown as { openelmDemo?: { state: { runs: number } } }).openelmDemo?.state.runs ?? 0) >= 1, null, { timeout: 1_700_000 });
        const s = await page.evaluate(() => {
          const st = (globalThis as unknown as { openelmDemo: { state: { pageToFirstTokenMs?: number; loadMs?: number; error?: string; lastRun?: { ids: number[]; stats: { prefill_ms: number }; gpuBytes: number } } } }).openelmDemo.state;
          return { ttft: st.pageToFirstTokenMs, load: st.loadMs, error: st.error, ids: st.lastRun?.ids, prefill: st.lastRun?.stats.prefill_ms, gpu: st.lastRun?.gpuBytes };
        });
        assert.equal(s.error, undefined, s.error);
        assert.ok(s.ids && s.ids.length > 0);
        const r = await reqs();
        const line = `${label} (${WORKER === '1' ? 'worker' : 'page thread'}): page load to first token ${s.ttft?.toFixed(0)} ms (model load ${s.load?.toFixed(0)} ms, prefill incl. shader compilation ${s.prefill?.toFixed(0)} ms), weight requests ${r['/models/m/model.safetensors'] ?? 0}, GPU ${((s.gpu ?? 0) / 2 ** 20).toFixed(0)} MiB, ids ${s.ids?.join(',')}`;
        t.diagnostic(line);
        console.log(line);
        return s;
      };
      const url = `${base}demo/?model=/models/m/&ids=1,5,9&max_new_tokens=2&dtype=${DTYPE}&worker=${WORKER}&autorun=1`;
      const cold = await measure(`cold (storage=${STORAGE})`, () => page.goto(`${url}&storage=${STORAGE}`));
      const warm = await measure(`stored (storage=${STORAGE})`, () => page.reload());
      assert.deepEqual(warm.ids, cold.ids);
      // For comparison: over the network again, storing nothing.
      const uncached = await measure('network, storage=none', () => page.goto(url + '&storage=none'));
      assert.deepEqual(uncached.ids, cold.ids);
    } finally {
      await ctx.close();
    }
  } finally {
    server.kill();
    rmSync(profile, { recursive: true, force: true });
  }
});
