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

/** f32 -> f16 bits, round to nearest even (what the hardware does); NaN stays a quiet NaN. */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  return f32BitsToF16Bits(u32[0]);
}

/**
 * The same from the f32's bits, for loops over a Uint32Array view (the safetensors writer): adding
 * 0xfff plus the kept mantissa's lowest bit before the shift rounds to nearest even, and a carry
 * out of the mantissa correctly bumps the exponent (up to infinity).
 */
export function f32BitsToF16Bits(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const x = b & 0x7fffffff;
  if (x >= 0x38800000) {
    if (x >= 0x47800000) return sign | (x > 0x7f800000 ? 0x7e00 : 0x7c00);
    return sign | ((x - 0x38000000 + 0xfff + ((x >>> 13) & 1)) >>> 13);
  }
  if (x < 0x33000000) return sign; // below half the smallest subnormal: +-0
  // Subnormal f16: shift the full mantissa, round to nearest even.
  const e = x >>> 23;
  const mant = (x & 0x7fffff) | 0x800000;
  const shift = 126 - e;
  let h = mant >>> shift;
  const rem = mant & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rem > half || (rem === half && h & 1)) h++;
  return sign | h;
}

/** f32 -> bf16 bits, round to nearest even; a NaN stays a (quiet) NaN. */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  return f32BitsToBf16Bits(u32[0]);
}

export function f32BitsToBf16Bits(b: number): number {
  return (b & 0x7fffffff) > 0x7f800000 ? (b >>> 16) | 0x40 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
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
