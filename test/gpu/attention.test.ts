import { test } from 'node:test';
import { attentionDispatch, attentionRef, kvCacheBytes } from '../../kernels/attention.ts';
import assert from 'node:assert/strict';
import { packF16Rows, roundF16 } from '../../src/util/half.ts';
import { releaseDispatches, runDispatches } from '../../src/gpu/dispatch.ts';
import type { Gpu } from '../../src/gpu/gpu.ts';
import { assertClose, randn, rng, testGpu } from '../helpers.ts';

interface Shape {
  T: number;
  nq: number;
  nkv: number;
  hd: number;
  maxCtx: number;
  pos0: number;
}

/** Random cache rows below pos0 + T; NaN beyond, so reading past the causal limit shows. */
function cache(r: () => number, s: Shape, scale = 1): Float32Array {
  const c = randn(r, s.nkv * s.maxCtx * s.hd, scale);
  for (let h = 0; h < s.nkv; h++) c.fill(NaN, (h * s.maxCtx + s.pos0 + s.T) * s.hd, (h + 1) * s.maxCtx * s.hd);
  return c;
}

async function check(gpu: Gpu, r: () => number, s: Shape, qScale = 1, workgroupSize?: number): Promise<void> {
  const what = `T=${s.T} nq=${s.nq} nkv=${s.nkv} hd=${s.hd} ctx=${s.maxCtx} pos0=${s.pos0}${workgroupSize ? ` wg=${workgroupSize}` : ''}`;
  const q = randn(r, s.T * s.nq * s.hd, qScale);
  const k = cache(r, s);
  const v = cache(r, s);
  const bufs = {
    q: gpu.upload('q', q),
    kCache: gpu.upload('k', k),
    vCache: gpu.upload('v', v),
    position: gpu.uniform('pos', [s.pos0]),
    out: gpu.upload('out', new Float32Array(s.T * s.nq * s.hd).fill(NaN)),
  };
  const d = attentionDispatch(gpu, { tokens: s.T, numQ: s.nq, numKv: s.nkv, headDim: s.hd, maxContext: s.maxCtx, ...bufs, workgroupSize });
  runDispatches(gpu, [d]);
  const want = attentionRef(q, k, v, { tokens: s.T, numQ: s.nq, numKv: s.nkv, headDim: s.hd, maxContext: s.maxCtx, position: s.pos0 });
  assertClose(await gpu.readF32(bufs.out, s.T * s.nq * s.hd), want, 2e-5, 2e-4, `attention ${what}`);
  releaseDispatches(gpu, [d]);
  for (const b of Object.values(bufs)) gpu.destroyBuffer(b);
}

test('attention matches the CPU reference over shapes (GQA groups, odd head dims, chunked prefill)', async () => {
  const gpu = await testGpu();
  const r = rng(5);
  const heads: [number, number][] = [[1, 1], [3, 3], [4, 2], [6, 2], [8, 2], [12, 3], [10, 2]];
  const dims = [2, 6, 34, 64, 128];
  const tokens = [1, 3, 17, 40];
  let i = 0;
  for (const T of tokens) {
    for (const pos0 of [0, 5]) {
      for (const hd of dims) {
        const [nq, nkv] = heads[i++ % heads.length];
        await check(gpu, r, { T, nq, nkv, hd, maxCtx: pos0 + T + 3 + (i % 7), pos0 });
      }
    }
  }
  // Head dim 256, every group size 2..5, and decode far into a cache.
  for (const g of [2, 3, 4, 5]) await check(gpu, r, { T: 1 + (g % 2) * 4, nq: 2 * g, nkv: 2, hd: g === 2 ? 256 : 34, maxCtx: 301, pos0: 290 });
  await check(gpu, r, { T: 1, nq: 20, nkv: 5, hd: 64, maxCtx: 1031, pos0: 1000 });
});

test('attention: large scores stay finite (max subtraction), any workgroup size', async () => {
  const gpu = await testGpu();
  const r = rng(9);
  await check(gpu, r, { T: 3, nq: 4, nkv: 2, hd: 64, maxCtx: 77, pos0: 60 }, 40);
  // (Big workgroups are slow to compile and run on SwiftShader, hence few of them.)
  for (const wg of [1, 3, 4, 16, 32, 128]) await check(gpu, r, { T: 5, nq: 4, nkv: 1, hd: 6, maxCtx: 100, pos0: 70 }, 1, wg);
  // The default on real GPUs (64 threads) for both variants (vec2, vec4).
  for (const hd of [34, 64]) await check(gpu, r, { T: 3, nq: 6, nkv: 2, hd, maxCtx: 90, pos0: 80 }, 1, 64);
});

test('attention: a prepared decode dispatch follows the position buffer', async () => {
  const gpu = await testGpu();
  const r = rng(13);
  const s = { nq: 6, nkv: 3, hd: 32, maxCtx: 45 };
  const k = randn(r, s.nkv * s.maxCtx * s.hd);
  const v = randn(r, s.nkv * s.maxCtx * s.hd);
  const q = randn(r, s.nq * s.hd);
  const bufs = {
    q: gpu.upload('q', q),
    kCache: gpu.upload('k', k),
    vCache: gpu.upload('v', v),
    position: gpu.uniform('pos', [0]),
    out: gpu.upload('out', new Float32Array(s.nq * s.hd)),
  };
  const d = attentionDispatch(gpu, { tokens: 1, numQ: s.nq, numKv: s.nkv, headDim: s.hd, maxContext: s.maxCtx, ...bufs });
  for (const pos of [0, 1, 2, 31, 44]) {
    gpu.write(bufs.position, new Uint32Array([pos]));
    runDispatches(gpu, [d]);
    const want = attentionRef(q, k, v, { tokens: 1, numQ: s.nq, numKv: s.nkv, headDim: s.hd, maxContext: s.maxCtx, position: pos });
    assertClose(await gpu.readF32(bufs.out, s.nq * s.hd), want, 2e-5, 2e-4, `decode at ${pos}`);
  }
  releaseDispatches(gpu, [d]);
  for (const b of Object.values(bufs)) gpu.destroyBuffer(b);
});

test('attention with an f16 KV cache (packed two per u32) matches the reference on the rounded cache', async () => {
  const gpu = await testGpu();
  const r = rng(17);
  const heads: [number, number][] = [[1, 1], [4, 2], [6, 2], [12, 3], [8, 2]];
  let i = 0;
  for (const hd of [6, 10, 34, 64, 128]) {
    for (const T of [1, 4]) {
      const [nq, nkv] = heads[i++ % heads.length];
      const maxCtx = 21 + 2 * i + (T === 1 ? 40 : 0);
      const pos0 = maxCtx - T - (i % 2);
      // The reference reads what the cache holds: each value rounded to f16 (nearest even).
      const round = (c: Float32Array) => c.map((x) => (Number.isNaN(x) ? x : roundF16(x)));
      const k = round(randn(r, nkv * maxCtx * hd));
      const v = round(randn(r, nkv * maxCtx * hd));
      for (let h = 0; h < nkv; h++) for (const c of [k, v]) c.fill(NaN, (h * maxCtx + pos0 + T) * hd, (h + 1) * maxCtx * hd);
      const q = randn(r, T * nq * hd);
      const kb = gpu.upload('k', packF16Rows(k, 1, k.length));
      assert.equal(kb.size, Math.max(16, Math.ceil(kvCacheBytes(nkv, maxCtx, hd, 'f16') / 16) * 16), 'two bytes an element');
      const bufs = { q: gpu.upload('q', q), kCache: kb, vCache: gpu.upload('v', packF16Rows(v, 1, v.length)), position: gpu.uniform('pos', [pos0]), out: gpu.upload('out', new Float32Array(T * nq * hd).fill(NaN)) };
      const dims = { tokens: T, numQ: nq, numKv: nkv, headDim: hd, maxContext: maxCtx };
      const d = attentionDispatch(gpu, { ...dims, ...bufs, kvDtype: 'f16' });
      runDispatches(gpu, [d]);
      assertClose(await gpu.readF32(bufs.out, T * nq * hd), attentionRef(q, k, v, { ...dims, position: pos0 }), 2e-5, 2e-4, `f16 cache hd=${hd} T=${T} nq=${nq} nkv=${nkv} ctx=${maxCtx} pos0=${pos0}`);
      releaseDispatches(gpu, [d]);
      for (const b of Object.values(bufs)) gpu.destroyBuffer(b);
    }
  }
});
