// `openelm bench`: the benchmark harness on the command line.
import { join } from 'node:path';
import { helpText, intOption, UsageError, type Parsed, type Spec } from '../src/cli/args.ts';
import { parseKernelVariant, type KernelVariantFile } from '../src/cli/kernel-variant.ts';
import { cacheRoot, defaultModel } from '../src/cli/default-model.ts';
import { GGML_TYPE_NAMES, type GgmlTypeName } from './gguf.ts';
import { benchLlama, LLAMA_INSTALL_HINT } from './llama.ts';
import { ATTENTION_CHOICES } from '../src/runtime/attention-choice.ts';
import { KV_DTYPES } from '../kernels/attention.ts';
import { WEIGHT_FORMATS } from '../src/weights/gpu-weight.ts';
import { BENCH_DTYPES, LAB_KERNELS, PEERS, runBench, type LabKernel, type PeerName } from './run.ts';
import { renderTable } from './table.ts';
import { CONTEXT_FILLS, DECODE_CONTEXTS } from './contexts.ts';
import { syntheticModel } from './sizes.ts';
import { RELEASED_SIZES } from '../src/config/released.ts';
import { benchSpeculative, speculativeTable } from './speculative.ts';

const FULL_RUN = 'openelm bench --dtype f32,f16,q8,q4 --prompt-lengths 128,512 --decode-tokens 32 --runs 5 --peers tfjs,llama-cpu';

export const BENCH_SUMMARY = 'measure prefill/decode speed, kernels and peers (tfjs, llama.cpp); JSON + table + SVG chart';

const spec: Spec = {
  model: { kind: 'string', value: 'DIR', help: 'model folder (default: the synthetic random-weight OpenELM-270M checkpoint)' },
  dtype: { kind: 'string', value: 'LIST', help: `weight formats, comma-separated: ${BENCH_DTYPES.join(', ')} (default f16)` },
  'prompt-lengths': { kind: 'string', value: 'LIST', help: 'prompt lengths in tokens, comma-separated (default 128); decode starts after the first' },
  'decode-tokens': { kind: 'string', value: 'N', help: 'decode steps timed per run, N x runs in all, after 2 warm-up steps (default 8)' },
  runs: { kind: 'string', value: 'N', help: 'runs of each measurement; figures are medians (default 3; kernels at least 5)' },
  peers: { kind: 'string', value: 'LIST', help: `peers to measure too, comma-separated: ${PEERS.join(', ')} (default none; llama-* need node-llama-cpp: ${LLAMA_INSTALL_HINT})` },
  'llama-formats': { kind: 'string', value: 'LIST', help: `GGUF formats for llama.cpp: ${GGML_TYPE_NAMES.join(', ')} (default: those of --dtype)` },
  'kernel-variant': { kind: 'string', value: 'KERNEL=FILE', help: 'kernel lab: matmul=FILE (f32/f16 weights; same bindings and defines as shaders/matmul.wgsl), matmul_q=FILE (q8/q4, as shaders/matmul_q.wgsl) or matmul_gemv=FILE (as shaders/matmul_gemv.wgsl, the coalesced one-token kernel); `#include` lines resolve from shaders/include/; checked against the CPU on odd shapes in every fused form, then timed beside the built-in kernel' },
  'quality-tokens': { kind: 'string', value: 'N', help: 'tokens of the stream on which each format is compared with f16: top-1 agreement and mean KL (default 32; 0 skips)' },
  'no-kernels': { kind: 'flag', help: 'skip the kernel figures (copy bandwidth, matmul alone)' },
  out: { kind: 'string', value: 'DIR', help: 'folder for bench-<timestamp>.json and .svg (default bench/results)' },
  json: { kind: 'flag', help: 'print the result as one JSON object on stdout (the table goes to stderr)' },
  'vulkan-prompt-lengths': { kind: 'string', value: 'LIST', help: 'prompt lengths for llama-vulkan only (lavapipe takes seconds a token; default: --prompt-lengths)' },
  speculative: { kind: 'flag', help: 'only the speculative-decoding figures: plain, prompt lookup (10 tokens) and the checkpoint drafting for itself in q4 and q8, on a prompt the output quotes and on a fresh one (the first --dtype is the main model; --decode-tokens new tokens, default 32)' },
  'llama-child': { kind: 'string', value: 'JSON', help: 'internal: run the llama.cpp peer with these options and print its result (used for llama-vulkan)' },
  'decode-contexts': { kind: 'string', value: 'LIST', help: `decode tok/s and the per-kernel breakdown of one step at these context lengths, capped at the model's (default ${DECODE_CONTEXTS.join(',')}; 0 skips)` },
  attention: { kind: 'string', value: 'MODE', help: 'the engine\'s decode attention: auto | single | split (default auto; see openelm generate --help)' },
  'kv-dtype': { kind: 'string', value: 'f32|f16', help: 'the engine\'s KV cache type (default f32)' },
  'context-fill': { kind: 'string', value: 'HOW', help: "how the cache reaches each context: prefill (a real prefill of that many tokens; minutes at 2048 on a CPU adapter) or positions (a short prefill, then the steps run at those positions over a zero-filled cache: the same work a step) (default prefill)" },
  sizes: { kind: 'string', value: 'LIST', help: `released shapes to run, synthetic random weights written once to the cache: ${RELEASED_SIZES.join(', ')}; the first is the main model (all figures), the others get load time, peak memory and decode (default: --model, else 270M)` },
  'size-contexts': { kind: 'string', value: 'LIST', help: 'contexts at which the sizes after the first decode with the per-kernel breakdown, like --decode-contexts (default none: they get load, memory, prefill and decode)' },
  'browser-limits': { kind: 'flag', help: "request WebGPU's default limits (128 MiB a storage binding, 256 MiB a buffer: what a browser page gets) instead of the adapter's best" },
  help: { kind: 'flag', help: 'show this help' },
};

function list(p: Parsed, name: string): string[] | undefined {
  const v = p.values.get(name);
  if (v === undefined) return undefined;
  const items = v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (items.length === 0) throw new UsageError(`--${name} needs at least one value`);
  return items;
}

/** Positive integers, or a lone 0 for none. */
function lengthsOrZero(name: string, items: string[]): number[] {
  if (items.length === 1 && items[0] === '0') return [];
  return items.map((s) => {
    if (!/^\d+$/.test(s) || Number(s) < 1) throw new UsageError(`--${name}: "${s}" is not a positive integer`);
    return Number(s);
  });
}

function oneOf<T extends string>(items: string[], allowed: readonly T[], name: string): T[] {
  for (const i of items) if (!allowed.includes(i as T)) throw new UsageError(`--${name}: "${i}" is not one of ${allowed.join(', ')}`);
  return [...new Set(items)] as T[];
}

function kernelVariant(spec: string | undefined): KernelVariantFile<LabKernel> | undefined {
  if (spec === undefined) return undefined;
  return parseKernelVariant(spec, LAB_KERNELS, "the bench times only these; other kernels can be swapped through the library's setKernelVariant (and checked with openelm doctor --kernel-variant)");
}

async function runBenchCommand(p: Parsed): Promise<void> {
  const child = p.values.get('llama-child');
  if (child !== undefined) {
    const opts = JSON.parse(child) as Parameters<typeof benchLlama>[0];
    const r = await benchLlama({ ...opts, log: (s) => process.stderr.write(`${s}\n`) });
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  const json = p.flags.has('json');
  if (p.flags.has('speculative')) return runSpeculative(p, json);
  const dtypes = oneOf((list(p, 'dtype') ?? ['f16']).map((d) => d.toLowerCase()), BENCH_DTYPES, 'dtype');
  const lengths = (name: string, given: string[]) =>
    given.map((s) => {
      if (!/^\d+$/.test(s) || Number(s) < 1) throw new UsageError(`--${name}: "${s}" is not a positive integer`);
      return Number(s);
    });
  const promptLengths = lengths('prompt-lengths', list(p, 'prompt-lengths') ?? ['128']);
  const vl = list(p, 'vulkan-prompt-lengths');
  const vulkanPromptLengths = vl ? lengths('vulkan-prompt-lengths', vl) : undefined;
  const decodeTokens = intOption(p, 'decode-tokens', 0, 8);
  const runs = intOption(p, 'runs', 1, 3);
  const peers = oneOf(list(p, 'peers') ?? [], PEERS, 'peers') as PeerName[];
  const lf = list(p, 'llama-formats');
  const llamaFormats = lf ? (oneOf(lf.map((s) => s.toUpperCase()), GGML_TYPE_NAMES, 'llama-formats') as GgmlTypeName[]) : undefined;
  const dc = list(p, 'decode-contexts');
  const decodeContexts = dc ? lengthsOrZero('decode-contexts', dc) : undefined;
  const sc = list(p, 'size-contexts');
  const sizeContexts = sc ? lengthsOrZero('size-contexts', sc) : undefined;
  const fill = p.values.get('context-fill') ?? 'prefill';
  const [contextFill] = oneOf([fill], CONTEXT_FILLS, 'context-fill');
  const given = p.values.get('model');
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const sizeList = list(p, 'sizes');
  if (sizeList && given !== undefined) throw new UsageError('--sizes runs synthetic checkpoints of the released shapes: leave out --model');
  const sizes = sizeList ? oneOf(sizeList.map((x) => x.toUpperCase()), RELEASED_SIZES, 'sizes') : undefined;
  const sizeDirs: { size: string; dir: string }[] = [];
  for (const size of sizes ?? []) sizeDirs.push({ size, dir: size === '270M' ? await defaultModel(json) : await syntheticModel(size, log) });
  const modelDir = sizeDirs[0]?.dir ?? given ?? (await defaultModel(json));
  const result = await runBench({
    modelDir,
    synthetic: given === undefined,
    decodeContexts,
    contextFill,
    attention: oneOf([p.values.get('attention') ?? 'auto'], ATTENTION_CHOICES, 'attention')[0],
    kvDtype: oneOf([p.values.get('kv-dtype') ?? 'f32'], KV_DTYPES, 'kv-dtype')[0],
    deviceLimits: p.flags.has('browser-limits') ? 'default' : 'adapter',
    sizes: sizeDirs.slice(1),
    sizeContexts,
    dtypes,
    promptLengths,
    decodeTokens,
    runs,
    peers,
    llamaFormats,
    vulkanPromptLengths,
    kernels: !p.flags.has('no-kernels'),
    qualityTokens: intOption(p, 'quality-tokens', 0, 32),
    matmulVariant: kernelVariant(p.values.get('kernel-variant')),
    outDir: p.values.get('out') ?? join('bench', 'results'),
    cacheDir: join(cacheRoot(), 'gguf'),
    command: ['openelm', 'bench', ...process.argv.slice(3)].join(' '),
    cliPath: process.argv[1],
    log,
  });
  const table = renderTable(result);
  if (json) {
    process.stderr.write(`${table}\n`);
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } else {
    process.stdout.write(`${table}\n`);
  }
}

async function runSpeculative(p: Parsed, json: boolean): Promise<void> {
  const given = p.values.get('model');
  const [dtype] = oneOf((list(p, 'dtype') ?? ['f16']).map((d) => d.toLowerCase()), WEIGHT_FORMATS, 'dtype');
  const result = await benchSpeculative({
    modelDir: given ?? (await defaultModel(json)),
    dtype,
    newTokens: intOption(p, 'decode-tokens', 1, 32),
    assistantDtypes: ['q4', 'q8'],
    promptLookupNumTokens: 10,
    log: (s) => process.stderr.write(`${s}\n`),
  });
  const table = speculativeTable(result.rows);
  const out = { command: ['openelm', 'bench', ...process.argv.slice(3)].join(' '), ...result };
  if (json) {
    process.stderr.write(`${table}\n`);
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } else process.stdout.write(`${table}\n`);
}

export const benchCommand = {
  summary: BENCH_SUMMARY,
  spec,
  run: runBenchCommand,
  /** Extra lines for --help. */
  help: () => `${helpText('bench', BENCH_SUMMARY, spec)}\n\nThe default (npm run bench) is a quick look: f16, a 128-token prompt, 8 decode tokens, 3 runs, no peers\n(about 5 minutes on this machine's SwiftShader). The full run (hours on SwiftShader, minutes on a real GPU):\n  ${FULL_RUN}\nllama-vulkan (lavapipe, in a child process) is only run when asked: its first warm-up takes minutes.`,
};
