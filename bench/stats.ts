// Summaries of repeated measurements. The machine is shared and noisy, so every figure is a
// median with its spread (min, max, quartiles), never a single run or a mean alone.
import { quantile } from '../src/util/stats.ts';

export interface Stat {
  median: number;
  min: number;
  max: number;
  p25: number;
  p75: number;
  mean: number;
  n: number;
  /** (max - min) / median: 0 for one sample. */
  rel_spread: number;
}

export function summarize(samples: readonly number[]): Stat {
  if (samples.length === 0) throw new Error('summarize: no samples');
  const s = [...samples].sort((a, b) => a - b);
  const median = quantile(s, 0.5);
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return {
    median,
    min: s[0],
    max: s[s.length - 1],
    p25: quantile(s, 0.25),
    p75: quantile(s, 0.75),
    mean,
    n: s.length,
    rel_spread: median > 0 ? (s[s.length - 1] - s[0]) / median : 0,
  };
}

/** A throughput from a time statistic: `work / ms` per second, min/max swapped accordingly. */
export function rate(work: number, ms: Stat): Stat {
  const f = (t: number) => (work * 1000) / t;
  return {
    median: f(ms.median),
    min: f(ms.max),
    max: f(ms.min),
    p25: f(ms.p75),
    p75: f(ms.p25),
    mean: f(ms.mean),
    n: ms.n,
    rel_spread: ms.rel_spread === 0 ? 0 : (f(ms.min) - f(ms.max)) / f(ms.median),
  };
}

export function round(x: number, digits = 4): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const p = Math.pow(10, Math.max(0, digits - 1 - Math.floor(Math.log10(Math.abs(x)))));
  return Math.round(x * p) / p;
}

/** Rounds every number in a JSON-like value to `digits` significant digits (for readable output). */
export function roundDeep<T>(v: T, digits = 5): T {
  if (typeof v === 'number') return (Number.isInteger(v) ? v : round(v, digits)) as T;
  if (Array.isArray(v)) return v.map((x) => roundDeep(x, digits)) as T;
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = roundDeep(x, digits);
    return out as T;
  }
  return v;
}
