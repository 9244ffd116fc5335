// Kernel-level figures: our matmul alone at the decode (GEMV, one token) and prefill (GEMM, one
// chunk of tokens) shapes of the model's biggest layers, the attention kernel of a decode step at
// a few context lengths, the next-token chooser over the vocabulary, and the adapter's copy
// bandwidth, which is the ceiling a weight-streaming kernel can hope for on this device.
// The timing itself is browser-safe (matmul.ts, attention.ts, chooser.ts; the demo's benchmark
// page uses it too); this layer adds what only Node has: the machine's load around every figure.
import type { Gpu } from '../src/gpu/gpu.ts';
import type { WeightFormat } from '../src/weights/gpu-weight.ts';
import { timeRepeated, type AroundTiming, type GpuTimer, type Timed } from './gpu-timer.ts';
import { withLoad, type LoadSample } from './machine.ts';
import { timeOurMatmul, type KernelShape, type MatmulTiming } from './matmul.ts';
import { timeAttention, type AttentionShape, type AttentionTiming } from './attention.ts';
import { timeChooser, type ChooserCase, type ChooserTiming } from './chooser.ts';

export interface MatmulResult extends MatmulTiming {
  engine: 'ours' | 'tfjs';
  /** The kernel lab: the WGSL file that replaced the built-in kernel for this figure. */
  variant?: string;
  name: string;
  kind: 'gemv' | 'gemm';
  dtype: string;
  /** Weight layout: "NK" ([out, in], ours and tfjs with transposeB) or "KN". */
  layout: string;
  T: number;
  N: number;
  K: number;
  load: LoadSample;
}

export interface CopyResult extends Omit<Timed, 'warmup_used'> {
  bytes: number;
  /** Bytes copied per second at the median time (each byte is read once and written once). */
  gb_s: number;
  load: LoadSample;
}

export interface AttentionResult extends AttentionShape, AttentionTiming {
  load: LoadSample;
}

export interface ChooserResult extends ChooserTiming {
  name: string;
  kernel: ChooserCase['kernel'];
  /** Logits in the row: the model's vocabulary. */
  n: number;
  params?: ChooserCase['params'];
  load: LoadSample;
}

/** Timing options with the machine's load sampled around the timed runs; `load()` reads it after. */
function sampledLoad(): { around: AroundTiming; load: () => LoadSample } {
  let sample: LoadSample | undefined;
  return {
    around: async (fn) => {
      const { value, load } = await withLoad(fn);
      sample = load;
      return value;
    },
    load: () => {
      if (!sample) throw new Error('no load sample: the timed runs did not happen');
      return sample;
    },
  };
}

export async function benchCopy(gpu: Gpu, timer: GpuTimer, o: { bytes: number; runs: number }): Promise<CopyResult> {
  const lim = gpu.limits.maxBufferSize;
  const bytes = Math.max(16, Math.floor(Math.min(o.bytes, lim) / 16) * 16);
  const usage = GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | GPUBufferUsage.STORAGE;
  const src = gpu.createBuffer('bench.copy-src', bytes, usage);
  const dst = gpu.createBuffer('bench.copy-dst', bytes, usage);
  try {
    // Touch both buffers first so that page faults are not timed.
    const enc = gpu.device.createCommandEncoder();
    enc.clearBuffer(src);
    enc.clearBuffer(dst);
    gpu.device.queue.submit([enc.finish()]);
    await gpu.device.queue.onSubmittedWorkDone();
    const { value: t, load } = await withLoad(() => timeRepeated(() => timer.timeCopy(src, dst, bytes), Math.max(3, o.runs), 5000));
    return { bytes, method: t.method, ms: t.ms, wall_ms: t.wall_ms, gb_s: bytes / (t.ms.median / 1000) / 1e9, load };
  } finally {
    gpu.destroyBuffer(src);
    gpu.destroyBuffer(dst);
  }
}

/** Times our matmul kernel alone on one shape, with random weights in `format`; a wrong kernel throws. */
export async function benchOurMatmul(
  gpu: Gpu,
  timer: GpuTimer,
  shape: KernelShape,
  format: WeightFormat,
  o: { runs: number; budgetMs: number; copyGbs?: number; gemv?: MatmulTiming['gemv'] },
): Promise<MatmulResult> {
  const s = sampledLoad();
  const t = await timeOurMatmul(gpu, timer, shape, format, { ...o, around: s.around });
  if (!(t.check < 1)) throw new Error(`our ${format} matmul ${shape.name} gave wrong results (error ${t.check.toFixed(1)}x the tolerance): not timing a broken kernel`);
  const { T, N, K } = shape;
  return { engine: 'ours', name: shape.name, kind: shape.kind, dtype: format, layout: 'NK', T, N, K, ...t, load: s.load() };
}

/** Times one decode step of the attention kernel; wrong outputs throw. */
export async function benchAttention(gpu: Gpu, timer: GpuTimer, shape: AttentionShape, o: { runs: number; budgetMs: number }): Promise<AttentionResult> {
  const s = sampledLoad();
  const t = await timeAttention(gpu, timer, shape, { ...o, around: s.around });
  if (!(t.check < 1)) throw new Error(`our ${shape.name} gave wrong results (error ${t.check.toFixed(1)}x the tolerance): not timing a broken kernel`);
  return { ...shape, ...t, load: s.load() };
}

/** Times the chooser over one row of `n` logits; a choice that differs from the CPU's throws. */
export async function benchChooser(gpu: Gpu, timer: GpuTimer, n: number, c: ChooserCase, o: { runs: number; budgetMs: number }): Promise<ChooserResult> {
  const s = sampledLoad();
  const t = await timeChooser(gpu, timer, n, c, { ...o, around: s.around });
  if (!t.agrees) throw new Error(`our chooser "${c.name}" picked another id than the CPU reference: not timing a broken kernel`);
  return { name: c.name, kernel: c.kernel, n, ...(c.params ? { params: c.params } : {}), ...t, load: s.load() };
}
