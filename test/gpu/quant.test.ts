import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  dequantize,
  dequantizeQ4Row,
  dequantizeQ8Row,
  ggmlBlocks,
  packQuantRows,
  quantGroups,
  quantizeQ4Row,
  quantizeQ8Row,
  quantRowWords,
  quantScaleRowWords,
  unpackQuantRows,
  type QuantFormat,
} from '../../src/weights/quant.ts';
import { destroyWeight, uploadWeight, weightRowBytes } from '../../src/weights/gpu-weight.ts';
import { f16BitsToF32, f32ToF16Bits } from '../../src/util/half.ts';
import { randInt, randn, rng, testGpu } from '../helpers.ts';

const F16_ONE = 0x3c00;

test('Q8_0: a hand-computed group (d = 1, roundf halves away from zero)', () => {
  // amax 127 gives d = 127/127 = 1 exactly, so q = roundf(x).
  const x = new Float32Array(32);
  x.set([127, -127, 0.5, -0.5, 1.5, -1.5, 2.4999, -2.5001, 63.5, -63.5, 0.49, -0.49, 100.2, -3]);
  const { d, q } = quantizeQ8Row(x);
  assert.deepEqual([...d], [F16_ONE]);
  assert.deepEqual([...q.subarray(0, 14)], [127, -127, 1, -1, 2, -2, 2, -3, 64, -64, 0, 0, 100, -3]);
  assert.ok(q.subarray(14).every((v) => v === 0));
  // llama.cpp block bytes: f16 scale little-endian, then the int8 quants.
  const b = ggmlBlocks(x, 'q8');
  assert.equal(b.length, 34);
  assert.deepEqual([...b.subarray(0, 6)], [0x00, 0x3c, 127, 0x81, 1, 0xff]);
});

test('Q8_0: scale from the f32 d, stored as f16; quants from the f32 1/d', () => {
  // amax = 1: d = fround(1/127) = 0.007874015718698502, f16 0x2008 (0.00787353515625).
  const x = new Float32Array(32);
  x[0] = 1;
  x[1] = -0.5;
  x[2] = 0.25;
  x[3] = 0.003937008; // ~ d / 2: rounds up only if x * id >= 0.5 in f32
  const { d, q } = quantizeQ8Row(x);
  const df = Math.fround(1 / 127);
  assert.equal(d[0], f32ToF16Bits(df));
  assert.equal(d[0], 0x2008);
  const id = Math.fround(1 / df);
  const expect3 = Math.round(Math.fround(Math.fround(0.003937008) * id));
  assert.deepEqual([...q.subarray(0, 4)], [127, -64, 32, expect3]);
  // -0.5 * 127.00000 = -63.5 -> -64 (away from zero), 0.25 * 127 = 31.75 -> 32.
});

test('Q8_0 and Q4_0: all-zero groups', () => {
  const x = new Float32Array(40); // one full group and a padded partial one
  const a = quantizeQ8Row(x);
  assert.deepEqual([...a.d], [0, 0]);
  assert.ok(a.q.every((v) => v === 0));
  assert.equal(a.q.length, 64);
  const b = quantizeQ4Row(x);
  // llama.cpp: max = 0, d = 0 / -8 = -0 -> f16 0x8000; id = 0, q = trunc(0 + 8.5) = 8.
  assert.deepEqual([...b.d], [0x8000, 0x8000]);
  assert.ok(b.q.every((v) => v === 8));
  assert.ok(dequantizeQ4Row(b, 40).every((v) => v === 0));
  assert.ok(dequantizeQ8Row(a, 40).every((v) => v === 0));
});

test('Q8_0 and Q4_0: a group with one large value', () => {
  const x = new Float32Array(32).fill(0.01);
  x[5] = 100;
  x[6] = -0.01;
  const a = quantizeQ8Row(x);
  assert.equal(a.d[0], f32ToF16Bits(Math.fround(100 / 127)));
  assert.equal(a.q[5], 127);
  assert.equal(a.q[0], 0);
  assert.equal(a.q[6], 0);
  const b = quantizeQ4Row(x);
  // max = 100, d = -12.5 (exact in f16), id = -0.08: x = 100 -> trunc(-8 + 8.5) = 0 -> (0 - 8) * -12.5.
  assert.equal(f16BitsToF32(b.d[0]), -12.5);
  assert.equal(b.q[5], 0);
  assert.equal(b.q[0], 8);
  assert.equal(b.q[6], 8);
  const v = dequantizeQ4Row(b, 32);
  assert.equal(v[5], 100);
  assert.ok(v[0] === 0); // (q - 8) * d = 0 * -12.5 = -0
});

test('Q4_0: signed max, ties, clamping at 15', () => {
  // Negative max: max = -4, d = -4 / -8 = 0.5, id = 2, q = min(15, trunc(2x + 8.5)).
  const x = new Float32Array(32);
  x.set([-4, 3.9, 3.74, 1.25, 1.2, -1.3, -1.2, 0.2, -0.3, 4 - 1e-6]);
  const a = quantizeQ4Row(x);
  assert.equal(f16BitsToF32(a.d[0]), 0.5);
  assert.deepEqual([...a.q.subarray(0, 10)], [0, 15, 15, 11, 10, 5, 6, 8, 7, 15]);
  assert.deepEqual([...dequantizeQ4Row(a, 4)], [-4, 3.5, 3.5, 1.5]);
  // Positive max: d = -0.5; the most negative value clamps: -4 -> trunc(8 + 8.5) = 16 -> 15 -> -3.5.
  const y = new Float32Array(32);
  y.set([4, -4, 1]);
  const b = quantizeQ4Row(y);
  assert.equal(f16BitsToF32(b.d[0]), -0.5);
  assert.deepEqual([...b.q.subarray(0, 3)], [0, 15, 6]);
  assert.deepEqual([...dequantizeQ4Row(b, 3)], [4, -3.5, 1]);
  // Ties in magnitude: the first one is max (llama.cpp compares amax < |v|).
  const z = new Float32Array(32);
  z.set([-4, 4]);
  assert.equal(f16BitsToF32(quantizeQ4Row(z).d[0]), 0.5);
  // llama.cpp block bytes: byte i = q[i] | q[i + 16] << 4.
  const w = new Float32Array(32);
  w[0] = -4; // q 0
  w[16] = 2; // q trunc(4 + 8.5) = 12
  w[1] = 1; // q 10
  w[17] = -1; // q 6
  const bytes = ggmlBlocks(w, 'q4');
  assert.equal(bytes.length, 18);
  assert.deepEqual([...bytes.subarray(0, 5)], [0x00, 0x38, 0 | (12 << 4), 10 | (6 << 4), 8 | (8 << 4)]);
});

test('round-trip error bounds (random rows, several scales, padded K)', () => {
  const r = rng(31);
  for (const [K, scale] of [
    [32, 1],
    [1280, 0.02],
    [77, 3],
    [5, 1e-3],
    [1000, 1e-4],
  ]) {
    const x = randn(r, K, scale);
    if (K > 40) x[17] = 40 * scale; // a group with an outlier
    const a = quantizeQ8Row(x);
    const b = quantizeQ4Row(x);
    assert.equal(a.d.length, quantGroups(K));
    const va = dequantizeQ8Row(a, K);
    const vb = dequantizeQ4Row(b, K);
    for (let k = 0; k < K; k++) {
      const g = k >> 5;
      const n = Math.min(32, K - g * 32);
      const grp = x.subarray(g * 32, g * 32 + n);
      // Q8_0: the f32 d, its f16, and the bound |x - q d16| <= d/2 + |q| |d - d16| (the slack
      // covers the f32 rounding of x * id).
      const amax = Math.max(...grp.map(Math.abs));
      const d8 = Math.fround(amax / 127);
      const d8h = f16BitsToF32(a.d[g]);
      assert.ok(Math.abs(a.q[k]) <= 127);
      const e8 = Math.abs(x[k] - va[k]);
      assert.ok(e8 <= (d8 / 2) * (1 + 2e-5) + Math.abs(a.q[k]) * Math.abs(d8 - d8h), `q8 K=${K} k=${k}: error ${e8}, d ${d8}`);
      // Q4_0: |x - (q - 8) d16| <= |d|/2 + |q - 8| |d - d16|, or |d| in the clamped top bucket.
      let max = 0;
      for (const v of grp) if (Math.abs(v) > Math.abs(max)) max = v;
      const d4 = Math.fround(max / -8);
      const d4h = f16BitsToF32(b.d[g]);
      assert.ok(b.q[k] >= 0 && b.q[k] <= 15);
      const ratio = d4 ? x[k] / d4 : 0;
      const e4 = Math.abs(x[k] - vb[k]);
      const bound = Math.abs(d4) * (ratio > 7.5 ? 1 : 0.5) * (1 + 2e-5) + Math.abs(b.q[k] - 8) * Math.abs(d4 - d4h);
      assert.ok(e4 <= bound, `q4 K=${K} k=${k}: error ${e4}, bound ${bound}`);
      if (Math.abs(x[k]) === amax) {
        assert.equal(Math.abs(a.q[k]), 127);
        if (x[k] === max) assert.equal(b.q[k], 0);
      }
    }
  }
});

test('the GPU layout decodes to the dequantized rows', () => {
  const r = rng(32);
  for (const format of ['q8', 'q4'] as QuantFormat[])
    for (const [rows, K] of [
      [1, 1],
      [3, 32],
      [4, 33],
      [5, 257],
      [2, 1280],
      [3, 520], // 17 groups: a scale row padded to 24 halves
    ]) {
      const x = randn(r, rows * K);
      const rw = quantRowWords(K, format);
      const sw = quantScaleRowWords(K);
      assert.equal(rw, quantGroups(K) * (format === 'q8' ? 8 : 4));
      assert.equal(sw % 4, 0);
      const quants = new Uint32Array(rows * rw).fill(0xdeadbeef);
      const scales = new Uint32Array(rows * sw).fill(0xdeadbeef);
      packQuantRows(x, rows, K, format, quants, scales);
      assert.deepEqual(unpackQuantRows(quants, scales, rows, K, format), dequantize(x, rows, K, format));
      // Row 0's first word against the row quantizer.
      if (format === 'q8') {
        const { q } = quantizeQ8Row(x.subarray(0, K));
        assert.equal(quants[0], ((q[0] & 255) | ((q[1] & 255) << 8) | ((q[2] & 255) << 16) | ((q[3] & 255) << 24)) >>> 0);
      } else {
        const { q } = quantizeQ4Row(x.subarray(0, K));
        assert.equal(quants[0], (q[0] | (q[16] << 4) | (q[1] << 8) | (q[17] << 12) | (q[2] << 16) | (q[18] << 20) | (q[3] << 24) | (q[19] << 28)) >>> 0);
      }
      // Unused scale halves are zero.
      const G = quantGroups(K);
      for (let row = 0; row < rows; row++)
        for (let h = G; h < sw * 2; h++) assert.equal((scales[row * sw + (h >> 1)] >>> (16 * (h & 1))) & 0xffff, 0);
    }
});

test('bits per weight: q8 8.5, q4 4.5 (K a multiple of 256)', () => {
  assert.equal((weightRowBytes(1280, 'q8') * 8) / 1280, 8.5);
  assert.equal((weightRowBytes(1280, 'q4') * 8) / 1280, 4.5);
  assert.equal((weightRowBytes(5120, 'q4') * 8) / 5120, 4.5);
  assert.equal((weightRowBytes(768, 'q8') * 8) / 768, 8.5);
  assert.equal(weightRowBytes(1280, 'f16'), 2560);
});

test('uploadWeight q8/q4: chunks under the limit, words as packQuantRows makes them', async () => {
  const gpu = await testGpu();
  const r = rng(33);
  for (const [rows, cols, format, max] of [
    [10, 3, 'q8', 48 * 3], // 8 quant words + 4 scale words a row
    [10, 3, 'q4', 32 * 4],
    [7, 33, 'q8', 80 * 2 + 15],
    [300, 64, 'q4', 48 * 41],
    [5, 1280, 'q8', 1 << 20],
    [9, 520, 'q4', 1 << 20],
  ] as [number, number, QuantFormat, number][]) {
    const data = randn(r, rows * cols);
    const w = uploadWeight(gpu, 'w', data, rows, cols, format, max);
    const rw = quantRowWords(cols, format);
    const sw = quantScaleRowWords(cols);
    assert.equal(w.rowWords, rw);
    assert.equal(w.scaleRowWords, sw);
    assert.equal(w.groups, quantGroups(cols));
    let next = 0;
    for (const c of w.chunks) {
      assert.equal(c.rowStart, next);
      assert.equal(c.scaleOffset, c.rows * rw);
      assert.ok(c.rows * (rw + sw) * 4 <= max, `chunk of ${c.rows} rows passes ${max} bytes`);
      assert.ok(c.buffer.size <= max);
      const got = await gpu.readU32(c.buffer, c.rows * (rw + sw));
      const q = new Uint32Array(c.rows * rw);
      const s = new Uint32Array(c.rows * sw);
      packQuantRows(data.subarray(c.rowStart * cols, (c.rowStart + c.rows) * cols), c.rows, cols, format, q, s);
      assert.deepEqual(got.subarray(0, c.rows * rw), q);
      assert.deepEqual(got.subarray(c.rows * rw), s);
      next += c.rows;
    }
    assert.equal(next, rows);
    if (max < 1 << 20) assert.ok(w.chunks.length > 1);
    destroyWeight(gpu, w);
  }
  assert.throws(() => uploadWeight(gpu, 'w', new Float32Array(64), 1, 64, 'q8', 64), /one row takes 80 bytes/);
});

test('dequantize agrees with randomized row round trips', () => {
  const r = rng(34);
  for (let i = 0; i < 20; i++) {
    const rows = randInt(r, 1, 4);
    const K = randInt(r, 1, 100);
    const x = randn(r, rows * K, 0.1);
    for (const format of ['q8', 'q4'] as QuantFormat[]) {
      const all = dequantize(x, rows, K, format);
      for (let row = 0; row < rows; row++) {
        const src = x.subarray(row * K, (row + 1) * K);
        const one = format === 'q8' ? dequantizeQ8Row(quantizeQ8Row(src), K) : dequantizeQ4Row(quantizeQ4Row(src), K);
        assert.deepEqual(all.subarray(row * K, (row + 1) * K), one);
      }
    }
  }
});
