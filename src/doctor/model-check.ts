// The doctor's whole-model check: the engine's logits at every position of a short prompt against
// the float64 CPU forward pass (cpu-forward.ts), for a small synthetic model built in memory (so it
// runs in a browser too) or a model the caller loaded the tensors of.
import { parseConfig } from '../config/config.ts';
import { derivePlan, type ModelPlan } from '../config/plan.ts';
import type { Gpu } from '../gpu/gpu.ts';
import { memorySource, readTensorF32, type TensorEntry } from '../io/safetensors.ts';
import { OpenElmModel } from '../api/model.ts';
import type { WeightFormat as DType } from '../weights/gpu-weight.ts';
import type { GemvKernel } from '../runtime/linear.ts';
import type { Tuned } from '../runtime/tuning.ts';
import type { TuningStore } from '../io/tuning-store.ts';
import type { PrefillChoice } from '../runtime/linear.ts';
import { dequantize } from '../weights/quant.ts';
import { cpuForward, type Tensors } from './cpu-forward.ts';
import { randomFill } from './matmul-check.ts';
import { withErrorScope } from './error-scope.ts';

/** A model to check: its plan and its tensors (a checkpoint's entries). */
export interface DoctorModel {
  /** For the report: a folder, a hub id, or "synthetic". */
  name: string;
  plan: ModelPlan;
  tensors: Map<string, TensorEntry>;
}

/**
 * A small config in the OpenELM layout: GQA groups of 2, per-layer head counts and FFN widths that
 * differ, q/k norm, GLU, a tied output layer and an odd vocabulary (509 rows divide no tile).
 */
export const SYNTHETIC_CONFIG = {
  model_type: 'openelm',
  num_transformer_layers: 3,
  model_dim: 96,
  head_dim: 24,
  num_gqa_groups: 2,
  qkv_multipliers: [0.5, 1.0],
  ffn_multipliers: [0.5, 2.0],
  ffn_dim_divisor: 32,
  ffn_with_glu: true,
  normalize_qk_projections: true,
  share_input_output_layers: true,
  rope_freq_constant: 10000,
  rope_max_length: 256,
  max_context_length: 64,
  vocab_size: 509,
  bos_token_id: 1,
  eos_token_id: 2,
};

/**
 * Random weights for `SYNTHETIC_CONFIG` held in memory as F32 safetensors entries. Uniform values
 * with the scale of the synthetic checkpoints (std 1/sqrt(fan in), embeddings 1/sqrt(model_dim),
 * norm gains 1 +- 0.2), so activations and logits stay near unit scale.
 */
export function syntheticModel(seed = 1): DoctorModel {
  const plan = derivePlan(parseConfig(SYNTHETIC_CONFIG, 'doctor synthetic config'), 'doctor synthetic config');
  const sizes = plan.tensors.map((t) => t.shape.reduce((a, b) => a * b, 1));
  const bytes = new Uint8Array(sizes.reduce((a, b) => a + b, 0) * 4);
  const source = memorySource('doctor synthetic model', bytes);
  const tensors = new Map<string, TensorEntry>();
  let at = 0;
  plan.tensors.forEach((spec, i) => {
    const n = sizes[i];
    const fanIn = spec.name.includes('token_embeddings') || spec.name === 'lm_head.weight' ? plan.modelDim : spec.shape[spec.shape.length - 1];
    // Uniform [-a, a) has std a / sqrt(3).
    const values =
      spec.shape.length === 1 ? randomFill(n, seed * 7919 + i, 0.2).map((v) => 1 + v) : randomFill(n, seed * 7919 + i, Math.sqrt(3 / fanIn));
    bytes.set(new Uint8Array(values.buffer), at);
    tensors.set(spec.name, { name: spec.name, dtype: 'F32', shape: spec.shape, source, offset: at, byteLength: n * 4 });
    at += n * 4;
  });
  return { name: 'synthetic', plan, tensors };
}

/**
 * Largest |GPU - float64 CPU| logit tolerated. f32: the fixture's f32-engine tolerance (2e-4; a
 * correct engine meets it with 100x to spare here). The other formats compare the GPU over rounded
 * weights with the CPU over exact ones, so their bound is measured, not guessed: the same CPU
 * forward over the weights rounded plainly to the format (each matrix as dequantize() gives it)
 * shows how far rounding alone moves the logits; the GPU may be ROUNDING_SLACK times as far (the
 * engine rounds q8/q4 after folding norm gains into the weights, which widens some groups), plus
 * the f32 tolerance. A kernel reading a wrong row or position moves logits by O(1), far beyond.
 */
export const F32_TOLERANCE = 2e-4;
export const ROUNDING_SLACK = 3;

/** The prompt: bos, then ids spread over the vocabulary (first and last id included). */
function promptIds(plan: ModelPlan, length: number): number[] {
  const V = plan.vocabSize;
  return Array.from({ length }, (_, i) => (i === 0 ? plan.bosTokenId : i === 1 ? V - 1 : (i * 7919 + 13) % V));
}

export interface DtypeCheck {
  dtype: DType;
  pass: boolean;
  /** Largest |GPU - CPU| over every logit of every position (null: NaN or infinite). */
  max_abs: number | null;
  tolerance: number;
  /** Formats other than f32: max |logit error| of the CPU forward over plainly rounded weights (what the tolerance is scaled from). */
  rounding_max_abs?: number;
  /** Positions whose top-1 token equals the CPU's. */
  top1_agree: number;
  ms: number;
  error?: string;
}

export interface ModelCheck {
  model: string;
  pass: boolean;
  /** Worst over the formats checked. */
  max_abs: number | null;
  positions: number;
  input_ids: number[];
  dtypes: DtypeCheck[];
}

async function cpuTensors(model: DoctorModel): Promise<Tensors> {
  const stored = model.plan.stored;
  if (stored) throw new Error(`${model.name}: a compact ${stored.format} checkpoint (openelm convert) holds no float weights for the float64 check; check the folder it was converted from`);
  const t: Tensors = new Map();
  for (const spec of model.plan.tensors) {
    const e = model.tensors.get(spec.name);
    if (!e) throw new Error(`${model.name}: tensor ${spec.name} is missing`);
    t.set(spec.name, Float64Array.from(await readTensorF32(e)));
  }
  return t;
}

/** The tensors as `format` stores them: every matrix rounded plainly; vectors (norm gains) stay exact, as the engine keeps them in f32. */
function roundedTensors(plan: ModelPlan, t: Tensors, format: DType): Tensors {
  const out: Tensors = new Map(t);
  for (const spec of plan.tensors) {
    const v = t.get(spec.name);
    if (!v || spec.shape.length !== 2) continue;
    out.set(spec.name, Float64Array.from(dequantize(Float32Array.from(v), spec.shape[0], spec.shape[1], format)));
  }
  return out;
}

function maxAbsDiff(a: readonly Float64Array[], b: readonly Float64Array[]): number {
  let m = 0;
  a.forEach((row, p) => row.forEach((v, i) => (m = Math.max(m, Math.abs(v - b[p][i])))));
  return m;
}

function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

/**
 * Loads the model in each format, runs the prompt, compares every position's logits. Also returns
 * the decode matmul tuning the engine made when loading it (the last format that loaded), timed or
 * remembered by `tuningStore`.
 */
export async function checkModel(
  gpu: Gpu,
  model: DoctorModel,
  dtypes: readonly DType[],
  positions = 6,
  tuningStore: TuningStore | null = null,
): Promise<{ check: ModelCheck; gemvTuning?: Tuned<GemvKernel>; prefillChoice?: PrefillChoice }> {
  const plan = model.plan;
  const ids = promptIds(plan, Math.min(positions, plan.maxContext));
  const exact = await cpuTensors(model);
  const ref = cpuForward(plan, exact, ids).logits;
  const out: DtypeCheck[] = [];
  let gemvTuning: Tuned<GemvKernel> | undefined;
  let prefillChoice: PrefillChoice | undefined;
  for (const dtype of dtypes) {
    const t0 = performance.now();
    const rounding = dtype === 'f32' ? undefined : maxAbsDiff(cpuForward(plan, roundedTensors(plan, exact, dtype), ids).logits, ref);
    const tolerance = F32_TOLERANCE + ROUNDING_SLACK * (rounding ?? 0);
    const measured = rounding !== undefined ? { rounding_max_abs: rounding } : {};
    const r = await withErrorScope(gpu, async () => {
      let m: OpenElmModel | undefined;
      try {
        m = await OpenElmModel.create(gpu, plan, model.tensors, { dtype, contextLength: ids.length, tuningStore });
        gemvTuning = m.gemvTuning ?? gemvTuning;
        prefillChoice = m.prefillChoice ?? prefillChoice;
        return await m.logits(ids, { allPositions: true });
      } finally {
        m?.dispose();
      }
    });
    const got = r.value ?? [];
    let maxAbs = r.error ? Infinity : 0;
    let top1 = 0;
    got.forEach((row, p) => {
      for (let i = 0; i < row.length; i++) {
        const d = Math.abs(row[i] - ref[p][i]);
        maxAbs = Math.max(maxAbs, Number.isNaN(d) ? Infinity : d);
      }
      if (argmax(row) === argmax(ref[p])) top1++;
    });
    const pass = !r.error && got.length === ids.length && maxAbs <= tolerance;
    out.push({
      dtype,
      pass,
      max_abs: Number.isFinite(maxAbs) ? maxAbs : null,
      tolerance,
      ...measured,
      top1_agree: top1,
      ms: Math.round(performance.now() - t0),
      ...(r.error ? { error: r.error } : {}),
    });
  }
  const finite = out.every((d) => d.max_abs !== null);
  const check: ModelCheck = {
    model: model.name,
    pass: out.length > 0 && out.every((d) => d.pass),
    max_abs: finite ? Math.max(0, ...out.map((d) => d.max_abs ?? 0)) : null,
    positions: ids.length,
    input_ids: ids,
    dtypes: out,
  };
  return { check, gemvTuning, prefillChoice };
}
