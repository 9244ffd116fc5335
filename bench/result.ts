// The shape of a benchmark result (the JSON `openelm bench` writes): read by the table and the
// chart, built by run.ts. Types only.
import type { LlamaPeerResult } from './llama.ts';
import type { MachineFacts } from './machine.ts';
import type { KernelShape } from './matmul.ts';
import type { AttentionResult, ChooserResult, CopyResult, MatmulResult } from './kernels.ts';
import type { FormatResult } from './model.ts';
import type { TfjsPeerResult } from './tfjs.ts';
import type { SizeResult } from './sizes.ts';

export interface KernelFigures {
  /** The matmul shapes (the model's biggest), timed in every format in `matmul`. */
  shapes: KernelShape[];
  copy?: CopyResult;
  matmul: MatmulResult[];
  /** One decode step of attention, per head configuration and context length. */
  attention: AttentionResult[];
  /** The next-token chooser (argmax, sampler) over one row of the vocabulary. */
  chooser: ChooserResult[];
  error?: string;
  variant_errors?: string[];
}

export interface Comparison {
  what: string;
  /** Unit of ours and theirs: a throughput (tokens/s), or a time (ms) for kernels. */
  unit: string;
  ours: { label: string; value: number };
  theirs: { label: string; value: number };
  /** > 1 means ours is faster: ours / theirs for throughputs, theirs / ours for times. */
  speedup: number;
  same_format: boolean;
  /**
   * Decode only: the share of greedy tokens both engines chose alike, counted up to the first
   * difference (after it the sequences diverge). Random-weight logits have top-1/top-2 margins of
   * a few hundredths, so formats that differ (or llama.cpp's f16 KV cache) can flip a choice.
   */
  greedy_agreement?: { same_prefix: number; of: number };
}

export interface BenchResult {
  schema: 'openelm-webgpu/bench@1';
  started_at: string;
  duration_s: number;
  command?: string;
  options: Record<string, unknown>;
  machine: MachineFacts & { loadavg_end: number[] };
  timing: Record<string, string>;
  model: { dir: string; synthetic: boolean; params: number; layers: number; model_dim: number; head_dim: number; vocab_size: number; max_context: number };
  formats: FormatResult[];
  /** The larger shapes (--sizes), beside the main model. */
  sizes?: SizeResult[];
  kernels: KernelFigures | null;
  peers: { tfjs?: TfjsPeerResult; 'llama-cpu'?: LlamaPeerResult; 'llama-vulkan'?: LlamaPeerResult };
  comparisons: Comparison[];
  /** The headline figures, flat. */
  summary: Record<string, number | string>;
  files?: { json: string; svg: string };
}
