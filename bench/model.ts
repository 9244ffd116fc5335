// Whole-model figures for one weight format: load time, prefill throughput and time to first
// token at each prompt length, decode throughput (median over steps after warm-up), dispatches per
// token, JS time spent encoding and submitting a decode step, peak GPU memory.
//
// Decode steps are timed as a bare loop of Engine.decodeStep (the chosen token stays on the GPU;
// each step reads back its 4-byte id), the same loop the generate command runs minus sampling.
// The JS encode time is the synchronous part of decodeStep (position write, command encoding,
// queue.submit, mapAsync request): it runs before decodeStep's first await, so timing the call
// itself measures it without touching the engine. queue.submit is wrapped to split it out.
import type { Gpu } from '../src/gpu/gpu.ts';
import { createGpu, loadModel } from '../src/index.ts';
import type { Agreement } from './quality.ts';
import type { Engine } from '../src/runtime/engine.ts';
import type { AttentionChoice } from '../src/runtime/attention-choice.ts';
import type { KvDtype } from '../kernels/attention.ts';
import type { DType } from '../src/api/model.ts';
import { withLoad, type LoadSample } from './machine.ts';
import { rate, summarize, type Stat } from './stats.ts';
import { promptIds } from './prompt.ts';
import { decodeAtContexts, type ContextDecode, type ContextOptions } from './contexts.ts';

export interface PrefillResult {
  prompt_tokens: number;
  /** prompt_tokens / median time. */
  tokens_per_s: Stat;
  /** Prefill plus the read-back of the first chosen token id. */
  ttft_ms: Stat;
  /** The first (cold) prefill: pipeline compilation included. */
  first_run_ms: number;
  /** The cold run was slow enough (> slowRunMs) to be kept as one of the samples. */
  first_run_counted: boolean;
  /** Compute dispatches and buffer copies one prefill encodes (counted at the WebGPU API). */
  dispatches: number;
  copies: number;
  load: LoadSample;
}

export interface DecodeResult {
  /** Tokens in the KV cache before the first measured step. */
  context_tokens: number;
  warmup_steps: number;
  /** Per-step wall time: decodeStep called until its id is back on the CPU. */
  step_ms: Stat;
  tokens_per_s: Stat;
  /** Synchronous JS time of a step (write, encode, submit, map request). */
  js_encode_submit_ms: Stat;
  /** The queue.submit call alone. */
  submit_ms: Stat;
  /** js_encode_submit_ms minus submit_ms: building the command buffer in JS. */
  js_encode_ms: Stat;
  /** Compute dispatches / buffer copies a step encodes, counted at the WebGPU API. */
  dispatches_counted: number;
  copies_counted: number;
  /** Greedy ids chosen after the prompt and after each step (warm-up included), for agreement checks. */
  ids: number[];
  load: LoadSample;
}

export interface FormatResult {
  dtype: string;
  ok: boolean;
  error?: string;
  device_ms?: number;
  load_ms?: number;
  context_length?: number;
  prefill_chunk?: number;
  /** Engine.dispatchesPerToken. */
  dispatches_per_token?: number;
  /** The decode matmul kernel the load-time tuning chose, and its timings of both (ms). */
  gemv?: { kernel: string; tuning_ms?: Record<string, number> };
  gpu_bytes_after_load?: number;
  peak_gpu_bytes?: number;
  prefill?: PrefillResult[];
  decode?: DecodeResult;
  /** Against the reference format (f16, else the first format run), over the quality stream. */
  agreement?: Agreement;
  /** Decode at each context length, with the step's per-kernel breakdown there. */
  contexts?: ContextDecode[];
  /** The device's binding and buffer limits the format ran under. */
  limits?: { maxStorageBufferBindingSize: number; maxBufferSize: number };
}

export interface ModelBenchOptions {
  dir: string;
  dtype: DType;
  /** q8/q4: fold the norm gains into the weights (ModelOptions.foldNorms). */
  foldNorms?: boolean;
  /** The format's name in the results (default: dtype). */
  label?: string;
  promptLengths: number[];
  decodeTokens: number;
  runs: number;
  warmupSteps?: number;
  /** A cold prefill run longer than this counts as a sample instead of a warm-up (default 10 s). */
  slowRunMs?: number;
  /** Tokens of the fixed stream whose next-token logits are kept for comparing formats (0: none). */
  qualityTokens?: number;
  /** Decode (and its breakdown) at these context lengths, after everything else. */
  contexts?: ContextOptions;
  /** 'default': WebGPU's default limits (a browser's), instead of the adapter's best. */
  deviceLimits?: 'adapter' | 'default';
  attention?: AttentionChoice;
  kvDtype?: KvDtype;
}

/** Counts the compute dispatches and copies encoded while `fn` runs (prototype wrappers). */
export function countEncoded(): { stop(): { dispatches: number; copies: number } } {
  const passProto = (globalThis as unknown as { GPUComputePassEncoder: { prototype: GPUComputePassEncoder } }).GPUComputePassEncoder.prototype;
  const encProto = (globalThis as unknown as { GPUCommandEncoder: { prototype: GPUCommandEncoder } }).GPUCommandEncoder.prototype;
  const origDispatch = passProto.dispatchWorkgroups;
  const origCopy = encProto.copyBufferToBuffer;
  let dispatches = 0;
  let copies = 0;
  passProto.dispatchWorkgroups = function (this: GPUComputePassEncoder, ...a: Parameters<GPUComputePassEncoder['dispatchWorkgroups']>) {
    dispatches++;
    return origDispatch.apply(this, a);
  };
  encProto.copyBufferToBuffer = function (this: GPUCommandEncoder, ...a: unknown[]) {
    copies++;
    return (origCopy as (...b: unknown[]) => void).apply(this, a);
  } as GPUCommandEncoder['copyBufferToBuffer'];
  return {
    stop() {
      passProto.dispatchWorkgroups = origDispatch;
      encProto.copyBufferToBuffer = origCopy;
      return { dispatches, copies };
    },
  };
}

/**
 * Times `steps` decode steps after `warmup` unmeasured ones, starting from the engine's current
 * state (a prefilled prompt whose chosen token, `firstId`, is on the GPU).
 */
async function decode(engine: Engine, gpu: Gpu, firstId: number, warmup: number, steps: number): Promise<DecodeResult> {
  const contextStart = engine.length;
  const ids = [firstId];
  for (let i = 0; i < warmup; i++) ids.push(await engine.decodeStep());
  const queue = gpu.device.queue;
  const origSubmit = queue.submit;
  let submitMs = 0;
  queue.submit = function (this: GPUQueue, buffers: Iterable<GPUCommandBuffer>) {
    const s = performance.now();
    origSubmit.call(this, buffers);
    submitMs += performance.now() - s;
  };
  const step: number[] = [];
  const sync: number[] = [];
  const submit: number[] = [];
  const encode: number[] = [];
  let counted = { dispatches: 0, copies: 0 };
  try {
    const { load } = await withLoad(async () => {
      for (let i = 0; i < steps; i++) {
        submitMs = 0;
        const counter = i === 0 ? countEncoded() : undefined;
        const s0 = performance.now();
        const p = engine.decodeStep();
        const s1 = performance.now();
        if (counter) counted = counter.stop();
        const id = await p;
        const s2 = performance.now();
        ids.push(id);
        step.push(s2 - s0);
        sync.push(s1 - s0);
        submit.push(submitMs);
        encode.push(Math.max(0, s1 - s0 - submitMs));
      }
    });
    const stepMs = summarize(step);
    return {
      context_tokens: contextStart + warmup,
      warmup_steps: warmup,
      step_ms: stepMs,
      tokens_per_s: rate(1, stepMs),
      js_encode_submit_ms: summarize(sync),
      submit_ms: summarize(submit),
      js_encode_ms: summarize(encode),
      dispatches_counted: counted.dispatches,
      copies_counted: counted.copies,
      ids,
      load,
    };
  } finally {
    // An own property shadows the prototype's method: deleting it restores the original.
    delete (queue as unknown as Record<string, unknown>).submit;
    if (queue.submit !== origSubmit) queue.submit = origSubmit;
  }
}

/** The logits at every position of the quality stream, kept to compare formats (see quality.ts). */
export type QualityLogits = Float32Array[];

export async function benchFormat(
  o: ModelBenchOptions,
  log: (s: string) => void = () => {},
  quality: { logits?: QualityLogits } = {},
): Promise<FormatResult> {
  const name = o.label ?? o.dtype;
  const out: FormatResult = { dtype: name, ok: false };
  const t0 = performance.now();
  const gpu = await createGpu({ limits: o.deviceLimits });
  out.limits = { maxStorageBufferBindingSize: gpu.limits.maxStorageBufferBindingSize, maxBufferSize: gpu.limits.maxBufferSize };
  out.device_ms = performance.now() - t0;
  let model: Awaited<ReturnType<typeof loadModel>> | undefined;
  try {
    const t1 = performance.now();
    model = await loadModel(o.dir, { dtype: o.dtype, foldNorms: o.foldNorms, attention: o.attention, kvDtype: o.kvDtype, gpu });
    out.load_ms = performance.now() - t1;
    const { engine, plan } = model;
    out.context_length = engine.contextLength;
    out.prefill_chunk = engine.chunk;
    out.dispatches_per_token = engine.dispatchesPerToken;
    out.gemv = { kernel: engine.gemv, tuning_ms: model.gemvTuning?.ms };
    if (model.gemvTuning) log(`  ${name}: decode matmul kernel ${engine.gemv} (${Object.entries(model.gemvTuning.ms).map(([k, v]) => `${k} ${v.toFixed(1)} ms`).join(', ')} on the widest proj_1)`);
    out.gpu_bytes_after_load = gpu.allocatedBytes;
    log(`  ${name}: loaded in ${(out.load_ms / 1000).toFixed(1)} s`);
    const warmup = o.warmupSteps ?? 2;
    const longest = Math.max(...o.promptLengths);
    const decodeSteps = o.decodeTokens * Math.max(1, o.runs);
    if (longest > engine.contextLength || o.promptLengths[0] + warmup + decodeSteps > engine.contextLength) {
      throw new Error(`prompt and decode lengths do not fit the context of ${engine.contextLength} tokens`);
    }

    out.prefill = [];
    // The first prompt length goes last, so that its final run leaves the engine holding exactly
    // that prompt (and the chosen token) for the decode measurement.
    const order = [...o.promptLengths.slice(1), o.promptLengths[0]];
    for (const L of order) {
      const ids = promptIds(L, plan.vocabSize, plan.bosTokenId);
      let choice = -1;
      const once = async () => {
        engine.reset();
        const s = performance.now();
        await engine.prefill(ids, 'none');
        choice = await engine.lastChoice();
        return performance.now() - s;
      };
      const counter = countEncoded();
      let first: number;
      let counted: { dispatches: number; copies: number };
      try {
        first = await once();
      } finally {
        counted = counter.stop();
      }
      // A cold run longer than this is kept as a sample: compilation is then a negligible part.
      const firstCounted = first > (o.slowRunMs ?? 10_000);
      const { value: samples, load } = await withLoad(async () => {
        const s: number[] = firstCounted ? [first] : [];
        while (s.length < Math.max(1, o.runs)) s.push(await once());
        return s;
      });
      const ttft = summarize(samples);
      out.prefill.push({
        prompt_tokens: L,
        tokens_per_s: rate(L, ttft),
        ttft_ms: ttft,
        first_run_ms: first,
        first_run_counted: firstCounted,
        dispatches: counted.dispatches,
        copies: counted.copies,
        load,
      });
      log(`  ${name}: prefill ${L} tokens: ${(L / (ttft.median / 1000)).toFixed(2)} tok/s (median of ${samples.length})`);
      if (L === o.promptLengths[0] && o.decodeTokens > 0) out.decode = await decode(engine, gpu, choice, warmup, decodeSteps);
    }
    out.prefill.sort((a, b) => o.promptLengths.indexOf(a.prompt_tokens) - o.promptLengths.indexOf(b.prompt_tokens));
    if (out.decode) log(`  ${name}: decode: ${(1000 / out.decode.step_ms.median).toFixed(2)} tok/s (median of ${out.decode.step_ms.n} steps)`);
    if (o.qualityTokens) {
      quality.logits = await model.logits(promptIds(Math.min(o.qualityTokens, engine.contextLength), plan.vocabSize, plan.bosTokenId), { allPositions: true });
    }
    // Last: the breakdown leaves the engine's cache good for timing only.
    if (o.contexts && o.contexts.contexts.length > 0) out.contexts = await decodeAtContexts(engine, plan.vocabSize, plan.bosTokenId, o.contexts, log);
    out.peak_gpu_bytes = gpu.peakAllocatedBytes;
    out.ok = true;
  } catch (e) {
    out.error = (e as Error).message.split('\n')[0];
    log(`  ${name}: failed: ${out.error}`);
  } finally {
    model?.dispose();
    gpu.destroy();
  }
  return out;
}
