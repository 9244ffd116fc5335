// The evaluation page (demo/eval.html) in headless Chromium: the synthetic Llama-vocabulary model,
// a small ARC JSONL served by the demo server, autorun; the page's JSON must equal what
// `openelm eval --json` prints for the same model, task and data.
// Needs `npm run build` (dist/browser, demo/dist) first; `npm test` does that.
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BrowserContext } from 'playwright-core';
import { assertClose, repoRoot } from '../helpers.ts';
import { CHROMIUM, startDemoServer, launchChromium } from '../browser-session.ts';

const skip = !existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM}` : !existsSync(join(repoRoot, 'demo/dist/eval.js')) ? 'no demo/dist/eval.js: run npm run build' : false;

describe('evaluation page in headless Chromium', { skip, timeout: 300_000 }, () => {
  let server: ChildProcess;
  let base = '';
  let ctx: BrowserContext;
  const tmp = mkdtempSync(join(tmpdir(), 'openelm-eval-page-'));
  const synth = join(tmp, 'synth-small');

  before(async () => {
    const rows = [
      { question: 'Which is a gas?', choices: { text: ['ice', 'steam', 'rock', 'wood'], label: ['A', 'B', 'C', 'D'] }, answerKey: 'B' },
      { question: 'What does a plant need?', choices: { text: ['light', 'café ☕', 'sand'], label: ['A', 'B', 'C'] }, answerKey: 'A' },
      { question: 'Where is the sun?', choices: { text: ['in the sky', 'under the ground'], label: ['A', 'B'] }, answerKey: 'A' },
    ];
    ({ server, base } = await startDemoServer([], { OPENELM_DEMO_SYNTH: synth }));
    // The data goes beside the model the server made, so /models/synth-small/arc.jsonl serves it.
    writeFileSync(join(synth, 'arc.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    ctx = await launchChromium(join(tmp, 'profile'));
  });

  after(async () => {
    await ctx?.close();
    server?.kill();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('autorun on a JSONL URL: summary table, items, download link; the same numbers as openelm eval --json', async () => {
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${base}demo/eval.html?model=/models/synth-small/&task=arc_easy&data=/models/synth-small/arc.jsonl&cache=0&autorun=1`);
    await page.waitForFunction(() => {
      const s = (globalThis as unknown as { openelmEval?: { result?: unknown; error?: string } }).openelmEval;
      return !!s && (s.result !== undefined || s.error !== undefined);
    }, undefined, { timeout: 240_000 });
    const state = await page.evaluate(() => {
      const s = (globalThis as unknown as { openelmEval: { result?: { n: number; acc: number; items: { loglikelihoods: number[]; pred: number; pred_norm: number; gold: number }[] }; error?: string } }).openelmEval;
      return { result: s.result, error: s.error };
    });
    assert.equal(state.error, undefined);
    assert.deepEqual(errors, []);
    const r = state.result!;
    assert.equal(r.n, 3);
    assert.ok(await page.locator('#summary table').isVisible());
    assert.equal(await page.locator('#items tbody tr').count(), 3);
    assert.equal(await page.locator('#download').getAttribute('download'), 'eval-arc_easy.json');
    const cli = spawnSync(process.execPath, [join(repoRoot, 'bin/openelm.js'), 'eval', '--model', synth, '--task', 'arc_easy', '--data', join(synth, 'arc.jsonl'), '--json'], { encoding: 'utf8', timeout: 240_000 });
    assert.equal(cli.status, 0, cli.stderr);
    const want = JSON.parse(cli.stdout) as typeof r;
    r.items.forEach((it, i) => {
      assertClose(it.loglikelihoods, want.items[i].loglikelihoods, 1e-3, 0, `item ${i}`);
      assert.equal(it.gold, want.items[i].gold);
    });
    assert.equal(r.acc, want.acc);
  });
});
