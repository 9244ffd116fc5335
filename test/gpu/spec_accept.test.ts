// Speculative sampling's kernels: the sampler's distribution output (DIST) and the acceptance rule,
// each against its CPU reference on random odd shapes; then the rule's output distribution
// against the target distribution (it must equal P whatever Q is).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { releaseDispatches, runDispatches } from '../../src/gpu/dispatch.ts';
import { keptWeightsRef, sampleDispatch, sampleRef, type SamplingParams } from '../../kernels/sample.ts';
import { specAcceptDispatch, specAcceptRef } from '../../kernels/spec_accept.ts';
import { randInt, randn, rng, testGpu } from '../helpers.ts';

const STORAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

test('sampler DIST output equals the CPU kept weights, draws what sampleRef draws and leaves seen alone', async () => {
  const gpu = await testGpu();
  const r = rng(3);
  for (let c = 0; c < 24; c++) {
    const n = randInt(r, 1, 5000);
    const offset = randInt(r, 0, 7);
    const distOffset = randInt(r, 0, 9);
    const logits = randn(r, offset + n, 1 + 3 * r());
    const seen = new Uint32Array(n);
    for (let i = 0; i < n; i++) seen[i] = r() < 0.05 ? 1 : 0;
    const params: SamplingParams = {
      doSample: true,
      temperature: 0.3 + 1.5 * r(),
      topK: r() < 0.5 ? randInt(r, 1, n + 3) : 0,
      topP: r() < 0.5 ? 0.2 + 0.8 * r() : 1,
      repetitionPenalty: r() < 0.5 ? 1.3 : 1,
    };
    const u = r();
    const lb = gpu.upload('logits', logits);
    const sb = gpu.upload('seen', seen);
    const rb = gpu.upload('u', new Float32Array([u]));
    const ob = gpu.createBuffer('out', 4, STORAGE());
    const db = gpu.createBuffer('dist', (distOffset + n) * 4, STORAGE());
    const d = sampleDispatch(gpu, { n, offset, logits: lb, seen: sb, random: rb, out: ob, params, dist: { buffer: db, offset: distOffset } });
    await runDispatches(gpu, [d]);
    const got = await gpu.readF32(db, n, distOffset);
    const want = keptWeightsRef(logits.subarray(offset), seen, params);
    for (let i = 0; i < n; i++) assert.equal(got[i], want[i], `case ${c}: weight ${i} (n ${n})`);
    assert.equal((await gpu.readU32(ob, 1))[0], sampleRef(logits.subarray(offset), seen, u, params), `case ${c}: the draw`);
    assert.deepEqual(await gpu.readU32(sb, n), seen, `case ${c}: seen unchanged`);
    releaseDispatches(gpu, [d]);
    for (const b of [lb, sb, rb, ob, db]) gpu.destroyBuffer(b);
  }
});

/** Random kept weights: 1 at a max, exp-like values elsewhere, some zeros (dropped by top-k/p). */
function weights(r: () => number, n: number, zeros: number): Float32Array {
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = r() < zeros ? 0 : Math.fround(Math.exp(-4 * r()));
  w[Math.floor(r() * n)] = 1;
  return w;
}

/** Draws an index of non-negative weights in float64 (the draft model's draw, for the CPU runs). */
function pickFrom(w: Float32Array, u: number): number {
  let total = 0;
  for (const v of w) total += v;
  let run = 0;
  for (let i = 0; i < w.length; i++) {
    run += w[i];
    if (w[i] > 0 && run > u * total) return i;
  }
  let last = -1;
  for (let i = 0; i < w.length; i++) if (w[i] > 0) last = i;
  return last;
}

test('speculative acceptance matches its CPU reference on random odd shapes', async () => {
  const gpu = await testGpu();
  const r = rng(5);
  let rejected = 0;
  for (let c = 0; c < 30; c++) {
    const n = randInt(r, 1, 3000);
    const k = randInt(r, 1, 7);
    const p = new Float32Array((k + 1) * n);
    const q = new Float32Array(k * n);
    const drafts: number[] = [];
    for (let j = 0; j <= k; j++) p.set(weights(r, n, r() * 0.6), j * n);
    for (let j = 0; j < k; j++) {
      // Some rows equal (always accepted), some unrelated.
      const row = c % 3 === 0 ? p.slice(j * n, j * n + n) : weights(r, n, r() * 0.6);
      q.set(row, j * n);
      drafts.push(pickFrom(row, r()));
    }
    const random = Array.from({ length: k + 1 }, () => r());
    const bufs = {
      p: gpu.upload('p', p),
      q: gpu.upload('q', q),
      drafts: gpu.upload('drafts', new Uint32Array(drafts)),
      random: gpu.upload('random', new Float32Array(random)),
      out: gpu.createBuffer('out', 8, STORAGE()),
      scratch: gpu.createBuffer('scratch', n * 4, STORAGE()),
    };
    const d = specAcceptDispatch(gpu, { n, k, ...bufs });
    await runDispatches(gpu, [d]);
    const [accepted, id] = await gpu.readU32(bufs.out, 2);
    const want = specAcceptRef(p, q, drafts, random, n);
    assert.deepEqual({ accepted, id }, want, `case ${c}: n ${n}, k ${k}`);
    assert.ok(id < n && (p[want.accepted * n + id] > 0 || want.accepted < k), `case ${c}: the token has weight`);
    if (c % 3 === 0) assert.equal(accepted, k, `case ${c}: Q = P accepts every draft`);
    if (accepted < k) rejected++;
    releaseDispatches(gpu, [d]);
    for (const b of Object.values(bufs)) gpu.destroyBuffer(b);
  }
  assert.ok(rejected > 5, 'rejections were exercised');
  const gpuBuf = gpu.createBuffer('x', 64, STORAGE());
  assert.throws(() => specAcceptDispatch(gpu, { n: 4, k: 2, p: gpuBuf, q: gpuBuf, drafts: gpuBuf, random: gpuBuf, out: gpuBuf, scratch: gpuBuf }), /out and scratch/);
  assert.throws(() => specAcceptDispatch(gpu, { n: 40, k: 2, p: gpuBuf, q: gpuBuf, drafts: gpuBuf, random: gpuBuf, out: gpuBuf, scratch: gpuBuf }), /p buffer holds 64 bytes/);
  gpu.destroyBuffer(gpuBuf);
});

/** Pearson's chi-square of observed counts against probabilities. */
function chiSquare(counts: number[], probs: number[], trials: number): number {
  return counts.reduce((a, c, i) => a + (c - trials * probs[i]) ** 2 / (trials * probs[i]), 0);
}

test('the acceptance rule keeps the target distribution, whatever the draft distribution', () => {
  const r = rng(9);
  const n = 6;
  const P = Float32Array.from([0.05, 0.3, 0.1, 0.25, 0.2, 0.1].map((v) => v * 4)); // unnormalised
  const Q = Float32Array.from([0.4, 0.05, 0.3, 0.05, 0, 0.2]);
  const probs = [...P].map((v) => v / P.reduce((a, b) => a + b, 0));
  const trials = 40000;
  // First emitted token with one draft (row 0 of p is the target, row 1 the bonus row).
  const p = new Float32Array(2 * n);
  p.set(P, 0);
  p.set(Q, n); // a different bonus row: it must not leak into the first token
  const counts = new Array(n).fill(0);
  const qCounts = new Array(n).fill(0);
  for (let t = 0; t < trials; t++) {
    const d = pickFrom(Q, r());
    qCounts[d]++;
    const { accepted, id } = specAcceptRef(p, Q, [d], [r(), r()], n);
    counts[accepted === 1 ? d : id]++;
  }
  // 5 degrees of freedom: P(chi2 > 20.5) = 0.001.
  const x2 = chiSquare(counts, probs, trials);
  assert.ok(x2 < 20.5, `chi-square ${x2.toFixed(1)} against P: ${counts.join(',')}`);
  // The same test has the power to tell the draft distribution apart.
  assert.ok(chiSquare(qCounts, probs, trials) > 1000, 'the draft distribution alone would fail');
});
