// Loading and disposing a model many times in one process must not grow it without bound. Each
// load used to create a Dawn instance that lives for the rest of the process (about 2 MiB a load
// here); now one instance serves every device. Measured in a child process with --expose-gc, the
// RSS after each cycle, fitted over the cycles after a warm-up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtureDir, repoRoot } from '../helpers.ts';
import { cliEnv } from '../cli-spawn.ts';
import { median } from '../../src/util/stats.ts';

const CYCLES = 45;
const FIT = 30; // the last 30 cycles; the first 15 warm up caches (pipelines, the tokenizer, JIT)
/**
 * MiB per load/dispose cycle. Measured on SwiftShader (2 cores, shared): 2.1 before the fix (one
 * Dawn instance a load), 0.45 after (what remains is per-device state inside Dawn/SwiftShader; with
 * one device shared by every load it is 0.13). 1.2 sits between, clear of both.
 */
const MAX_SLOPE_MIB = 1.2;

const child = `
const { loadModel } = await import(process.argv[1]);
const rss = [];
for (let i = 0; i < ${CYCLES}; i++) {
  const m = await loadModel(process.argv[2], { gemv: 'rows' });
  await m.logits([1, 5, 9]);
  m.dispose();
  globalThis.gc();
  await new Promise((r) => setTimeout(r, 10));
  globalThis.gc();
  rss.push(process.memoryUsage().rss / 2 ** 20);
}
console.log(JSON.stringify(rss));
`;

/**
 * Theil-Sen slope of ys against 0, 1, 2, ...: the median of the slopes between every pair of
 * points. RSS moves in steps (the allocator maps and returns whole regions), and a least-squares
 * fit follows one step too far up or down; the median of pairwise slopes follows the trend.
 */
function slope(ys: readonly number[]): number {
  const s: number[] = [];
  for (let i = 0; i < ys.length; i++) for (let j = i + 1; j < ys.length; j++) s.push((ys[j] - ys[i]) / (j - i));
  return median(s);
}

test(`${CYCLES} load/dispose cycles of the tiny model: RSS grows less than ${MAX_SLOPE_MIB} MiB a cycle`, { timeout: 900_000 }, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'openelm-cycles-'));
  try {
    // One malloc arena that gives memory back promptly: RSS then follows live allocations instead of
    // jumping with the allocator's arenas, so the fitted slope measures what the cycles keep.
    const env = cliEnv(tmp, { MALLOC_ARENA_MAX: '1', MALLOC_TRIM_THRESHOLD_: '0' });
    const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', child, join(repoRoot, 'dist/index.js'), fixtureDir('tiny-elm')], {
      env,
      encoding: 'utf8',
      timeout: 850_000,
    });
    assert.equal(r.status, 0, `child failed (${r.signal ?? r.status}): ${r.stderr}`);
    const rss = JSON.parse(r.stdout) as number[];
    assert.equal(rss.length, CYCLES);
    const s = slope(rss.slice(-FIT));
    console.log(`# RSS MiB per cycle: ${rss.map((v) => v.toFixed(0)).join(' ')}; slope over the last ${FIT} cycles ${s.toFixed(3)} MiB/cycle`);
    assert.ok(s < MAX_SLOPE_MIB, `RSS grows ${s.toFixed(2)} MiB a cycle: ${rss.map((v) => v.toFixed(0)).join(' ')}`);
    assert.deepEqual(readdirSync(tmp), [], 'nothing left in TMPDIR');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
