// `openelm doctor`: what this adapter is, whether every kernel the engine can pick here computes
// what its CPU reference computes, whether a whole model matches the float64 forward pass, and
// which variants the engine would choose and why. The report is plain JSON (what a user attaches
// to a bug report). Browser-safe: no Node imports.
import type { Gpu } from '../gpu/gpu.ts';
import { engineLimits, type EngineLimit } from '../gpu/device.ts';
import type { WeightFormat as DType } from '../weights/gpu-weight.ts';
import { kernelOrigin, KERNEL_NAMES, type KernelName } from '../gpu/kernel-variants.ts';
import { maxWeightChunkBytes } from '../weights/gpu-weight.ts';
import type { GemvKernel } from '../runtime/linear.ts';
import { adapterIdentity, rememberedFor, type Tuned } from '../runtime/tuning.ts';
import type { TuningStore } from '../io/tuning-store.ts';
import type { PrefillChoice } from '../runtime/linear.ts';
import { kernelChecks, runCheck, type CheckResult } from './kernel-checks.ts';
import { checkModel, syntheticModel, type DoctorModel, type ModelCheck } from './model-check.ts';
import { chooseAttention } from '../runtime/attention-choice.ts';

export type { CheckResult } from './kernel-checks.ts';
export type { DoctorModel, ModelCheck, DtypeCheck } from './model-check.ts';

export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  is_fallback: boolean;
  features: string[];
  limits: Record<EngineLimit, number>;
}

/** A choice and one line on why. */
export interface Choice<T> {
  value: T;
  why: string;
}

export interface Choices {
  /** The decode (one-token) matmul kernel, timed on the checked model's widest proj_1. */
  gemv: Choice<'rows' | 'coalesced' | null> & { ms?: Partial<Record<string, number>>; weight?: string; remembered?: boolean; measured_at?: string };
  /** Where timed choices are remembered, and those remembered for this adapter (this engine version). */
  tuning: Choice<string | null> & { remembered: RememberedChoice[] };
  /** The T > 1 (prefill, scoring) matmul: register-tiled or tiled through workgroup memory. */
  prefill_matmul: Choice<'register' | 'tiled' | null> & { ms?: Record<string, number>; tokens?: number };
  subgroups: Choice<boolean>;
  shader_f16: Choice<boolean>;
  timestamp_query: Choice<boolean>;
  /** Largest weight chunk one storage binding holds here; bigger weights are split by rows. */
  weight_chunk_bytes: Choice<number>;
  /** Decode (and verify) attention at a 2048-token context: single-pass or split-K. */
  attention: Choice<'single' | 'split'>;
}

/** A choice the tuning store holds for this adapter. */
export interface RememberedChoice {
  decision: string;
  shape: string;
  choice: string;
  ms: Record<string, number>;
  measured_at: string;
}

export interface DoctorReport {
  /** Report format version (bump on incompatible changes). */
  version: 1;
  adapter: AdapterReport;
  /** Where each kernel's WGSL comes from: 'built-in' or a kernel-lab variant. */
  kernel_sources: Record<KernelName, string>;
  checks: CheckResult[];
  model_check: ModelCheck;
  choices: Choices;
  /** Every check and the model check passed. */
  pass: boolean;
  ms: number;
}

export interface DoctorOptions {
  /** The model to check whole (default: a small synthetic model built in memory). */
  model?: DoctorModel;
  /** Weight format checked beside f32 in the model check (default f16). */
  dtype?: DType;
  /** Only kernel checks whose name is listed (default all; the model check always runs). */
  only?: readonly string[];
  /** Called after each kernel check (progress). */
  onCheck?: (c: CheckResult, index: number, total: number) => void;
  /** One line for people, as stages start. */
  log?: (line: string) => void;
  /**
   * Where the model check's loads remember timed kernel choices (the entry point's store, or one
   * that ignores what it holds to time again). Default null: timed at every load, nothing kept.
   */
  tuningStore?: TuningStore | null;
}

export function adapterReport(gpu: Gpu): AdapterReport {
  const limits = engineLimits(gpu.limits);
  return {
    vendor: gpu.info.vendor,
    architecture: gpu.info.architecture,
    device: gpu.info.device,
    description: gpu.info.description,
    is_fallback: gpu.info.isFallback,
    features: [...gpu.device.features].map(String).sort(),
    limits,
  };
}

const fmtMs = (ms: Partial<Record<string, number>>): string =>
  Object.entries(ms)
    .map(([k, v]) => `${k} ${(v ?? NaN).toFixed(3)} ms`)
    .join(', ');

function gemvWhy(t: Tuned<GemvKernel>, store: TuningStore | null): string {
  if (t.remembered) return `${t.choice} was faster when timed at ${t.at} (${fmtMs(t.ms)} per product); remembered for this adapter and shape in ${store?.where} (--retune or OPENELM_RETUNE=1 times it again)`;
  const kept = store ? `remembered in ${store.where}, so the next load on this adapter and shape skips the timing` : 'no tuning store: every load times it';
  return `${t.choice} was faster (${fmtMs(t.ms)} per product), timed now; ${kept}`;
}

function choicesFor(gpu: Gpu, model: ModelCheck, plan: DoctorModel['plan'], t: Tuned<GemvKernel> | undefined, prefill: PrefillChoice | undefined, store: TuningStore | null, remembered: RememberedChoice[]): Choices {
  const widest = plan.layers.reduce((a, l) => (l.proj1Out > a.proj1Out ? l : a));
  const sub = gpu.features.subgroups;
  const f16 = gpu.features.shaderF16;
  const chunk = maxWeightChunkBytes(gpu);
  return {
    gemv: t
      ? {
          value: t.choice,
          ms: t.ms,
          weight: `layer ${widest.index} ffn.proj_1 [${widest.proj1Out}, ${plan.modelDim}] ${model.dtypes[model.dtypes.length - 1]?.dtype ?? ''}`.trim(),
          remembered: t.remembered,
          measured_at: t.at,
          why: gemvWhy(t, store),
        }
      : { value: null, why: 'not measured: the model did not load' },
    tuning: {
      value: store?.where ?? null,
      remembered,
      why: store
        ? `${remembered.length} choice(s) remembered for this adapter: ${remembered.map((r) => `${r.decision} ${r.shape} = ${r.choice}`).join('; ') || 'none'}`
        : 'no tuning store: choices are timed at every load and not kept',
    },
    prefill_matmul: prefill
      ? { value: prefill.choice, ...(prefill.ms ? { ms: prefill.ms, tokens: prefill.tokens } : {}), why: `${prefill.why}; verify passes keep the register-tiled kernel, whose rows sum as decode steps do` }
      : { value: null, why: 'not chosen: the model did not load' },
    subgroups: {
      value: sub,
      why: sub ? 'the coalesced GEMV reduces each row with subgroup operations' : 'no subgroups: the coalesced GEMV reduces through workgroup memory',
    },
    shader_f16: {
      value: f16,
      why: f16
        ? 'present: matmul and matmul_tiled read f16 weights as f16 values (f32 accumulation); the coalesced GEMV still reads them packed two per u32'
        : 'absent: f16 weights are read packed two per u32 and converted, f32 accumulation',
    },
    timestamp_query: {
      value: gpu.features.timestampQuery,
      why: gpu.features.timestampQuery ? 'the bench times kernels on the GPU clock' : 'the bench falls back to wall-clock timing',
    },
    weight_chunk_bytes: {
      value: chunk,
      why: `min(maxStorageBufferBindingSize ${gpu.limits.maxStorageBufferBindingSize}, maxBufferSize ${gpu.limits.maxBufferSize}): a weight larger than this is split by rows into several buffers, one dispatch each`,
    },
    attention: attentionChoice(gpu),
  };
}

function attentionChoice(gpu: Gpu): Choice<'single' | 'split'> {
  const value = chooseAttention(gpu, 'auto', 2048);
  return {
    value,
    why:
      value === 'split'
        ? 'split-K: a decode step spreads each head\'s keys over many workgroups (partial softmax per split, then a combine), so a long context fills the GPU'
        : 'single-pass: the CPU fallback adapter\'s few cores are already busy with one workgroup per head, and split-K\'s extra dispatch a layer gains nothing there',
  };
}

/** Runs every check on `gpu`. Never throws for a failing check: failures are in the report. */
export async function runDoctor(gpu: Gpu, opts: DoctorOptions = {}): Promise<DoctorReport> {
  const t0 = performance.now();
  const log = opts.log ?? (() => {});
  const specs = kernelChecks(gpu).filter((s) => !opts.only || opts.only.includes(s.name));
  log(`kernel checks: ${specs.length}`);
  const checks: CheckResult[] = [];
  for (const [i, s] of specs.entries()) {
    const c = await runCheck(gpu, s);
    checks.push(c);
    opts.onCheck?.(c, i, specs.length);
  }
  const model = opts.model ?? syntheticModel();
  const dtypes: DType[] = [...new Set<DType>(['f32', opts.dtype ?? 'f16'])];
  log(`model check: ${model.name}, ${dtypes.join(' and ')}`);
  const store = opts.tuningStore ?? null;
  const { check: model_check, gemvTuning, prefillChoice } = await checkModel(gpu, model, dtypes, undefined, store);
  const remembered: RememberedChoice[] = store
    ? (await rememberedFor(store, adapterIdentity(gpu))).map((r) => ({ decision: r.decision, shape: r.shape, choice: r.choice, ms: r.ms, measured_at: r.at }))
    : [];
  const kernel_sources = {} as Record<KernelName, string>;
  for (const k of KERNEL_NAMES) kernel_sources[k] = kernelOrigin(k);
  return {
    version: 1,
    adapter: adapterReport(gpu),
    kernel_sources,
    checks,
    model_check,
    choices: choicesFor(gpu, model_check, model.plan, gemvTuning, prefillChoice, store, remembered),
    pass: checks.every((c) => c.pass) && model_check.pass,
    ms: Math.round(performance.now() - t0),
  };
}

/** The report as JSON text: non-finite numbers (which JSON cannot hold) become null. */
export function reportJson(report: DoctorReport): string {
  return JSON.stringify(report, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v));
}

const fmtErr = (e: number | null): string => (e === null ? 'NaN/inf' : e === 0 ? '0' : e.toExponential(2));

/** One line per check: PASS/FAIL name variant format max_error ms. */
export function checkLine(c: CheckResult): string {
  const tol = c.rel_tolerance !== undefined ? `${c.tolerance}+${c.rel_tolerance}|ref|` : String(c.tolerance);
  return `${c.pass ? 'PASS' : 'FAIL'}  ${c.name.padEnd(12)} ${c.variant.padEnd(38)} ${c.format.padEnd(4)} ${fmtErr(c.max_error).padStart(9)} (tol ${tol}) ${c.ms.toFixed(0).padStart(6)} ms${c.error ? `  ${c.error}` : ''}`;
}

/** The readable report: adapter, checks, model check, choices, summary. */
export function formatReport(r: DoctorReport): string {
  const a = r.adapter;
  const lines = [
    `adapter: ${[a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' / ') || '(no adapter info)'}${a.is_fallback ? ' (fallback adapter)' : ''}`,
    `features: ${a.features.join(', ') || '(none)'}`,
    `limits: ${Object.entries(a.limits).map(([k, v]) => `${k}=${v}`).join(', ')}`,
  ];
  const variants = Object.entries(r.kernel_sources).filter(([, v]) => v !== 'built-in');
  if (variants.length) lines.push(`kernel variants: ${variants.map(([k, v]) => `${k}=${v}`).join(', ')}`);
  lines.push('', ...r.checks.map(checkLine), '');
  const m = r.model_check;
  lines.push(`model check (${m.model}, ${m.positions} positions against the float64 CPU forward):`);
  for (const d of m.dtypes) {
    lines.push(`${d.pass ? 'PASS' : 'FAIL'}  model ${d.dtype.padEnd(4)} max |logit error| ${fmtErr(d.max_abs)} (tol ${d.tolerance.toExponential(2)}), top-1 agrees at ${d.top1_agree}/${m.positions}, ${d.ms} ms${d.error ? `  ${d.error}` : ''}`);
  }
  lines.push('', 'choices:');
  for (const [k, c] of Object.entries(r.choices) as [string, Choice<unknown>][]) lines.push(`  ${k} = ${String(c.value)}: ${c.why}`);
  const failed = r.checks.filter((c) => !c.pass);
  lines.push(
    '',
    `${r.pass ? 'PASS' : 'FAIL'}: ${r.checks.length - failed.length}/${r.checks.length} kernel checks passed, model check ${m.pass ? 'passed' : 'FAILED'} (${(r.ms / 1000).toFixed(1)} s)` +
      (failed.length ? `; failing: ${[...new Set(failed.map((c) => `${c.name} ${c.variant} ${c.format}`))].slice(0, 8).join('; ')}` : ''),
  );
  return lines.join('\n');
}
