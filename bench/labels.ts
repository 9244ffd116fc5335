// How figures are written for people, shared by the table, the chart and the log: numbers, the
// label of a matmul series (engine, format, kernel kind, lab variant), runs of layer indices.
import type { MatmulResult } from './kernels.ts';

/** A number at a precision that suits its size; '-' when absent. */
export function fmt(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return '-';
  const a = Math.abs(x);
  if (a >= 1000) return x.toFixed(0);
  if (a >= 100) return x.toFixed(1);
  if (a >= 10) return x.toFixed(2);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(2);
}

/** How a matmul figure is labelled in tables and charts: engine, format, kernel kind, lab variant. */
export function matmulLabel(m: Pick<MatmulResult, 'engine' | 'dtype' | 'gemv' | 'variant'>): string {
  return `${m.engine} ${m.dtype}${m.gemv === 'coalesced' ? ' coalesced' : ''}${m.variant ? ` [${m.variant.split('/').pop()}]` : ''}`;
}

/** Layer indices as "5-11" when they run on, else listed. */
export function layerRange(layers: readonly number[]): string {
  const runOn = layers.every((l, i) => i === 0 || l === layers[i - 1] + 1);
  return runOn && layers.length > 2 ? `${layers[0]}-${layers[layers.length - 1]}` : layers.join(',');
}
