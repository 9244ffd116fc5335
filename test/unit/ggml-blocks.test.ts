// The bytes the GGUF writer stores for Q8_0 and Q4_0 tensors (the engine's quantizer, ggmlBlocks)
// against ggml's block layout and reference quantizers written out here from their definition:
//   block_q8_0 { ggml_half d; int8_t qs[32]; }   d = amax / 127, q = roundf(x / d)
//   block_q4_0 { ggml_half d; uint8_t qs[16]; }  d = max / -8 (max: the element of largest
//     magnitude, sign kept, the first on ties), q = min(15, (int8_t)(x / d + 8.5f)),
//     qs[j] = q[j] | q[j + 16] << 4, value = (q - 8) * d
// with every step in f32 (the quants from 1/d in f32, not from the stored f16 d) and d stored as the
// nearest f16, little-endian.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ggmlBlocks } from '../../src/weights/quant.ts';
import { randn, rng } from '../helpers.ts';

const fr = Math.fround;

/** The f16 nearest to v, ties to even, decoded from its bits: checks the stored scale without our encoder. */
function f16Value(lo: number, hi: number): number {
  const h = lo | (hi << 8);
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  assert.notEqual(e, 31, 'a scale is never infinite or NaN here');
  return sign * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
}

/** True when h is the f16 nearest to d (ties: even mantissa): no f16 is closer. */
function isNearestF16(stored: number, d: number, lo: number): boolean {
  const a = Math.abs(d);
  let e = -14;
  while (e < 15 && 2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (e - 10);
  const err = Math.abs(Math.abs(stored) - a);
  if (err > ulp / 2) return false;
  if (err === ulp / 2) return (lo & 1) === 0;
  return true;
}

function checkScale(bytes: Uint8Array, at: number, d: number, what: string): void {
  const stored = f16Value(bytes[at], bytes[at + 1]);
  assert.ok(isNearestF16(stored, d, bytes[at]), `${what}: stored scale ${stored} is not the nearest f16 to ${d}`);
  if (d !== 0) assert.equal(Math.sign(stored), Math.sign(d), `${what}: scale sign`);
}

function checkQ8(x: Float32Array, bytes: Uint8Array): void {
  assert.equal(bytes.length, (x.length / 32) * 34);
  for (let b = 0; b < x.length / 32; b++) {
    const blk = x.subarray(b * 32, b * 32 + 32);
    let amax = 0;
    for (const v of blk) amax = Math.max(amax, Math.abs(v));
    const d = fr(amax / 127);
    const id = d ? fr(1 / d) : 0;
    checkScale(bytes, b * 34, d, `Q8_0 block ${b}`);
    for (let j = 0; j < 32; j++) {
      const v = fr(blk[j] * id);
      const q = v < 0 ? 0 - Math.round(-v) : Math.round(v); // roundf: halves away from zero (0 - 0 is +0, as an int8 is)
      const byte = bytes[b * 34 + 2 + j];
      assert.equal(byte > 127 ? byte - 256 : byte, q, `Q8_0 block ${b} element ${j} (x = ${blk[j]})`);
    }
  }
}

function checkQ4(x: Float32Array, bytes: Uint8Array): void {
  assert.equal(bytes.length, (x.length / 32) * 18);
  for (let b = 0; b < x.length / 32; b++) {
    const blk = x.subarray(b * 32, b * 32 + 32);
    let amax = 0;
    let max = 0;
    for (const v of blk)
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    const d = fr(max / -8);
    const id = d ? fr(1 / d) : 0;
    checkScale(bytes, b * 18, d, `Q4_0 block ${b}`);
    const q = (v: number) => Math.min(15, Math.trunc(fr(fr(v * id) + 8.5)));
    for (let j = 0; j < 16; j++) {
      const byte = bytes[b * 18 + 2 + j];
      assert.equal(byte & 15, q(blk[j]), `Q4_0 block ${b} element ${j} (low nibble of byte ${j})`);
      assert.equal(byte >> 4, q(blk[j + 16]), `Q4_0 block ${b} element ${j + 16} (high nibble of byte ${j})`);
    }
  }
}

test('ggmlBlocks: Q8_0 and Q4_0 bytes are ggml blocks, on random rows of several scales', () => {
  const r = rng(2024);
  for (const [n, scale] of [
    [32, 1],
    [64, 0.02],
    [1024, 3],
    [320, 1e-4],
    [96, 7000], // scales near the top of f16
  ]) {
    const x = randn(r, n, scale);
    if (n > 64) x[40] = -25 * scale; // an outlier with a negative sign: Q4_0's d is then positive
    checkQ8(x, ggmlBlocks(x, 'q8'));
    checkQ4(x, ggmlBlocks(x, 'q4'));
  }
});

test('ggmlBlocks: hand-made blocks (zeros, ties in magnitude, exact halves, clamping)', () => {
  const x = new Float32Array(128);
  // block 0: all zero -> d = 0 (Q4_0: -0), every Q4_0 quant 8, every Q8_0 quant 0
  // block 1: -4 then 4: the first of equal magnitude is max, so d = -4 / -8 = 0.5
  x.set([-4, 4, 0.25, -0.25, 3.75, -3.75], 32);
  // block 2: max 127 -> Q8_0 d = 1, so halves round away from zero
  x.set([127, 0.5, -0.5, 1.5, -2.5, 126.5], 64);
  // block 3: positive max 8 -> Q4_0 d = -1; -8 would be q = 16, clamped to 15
  x.set([8, -8, 1, -1, 7.5, -7.5], 96);
  const q8 = ggmlBlocks(x, 'q8');
  const q4 = ggmlBlocks(x, 'q4');
  checkQ8(x, q8);
  checkQ4(x, q4);
  // A few bytes spelled out, so a wrong reference above cannot hide a wrong layout.
  assert.deepEqual([...q8.subarray(68, 68 + 8)], [0x00, 0x3c, 127, 1, 0xff, 2, 0xfd, 127]); // d = 1.0 (0x3c00)
  assert.deepEqual([...q4.subarray(0, 3)], [0x00, 0x80, 0x88]); // d = -0, q = 8 | 8 << 4
  assert.deepEqual([...q4.subarray(54, 54 + 4)], [0x00, 0xbc, 0x80, 0x8f]); // d = -1.0 (0xbc00); 8 -> 0, -8 -> 15 (clamped), zeros -> 8
});

test('ggmlBlocks: a length that is not whole blocks is refused', () => {
  assert.throws(() => ggmlBlocks(new Float32Array(40), 'q8'), /not a multiple of 32/);
});
