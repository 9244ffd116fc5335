// Scoring on the GPU: for each of R rows of logits and a target id per row, the log-probability of
// the target (log-softmax gathered at it) and whether it is the greedy choice. A row costs 8 bytes
// of readback instead of a vocab-sized row.
import type { Gpu } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/logprob.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { grid, makeDispatch, type Dispatch } from '../src/gpu/dispatch.ts';

const WG = 256;

export interface LogprobOptions {
  /** values per row (the vocabulary size) */
  n: number;
  /** rows to score */
  rows: number;
  /** element index of row 0's first value in `logits`; rows are contiguous, n apart */
  offset: number;
  logits: GPUBuffer;
  /** u32 [rows]: the target id of each row, in [0, n) */
  targets: GPUBuffer;
  /** f32 [rows, 2]: (log-probability of the target, 1 if the target is the argmax else 0) */
  out: GPUBuffer;
  label?: string;
}

export function logprobDispatch(gpu: Gpu, o: LogprobOptions): Dispatch {
  for (const [k, v, min] of [['n', o.n, 1], ['rows', o.rows, 1], ['offset', o.offset, 0]] as const) {
    if (!Number.isInteger(v) || v < min) throw new Error(`logprob: ${k} must be an integer >= ${min}, got ${v}`);
  }
  const wg = Math.min(WG, gpu.limits.maxComputeInvocationsPerWorkgroup);
  const p = gpu.pipeline({ label: 'logprob', code: preprocess(shaderSource('logprob', builtIn)), bindings: ['uniform', 'read', 'read', 'write'], constants: { WG: wg } });
  return makeDispatch(gpu, p, o.label ?? 'logprob', [o.n, o.offset, o.rows], [o.logits, o.targets, o.out], grid(gpu, o.rows));
}

export interface LogprobResult {
  logprob: Float64Array;
  greedy: Uint8Array;
}

/**
 * CPU reference in float64: logit[t] - max - log(sum(exp(logit - max))) per row, and whether t is
 * the argmax (lowest index of the maximum, as argmaxRef). Logits are assumed finite or -Infinity.
 */
export function logprobRef(logits: ArrayLike<number>, n: number, targets: ArrayLike<number>, offset = 0): LogprobResult {
  const rows = targets.length;
  const logprob = new Float64Array(rows);
  const greedy = new Uint8Array(rows);
  for (let r = 0; r < rows; r++) {
    const base = offset + r * n;
    let max = -Infinity;
    let arg = 0;
    for (let i = 0; i < n; i++) {
      if (logits[base + i] > max) {
        max = logits[base + i];
        arg = i;
      }
    }
    let sum = 0;
    for (let i = 0; i < n; i++) sum += Math.exp(logits[base + i] - max);
    const t = targets[r];
    if (!(Number.isInteger(t) && t >= 0 && t < n)) throw new Error(`logprobRef: target ${t} of row ${r} is outside [0, ${n})`);
    logprob[r] = logits[base + t] - max - Math.log(sum);
    greedy[r] = t === arg ? 1 : 0;
  }
  return { logprob, greedy };
}
