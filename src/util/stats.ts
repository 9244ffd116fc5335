// Repeated measurements and their order statistics: the engine's kernel tuning, the benchmark
// harness and the tests time noisy work by these, and summarise it by medians and quantiles, never
// by one run or a mean alone.

/** The q-quantile (0..1) of ascending `sorted`, interpolating linearly between neighbours. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) throw new Error('quantile: no values');
  if (sorted.length === 1) return sorted[0];
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** The median of `values` (any order; the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  return quantile([...values].sort((a, b) => a - b), 0.5);
}

/**
 * Runs `fn` (returning the measured ms) `warmup` times unmeasured, then up to `runs` times
 * measured, stopping early once `budgetMs` of measured time has passed (at least one measured
 * run). If a single warm-up run already took more than `budgetMs`, that run is kept as the only
 * sample and `warmupUsed` says so: a slow kernel is then timed once, compilation included.
 */
export async function repeat(
  fn: () => Promise<number>,
  o: { warmup: number; runs: number; budgetMs?: number },
): Promise<{ samples: number[]; warmupUsed: boolean; firstMs: number | undefined }> {
  const budget = o.budgetMs ?? Infinity;
  let firstMs: number | undefined;
  for (let i = 0; i < o.warmup; i++) {
    const ms = await fn();
    firstMs ??= ms;
    if (ms > budget) return { samples: [ms], warmupUsed: true, firstMs };
  }
  const samples: number[] = [];
  let spent = 0;
  while (samples.length < Math.max(1, o.runs)) {
    const ms = await fn();
    firstMs ??= ms;
    samples.push(ms);
    spent += ms;
    if (spent > budget) break;
  }
  return { samples, warmupUsed: false, firstMs };
}
