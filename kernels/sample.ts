// Next-token choice on the GPU with Hugging Face generation semantics (repetition penalty, then
// greedy argmax, or temperature, top-k, top-p and a draw), so a decode step reads back 4 bytes.
// The kernel also marks the chosen id in `seen`, so the next step's penalty includes it.
//
// Hugging Face order: repetition_penalty on the raw logits (x < 0 ? x * p : x / p for tokens that
// occurred), then for sampling: / temperature, top_k (keep >= the k-th largest value, ties kept),
// top_p (over the softmax of what is left, keep the values whose strictly-larger mass is below
// top_p: the smallest descending prefix reaching top_p, with every token equal to the last one
// kept), then inverse CDF with the caller's u in [0, 1) over the kept tokens in increasing id
// order. shaders/sample.wgsl defines every float32 rounding; `sampleRef` repeats it exactly.
// Where this differs from Hugging Face: ties at the top-p boundary are all kept (torch's sort may
// split them), NaN logits are never chosen (torch.multinomial would raise), -0 and subnormal
// logits count as 0, and exp is our own ~1 ulp float32 function.
import type { Gpu } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/sample.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { makeDispatch, type Dispatch } from '../src/gpu/dispatch.ts';

/** Threads of the one workgroup; fixed because the float summation order depends on it. */
export const SAMPLE_WG = 256;

export interface SamplingParams {
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
}

const MIN_NORMAL = 2 ** -126;

/** Throws a one-line error naming the option (Hugging Face's names) when a value is unusable. */
export function validateSampling(p: SamplingParams): void {
  const rp = p.repetitionPenalty;
  // Values under float32's smallest normal (1.2e-38) would be flushed to 0 by some GPUs.
  if (typeof rp !== 'number' || !Number.isFinite(rp) || !(Math.fround(rp) >= MIN_NORMAL)) {
    throw new Error(`repetition_penalty must be a strictly positive float, got ${rp}`);
  }
  if (typeof p.topK !== 'number' || !Number.isSafeInteger(p.topK) || p.topK < 0) {
    throw new Error(`top_k must be an integer >= 0 (0 turns it off), got ${p.topK}`);
  }
  if (typeof p.topP !== 'number' || !(p.topP > 0 && p.topP <= 1)) {
    throw new Error(`top_p must be a float in (0, 1] (1 turns it off), got ${p.topP}`);
  }
  if (p.doSample) {
    const t = p.temperature;
    if (typeof t !== 'number' || !Number.isFinite(t) || !(Math.fround(t) >= MIN_NORMAL)) {
      throw new Error(`temperature must be a strictly positive float when do_sample is true, got ${t}`);
    }
  }
}

export interface SampleOptions {
  n: number;
  /** element index of the first logit in `logits` */
  offset: number;
  logits: GPUBuffer;
  /** u32 [n]: non-zero for tokens already in the sequence; the kernel sets seen[id] = 1 */
  seen: GPUBuffer;
  /** f32 u in [0, 1) at element 0, rewritten by the caller each step (unused when greedy);
   *  must be a different buffer from `seen` and `out` (a writable binding may not alias) */
  random: GPUBuffer;
  /** u32; the chosen id (relative to offset) is written at element 0 */
  out: GPUBuffer;
  params: SamplingParams;
  /**
   * Sampling only: also write the kept weights (the draw's distribution, unnormalised: 0 for
   * tokens top-k/top-p dropped) as f32 [n] at element `offset` of `buffer`, and leave `seen`
   * unmarked (speculative sampling manages it).
   */
  dist?: { buffer: GPUBuffer; offset: number };
  label?: string;
}

/**
 * One dispatch of one workgroup. Sampling allocates a scratch buffer of 8n bytes, owned by the
 * dispatch (freed by releaseDispatches). Run it again each step after writing the next u.
 */
export function sampleDispatch(gpu: Gpu, o: SampleOptions): Dispatch {
  const label = o.label ?? 'sample';
  if (!(Number.isInteger(o.n) && o.n >= 1 && o.n < 2 ** 28 && Number.isInteger(o.offset) && o.offset >= 0)) {
    throw new Error(`${label}: n (${o.n}) must be a positive integer and offset (${o.offset}) a non-negative one`);
  }
  validateSampling(o.params);
  const need = (what: string, buf: GPUBuffer, bytes: number): void => {
    if (buf.size < bytes) throw new Error(`${label}: ${what} buffer holds ${buf.size} bytes, needs at least ${bytes}`);
  };
  need('logits', o.logits, (o.offset + o.n) * 4);
  need('seen', o.seen, o.n * 4);
  need('out', o.out, 4);
  if (o.params.doSample) need('random', o.random, 4);
  if (o.dist && !o.params.doSample) throw new Error(`${label}: a distribution output needs do_sample`);
  if (o.dist) {
    if (!(Number.isInteger(o.dist.offset) && o.dist.offset >= 0 && o.dist.offset < 2 ** 32)) throw new Error(`${label}: dist offset ${o.dist.offset} is not a u32`);
    need('dist', o.dist.buffer, (o.dist.offset + o.n) * 4);
  }
  const bound = [o.logits, o.seen, o.out, ...(o.params.doSample ? [o.random] : []), ...(o.dist ? [o.dist.buffer] : [])];
  if (new Set(bound).size < bound.length) {
    throw new Error(`${label}: logits, seen, out${o.params.doSample ? ', random' : ''}${o.dist ? ' and dist' : ''} must be different buffers`);
  }

  const p = o.params;
  const sample = p.doSample;
  const penalty = Math.fround(p.repetitionPenalty) !== 1;
  const topK = sample && p.topK > 0 && p.topK < o.n ? p.topK : 0;
  const topP = sample && Math.fround(p.topP) < 1;
  const flags = (penalty ? 1 : 0) | (topK ? 2 : 0) | (topP ? 4 : 0);
  const words = [o.n, o.offset, topK, flags, { f: sample ? p.temperature : 1 }, { f: p.topP }, { f: p.repetitionPenalty }, o.dist?.offset ?? 0];

  const dist = !!o.dist;
  const pipeline = gpu.pipeline({
    label: sample ? (dist ? 'sample.dist' : 'sample') : 'sample.greedy',
    code: preprocess(shaderSource('sample', builtIn), { SAMPLE: sample, DIST: dist }),
    bindings: sample ? ['uniform', 'read', 'write', 'write', 'read', 'write', ...(dist ? (['write'] as const) : [])] : ['uniform', 'read', 'write', 'write'],
  });
  if (!sample) return makeDispatch(gpu, pipeline, label, words, [o.logits, o.seen, o.out], [1, 1, 1]);
  const scratch = gpu.createBuffer(`${label}.scratch`, 8 * o.n, GPUBufferUsage.STORAGE);
  const d = makeDispatch(gpu, pipeline, label, words, [o.logits, o.seen, o.out, o.random, scratch, ...(o.dist ? [o.dist.buffer] : [])], [1, 1, 1]);
  d.owned.push(scratch);
  return d;
}

// ---------------------------------------------------------------------------------------------
// CPU reference: the same rule with the same float32 roundings (Math.fround after every operation,
// which is exact for +, -, *, / since double has more than twice float32's precision).

const f32 = Math.fround;
const kbuf = new DataView(new ArrayBuffer(4));

/** -0 and subnormals become +0, as in the kernel. */
function canon(v: number): number {
  return Math.abs(v) < 2 ** -126 ? 0 : v;
}

function toKey(v: number): number {
  kbuf.setFloat32(0, v);
  const b = kbuf.getUint32(0);
  return b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
}

function fromKey(k: number): number {
  kbuf.setUint32(0, k & 0x80000000 ? k & 0x7fffffff : ~k >>> 0);
  return kbuf.getFloat32(0);
}

const LOG2E = f32(1.44269504088896341);
const C1 = f32(0.693359375);
const C2 = f32(-2.12194440e-4);
const P = [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1].map(f32);

/** The kernel's exp for x <= 0, bit for bit. */
export function expNegRef(x: number): number {
  if (x < -86) return 0;
  const k = Math.floor(f32(f32(x * LOG2E) + 0.5));
  let r = f32(x - f32(k * C1));
  r = f32(r - f32(k * C2));
  let p = P[0];
  for (let j = 1; j < P.length; j++) p = f32(f32(p * r) + P[j]);
  const y = f32(f32(f32(p * f32(r * r)) + r) + 1);
  return f32(y * 2 ** k);
}

/** Penalised logits (float32), as the kernel computes them. */
function penalise(logits: Float32Array, seen: Uint8Array | Uint32Array, penalty: number): Float32Array {
  const n = logits.length;
  const p = f32(penalty);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v = canon(logits[i]);
    if (p !== 1 && seen[i] !== 0) v = canon(v < 0 ? f32(v * p) : f32(v / p));
    x[i] = v;
  }
  return x;
}

/** Z(K): sum of w over key >= K, strided per thread then a fixed tree, as the kernel sums. */
function sumAbove(keys: Uint32Array, w: Float32Array, K: number): number {
  const n = keys.length;
  const part = new Float32Array(SAMPLE_WG);
  for (let t = 0; t < SAMPLE_WG; t++) {
    let acc = 0;
    for (let i = t; i < n; i += SAMPLE_WG) if (keys[i] >= K) acc = f32(acc + w[i]);
    part[t] = acc;
  }
  for (let s = SAMPLE_WG / 2; s > 0; s >>= 1) for (let t = 0; t < s; t++) part[t] = part[t] + part[t + s];
  return part[0];
}

/**
 * The id the kernel chooses for these logits (n = logits.length), `seen` flags and draw u.
 * Independent of the kernel's search strategy: top-k by sorting, top-p by plain bisection.
 */
export function sampleRef(logits: Float32Array, seen: Uint8Array | Uint32Array, u: number, p: SamplingParams): number {
  validateSampling(p);
  const n = logits.length;
  if (n < 1 || seen.length < n) throw new Error(`sampleRef: ${n} logits, ${seen.length} seen flags`);
  if (!p.doSample) {
    const x = penalise(logits, seen, p.repetitionPenalty);
    let best = -1;
    for (let i = 0; i < n; i++) if (!Number.isNaN(x[i]) && (best < 0 || x[i] > x[best])) best = i;
    return Math.max(best, 0);
  }
  return drawRef(keptWeightsRef(logits, seen, p), u);
}

/**
 * The kept weights the sampling kernel draws from (its DIST output): e = exp(y - max) for tokens
 * top-k and top-p keep, 0 for the rest; unnormalised.
 */
export function keptWeightsRef(logits: Float32Array, seen: Uint8Array | Uint32Array, p: SamplingParams): Float32Array {
  validateSampling(p);
  if (!p.doSample) throw new Error('keptWeightsRef: the distribution is defined for sampling only');
  const n = logits.length;
  const x = penalise(logits, seen, p.repetitionPenalty);
  const T = f32(p.temperature);
  const keys = new Uint32Array(n);
  const y = new Float32Array(n);
  let kmax = 0;
  let kmin = 0xffffffff;
  for (let i = 0; i < n; i++) {
    y[i] = Number.isNaN(x[i]) ? -Infinity : canon(f32(x[i] / T));
    keys[i] = toKey(y[i]);
    kmax = Math.max(kmax, keys[i]);
    kmin = Math.min(kmin, keys[i]);
  }
  const m = fromKey(kmax);

  // top-k: keep values >= the k-th largest.
  let kk = kmin;
  if (p.topK > 0 && p.topK < n) {
    const sorted = Float32Array.from(y).sort();
    kk = toKey(sorted[n - p.topK]);
  }
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) if (keys[i] >= kk) w[i] = keys[i] === kmax ? 1 : expNegRef(f32(y[i] - m));

  // top-p: the largest K in [kk, kmax] with Z(K) >= fl(top_p * Z(kk)).
  let lo = kk;
  if (f32(p.topP) < 1) {
    const target = f32(f32(p.topP) * sumAbove(keys, w, kk));
    let hi = kmax;
    while (lo < hi) {
      const mid = lo + Math.ceil((hi - lo) / 2);
      if (sumAbove(keys, w, mid) >= target) lo = mid;
      else hi = mid - 1;
    }
  }
  const kp = lo;
  for (let i = 0; i < n; i++) if (keys[i] < kp) w[i] = 0;
  return w;
}

/**
 * Inverse CDF of non-negative weights `w` at u in [0, 1), in increasing id order over contiguous
 * chunks (one per kernel thread), with the kernels' float32 roundings: the sampler's draw, and
 * speculative sampling's (kernels/spec_accept.ts).
 */
export function drawRef(w: Float32Array, u: number): number {
  const n = w.length;
  const chunk = Math.ceil(n / SAMPLE_WG);
  const cs = new Float32Array(SAMPLE_WG);
  for (let t = 0; t < SAMPLE_WG; t++) {
    let acc = 0;
    for (let i = t * chunk; i < Math.min(t * chunk + chunk, n); i++) acc = f32(acc + w[i]);
    cs[t] = acc;
  }
  let total = 0;
  for (let t = 0; t < SAMPLE_WG; t++) total = f32(total + cs[t]);
  const r = f32(f32(u) * total);
  let run = 0;
  let chosen = -1;
  let base = 0;
  for (let t = 0; t < SAMPLE_WG; t++) {
    const after = f32(run + cs[t]);
    if (cs[t] > 0) {
      chosen = t;
      base = run;
      if (after > r) break;
    }
    run = after;
  }
  if (chosen < 0) return 0;
  let acc = base;
  let last = -1;
  for (let i = chosen * chunk; i < Math.min(chosen * chunk + chunk, n); i++) {
    if (w[i] > 0) {
      acc = f32(acc + w[i]);
      last = i;
      if (acc > r) return i;
    }
  }
  return last;
}
