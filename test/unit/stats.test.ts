// The order statistics and the repeat-and-measure loop that the engine's tuning, the bench harness
// and the tests share (src/util/stats.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { median, quantile, repeat } from '../../src/util/stats.ts';

test('median and quantile: odd and even counts, any order, interpolation between neighbours', () => {
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
  assert.equal(quantile([10, 20, 30, 40, 50], 0.25), 20);
  assert.equal(quantile([0, 10], 0.25), 2.5);
  assert.equal(quantile([0, 10], 1), 10);
  assert.throws(() => median([]), /no values/);
});

test('repeat: warm-up runs are not samples; the budget stops early; a slow warm-up is the only sample', async () => {
  const times = [9, 1, 2, 3, 4, 5];
  let i = 0;
  const next = () => Promise.resolve(times[i++]);
  const a = await repeat(next, { warmup: 1, runs: 4 });
  assert.deepEqual(a, { samples: [1, 2, 3, 4], warmupUsed: false, firstMs: 9 });
  i = 1;
  const b = await repeat(next, { warmup: 0, runs: 5, budgetMs: 5 }); // 1 + 2 + 3 passes 5
  assert.deepEqual(b.samples, [1, 2, 3]);
  i = 0;
  const c = await repeat(next, { warmup: 1, runs: 5, budgetMs: 8 });
  assert.deepEqual(c, { samples: [9], warmupUsed: true, firstMs: 9 });
});
