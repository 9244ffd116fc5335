// The logprob kernel (log-softmax gathered at a target, plus the greedy flag) against its float64
// CPU reference: odd vocab sizes and row counts, offsets, ties, large magnitudes, -Infinity.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { logprobDispatch, logprobRef } from '../../kernels/logprob.ts';
import { releaseDispatches, runDispatches } from '../../src/gpu/dispatch.ts';
import type { Gpu } from '../../src/gpu/gpu.ts';
import { assertClose, randInt, randn, rng, testGpu } from '../helpers.ts';

async function gpuLogprob(gpu: Gpu, logits: Float32Array, n: number, targets: number[], offset: number) {
  const lb = gpu.upload('logits', logits);
  const tb = gpu.upload('targets', new Uint32Array(targets));
  const ob = gpu.upload('out', new Float32Array(targets.length * 2).fill(NaN));
  const d = logprobDispatch(gpu, { n, rows: targets.length, offset, logits: lb, targets: tb, out: ob });
  runDispatches(gpu, [d]);
  const out = await gpu.readF32(ob, targets.length * 2);
  releaseDispatches(gpu, [d]);
  for (const b of [lb, tb, ob]) gpu.destroyBuffer(b);
  return { logprob: out.filter((_, i) => i % 2 === 0), greedy: Array.from(out.filter((_, i) => i % 2 === 1)) };
}

test('logprobRef: a hand-computed row', () => {
  // logits [0, ln 3]: softmax = [1/4, 3/4].
  const r = logprobRef(new Float64Array([9, 0, Math.log(3)]), 2, [0], 1);
  assert.ok(Math.abs(r.logprob[0] - Math.log(0.25)) < 1e-12);
  assert.equal(r.greedy[0], 0);
  const s = logprobRef(new Float64Array([0, Math.log(3)]), 2, [1]);
  assert.ok(Math.abs(s.logprob[0] - Math.log(0.75)) < 1e-12);
  assert.equal(s.greedy[0], 1);
  // Ties: the lowest index is the greedy one.
  const t = logprobRef(new Float64Array([5, 1, 5, 5]), 4, [0]);
  assert.equal(t.greedy[0], 1);
  assert.equal(logprobRef(new Float64Array([5, 1, 5, 5]), 4, [2]).greedy[0], 0);
  assert.ok(Math.abs(t.logprob[0] - Math.log(Math.exp(5) / (3 * Math.exp(5) + Math.exp(1)))) < 1e-12);
});

test('logprob kernel matches the CPU reference on random odd shapes with offsets', async () => {
  const gpu = await testGpu();
  const r = rng(1201);
  const shapes: [number, number, number, number][] = [
    // [n, rows, offset, scale]
    [1, 1, 0, 1],
    [2, 3, 5, 1],
    [255, 7, 0, 3],
    [257, 5, 11, 3],
    [1000, 9, 3, 10],
    [4099, 3, 1, 5],
    [32000, 5, 0, 4],
    [50257, 2, 7, 4],
  ];
  for (let c = 0; c < 6; c++) shapes.push([randInt(r, 2, 3000) | 1, randInt(r, 1, 6) * 2 + 1, randInt(r, 0, 40), 1 + 20 * r()]);
  for (const [n, rows, offset, scale] of shapes) {
    const logits = randn(r, offset + rows * n + 2, scale);
    const targets = Array.from({ length: rows }, () => randInt(r, 0, n - 1));
    // Make some targets the greedy choice so both flag values are exercised.
    for (let i = 0; i < rows; i += 2) logits[offset + i * n + targets[i]] = 1000;
    const want = logprobRef(logits, n, targets, offset);
    const got = await gpuLogprob(gpu, logits, n, targets, offset);
    assertClose(got.logprob, want.logprob, 2e-4, 2e-5, `n=${n} rows=${rows} offset=${offset} logprob`);
    assert.deepEqual(got.greedy, Array.from(want.greedy), `n=${n} rows=${rows} greedy`);
  }
});

test('logprob kernel: ties go to the lowest index, large magnitudes and -Infinity stay finite', async () => {
  const gpu = await testGpu();
  const r = rng(1213);
  const n = 777;
  const rows = 5;
  const logits = randn(r, rows * n, 2);
  // Row 0: max tied at 100, 300, 700; target 100 (greedy). Row 1: same ties, target 300 (not greedy).
  for (const row of [0, 1]) for (const i of [700, 100, 300]) logits[row * n + i] = 50;
  // Row 2: magnitudes near 1e4 (f32 spacing there is 1e-3), target far below the max.
  for (let i = 0; i < n; i++) logits[2 * n + i] = 1e4 + 30 * (r() - 0.5);
  // Row 3: -Infinity everywhere but a few entries; target a finite one.
  for (let i = 0; i < n; i++) logits[3 * n + i] = i % 5 === 0 ? r() * 3 : -Infinity;
  // Row 4: all equal; target the last index (uniform probability, not greedy).
  for (let i = 0; i < n; i++) logits[4 * n + i] = -7.5;
  const targets = [100, 300, 17, 10, n - 1];
  const want = logprobRef(logits, n, targets);
  const got = await gpuLogprob(gpu, logits, n, targets, 0);
  assert.deepEqual(Array.from(want.greedy), [1, 0, 0, 0, 0]);
  assert.deepEqual(got.greedy, [1, 0, 0, 0, 0]);
  assert.ok(got.logprob.every(Number.isFinite), `finite: ${Array.from(got.logprob)}`);
  assertClose(got.logprob, want.logprob, 2e-3, 2e-5, 'logprob');
  assert.ok(Math.abs(got.logprob[4] + Math.log(n)) < 1e-4);
  // The greedy flag follows the argmax when it is the target at a row other than the first.
  const greedyRow = await gpuLogprob(gpu, logits, n, [700, 300, 17, 0, 0], 0);
  assert.deepEqual(greedyRow.greedy.slice(0, 2), [0, 0]);
  assert.equal(greedyRow.greedy[4], 1);
});
