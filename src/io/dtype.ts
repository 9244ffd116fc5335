// Scalar conversions between float formats, exact and round-to-nearest-even like the hardware.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f16BitsToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // may carry into the exponent: still correct
  return sign | h;
}

export function bf16BitsToF32(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

/** Rounds through f16 and back: what a value becomes when stored as f16. */
export function roundF16(x: number): number {
  return f16BitsToF32(f32ToF16Bits(x));
}

/**
 * Packs a row-major [rows, cols] matrix as f16, two values per u32 (low half first), each row
 * padded to an even length so rows start on a word boundary. Returns ceil(cols/2) words a row.
 */
export function packF16Rows(src: ArrayLike<number>, rows: number, cols: number): Uint32Array {
  const stride = Math.ceil(cols / 2);
  const out = new Uint32Array(rows * stride);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c += 2) {
      const lo = f32ToF16Bits(src[r * cols + c]);
      const hi = c + 1 < cols ? f32ToF16Bits(src[r * cols + c + 1]) : 0;
      out[r * stride + (c >> 1)] = (lo | (hi << 16)) >>> 0;
    }
  }
  return out;
}
