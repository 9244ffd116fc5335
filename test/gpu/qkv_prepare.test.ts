import { test } from 'node:test';
import assert from 'node:assert/strict';
import { qkvPrepareDispatch, qkvPrepareRef, ropeTable } from '../../kernels/qkv_prepare.ts';
import { releaseDispatches, runDispatches } from '../../src/gpu/dispatch.ts';
import { assertClose, randn, rng, testGpu } from '../helpers.ts';
import { f16BitsToF32, packF16Rows } from '../../src/util/half.ts';

/** An f16 cache (two per u32, low half first) read back as f32. */
function unpackF16(words: Uint32Array, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = f16BitsToF32((words[i >> 1] >>> ((i & 1) * 16)) & 0xffff);
  return out;
}

/** The cache after writing `rows` ([nkv, T, hd]) at positions pos0..pos0+T-1. */
function withRows(cache: Float32Array, rows: Float32Array, nkv: number, T: number, hd: number, maxCtx: number, pos0: number): Float32Array {
  const out = cache.slice();
  for (let h = 0; h < nkv; h++) {
    for (let t = 0; t < T; t++) out.set(rows.subarray((h * T + t) * hd, (h * T + t + 1) * hd), (h * maxCtx + pos0 + t) * hd);
  }
  return out;
}

test('ropeTable holds cos and sin of p * theta^(-2i/hd)', () => {
  const t = ropeTable(6, 50, 10000);
  assert.equal(t.length, 50 * 3 * 2);
  for (const [p, i] of [[0, 0], [1, 0], [7, 1], [49, 2]]) {
    const a = p * Math.pow(10000, (-2 * i) / 6);
    assert.equal(t[(p * 3 + i) * 2], Math.fround(Math.cos(a)));
    assert.equal(t[(p * 3 + i) * 2 + 1], Math.fround(Math.sin(a)));
  }
});

test('qkv_prepare matches the CPU reference (norm on/off, RoPE, cache rows, reused with a new position)', async () => {
  const gpu = await testGpu();
  const r = rng(3);
  const cases = [
    { hd: 2, nq: 1, nkv: 1, T: 1, maxCtx: 5, pos0: 0 },
    { hd: 6, nq: 4, nkv: 2, T: 3, maxCtx: 13, pos0: 5 },
    { hd: 32, nq: 3, nkv: 3, T: 17, maxCtx: 37, pos0: 0 },
    { hd: 64, nq: 12, nkv: 3, T: 5, maxCtx: 50, pos0: 7 },
    { hd: 128, nq: 10, nkv: 2, T: 2, maxCtx: 23, pos0: 21 },
    { hd: 256, nq: 4, nkv: 1, T: 3, maxCtx: 9, pos0: 2 },
  ];
  for (const c of cases) {
    for (const normalize of [true, false]) {
      const { hd, nq, nkv, T, maxCtx } = c;
      const what = `hd=${hd} nq=${nq} nkv=${nkv} T=${T} pos0=${c.pos0} norm=${normalize}`;
      const width = (nq + 2 * nkv) * hd;
      const rope = ropeTable(hd, maxCtx, 10000);
      const qNorm = randn(r, hd);
      const kNorm = randn(r, hd);
      let kInit = randn(r, nkv * maxCtx * hd);
      let vInit = randn(r, nkv * maxCtx * hd);
      const qkvB = gpu.upload('qkv', new Float32Array(T * width));
      const qnB = gpu.upload('qNorm', qNorm);
      const knB = gpu.upload('kNorm', kNorm);
      const ropeB = gpu.upload('rope', rope);
      const posB = gpu.uniform('position', [c.pos0]);
      const qB = gpu.upload('q', new Float32Array(T * nq * hd).fill(NaN));
      const kB = gpu.upload('kCache', kInit);
      const vB = gpu.upload('vCache', vInit);
      const d = qkvPrepareDispatch(gpu, {
        tokens: T, numQ: nq, numKv: nkv, headDim: hd, maxContext: maxCtx, eps: 1e-6, normalize,
        qkv: qkvB, qNorm: qnB, kNorm: knB, rope: ropeB, position: posB, q: qB, kCache: kB, vCache: vB,
      });
      // Run twice with the same dispatch: at pos0, then (like a later step) at another position.
      for (const pos0 of [c.pos0, maxCtx - T]) {
        const qkv = randn(r, T * width, 2);
        gpu.write(qkvB, qkv);
        gpu.write(posB, new Uint32Array([pos0]));
        runDispatches(gpu, [d]);
        const ref = qkvPrepareRef(qkv, qNorm, kNorm, rope, { tokens: T, numQ: nq, numKv: nkv, headDim: hd, eps: 1e-6, normalize, position: pos0 });
        const kWant = withRows(kInit, ref.k, nkv, T, hd, maxCtx, pos0);
        const vWant = withRows(vInit, ref.v, nkv, T, hd, maxCtx, pos0);
        assertClose(await gpu.readF32(qB, T * nq * hd), ref.q, 2e-5, 2e-5, `q ${what} at ${pos0}`);
        assertClose(await gpu.readF32(kB, nkv * maxCtx * hd), kWant, 2e-5, 2e-5, `kCache ${what} at ${pos0}`);
        assertClose(await gpu.readF32(vB, nkv * maxCtx * hd), vWant, 0, 0, `vCache ${what} at ${pos0}`);
        kInit = kWant;
        vInit = vWant;
      }
      releaseDispatches(gpu, [d]);
      for (const b of [qkvB, qnB, knB, ropeB, posB, qB, kB, vB]) gpu.destroyBuffer(b);
    }
  }
});

test('qkvPrepareRef with ropeTable matches RoPE from angles computed directly', async () => {
  const hd = 8;
  const rope = ropeTable(hd, 2000, 10000);
  const r = rng(11);
  const x = randn(r, 3 * hd);
  const ref = qkvPrepareRef(x, new Float32Array(hd), new Float32Array(hd), rope, { tokens: 1, numQ: 1, numKv: 1, headDim: hd, eps: 1e-6, normalize: false, position: 1999 });
  const want = new Float32Array(hd);
  for (let i = 0; i < hd / 2; i++) {
    const a = 1999 * Math.pow(10000, (-2 * i) / hd);
    want[i] = x[i] * Math.cos(a) - x[i + hd / 2] * Math.sin(a);
    want[i + hd / 2] = x[i + hd / 2] * Math.cos(a) + x[i] * Math.sin(a);
  }
  assertClose(ref.q, want, 1e-6, 1e-6, 'rope at 1999');
});

test('qkv_prepare with an f16 cache writes each key and value rounded to f16 (odd half head dims too)', async () => {
  const gpu = await testGpu();
  const r = rng(7);
  const cases = [
    { hd: 6, nq: 4, nkv: 2, T: 3, maxCtx: 13, pos0: 9 },
    { hd: 10, nq: 3, nkv: 1, T: 1, maxCtx: 31, pos0: 30 },
    { hd: 34, nq: 8, nkv: 2, T: 5, maxCtx: 27, pos0: 21 },
    { hd: 64, nq: 12, nkv: 3, T: 2, maxCtx: 50, pos0: 47 },
    { hd: 128, nq: 4, nkv: 4, T: 3, maxCtx: 9, pos0: 1 },
  ];
  for (const c of cases) {
    for (const normalize of [true, false]) {
      const { hd, nq, nkv, T, maxCtx, pos0 } = c;
      const what = `f16 hd=${hd} nq=${nq} nkv=${nkv} T=${T} pos0=${pos0} norm=${normalize}`;
      const width = (nq + 2 * nkv) * hd;
      const rope = ropeTable(hd, maxCtx, 10000);
      const qNorm = randn(r, hd);
      const kNorm = randn(r, hd);
      const qkv = randn(r, T * width, 2);
      const n = nkv * maxCtx * hd;
      // Initial caches (already f16): rows outside pos0.. must stay as they were.
      const kInit = unpackF16(packF16Rows(randn(r, n), 1, n), n);
      const vInit = unpackF16(packF16Rows(randn(r, n), 1, n), n);
      const bufs = {
        qkv: gpu.upload('qkv', qkv), qNorm: gpu.upload('qNorm', qNorm), kNorm: gpu.upload('kNorm', kNorm), rope: gpu.upload('rope', rope),
        position: gpu.uniform('position', [pos0]), q: gpu.upload('q', new Float32Array(T * nq * hd).fill(NaN)),
        kCache: gpu.upload('kCache', packF16Rows(kInit, 1, n)), vCache: gpu.upload('vCache', packF16Rows(vInit, 1, n)),
      };
      const o = { tokens: T, numQ: nq, numKv: nkv, headDim: hd, maxContext: maxCtx, eps: 1e-6, normalize };
      const d = qkvPrepareDispatch(gpu, { ...o, ...bufs, kvDtype: 'f16' });
      runDispatches(gpu, [d]);
      const ref = qkvPrepareRef(qkv, qNorm, kNorm, rope, { ...o, position: pos0, kvDtype: 'f16' });
      const refF32 = qkvPrepareRef(qkv, qNorm, kNorm, rope, { ...o, position: pos0 });
      assertClose(await gpu.readF32(bufs.q, T * nq * hd), ref.q, 2e-5, 2e-5, `q ${what}`);
      const k = unpackF16(await gpu.readU32(bufs.kCache, n / 2), n);
      const v = unpackF16(await gpu.readU32(bufs.vCache, n / 2), n);
      // WGSL lets pack2x16float round either way when a value is not exact: allow one f16 step
      // (2^-10 relative, 2^-24 near zero) from the f32 value, whose RNE rounding the reference holds.
      const f16Step = 2 ** -10;
      assertClose(k, withRows(kInit, refF32.k, nkv, T, hd, maxCtx, pos0), 2e-5 + 2 ** -24, f16Step, `kCache ${what}`);
      assertClose(v, withRows(vInit, refF32.v, nkv, T, hd, maxCtx, pos0), 2 ** -24, f16Step, `vCache ${what}`);
      // Rounded to nearest even on this device; exactly what the reference's f16 rows hold for values.
      assertClose(v, withRows(vInit, ref.v, nkv, T, hd, maxCtx, pos0), 0, 0, `vCache ${what} (nearest even)`);
      assertClose(k, withRows(kInit, ref.k, nkv, T, hd, maxCtx, pos0), 2e-5, 2 ** -11 + 1e-6, `kCache ${what} (reference rounding)`);
      releaseDispatches(gpu, [d]);
      for (const b of Object.values(bufs)) gpu.destroyBuffer(b);
    }
  }
});
