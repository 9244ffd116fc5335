// The "Check this GPU" demo page in headless Chromium (playwright-core driving /usr/bin/chromium
// with --enable-unsafe-webgpu, SwiftShader underneath): runDoctor from the browser bundle passes,
// the table shows one row per check, the download link holds the report as JSON, and the GEMV
// choice it times is remembered in localStorage for the next run.
// Needs `npm run build` (dist/browser, demo/dist) first.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BrowserContext } from 'playwright-core';
import type { DoctorReport } from '../../src/doctor/doctor.ts';
import { repoRoot } from '../helpers.ts';
import { CHROMIUM, startDemoServer, launchChromium } from '../browser-session.ts';

const skip = !existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM}` : !existsSync(join(repoRoot, 'demo/dist/gpu.js')) ? 'no demo/dist/gpu.js: run npm run build' : false;

describe('the Check this GPU page', { skip, timeout: 300_000 }, () => {
  let server: ChildProcess;
  let base = '';
  let ctx: BrowserContext;
  let profile = '';

  before(async () => {
    ({ server, base } = await startDemoServer([]));
    profile = mkdtempSync(join(tmpdir(), 'openelm-chromium-'));
    ctx = await launchChromium(profile);
  });

  after(async () => {
    await ctx?.close();
    server?.kill();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  test('runs the doctor in the browser: a row per check, all passing, a JSON download', async () => {
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${base}demo/gpu.html?only=attention,embedding,argmax,sample&autorun=1`);
    await page.waitForFunction(
      () => {
        const d = (globalThis as unknown as { openelmDoctor?: { report?: unknown; error?: string } }).openelmDoctor;
        return d?.report !== undefined || d?.error !== undefined;
      },
      null,
      { timeout: 240_000 },
    );
    const d = await page.evaluate(() => (globalThis as unknown as { openelmDoctor: { report?: DoctorReport; error?: string } }).openelmDoctor);
    assert.equal(d.error, undefined, d.error);
    const r = d.report!;
    assert.deepEqual([...new Set(r.checks.map((c) => c.name))].sort(), ['argmax', 'attention', 'embedding', 'sample']);
    assert.deepEqual(r.checks.filter((c) => !c.pass).map((c) => `${c.name} ${c.variant} ${c.format}`), []);
    assert.ok(r.model_check.pass, JSON.stringify(r.model_check.dtypes));
    assert.equal(await page.locator('#results tbody tr').count(), r.checks.length);
    assert.match((await page.locator('#summary').textContent()) ?? '', /^PASS: /);
    const downloaded = await page.evaluate(async () => {
      const a = document.getElementById('download') as HTMLAnchorElement;
      return { name: a.download, json: (await (await fetch(a.href)).json()) as unknown };
    });
    assert.equal(downloaded.name, 'openelm-doctor.json');
    assert.deepEqual(downloaded.json, JSON.parse(JSON.stringify(r)));
    assert.deepEqual(errors, []);
    await page.close();
  });

  // Runs after the test above in the same profile: its GEMV timing is in localStorage.
  test('the GEMV choice timed by the run above is remembered in localStorage; retune=1 times it again', async () => {
    const run = async (query: string) => {
      const page = await ctx.newPage();
      await page.goto(`${base}demo/gpu.html?only=argmax&autorun=1${query}`);
      await page.waitForFunction(() => {
        const d = (globalThis as unknown as { openelmDoctor?: { report?: unknown; error?: string } }).openelmDoctor;
        return d?.report !== undefined || d?.error !== undefined;
      }, null, { timeout: 240_000 });
      const d = await page.evaluate(() => (globalThis as unknown as { openelmDoctor: { report?: DoctorReport; error?: string } }).openelmDoctor);
      const item = await page.evaluate(() => localStorage.getItem('openelm-webgpu-tuning'));
      await page.close();
      assert.equal(d.error, undefined, d.error);
      return { choices: d.report!.choices, item };
    };
    const again = await run('');
    assert.equal(again.choices.gemv.remembered, true, again.choices.gemv.why);
    assert.equal(again.choices.tuning.value, 'localStorage');
    // The model check loads f32 and the page's default f16: a record each.
    assert.deepEqual(again.choices.tuning.remembered.map((r) => `${r.decision} ${r.shape.split(':')[0]}`).sort(), ['gemv f16', 'gemv f32']);
    assert.match(again.item ?? '', /"decision": "gemv"/);
    const retuned = await run('&retune=1');
    assert.equal(retuned.choices.gemv.remembered, false);
    assert.notEqual(retuned.choices.gemv.measured_at, again.choices.gemv.measured_at);
  });
});
