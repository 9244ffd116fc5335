// The next-token chooser alone, over one row of the model's vocabulary: the argmax kernel (plain
// greedy, what the engine runs by default) and the sampler in each of its paths (repetition
// penalty with greedy; temperature alone, with top-k, with top-p, with all of them). Both are one
// workgroup over the whole row, so their time grows with the vocabulary and not with the model's
// width. Each choice is checked against the CPU reference first. Browser-safe (no node: imports).
import type { Gpu } from '../src/gpu/gpu.ts';
import { releaseDispatches, runDispatches, type Dispatch } from '../src/gpu/dispatch.ts';
import { argmaxDispatch, argmaxRef } from '../kernels/argmax.ts';
import { sampleDispatch, sampleRef, type SamplingParams } from '../kernels/sample.ts';
import { randomFill } from '../src/doctor/matmul-check.ts';
import { timeRepeated, type AroundTiming, type GpuTimer, type Timed } from './gpu-timer.ts';

export interface ChooserCase {
  name: string;
  kernel: 'argmax' | 'sample';
  /** The sampler's settings (Hugging Face's meaning); absent for argmax. */
  params?: SamplingParams;
}

const GREEDY: SamplingParams = { doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1 };
const SAMPLE: SamplingParams = { ...GREEDY, doSample: true };

/** The chooser's paths, cheapest first. */
export const CHOOSER_CASES: readonly ChooserCase[] = [
  { name: 'argmax', kernel: 'argmax' },
  { name: 'greedy repetition_penalty=1.2', kernel: 'sample', params: { ...GREEDY, repetitionPenalty: 1.2 } },
  { name: 'sample temperature=1', kernel: 'sample', params: SAMPLE },
  { name: 'sample temperature=0.7 top_k=50', kernel: 'sample', params: { ...SAMPLE, temperature: 0.7, topK: 50 } },
  { name: 'sample temperature=0.7 top_p=0.9', kernel: 'sample', params: { ...SAMPLE, temperature: 0.7, topP: 0.9 } },
  { name: 'sample temperature=0.7 top_k=50 top_p=0.9 repetition_penalty=1.2', kernel: 'sample', params: { doSample: true, temperature: 0.7, topK: 50, topP: 0.9, repetitionPenalty: 1.2 } },
];

export interface ChooserTiming extends Timed {
  /** The id the kernel chose on its first run equals the CPU reference's. */
  agrees: boolean;
}

/** Times `c` over `n` random logits (some tokens marked as seen, for the penalty) and checks its choice. */
export async function timeChooser(gpu: Gpu, timer: GpuTimer, n: number, c: ChooserCase, o: { runs: number; budgetMs: number; around?: AroundTiming }): Promise<ChooserTiming> {
  // Logits spread like a language model's (a few units), so top-k and top-p keep a real subset.
  const logits = randomFill(n, 0x3c6ef372 ^ n, 6);
  const seen = new Uint32Array(n);
  for (let i = 0; i < n; i += 97) seen[i] = 1;
  const u = Math.fround(0.3141592);
  const bufs = {
    logits: gpu.upload('bench.chooser.logits', logits),
    seen: gpu.upload('bench.chooser.seen', seen),
    random: gpu.upload('bench.chooser.u', new Float32Array([u])),
    out: gpu.upload('bench.chooser.out', new Uint32Array(1)),
  };
  let d: Dispatch;
  let want: number;
  if (c.kernel === 'argmax') {
    d = argmaxDispatch(gpu, { n, offset: 0, logits: bufs.logits, out: bufs.out, label: `bench ${c.name}` });
    want = argmaxRef(logits, n);
  } else {
    const params = c.params ?? SAMPLE;
    d = sampleDispatch(gpu, { n, offset: 0, ...bufs, params, label: `bench ${c.name}` });
    want = sampleRef(logits, seen, u, params);
  }
  try {
    // Checked on a first run, before the sampler marks its choices in `seen`.
    runDispatches(gpu, [d], `bench ${c.name}`);
    const [got] = await gpu.readU32(bufs.out, 1);
    const timed = () => timeRepeated(() => timer.timeDispatches([d], c.name), o.runs, o.budgetMs);
    const t = await (o.around ? o.around(timed) : timed());
    return { ...t, agrees: got === want };
  } finally {
    releaseDispatches(gpu, [d]);
    for (const b of Object.values(bufs)) gpu.destroyBuffer(b);
  }
}
