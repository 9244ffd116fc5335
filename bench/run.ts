// The benchmark harness: machine facts, kernel figures (copy bandwidth, matmul alone), whole-model
// figures per weight format, and peers (tfjs-backend-webgpu on the same adapter, llama.cpp through
// node-llama-cpp on the same weights), gathered into one JSON object, a table and an SVG chart.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createGpu, loadPlan } from '../src/index.ts';
import { WEIGHT_FORMATS, type WeightFormat as DType } from '../src/weights/gpu-weight.ts';

// The formats a float checkpoint converts to: what the harness measures.
const DTYPES: readonly string[] = WEIGHT_FORMATS;
import { GGML_TYPE_NAMES, type GgmlTypeName } from './gguf.ts';
import { GpuTimer } from './gpu-timer.ts';
import { checkMatmulFully } from '../src/doctor/matmul-check.ts';
import { benchAttention, benchChooser, benchCopy, benchOurMatmul } from './kernels.ts';
import { kernelShapes, type KernelShape } from './matmul.ts';
import { ATTENTION_CONTEXTS, attentionShapes } from './attention.ts';
import { CHOOSER_CASES } from './chooser.ts';
import type { AttentionChoice } from '../src/runtime/attention-choice.ts';
import type { KvDtype } from '../kernels/attention.ts';
import { GEMV_KERNELS, MATMUL_KERNEL_FORMATS, type GemvKernel } from '../src/runtime/linear.ts';
import type { Gpu } from '../src/gpu/gpu.ts';
import { benchLlama, benchLlamaInChild } from './llama.ts';
import { machineFacts, readLoadavg } from './machine.ts';
import { agreement } from './quality.ts';
import { setKernelVariant } from '../src/gpu/kernel-variants.ts';
import { benchFormat, type FormatResult, type QualityLogits } from './model.ts';
import { renderChart } from './chart.ts';
import { layerRange, matmulLabel } from './labels.ts';
import type { BenchResult, KernelFigures } from './result.ts';
import { compare, GGML_OF, summarize } from './summary.ts';
import { renderTable } from './table.ts';
import { roundDeep } from './stats.ts';
import { benchTfjs } from './tfjs.ts';
import { DECODE_CONTEXTS, type ContextFill } from './contexts.ts';
import { benchSizes } from './sizes.ts';

export const PEERS = ['tfjs', 'llama-cpu', 'llama-vulkan'] as const;
export type PeerName = (typeof PEERS)[number];
/** Weight formats the harness knows; ours runs those in DTYPES, llama.cpp its GGUF equivalent. */
/** Weight formats the harness runs; '-folded': q8/q4 with the norm gains folded in (ModelOptions.foldNorms). */
export const BENCH_DTYPES = ['f32', 'f16', 'q8', 'q4', 'q8-folded', 'q4-folded'] as const;
export { GGML_OF };

/** The engine's weight format of a bench format, and whether the norm gains are folded into it. */
function engineFormat(d: string): { dtype: string; foldNorms: boolean } {
  return d.endsWith('-folded') ? { dtype: d.slice(0, -'-folded'.length), foldNorms: true } : { dtype: d, foldNorms: false };
}
/** Our prefill runs in passes of at most this many tokens (Engine's default prefillChunk). */
export const PREFILL_CHUNK = 128;

/** Kernels the lab can time a variant of: the matmuls (a thread a row; f32/f16 and q8/q4) and the coalesced GEMV. */
export const LAB_KERNELS = ['matmul', 'matmul_q', 'matmul_gemv'] as const;
export type LabKernel = (typeof LAB_KERNELS)[number];

export interface BenchOptions {
  modelDir: string;
  /** The model is the synthetic random-weight checkpoint (said in the output). */
  synthetic?: boolean;
  dtypes: string[];
  promptLengths: number[];
  decodeTokens: number;
  runs: number;
  peers: PeerName[];
  /** GGUF formats for llama.cpp; default: those of `dtypes`. */
  llamaFormats?: GgmlTypeName[];
  /** Prompt lengths for llama-vulkan (lavapipe takes seconds a token); default: promptLengths. */
  vulkanPromptLengths?: number[];
  /** Folder for bench-<timestamp>.json and .svg; none written when absent. */
  outDir?: string;
  /** The kernel lab: a WGSL file standing in for the matmul kernel, checked then timed beside it. */
  matmulVariant?: { kernel: LabKernel; file: string; code: string };
  /** Tokens of the stream on which formats are compared with f16 (default 32; 0: skip). */
  qualityTokens?: number;
  /** Kernel figures (copy bandwidth, matmul alone); default true. */
  kernels?: boolean;
  /** Context lengths at which the attention kernel is timed (default ATTENTION_CONTEXTS, capped at the model's). */
  attentionContexts?: number[];
  /** Bytes of the timed buffer copy (default 256 MiB, capped by maxBufferSize). */
  copyBytes?: number;
  /** Stop repeating a kernel once its measured runs took this long (default 10 s). */
  kernelBudgetMs?: number;
  /** Where GGUF files are cached. */
  cacheDir: string;
  /** The openelm CLI script, to run llama-vulkan in a child process. */
  cliPath?: string;
  /** The command line, for the record. */
  command?: string;
  log?: (s: string) => void;
  /** Decode tok/s and the per-kernel breakdown at these contexts (default DECODE_CONTEXTS; [] skips). */
  decodeContexts?: number[];
  /** How the cache is filled to each context (contexts.ts); default 'prefill'. */
  contextFill?: ContextFill;
  /** The engine's decode attention and KV cache type (ModelOptions.attention, kvDtype). */
  attention?: AttentionChoice;
  kvDtype?: KvDtype;
  /** 'default': every device gets WebGPU's default limits (a browser's 128 MiB binding). */
  deviceLimits?: 'adapter' | 'default';
  /** Further models (the larger released shapes), each run in every format: load, memory, decode. */
  sizes?: { size: string; dir: string }[];
  /** Contexts at which the further sizes decode with the breakdown (default none: a decode step there takes seconds on a CPU adapter). */
  sizeContexts?: number[];
}

/** The kernel lab: checks a matmul variant against the CPU on odd shapes, then times it. */
async function benchVariant(
  gpu: Gpu,
  timer: GpuTimer,
  variant: { kernel: LabKernel; file: string; code: string },
  dtypes: DType[],
  shapes: KernelShape[],
  kernels: KernelFigures,
  o: { runs: number; budgetMs: number },
  log: (s: string) => void,
): Promise<void> {
  setKernelVariant(variant.kernel, variant.code, variant.file);
  // matmul_gemv is the coalesced one-token kernel: checked and timed on T = 1 only.
  const gemv: GemvKernel = variant.kernel === 'matmul_gemv' ? 'coalesced' : 'rows';
  try {
    for (const dtype of dtypes.filter((d) => MATMUL_KERNEL_FORMATS[variant.kernel].includes(d))) {
      let check: number;
      try {
        check = await checkMatmulFully(gpu, dtype, gemv);
      } catch (e) {
        throw new Error(`matmul variant ${variant.file} (${dtype}) failed to run: ${(e as Error).message.split('\n')[0]}`);
      }
      if (!(check < 1)) {
        (kernels.variant_errors ??= []).push(`${variant.file} ${dtype}: wrong results (${check.toFixed(1)}x the tolerance) against the CPU; not timed`);
        log(`  variant ${variant.file} ${dtype}: WRONG (${check.toFixed(1)}x the tolerance), not timed`);
        continue;
      }
      for (const s of shapes.filter((x) => gemv === 'rows' || x.kind === 'gemv')) {
        const r = await benchOurMatmul(gpu, timer, s, dtype, { runs: s.kind === 'gemv' ? Math.max(5, o.runs) : o.runs, budgetMs: o.budgetMs, copyGbs: kernels.copy?.gb_s, gemv });
        r.variant = variant.file;
        kernels.matmul.push(r);
        const base = kernels.matmul.find((m) => !m.variant && m.engine === 'ours' && m.dtype === dtype && m.name === s.name && m.gemv === r.gemv);
        log(`  variant ${dtype} ${s.name}: ${r.ms.median.toFixed(2)} ms${base ? ` (built-in ${base.ms.median.toFixed(2)} ms, ${(base.ms.median / r.ms.median).toFixed(2)}x)` : ''}`);
      }
    }
  } finally {
    setKernelVariant(variant.kernel, null);
  }
}

export async function runBench(o: BenchOptions): Promise<BenchResult> {
  const log = o.log ?? (() => {});
  const started = new Date();
  const t0 = performance.now();
  if (o.promptLengths.length === 0 || o.promptLengths.some((n) => !Number.isInteger(n) || n < 1)) throw new Error('prompt lengths must be positive integers');
  for (const d of o.dtypes) if (!(BENCH_DTYPES as readonly string[]).includes(d)) throw new Error(`unknown dtype "${d}" (known: ${BENCH_DTYPES.join(', ')})`);
  const plan = await loadPlan(o.modelDir);
  const ours = o.dtypes.filter((d) => DTYPES.includes(engineFormat(d).dtype));
  const llamaFormats = o.llamaFormats ?? [...new Set(o.dtypes.map((d) => GGML_OF[d]))];
  for (const f of llamaFormats) if (!GGML_TYPE_NAMES.includes(f)) throw new Error(`unknown GGUF format "${f}" (known: ${GGML_TYPE_NAMES.join(', ')})`);

  // Machine facts and kernel figures, on a device of their own.
  const kgpu = await createGpu({ limits: o.deviceLimits });
  const machine = machineFacts(kgpu);
  log(`machine: ${machine.cpu_model} x${machine.cores}; adapter: ${[kgpu.info.vendor, kgpu.info.architecture, kgpu.info.description].filter(Boolean).join(' / ')}`);
  const gemmT = Math.min(Math.max(...o.promptLengths), PREFILL_CHUNK);
  const shapes = kernelShapes(plan, gemmT);
  let kernels: BenchResult['kernels'] = null;
  const timer = new GpuTimer(kgpu);
  const kernelDtypes = [...new Set([...ours.map((d) => engineFormat(d).dtype), ...(o.peers.includes('tfjs') ? ['f32', 'f16'] : [])])].filter((d) => DTYPES.includes(d)) as DType[];
  const budgetMs = o.kernelBudgetMs ?? 10_000;
  try {
    if (o.kernels !== false) {
      kernels = { shapes, matmul: [], attention: [], chooser: [] };
      try {
        log(`kernels (${timer.method}):`);
        kernels.copy = await benchCopy(kgpu, timer, { bytes: o.copyBytes ?? 256 << 20, runs: Math.max(5, o.runs) });
        log(`  copy ${(kernels.copy.bytes / 2 ** 20).toFixed(0)} MiB: ${kernels.copy.ms.median.toFixed(2)} ms, ${kernels.copy.gb_s.toFixed(2)} GB/s`);
        for (const dtype of kernelDtypes) {
          for (const s of shapes) {
            // GEMV shapes in both one-token kernels (the engine tunes between them at load).
            for (const gemv of s.kind === 'gemv' ? GEMV_KERNELS : (['rows'] as const)) {
              const r = await benchOurMatmul(kgpu, timer, s, dtype, { runs: s.kind === 'gemv' ? Math.max(5, o.runs) : o.runs, budgetMs, copyGbs: kernels.copy.gb_s, gemv });
              kernels.matmul.push(r);
              log(`  ${matmulLabel(r)} ${s.name}: ${r.ms.median.toFixed(2)} ms (${r.gb_s.toFixed(2)} GB/s, ${r.gflop_s.toFixed(2)} GFLOP/s)`);
            }
          }
        }
        // Attention and the chooser run once per token whatever the weight format: timed once.
        for (const a of attentionShapes(plan, o.attentionContexts ?? ATTENTION_CONTEXTS)) {
          const r = await benchAttention(kgpu, timer, a, { runs: Math.max(5, o.runs), budgetMs });
          kernels.attention.push(r);
          log(`  ${a.name} (layers ${layerRange(a.layers)}): ${r.ms.median.toFixed(3)} ms (${r.gb_s.toFixed(2)} GB/s of KV cache)`);
        }
        for (const c of CHOOSER_CASES) {
          const r = await benchChooser(kgpu, timer, plan.vocabSize, c, { runs: Math.max(5, o.runs), budgetMs });
          kernels.chooser.push(r);
          log(`  chooser ${c.name} over ${plan.vocabSize} logits: ${r.ms.median.toFixed(3)} ms`);
        }
        if (o.matmulVariant) await benchVariant(kgpu, timer, o.matmulVariant, kernelDtypes, shapes, kernels, { runs: o.runs, budgetMs }, log);
      } catch (e) {
        kernels.error = (e as Error).message.split('\n')[0];
        log(`  kernels failed: ${kernels.error}`);
      }
    }
  } finally {
    timer.destroy();
    kgpu.destroy();
  }

  const peers: BenchResult['peers'] = {};
  if (o.peers.includes('tfjs')) {
    log('peer tfjs-backend-webgpu (same adapter):');
    peers.tfjs = await benchTfjs(shapes, { runs: Math.max(3, o.runs), budgetMs, copyGbs: kernels?.copy?.gb_s, log });
  }

  const formats: FormatResult[] = [];
  const decodeContexts = o.decodeContexts ?? DECODE_CONTEXTS;
  const formatBase = {
    promptLengths: o.promptLengths,
    decodeTokens: o.decodeTokens,
    runs: o.runs,
    deviceLimits: o.deviceLimits,
    attention: o.attention,
    kvDtype: o.kvDtype,
    contexts: { contexts: decodeContexts, fill: o.contextFill ?? 'prefill', steps: o.decodeTokens, breakdownRuns: o.runs, copyGbs: kernels?.copy?.gb_s },
  };
  // Every format's predictions are compared with f16's (else the first format's) on one stream.
  const referenceFormat = o.dtypes.includes('f16') ? 'f16' : o.dtypes[0];
  const order = [referenceFormat, ...o.dtypes.filter((d) => d !== referenceFormat)];
  let referenceLogits: QualityLogits | undefined;
  for (const dtype of order) {
    if (!ours.includes(dtype)) {
      formats.push({ dtype, ok: false, error: `the engine has no ${dtype} weights yet (it has ${DTYPES.join(', ')})` });
      continue;
    }
    log(`ours ${dtype}:`);
    const quality: { logits?: QualityLogits } = {};
    const wantQuality = (o.qualityTokens ?? 32) > 0 && o.dtypes.length > 1;
    const f = await benchFormat(
      { ...formatBase, dir: o.modelDir, label: dtype, dtype: engineFormat(dtype).dtype as DType, foldNorms: engineFormat(dtype).foldNorms, qualityTokens: wantQuality ? (o.qualityTokens ?? 32) : 0 },
      log,
      quality,
    );
    if (dtype === referenceFormat) referenceLogits = quality.logits;
    else if (referenceLogits && quality.logits) {
      f.agreement = agreement(referenceLogits, quality.logits, referenceFormat);
      log(`  ${dtype}: top-1 agreement with ${referenceFormat} ${(f.agreement.top1 * 100).toFixed(1)}%, mean KL ${f.agreement.mean_kl.toExponential(2)} over ${f.agreement.positions} positions`);
    }
    formats.push(f);
  }
  formats.sort((a, b) => o.dtypes.indexOf(a.dtype) - o.dtypes.indexOf(b.dtype));
  const sizes = o.sizes?.length
    ? await benchSizes(o.sizes, ours.map((d) => ({ label: d, dtype: engineFormat(d).dtype as DType, foldNorms: engineFormat(d).foldNorms })), { ...formatBase, promptLengths: [o.promptLengths[0]], qualityTokens: 0, contexts: { ...formatBase.contexts, contexts: o.sizeContexts ?? [] } }, log)
    : undefined;

  for (const backend of ['cpu', 'vulkan'] as const) {
    const name = `llama-${backend}` as const;
    if (!o.peers.includes(name)) continue;
    log(`peer llama.cpp (node-llama-cpp, ${backend}):`);
    const opts = {
      modelDir: o.modelDir,
      cacheDir: o.cacheDir,
      formats: llamaFormats,
      promptLengths: backend === 'vulkan' ? (o.vulkanPromptLengths ?? o.promptLengths) : o.promptLengths,
      decodeTokens: o.decodeTokens,
      runs: o.runs,
      backend,
      log,
    };
    if (backend === 'vulkan') {
      peers[name] = o.cliPath
        ? await benchLlamaInChild(opts, o.cliPath)
        : { ok: false, backend, loop: '', formats: [], error: 'llama-vulkan runs in a child process of the openelm CLI: use openelm bench --peers llama-vulkan' };
      continue;
    }
    peers[name] = await benchLlama(opts);
  }
  const result: BenchResult = {
    schema: 'openelm-webgpu/bench@1',
    started_at: started.toISOString(),
    duration_s: 0,
    command: o.command,
    options: {
      model: o.modelDir,
      dtypes: o.dtypes,
      prompt_lengths: o.promptLengths,
      decode_tokens: o.decodeTokens,
      runs: o.runs,
      peers: o.peers,
      llama_formats: o.peers.some((p) => p.startsWith('llama')) ? llamaFormats : [],
      vulkan_prompt_lengths: o.peers.includes('llama-vulkan') ? (o.vulkanPromptLengths ?? o.promptLengths) : [],
      kernel_dtypes: kernelDtypes,
      attention_contexts: o.attentionContexts ?? ATTENTION_CONTEXTS,
      gemm_tokens: gemmT,
      decode_contexts: decodeContexts,
      context_fill: o.contextFill ?? 'prefill',
      attention: o.attention ?? 'auto',
      kv_dtype: o.kvDtype ?? 'f32',
      device_limits: o.deviceLimits ?? 'adapter',
      sizes: o.sizes?.map((s) => s.size) ?? [],
      size_contexts: o.sizeContexts ?? [],
    },
    machine: { ...machine, loadavg_end: readLoadavg() },
    timing: {
      kernels: `${timer.method === 'timestamp-query' ? 'timestamp queries at the start and end of the compute pass (Dawn quantizes them, 65.5 us here); wall clock submit -> onSubmittedWorkDone also recorded' : 'wall clock from queue.submit to onSubmittedWorkDone (no timestamp-query)'}; median after one warm-up run`,
      breakdown: `${timer.method === 'timestamp-query' ? 'each dispatch of a decode step in a compute pass of its own, timestamp queries at its start and end' : 'each kind of dispatch as a group in one compute pass, wall clock submit -> onSubmittedWorkDone'}; the whole step in one pass, same method; medians after one warm-up`,
      model: 'wall clock (performance.now) around Engine.prefill + the read-back of the chosen id (TTFT), and around each Engine.decodeStep until its 4-byte id is read back; medians',
      js_encode: 'synchronous part of Engine.decodeStep (position write, command encoding, queue.submit, mapAsync request), with queue.submit wrapped to split it out',
      tfjs: 'tf.time kernelMs (timestamp queries around its compute pass) per run, wall clock recorded; medians',
      llama: 'wall clock around node-llama-cpp controlledEvaluate calls: one call for the whole prompt, one call per decoded token (bare loop)',
      spread: 'every Stat holds median, min, max, p25, p75, n; rel_spread = (max - min) / median. Each measurement records /proc/loadavg before and after and the CPU share other processes took',
    },
    model: {
      dir: resolve(o.modelDir),
      synthetic: !!o.synthetic,
      params: plan.paramCount,
      layers: plan.numLayers,
      model_dim: plan.modelDim,
      head_dim: plan.headDim,
      vocab_size: plan.vocabSize,
      max_context: plan.maxContext,
    },
    formats,
    sizes,
    kernels,
    peers,
    comparisons: [],
    summary: {},
  };
  result.comparisons = compare(result);
  result.summary = summarize(result);
  result.duration_s = (performance.now() - t0) / 1000;
  const rounded = roundDeep(result);

  if (o.outDir) {
    mkdirSync(o.outDir, { recursive: true });
    const stamp = started.toISOString().replace(/[:.]/g, '-').replace(/Z$/, '');
    const json = resolve(join(o.outDir, `bench-${stamp}.json`));
    const svg = json.replace(/\.json$/, '.svg');
    rounded.files = { json, svg };
    writeFileSync(json, JSON.stringify(rounded, null, 2) + '\n');
    writeFileSync(svg, renderChart(rounded));
  }
  return rounded;
}
