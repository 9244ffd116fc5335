import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeDispatches, releaseDispatches, runDispatches, type Dispatch } from '../../src/gpu/dispatch.ts';
import { expNegRef, sampleDispatch, sampleRef, validateSampling, type SamplingParams } from '../../kernels/sample.ts';
import type { Gpu } from '../../src/gpu/gpu.ts';
import { randInt, randn, rng, testGpu } from '../helpers.ts';

const f32 = Math.fround;
const GREEDY: SamplingParams = { doSample: false, temperature: 1, topK: 50, topP: 1, repetitionPenalty: 1 };
const SAMPLE: SamplingParams = { doSample: true, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1 };

interface Batch {
  ids: number[];
  seenAfter: Uint32Array[];
}

/**
 * Runs one dispatch per u, each with its own u, out and copy of `seen`, in one compute pass, and
 * reads all ids back at once. `logits` holds n values at `offset`.
 */
async function gpuSample(
  gpu: Gpu,
  logits: Float32Array,
  n: number,
  offset: number,
  seen: Uint32Array,
  params: SamplingParams,
  us: readonly number[],
  readSeen = false,
): Promise<Batch> {
  const lb = gpu.upload('logits', logits);
  const bufs: GPUBuffer[] = [lb];
  const ds: Dispatch[] = [];
  const outs: GPUBuffer[] = [];
  const seens: GPUBuffer[] = [];
  for (const u of us) {
    const rb = gpu.upload('u', new Float32Array([u]));
    const ob = gpu.upload('out', new Uint32Array([0xdeadbeef]));
    const sb = gpu.upload('seen', seen);
    bufs.push(rb, ob, sb);
    outs.push(ob);
    seens.push(sb);
    ds.push(sampleDispatch(gpu, { n, offset, logits: lb, seen: sb, random: rb, out: ob, params }));
  }
  const res = gpu.createBuffer('ids', 4 * us.length, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC);
  bufs.push(res);
  const enc = gpu.device.createCommandEncoder({ label: 'sample test' });
  const pass = enc.beginComputePass();
  encodeDispatches(pass, ds);
  pass.end();
  outs.forEach((ob, j) => enc.copyBufferToBuffer(ob, 0, res, 4 * j, 4));
  gpu.device.queue.submit([enc.finish()]);
  const ids = [...(await gpu.readU32(res, us.length))];
  const seenAfter: Uint32Array[] = [];
  if (readSeen) for (const sb of seens) seenAfter.push(await gpu.readU32(sb, n));
  releaseDispatches(gpu, ds);
  for (const b of bufs) gpu.destroyBuffer(b);
  return { ids, seenAfter };
}

/** Hugging Face's RepetitionPenaltyLogitsProcessor then argmax, written directly. */
function hfGreedy(logits: Float32Array, seenIds: readonly number[], penalty: number): number {
  const scores = Float32Array.from(logits);
  for (const i of seenIds) {
    const s = logits[i];
    scores[i] = s < 0 ? s * penalty : s / penalty;
  }
  let best = -1;
  for (let i = 0; i < scores.length; i++) if (!Number.isNaN(scores[i]) && (best < 0 || scores[i] > scores[best])) best = i;
  return Math.max(best, 0);
}

/**
 * Hugging Face's sampling distribution written directly, in float64: penalty, temperature,
 * TopKLogitsWarper (remove < k-th largest), TopPLogitsWarper (ascending sort, remove
 * cumulative <= 1 - top_p, keep the last), softmax.
 */
function hfProbs(logits: Float32Array, seen: Uint32Array, p: SamplingParams): Float64Array {
  const n = logits.length;
  const s = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let v = logits[i];
    if (seen[i]) v = v < 0 ? v * p.repetitionPenalty : v / p.repetitionPenalty;
    s[i] = v / p.temperature;
  }
  if (p.topK > 0) {
    const kth = Float64Array.from(s).sort()[n - Math.min(p.topK, n)];
    for (let i = 0; i < n; i++) if (s[i] < kth) s[i] = -Infinity;
  }
  const softmax = (a: Float64Array): Float64Array => {
    const m = Math.max(...a);
    const e = a.map((v) => Math.exp(v - m));
    const z = e.reduce((x, y) => x + y, 0);
    return e.map((v) => v / z);
  };
  if (p.topP < 1) {
    const order = [...s.keys()].sort((a, b) => s[a] - s[b] || a - b);
    const probs = softmax(s);
    let cum = 0;
    for (let j = 0; j < n; j++) {
      cum += probs[order[j]];
      if (cum <= 1 - p.topP && j < n - 1) s[order[j]] = -Infinity;
    }
  }
  return softmax(s);
}

function randomSeen(r: () => number, n: number, density: number): Uint32Array {
  const seen = new Uint32Array(n);
  for (let i = 0; i < n; i++) if (r() < density) seen[i] = 1;
  return seen;
}

test('validateSampling names the option and the accepted range', () => {
  const ok: SamplingParams = { doSample: true, temperature: 0.7, topK: 50, topP: 0.9, repetitionPenalty: 1.1 };
  validateSampling(ok);
  validateSampling({ ...ok, doSample: false, temperature: 0 }); // temperature is ignored when greedy
  validateSampling({ ...ok, topK: 0, topP: 1 });
  const bad: [Partial<SamplingParams>, RegExp][] = [
    [{ temperature: 0 }, /temperature must be a strictly positive float/],
    [{ temperature: -1 }, /temperature/],
    [{ temperature: NaN }, /temperature/],
    [{ temperature: 1e-50 }, /temperature/], // 0 in float32
    [{ temperature: 1e-40 }, /temperature/], // subnormal in float32
    [{ repetitionPenalty: 1e-40 }, /repetition_penalty/],
    [{ topP: 0 }, /top_p must be a float in \(0, 1\]/],
    [{ topP: 1.01 }, /top_p/],
    [{ topP: NaN }, /top_p/],
    [{ topK: -1 }, /top_k must be an integer >= 0/],
    [{ topK: 2.5 }, /top_k/],
    [{ repetitionPenalty: 0 }, /repetition_penalty must be a strictly positive float/],
    [{ repetitionPenalty: -1.2 }, /repetition_penalty/],
    [{ repetitionPenalty: Infinity }, /repetition_penalty/],
  ];
  for (const [patch, re] of bad) assert.throws(() => validateSampling({ ...ok, ...patch }), re, JSON.stringify(patch));
});

test('sampleDispatch checks its buffers', async () => {
  const gpu = await testGpu();
  const logits = gpu.upload('logits', new Float32Array(100));
  const seen = gpu.upload('seen', new Uint32Array(100));
  const out = gpu.upload('out', new Uint32Array(1));
  const u = gpu.upload('u', new Float32Array(1));
  const o = { n: 100, offset: 0, logits, seen, random: u, out, params: SAMPLE };
  assert.throws(() => sampleDispatch(gpu, { ...o, n: 0 }), /n \(0\) must be a positive integer/);
  assert.throws(() => sampleDispatch(gpu, { ...o, offset: 8 }), /logits buffer holds 400 bytes, needs at least 432/);
  assert.throws(() => sampleDispatch(gpu, { ...o, n: 101, offset: 0 }), /logits buffer holds/);
  assert.throws(() => sampleDispatch(gpu, { ...o, out: seen }), /must be different buffers/);
  assert.throws(() => sampleDispatch(gpu, { ...o, random: out }), /must be different buffers/);
  assert.throws(() => sampleDispatch(gpu, { ...o, params: { ...SAMPLE, temperature: 0 } }), /temperature/);
  // Greedy does not bind `random`, so any buffer will do.
  releaseDispatches(gpu, [sampleDispatch(gpu, { ...o, random: out, params: GREEDY })]);
  for (const b of [logits, seen, out, u]) gpu.destroyBuffer(b);
});

test('expNegRef is a float32 exp (within 2 ulp) and exact at 0', () => {
  assert.equal(expNegRef(0), 1);
  assert.equal(expNegRef(-Infinity), 0);
  assert.equal(expNegRef(-86.5), 0);
  const r = rng(5);
  for (let j = 0; j < 20000; j++) {
    const x = f32(-r() * 86);
    const got = expNegRef(x);
    const want = Math.exp(x);
    assert.ok(Math.abs(got - want) <= 2 * 2 ** (Math.floor(Math.log2(want)) - 23), `exp(${x}) = ${got}, want ${want}`);
  }
});

test('greedy: repetition penalty then argmax matches Hugging Face’s rule; seen[id] is set', async () => {
  const gpu = await testGpu();
  const r = rng(71);
  const cases: [number, number][] = [[1, 0], [7, 3], [255, 0], [256, 1], [257, 0], [1000, 5], [32000, 0], [50257, 2]];
  for (const [n, offset] of cases) {
    for (const penalty of [1, 1.3, 0.7, 3]) {
      const all = randn(r, offset + n, 2);
      // Make the penalty matter: the top few logits are seen, some positive, some negative.
      if (n > 10) for (let j = 0; j < 5; j++) all[offset + randInt(r, 0, n - 1)] = 6 + r();
      const seen = randomSeen(r, n, 0.3);
      const logits = all.subarray(offset, offset + n);
      const seenIds = [...seen.keys()].filter((i) => seen[i]);
      const want = hfGreedy(logits, seenIds, f32(penalty));
      assert.equal(sampleRef(logits, seen, 0, { ...GREEDY, repetitionPenalty: penalty }), want);
      const { ids, seenAfter } = await gpuSample(gpu, all, n, offset, seen, { ...GREEDY, repetitionPenalty: penalty }, [0], true);
      assert.equal(ids[0], want, `n=${n} offset=${offset} penalty=${penalty}`);
      const expectSeen = Uint32Array.from(seen);
      expectSeen[want] = 1;
      assert.deepEqual(seenAfter[0], expectSeen);
    }
  }
  // All logits negative and seen: penalty > 1 pushes them down (x * p), so an unseen one wins.
  const neg = Float32Array.from([-1, -2, -1.5, -1.2]);
  const seen = Uint32Array.from([1, 0, 0, 0]);
  assert.equal(hfGreedy(neg, [0], 1.5), 3);
  assert.equal((await gpuSample(gpu, neg, 4, 0, seen, { ...GREEDY, repetitionPenalty: 1.5 }, [0])).ids[0], 3);
  // Ties go to the lowest id, NaN never wins.
  const ties = Float32Array.from([NaN, 1, 5, NaN, 5, 2.5]);
  assert.equal((await gpuSample(gpu, ties, 6, 0, new Uint32Array(6), GREEDY, [0])).ids[0], 2);
  // Penalised 10 / 2 = 5 ties with an unseen 5 at a higher id: the lower id wins.
  const pt = Float32Array.from([1, 10, 5]);
  assert.equal((await gpuSample(gpu, pt, 3, 0, Uint32Array.from([0, 1, 0]), { ...GREEDY, repetitionPenalty: 2 }, [0])).ids[0], 1);
  assert.equal((await gpuSample(gpu, new Float32Array(300).fill(NaN), 300, 0, new Uint32Array(300), GREEDY, [0])).ids[0], 0);
});

/** Random logits of several shapes: gaussian, coarse (many ties), with -Inf and NaN entries. */
function makeLogits(r: () => number, n: number, kind: number): Float32Array {
  const scale = [1, 3, 8][randInt(r, 0, 2)];
  const l = randn(r, n, scale);
  if (kind === 1) for (let i = 0; i < n; i++) l[i] = Math.round(l[i] * 2) / 2; // ties everywhere
  if (kind === 2) for (let i = 0; i < n; i += randInt(r, 1, 9)) l[i] = -Infinity;
  if (kind === 3) for (let i = 0; i < n; i += randInt(r, 1, 30)) l[i] = NaN;
  return l;
}

test('sampling: the GPU id equals sampleRef for random logits, draws and settings', async () => {
  const gpu = await testGpu();
  const r = rng(2024);
  const sizes = [1, 2, 17, 255, 256, 257, 1000, 4099, 12345];
  let compared = 0;
  for (let c = 0; c < 48; c++) {
    const n = c < 3 ? 32000 : sizes[randInt(r, 0, sizes.length - 1)];
    const offset = randInt(r, 0, 3) * randInt(r, 0, 100);
    const logits = makeLogits(r, n, c % 4);
    const all = new Float32Array(offset + n + 2).fill(1e30); // values outside the row must not count
    all.set(logits, offset);
    const params: SamplingParams = {
      doSample: true,
      temperature: [0.3, 0.7, 1, 1.5][randInt(r, 0, 3)],
      topK: [0, 0, 1, 5, 50, n, n + 10][randInt(r, 0, 6)],
      topP: [1, 1, 0.95, 0.8, 0.5, 0.1, 1e-6][randInt(r, 0, 6)],
      repetitionPenalty: [1, 1.3, 0.7][randInt(r, 0, 2)],
    };
    const seen = randomSeen(r, n, 0.2);
    const us = [0, f32(1 - 2 ** -24), ...Array.from({ length: 10 }, () => f32(r()))];
    const want = us.map((u) => sampleRef(logits, seen, u, params));
    const { ids } = await gpuSample(gpu, all, n, offset, seen, params, us);
    assert.deepEqual(ids, want, `case ${c}: n=${n} offset=${offset} ${JSON.stringify(params)} us=${us.join(',')}`);
    compared += us.length;
    // top_k = 1 and a tiny top_p are greedy (on the penalised logits).
    if (c % 6 === 0) {
      const greedy = sampleRef(logits, seen, 0, { ...params, doSample: false });
      for (const patch of [{ topK: 1 }, { topK: 0, topP: 1e-6 }]) {
        const p = { ...params, ...patch };
        const got = await gpuSample(gpu, all, n, offset, seen, p, [0, 0.5, f32(1 - 2 ** -24)]);
        assert.deepEqual(got.ids, [greedy, greedy, greedy], `case ${c} ${JSON.stringify(patch)}`);
      }
    }
  }
  assert.equal(compared, 48 * 12);
});

test('sampling: the GPU matches sampleRef on both sides of CDF boundaries (adjacent float32 u)', async () => {
  const gpu = await testGpu();
  const r = rng(555);
  const bits = new DataView(new ArrayBuffer(4));
  const toBits = (u: number): number => (bits.setFloat32(0, u), bits.getUint32(0));
  const fromBits = (b: number): number => (bits.setUint32(0, b), bits.getFloat32(0));
  const cases: [number, SamplingParams][] = [
    [1000, { doSample: true, temperature: 0.8, topK: 0, topP: 0.9, repetitionPenalty: 1.3 }],
    [32000, { doSample: true, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1 }],
    [32000, { doSample: true, temperature: 0.6, topK: 40, topP: 0.95, repetitionPenalty: 1.1 }],
  ];
  for (const [n, p] of cases) {
    const logits = randn(r, n, 2);
    const seen = randomSeen(r, n, 0.05);
    const us: number[] = [];
    while (us.length < 12) {
      // Bisect the float32 bit patterns between two draws that choose different ids.
      let a = toBits(f32(r()));
      let b = toBits(f32(r()));
      if (a > b) [a, b] = [b, a];
      const ida = sampleRef(logits, seen, fromBits(a), p);
      if (ida === sampleRef(logits, seen, fromBits(b), p)) continue;
      while (b - a > 1) {
        const mid = (a + b) >>> 1;
        if (sampleRef(logits, seen, fromBits(mid), p) === ida) a = mid;
        else b = mid;
      }
      us.push(fromBits(a), fromBits(b));
    }
    const want = us.map((u) => sampleRef(logits, seen, u, p));
    const { ids } = await gpuSample(gpu, logits, n, 0, seen, p, us);
    assert.deepEqual(ids, want, `n=${n} ${JSON.stringify(p)} us=${us.join(',')}`);
    for (let j = 0; j < us.length; j += 2) assert.notEqual(want[j], want[j + 1]);
  }
});

test('sampling: ties at the top-k boundary are kept; seen[id] is set; equal logits draw uniformly', async () => {
  const gpu = await testGpu();
  // top_k = 2 with values 3, 2, 2, 2, 1: the three 2s tie with the 2nd largest and are all kept.
  const logits = Float32Array.from([2, 1, 3, 2, 2]);
  const p: SamplingParams = { ...SAMPLE, topK: 2 };
  const probs = hfProbs(logits, new Uint32Array(5), p);
  assert.equal(probs[1], 0);
  assert.ok(probs[0] > 0 && probs[3] > 0 && probs[4] > 0);
  const us = Array.from({ length: 50 }, (_, j) => (j + 0.5) / 50);
  const { ids } = await gpuSample(gpu, logits, 5, 0, new Uint32Array(5), p, us);
  assert.deepEqual(ids, us.map((u) => sampleRef(logits, new Uint32Array(5), u, p)));
  assert.deepEqual([...new Set(ids)].sort(), [0, 2, 3, 4]);

  // 10 equal logits, top_k = 3 keeps all ten (ties); u on a grid picks each id once, in order.
  const eq = new Float32Array(10).fill(0.25);
  const grid = Array.from({ length: 10 }, (_, j) => (j + 0.5) / 10);
  const res = await gpuSample(gpu, eq, 10, 0, new Uint32Array(10), { ...SAMPLE, topK: 3, topP: 0.5 }, grid, true);
  // top_p = 0.5 over ten equal values keeps them all too (equal to the threshold value).
  assert.deepEqual(res.ids, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  res.seenAfter.forEach((s, j) => assert.deepEqual([...s], Array.from({ length: 10 }, (_, i) => (i === j ? 1 : 0))));

  // n not a multiple of 256, larger than the workgroup: seen gets exactly the chosen id.
  const r = rng(9);
  const n = 3001;
  const l = randn(r, n, 2);
  const seen = randomSeen(r, n, 0.1);
  const q: SamplingParams = { doSample: true, temperature: 0.8, topK: 40, topP: 0.9, repetitionPenalty: 1.2 };
  const got = await gpuSample(gpu, l, n, 0, seen, q, [0.123, 0.987], true);
  got.ids.forEach((id, j) => {
    const expect = Uint32Array.from(seen);
    expect[id] = 1;
    assert.deepEqual(got.seenAfter[j], expect);
  });
});

/** max over ids of |#draws with id <= j  -  G * CDF(j)| (a Kolmogorov-Smirnov distance in counts). */
function ksCounts(ids: readonly number[], probs: Float64Array): number {
  const counts = new Float64Array(probs.length);
  for (const id of ids) counts[id]++;
  let c = 0;
  let p = 0;
  let worst = 0;
  for (let j = 0; j < probs.length; j++) {
    c += counts[j];
    p += probs[j];
    worst = Math.max(worst, Math.abs(c - ids.length * p));
  }
  return worst;
}

test('sampling: draws on a grid of u follow Hugging Face’s filtered softmax', async () => {
  const gpu = await testGpu();
  const r = rng(77);
  const cases: [number, number, SamplingParams][] = [
    [60, 500, { doSample: true, temperature: 0.8, topK: 25, topP: 0.9, repetitionPenalty: 1.2 }],
    [5000, 300, { doSample: true, temperature: 1, topK: 0, topP: 0.95, repetitionPenalty: 1 }],
    [777, 300, { doSample: true, temperature: 1.3, topK: 0, topP: 1, repetitionPenalty: 1.5 }],
  ];
  for (const [n, G, p] of cases) {
    const grid = Array.from({ length: G }, (_, j) => (j + 0.5) / G);
    const logits = randn(r, n, 2);
    const seen = randomSeen(r, n, 0.2);
    const probs = hfProbs(logits, seen, p);
    const { ids } = await gpuSample(gpu, logits, n, 0, seen, p, grid);
    // Inverse CDF on a grid: every cumulative count is within one draw of G * CDF.
    const ks = ksCounts(ids, probs);
    assert.ok(ks <= 1.01, `n=${n}: KS distance ${ks} draws`);
    for (const id of ids) assert.ok(probs[id] > 0, `drew ${id}, which Hugging Face filters out`);
    for (let j = 0; j < G; j += 7) assert.equal(ids[j], sampleRef(logits, seen, grid[j], p), `n=${n} u=${grid[j]}`);
  }
});

test('sampling: a reused dispatch over decode steps penalises the ids it chose', async () => {
  const gpu = await testGpu();
  const r = rng(4242);
  const n = 2000;
  const logits = randn(r, n, 1);
  for (let j = 0; j < 6; j++) logits[j * 7] = 6; // a few strong tokens that the penalty rotates
  const seen = randomSeen(r, n, 0.01);
  const p: SamplingParams = { doSample: true, temperature: 0.9, topK: 20, topP: 0.95, repetitionPenalty: 1.5 };
  const lb = gpu.upload('logits', logits);
  const sb = gpu.upload('seen', seen);
  const rb = gpu.upload('u', new Float32Array(1));
  const ob = gpu.upload('out', new Uint32Array(1));
  const d = sampleDispatch(gpu, { n, offset: 0, logits: lb, seen: sb, random: rb, out: ob, params: p });
  const cpuSeen = Uint32Array.from(seen);
  const chosen: number[] = [];
  for (let step = 0; step < 12; step++) {
    const u = f32(r());
    gpu.write(rb, new Float32Array([u]));
    runDispatches(gpu, [d]);
    const [id] = await gpu.readU32(ob, 1);
    assert.equal(id, sampleRef(logits, cpuSeen, u, p), `step ${step}`);
    cpuSeen[id] = 1;
    chosen.push(id);
  }
  assert.deepEqual(await gpu.readU32(sb, n), cpuSeen);
  assert.ok(new Set(chosen).size >= 6, `penalty should spread the draws: ${chosen.join(',')}`);
  releaseDispatches(gpu, [d]);
  for (const b of [lb, sb, rb, ob]) gpu.destroyBuffer(b);
});
