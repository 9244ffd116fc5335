// Split-K attention (kernels/attention_split.ts) against its CPU reference, forced on whatever the
// engine would choose: odd head dims, odd context lengths, GQA groups 1..4, positions near the end
// of the cache, several splits active, row blocks (scratch smaller than the pass), f32 and f16 caches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attentionRef, type KvDtype } from '../../kernels/attention.ts';
import { attentionSplitDispatches, attentionSplitRef, splitPlan, splitScratchBytes } from '../../kernels/attention_split.ts';
import { releaseDispatches, runDispatches } from '../../src/gpu/dispatch.ts';
import type { Gpu } from '../../src/gpu/gpu.ts';
import { packF16Rows, roundF16 } from '../../src/util/half.ts';
import { assertClose, maxAbsDiff, randInt, randn, rng, testGpu } from '../helpers.ts';

interface Shape {
  T: number;
  nq: number;
  nkv: number;
  hd: number;
  maxCtx: number;
  pos0: number;
  splits: number;
  minKeys: number;
  scratchRows: number;
}

/** Random cache rows below pos0 + T (rounded to f16 for an f16 cache); NaN beyond, so overreads show. */
function cache(r: () => number, s: Shape, kv: KvDtype): Float32Array {
  const c = randn(r, s.nkv * s.maxCtx * s.hd);
  if (kv === 'f16') for (let i = 0; i < c.length; i++) c[i] = roundF16(c[i]);
  for (let h = 0; h < s.nkv; h++) c.fill(NaN, (h * s.maxCtx + s.pos0 + s.T) * s.hd, (h + 1) * s.maxCtx * s.hd);
  return c;
}

function upload(gpu: Gpu, label: string, c: Float32Array, kv: KvDtype): GPUBuffer {
  return gpu.upload(label, kv === 'f16' ? packF16Rows(c, 1, c.length) : c);
}

async function run(gpu: Gpu, s: Shape, kv: KvDtype, q: Float32Array, k: Float32Array, v: Float32Array): Promise<Float32Array> {
  const bufs = {
    q: gpu.upload('q', q),
    kCache: upload(gpu, 'k', k, kv),
    vCache: upload(gpu, 'v', v, kv),
    position: gpu.uniform('pos', [s.pos0]),
    out: gpu.upload('out', new Float32Array(s.T * s.nq * s.hd).fill(NaN)),
    scratch: gpu.upload('scratch', new Float32Array(splitScratchBytes({ rows: s.scratchRows, numQ: s.nq, headDim: s.hd, splits: s.splits }) / 4).fill(NaN)),
  };
  const ds = attentionSplitDispatches(gpu, {
    tokens: s.T, numQ: s.nq, numKv: s.nkv, headDim: s.hd, maxContext: s.maxCtx, ...bufs,
    scratchRows: s.scratchRows, splits: s.splits, minKeys: s.minKeys, kvDtype: kv,
  });
  assert.equal(ds.length, 2 * Math.ceil(s.T / Math.min(s.scratchRows, s.T)), 'a split and a combine per block of rows');
  runDispatches(gpu, ds);
  const out = await gpu.readF32(bufs.out, s.T * s.nq * s.hd);
  releaseDispatches(gpu, ds);
  for (const b of Object.values(bufs)) gpu.destroyBuffer(b);
  return out;
}

async function check(gpu: Gpu, r: () => number, s: Shape, kv: KvDtype): Promise<void> {
  const what = `${kv} T=${s.T} nq=${s.nq} nkv=${s.nkv} hd=${s.hd} ctx=${s.maxCtx} pos0=${s.pos0} splits=${s.splits} minKeys=${s.minKeys} rows=${s.scratchRows}`;
  const q = randn(r, s.T * s.nq * s.hd);
  const k = cache(r, s, kv);
  const v = cache(r, s, kv);
  const got = await run(gpu, s, kv, q, k, v);
  const want = attentionSplitRef(q, k, v, { tokens: s.T, numQ: s.nq, numKv: s.nkv, headDim: s.hd, maxContext: s.maxCtx, position: s.pos0, splits: s.splits, minKeys: s.minKeys });
  assertClose(got, want, 2e-5, 2e-4, `attention_split ${what}`);
}

test('splitPlan puts every key in exactly one split; the split reference equals the plain one', () => {
  for (let keys = 1; keys < 300; keys += 7) {
    for (const [splits, minKeys] of [[1, 32], [4, 1], [7, 5], [64, 32], [13, 3]]) {
      const { chunk, active } = splitPlan(keys, splits, minKeys);
      assert.ok(active >= 1 && active <= splits && chunk >= minKeys, `keys ${keys}`);
      assert.ok((active - 1) * chunk < keys && active * chunk >= keys, `splits cover ${keys} keys, none empty`);
    }
  }
  const r = rng(2);
  const o = { tokens: 3, numQ: 4, numKv: 2, headDim: 6, maxContext: 40, position: 30 };
  const q = randn(r, 3 * 4 * 6);
  const k = randn(r, 2 * 40 * 6);
  const v = randn(r, 2 * 40 * 6);
  const d = maxAbsDiff(attentionSplitRef(q, k, v, { ...o, splits: 5, minKeys: 2 }), attentionRef(q, k, v, o));
  assert.ok(d < 1e-6, `split and plain references differ by ${d}`);
});

test('attention_split matches its CPU reference over odd shapes, GQA groups, several splits, f32 and f16 caches', async () => {
  const gpu = await testGpu();
  const r = rng(21);
  const dims = [6, 10, 34, 64, 128];
  let i = 0;
  for (const kv of ['f32', 'f16'] as const) {
    for (const hd of dims) {
      for (const group of [1, 2, 3, 4]) {
        const nkv = 1 + (i % 3);
        const T = [1, 1, 3, 5][i % 4];
        const maxCtx = randInt(r, 40, 161) | 1;
        // Positions near the end of the cache: the last row's keys reach maxContext.
        const pos0 = maxCtx - T - (i % 3);
        const splits = [2, 3, 7, 16][i % 4];
        const minKeys = [1, 4, 5, 9][(i >> 2) % 4];
        await check(gpu, r, { T, nq: nkv * group, nkv, hd, maxCtx, pos0, splits, minKeys, scratchRows: T > 1 ? 2 : 1 }, kv);
        i++;
      }
    }
  }
  // Decode far into a long cache with the defaults' shape (32 keys a split), and short rows.
  await check(gpu, r, { T: 1, nq: 20, nkv: 5, hd: 64, maxCtx: 1031, pos0: 1020, splits: 13, minKeys: 32, scratchRows: 1 }, 'f32');
  await check(gpu, r, { T: 2, nq: 6, nkv: 2, hd: 34, maxCtx: 9, pos0: 0, splits: 4, minKeys: 32, scratchRows: 2 }, 'f16');
});

test('attention_split: a row of a multi-row pass is bit for bit a one-row pass at its position (verify = decode)', async () => {
  const gpu = await testGpu();
  const r = rng(23);
  for (const kv of ['f32', 'f16'] as const) {
    const s: Shape = { T: 7, nq: 6, nkv: 2, hd: 34, maxCtx: 121, pos0: 100, splits: 5, minKeys: 4, scratchRows: 3 };
    const q = randn(r, s.T * s.nq * s.hd);
    const k = cache(r, s, kv);
    const v = cache(r, s, kv);
    const all = await run(gpu, s, kv, q, k, v);
    const row = s.nq * s.hd;
    for (let t = 0; t < s.T; t++) {
      const one = await run(gpu, { ...s, T: 1, pos0: s.pos0 + t, scratchRows: 1 }, kv, q.slice(t * row, (t + 1) * row), k, v);
      assert.equal(maxAbsDiff(one, all.subarray(t * row, (t + 1) * row)), 0, `${kv} row ${t}`);
    }
  }
});

test('attention_split: a prepared decode dispatch follows the position buffer (one to all splits active)', async () => {
  const gpu = await testGpu();
  const r = rng(29);
  const s = { nq: 6, nkv: 3, hd: 32, maxCtx: 95, splits: 6, minKeys: 8 };
  const k = randn(r, s.nkv * s.maxCtx * s.hd);
  const v = randn(r, s.nkv * s.maxCtx * s.hd);
  const q = randn(r, s.nq * s.hd);
  const bufs = {
    q: gpu.upload('q', q),
    kCache: gpu.upload('k', k),
    vCache: gpu.upload('v', v),
    position: gpu.uniform('pos', [0]),
    out: gpu.upload('out', new Float32Array(s.nq * s.hd)),
    scratch: gpu.createBuffer('scratch', splitScratchBytes({ rows: 1, numQ: s.nq, headDim: s.hd, splits: s.splits }), GPUBufferUsage.STORAGE),
  };
  const ds = attentionSplitDispatches(gpu, { tokens: 1, numQ: s.nq, numKv: s.nkv, headDim: s.hd, maxContext: s.maxCtx, ...bufs, scratchRows: 1, splits: s.splits, minKeys: s.minKeys });
  for (const pos of [0, 7, 8, 30, 60, 94]) {
    gpu.write(bufs.position, new Uint32Array([pos]));
    runDispatches(gpu, ds);
    const want = attentionRef(q, k, v, { tokens: 1, numQ: s.nq, numKv: s.nkv, headDim: s.hd, maxContext: s.maxCtx, position: pos });
    assertClose(await gpu.readF32(bufs.out, s.nq * s.hd), want, 2e-5, 2e-4, `decode at ${pos}`);
  }
  releaseDispatches(gpu, ds);
  for (const b of Object.values(bufs)) gpu.destroyBuffer(b);
});

test('attention_split: bad inputs fail with one clear message', async () => {
  const gpu = await testGpu();
  const b = gpu.createBuffer('b', 64, GPUBufferUsage.STORAGE);
  const u = gpu.uniform('u', [0]);
  const base = { tokens: 1, numQ: 4, numKv: 2, headDim: 8, maxContext: 100, q: b, kCache: b, vCache: b, position: u, out: b, scratch: b, scratchRows: 1 };
  assert.throws(() => attentionSplitDispatches(gpu, { ...base, splits: 8 }), /scratch of 64 bytes/);
  assert.throws(() => attentionSplitDispatches(gpu, { ...base, scratchRows: 0 }), /scratchRows = 0/);
  assert.throws(() => attentionSplitDispatches(gpu, { ...base, numKv: 3 }), /not a multiple/);
  gpu.destroyBuffer(b);
  gpu.destroyBuffer(u);
});
