// What the doctor's kernel checks share: a check's spec and measurement, element-wise and exact
// comparisons, and running dispatches once with cleanup.
import type { Gpu } from '../gpu/gpu.ts';
import { releaseDispatches, runDispatches, type Dispatch } from '../gpu/dispatch.ts';
import type { KernelName } from '../gpu/kernel-variants.ts';

/** What a check measured: largest error and whether every element was within tolerance. */
export interface Measured {
  maxAbs: number;
  pass: boolean;
}

export interface CheckSpec {
  name: string;
  variant: string;
  format: string;
  tolerance: number;
  rel_tolerance?: number;
  kernels: KernelName[];
  run: (gpu: Gpu) => Promise<Measured>;
}

/** Compares element by element: |a - b| <= atol + rtol * |b|; NaN anywhere fails. */
export function compareClose(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol = 0): Measured {
  let maxAbs = 0;
  let pass = got.length === want.length;
  for (let i = 0; i < Math.min(got.length, want.length); i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= atol + rtol * Math.abs(want[i]))) pass = false;
    maxAbs = Math.max(maxAbs, Number.isNaN(d) ? Infinity : d);
  }
  return { maxAbs, pass };
}

export function merge(a: Measured, b: Measured): Measured {
  return { maxAbs: Math.max(a.maxAbs, b.maxAbs), pass: a.pass && b.pass };
}

/** Ids compared exactly: the error is the number of mismatches. */
export function countMismatches(got: readonly number[], want: readonly number[]): Measured {
  const bad = want.filter((w, i) => got[i] !== w).length + Math.abs(got.length - want.length);
  return { maxAbs: bad, pass: bad === 0 };
}

/** Runs dispatches, reads buffers back, then frees the dispatches and the buffers. */
export async function runAndFree<T>(gpu: Gpu, ds: Dispatch[], bufs: GPUBuffer[], read: () => Promise<T>): Promise<T> {
  try {
    runDispatches(gpu, ds, 'doctor');
    return await read();
  } finally {
    releaseDispatches(gpu, ds);
    for (const b of bufs) gpu.destroyBuffer(b);
  }
}
