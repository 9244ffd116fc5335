// Synthetic random-weight OpenELM checkpoints in the Hugging Face layout (config.json +
// model.safetensors or shards), for tests and benchmarks. Node-only (writes files).
//
// Weight scheme (the same as the tiny-elm fixture's "scaled" scheme, which keeps activations
// and logits at a sane scale for any size):
//   linear weights [out, in]       normal, std 1/sqrt(in)
//   token embeddings, lm_head      normal, std 1/sqrt(model_dim)  (tied logits then have std ~1)
//   RMSNorm weights                log-normal, median 1 (exp(0.5 * normal)); the layer norms
//                                  also have a few outlier channels 16x larger: the spread
//                                  trained models' gains have, which quantization that folds
//                                  the gains into the next product's columns must survive
//                                  (1 + 0.1 * normal hid that). No outliers in the q/k norms:
//                                  with random weights they make attention needle-sharp and
//                                  every rounding flips its choices, unlike a trained model.
// Each tensor has its own stream, seeded from (seed, tensor name): a tensor's values do not
// depend on the dtype's rounding, the sharding, or which other tensors exist.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseConfig } from '../config/config.ts';
import { derivePlan, type ModelPlan, type TensorSpec } from '../config/plan.ts';
import { numElements, type TensorToWrite, type WriteDtype } from './safetensors.ts';
import { writeCheckpointWeights } from './node-source.ts';

export interface SynthOptions {
  dtype: WriteDtype;
  seed: number;
  /** Split into shards of at most this many bytes (model.safetensors.index.json + shards). */
  shardBytes?: number;
}

/** Bumped when the weight scheme changes, so cached synthetic checkpoints of an old scheme are not reused. */
export const SYNTH_SCHEME = 3;

/** Spread (std of log g) and outliers of the synthetic RMSNorm gains. */
const GAIN_LOG_STD = 0.5;
const GAIN_OUTLIER = 16;
/** One outlier channel per this many channels, at least two a norm. */
const GAIN_OUTLIER_EVERY = 512;

export const SYNTHETIC_NOTE = 'Synthetic checkpoint: random weights, not a trained model (openelm-webgpu synthesizeCheckpoint).';

/** Inverse of the standard normal CDF (Acklam's rational approximation, |rel err| < 1.2e-9). */
function normalQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const tail = (q: number) =>
    (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  if (p < 0.02425) return tail(Math.sqrt(-2 * Math.log(p)));
  if (p > 1 - 0.02425) return -tail(Math.sqrt(-2 * Math.log(1 - p)));
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

let normalTable: Float32Array | undefined;
/**
 * 65536 standard-normal quantiles at (i + 0.5) / 65536, rescaled to exactly mean 0, variance 1.
 * A 16-bit random index into it is a normal sample quantized to 1/65536 of probability (tails cut
 * at about 4.2 sigma): plenty for random weights, and two samples per 32-bit random number.
 */
export function normalTable16(): Float32Array {
  if (!normalTable) {
    const t = new Float64Array(65536);
    let ss = 0;
    for (let i = 0; i < 32768; i++) {
      const v = normalQuantile((i + 0.5) / 65536); // negative half; mirror for exact symmetry
      t[i] = v;
      t[65535 - i] = -v;
      ss += 2 * v * v;
    }
    const k = 1 / Math.sqrt(ss / 65536);
    normalTable = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) normalTable[i] = t[i] * k;
  }
  return normalTable;
}

/** 32-bit hash of a string mixed with a seed (FNV-1a, then a murmur3 finalizer). */
export function hashSeed(seed: number, s: string): number {
  let h = (0x811c9dc5 ^ Math.imul(seed | 0, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0 || 0x9e3779b9; // xorshift state must be non-zero
}

/**
 * Yields `count` values `mean + std * N(0,1)` in chunks, from a xorshift32 stream seeded with
 * `state`. Deterministic for a given (state, count, chunk size).
 */
export function* normalChunks(state: number, count: number, mean: number, std: number, chunk = 1 << 20): Generator<Float32Array> {
  const table = normalTable16();
  let s = state >>> 0 || 1;
  for (let done = 0; done < count; ) {
    const n = Math.min(chunk, count - done);
    const out = new Float32Array(n);
    let i = 0;
    for (; i + 1 < n; i += 2) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      out[i] = mean + std * table[s & 0xffff];
      out[i + 1] = mean + std * table[(s >>> 16) & 0xffff];
    }
    if (i < n) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      out[i] = mean + std * table[s & 0xffff];
    }
    done += n;
    yield out;
  }
}

/**
 * Synthetic RMSNorm gains of one norm: exp(GAIN_LOG_STD * z), then (with `outliers`)
 * max(2, n / 512) channels picked by the same stream multiplied by GAIN_OUTLIER.
 */
export function normGains(state: number, n: number, outliers = true): Float32Array {
  const g = normalChunks(state, n, 0, GAIN_LOG_STD, n).next().value ?? new Float32Array(0);
  for (let i = 0; i < n; i++) g[i] = Math.exp(g[i]);
  if (!outliers) return g;
  let s = (state ^ 0x5bd1e995) >>> 0 || 1;
  const count = Math.min(n, Math.max(2, Math.round(n / GAIN_OUTLIER_EVERY)));
  for (let j = 0; j < count; j++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    g[(s >>> 0) % n] *= GAIN_OUTLIER;
  }
  return g;
}

/** mean and std of the synthetic values of one matrix of the plan. */
export function synthInit(spec: TensorSpec, plan: ModelPlan): { mean: number; std: number } {
  if (spec.name === 'transformer.token_embeddings.weight' || spec.name === 'lm_head.weight') {
    return { mean: 0, std: 1 / Math.sqrt(plan.modelDim) };
  }
  return { mean: 0, std: 1 / Math.sqrt(spec.shape[1]) }; // linear [out, in]
}

/** The tensors of a synthetic checkpoint, data generated lazily when each is written. */
export function synthTensors(plan: ModelPlan, dtype: WriteDtype, seed: number): TensorToWrite[] {
  return plan.tensors.map((spec) => {
    const state = hashSeed(seed, spec.name);
    if (spec.shape.length === 1) {
      const outliers = !/\.(q|k)_norm\.weight$/.test(spec.name);
      return { name: spec.name, dtype, shape: spec.shape, data: () => [normGains(state, spec.shape[0], outliers)] };
    }
    const { mean, std } = synthInit(spec, plan);
    return { name: spec.name, dtype, shape: spec.shape, data: () => normalChunks(state, numElements(spec.shape), mean, std) };
  });
}

/**
 * Writes `outDir/config.json` (the given config plus a `synthetic_note`) and random weights for
 * it (`model.safetensors`, or shards when `shardBytes` is given and exceeded). The config is
 * validated first. Returns the derived plan.
 */
export async function synthesizeCheckpoint(outDir: string, config: object, opts: SynthOptions): Promise<ModelPlan> {
  const plan = derivePlan(parseConfig(config, 'config'), 'config');
  await mkdir(outDir, { recursive: true });
  const cfgOut = { ...(config as Record<string, unknown>), synthetic_note: SYNTHETIC_NOTE, synthetic_seed: opts.seed, synthetic_scheme: SYNTH_SCHEME };
  await writeFile(join(outDir, 'config.json'), JSON.stringify(cfgOut, null, 2) + '\n');
  await writeCheckpointWeights(outDir, synthTensors(plan, opts.dtype, opts.seed), {
    maxShardBytes: opts.shardBytes,
    metadata: { format: 'pt', synthetic: SYNTHETIC_NOTE, seed: String(opts.seed), scheme: String(SYNTH_SCHEME) },
  });
  return plan;
}
