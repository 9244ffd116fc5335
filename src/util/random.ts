// The project's seeded PRNG: sampling, speculative acceptance, the doctor's checks, the benchmark
// and the tests draw from it, so the same seed gives the same numbers everywhere. Lowest layer:
// imports nothing.

/** mulberry32: uniform numbers in [0, 1) from a 32-bit seed; small, fast and seedable. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
