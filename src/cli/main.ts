// The `openelm` command: logits, generate and synth over the library API.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { RELEASED_SIZES, releasedConfig } from '../config/released.ts';
import { synthesizeCheckpoint } from '../io/synth.ts';
import { DTYPES, loadModel, type DType, type GenerationStats } from '../index.ts';
import { emptyStats } from '../generate/greedy.ts';
import { helpText, intOption, parseArgs, parseIdList, UsageError, type Parsed, type Spec } from './args.ts';

const common: Spec = {
  model: { kind: 'string', value: 'DIR', help: 'model folder in the Hugging Face layout (config.json + safetensors). Default: a synthetic OpenELM-270M-shaped checkpoint with random weights' },
  'input-ids': { kind: 'string', value: 'IDS', help: 'comma-separated token ids, fed as they are (include the BOS id 1 yourself)' },
  dtype: { kind: 'string', value: 'FORMAT', help: `weight format on the GPU: ${DTYPES.join(' | ')} (default f16)` },
  'context-length': { kind: 'string', value: 'N', help: 'KV cache length in tokens (default: the model\'s max_context_length)' },
  json: { kind: 'flag', help: 'print one JSON object instead of text for people' },
  help: { kind: 'flag', help: 'show this help' },
};

const commands: Record<string, { summary: string; spec: Spec; run: (p: Parsed) => Promise<void> }> = {
  logits: {
    summary: 'print the logits after the last input token (or every one)',
    spec: { ...common, 'all-positions': { kind: 'flag', help: 'logits of every position, not only the last' } },
    run: runLogits,
  },
  generate: {
    summary: 'generate tokens greedily after the input ids',
    spec: {
      ...common,
      'max-new-tokens': { kind: 'string', value: 'N', help: 'number of new tokens (default 32)' },
      generate_kwargs: { kind: 'list', value: 'K=V...', help: 'Hugging Face generation options; supported: max_new_tokens' },
      'stop-at-eos': { kind: 'flag', help: 'stop after the eos token (default with --prompt; with --input-ids exactly the requested number of tokens is generated, as in the reference fixtures)' },
    },
    run: runGenerate,
  },
  synth: {
    summary: 'write a checkpoint with random weights in the exact shape of a released OpenELM size',
    spec: {
      size: { kind: 'string', value: 'SIZE', help: `one of ${RELEASED_SIZES.join(', ')} (default 270M)` },
      out: { kind: 'string', value: 'DIR', help: 'folder to write config.json and model.safetensors into' },
      dtype: { kind: 'string', value: 'F16|F32|BF16', help: 'tensor dtype in the file (default F16)' },
      seed: { kind: 'string', value: 'N', help: 'random seed (default 0)' },
      help: { kind: 'flag', help: 'show this help' },
    },
    run: runSynth,
  },
};

function usage(): string {
  return [
    'openelm: Apple OpenELM language models on WebGPU',
    '',
    'Commands:',
    ...Object.entries(commands).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`),
    '',
    'openelm COMMAND --help lists the options of a command.',
  ].join('\n');
}

function syntheticDir(size: string, seed: number): string {
  const root = process.env.OPENELM_CACHE ?? join(homedir(), '.cache', 'openelm-webgpu');
  return join(root, `synthetic-OpenELM-${size}-F16-seed${seed}`);
}

/** The embedded default: a random-weight checkpoint of the OpenELM-270M shape, made once and cached. */
async function defaultModel(quiet: boolean): Promise<string> {
  const dir = syntheticDir('270M', 0);
  if (!existsSync(join(dir, 'model.safetensors'))) {
    if (!quiet) process.stderr.write(`writing a synthetic OpenELM-270M checkpoint (random weights) to ${dir} ...\n`);
    const tmp = `${dir}.partial-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    await synthesizeCheckpoint(tmp, releasedConfig('270M'), { dtype: 'F16', seed: 0 });
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  }
  process.stderr.write(`no --model given: using RANDOM WEIGHTS in the exact OpenELM-270M shape (${dir}); output is meaningless text\n`);
  return dir;
}

function dtypeOption(p: Parsed): DType {
  const d = p.values.get('dtype') ?? 'f16';
  if (!DTYPES.includes(d)) throw new UsageError(`--dtype must be one of ${DTYPES.join(', ')}, got "${d}"`);
  return d as DType;
}

async function openModel(p: Parsed) {
  const json = p.flags.has('json');
  const dir = p.values.get('model') ?? (await defaultModel(json));
  const contextLength = p.values.has('context-length') ? intOption(p, 'context-length', 1, 0) : undefined;
  const t0 = performance.now();
  const model = await loadModel(dir, { dtype: dtypeOption(p), contextLength });
  return { model, loadMs: performance.now() - t0 };
}

function inputIds(p: Parsed, fallback?: number[]): number[] {
  const text = p.values.get('input-ids');
  if (text === undefined) {
    if (fallback) return fallback;
    throw new UsageError('--input-ids is required (comma-separated token ids, e.g. --input-ids 1,5,9)');
  }
  return parseIdList(text, '--input-ids');
}

async function runLogits(p: Parsed): Promise<void> {
  const ids = inputIds(p);
  const { model } = await openModel(p);
  try {
    const rows = await model.logits(ids, { allPositions: p.flags.has('all-positions') });
    if (p.flags.has('json')) {
      process.stdout.write(`{"logits":[${rows.map((r) => `[${Array.from(r).join(',')}]`).join(',')}]}\n`);
    } else {
      rows.forEach((r, i) => {
        const pos = p.flags.has('all-positions') ? i : ids.length - 1;
        const top = [...r.keys()].sort((a, b) => r[b] - r[a] || a - b).slice(0, 5);
        console.log(`position ${pos}: top ${top.map((t) => `${t} (${r[t].toFixed(4)})`).join(', ')}`);
      });
    }
  } finally {
    model.dispose();
  }
}

const KWARGS = ['max_new_tokens'];

function generationKwargs(p: Parsed): Map<string, string> {
  const kw = new Map<string, string>();
  for (const item of p.lists.get('generate_kwargs') ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`--generate_kwargs: "${item}" is not KEY=VALUE`);
    const k = item.slice(0, eq);
    if (!KWARGS.includes(k)) throw new UsageError(`--generate_kwargs: unsupported option "${k}" (supported: ${KWARGS.join(', ')})`);
    kw.set(k, item.slice(eq + 1));
  }
  return kw;
}

async function runGenerate(p: Parsed): Promise<void> {
  const kw = generationKwargs(p);
  if (kw.has('max_new_tokens')) {
    if (p.values.has('max-new-tokens')) throw new UsageError('give max_new_tokens once: --max-new-tokens or --generate_kwargs max_new_tokens=N');
    p.values.set('max-new-tokens', kw.get('max_new_tokens')!);
  }
  const maxNewTokens = intOption(p, 'max-new-tokens', 0, 32);
  const json = p.flags.has('json');
  const ids = inputIds(p, p.values.has('model') ? undefined : [1]);
  const { model, loadMs } = await openModel(p);
  try {
    const stats: GenerationStats = emptyStats();
    const out: number[] = [];
    for await (const id of model.generate(ids, { maxNewTokens, stopAtEos: p.flags.has('stop-at-eos') }, stats)) {
      out.push(id);
      if (!json) process.stdout.write(`${out.length === 1 ? '' : ' '}${id}`);
    }
    if (json) {
      process.stdout.write(`${JSON.stringify({ output_ids: out, text: '', stats: { ...stats, load_ms: loadMs } })}\n`);
    } else {
      process.stdout.write('\n');
      console.error(
        `prompt ${stats.prompt_tokens} tokens, ${stats.new_tokens} new; prefill ${stats.prefill_tokens_per_s.toFixed(1)} tok/s, ` +
          `decode ${stats.decode_tokens_per_s.toFixed(2)} tok/s, ${stats.dispatches_per_token} dispatches/token; load ${(loadMs / 1000).toFixed(1)} s`,
      );
    }
  } finally {
    model.dispose();
  }
}

async function runSynth(p: Parsed): Promise<void> {
  const size = p.values.get('size') ?? '270M';
  if (!(RELEASED_SIZES as readonly string[]).includes(size)) throw new UsageError(`--size must be one of ${RELEASED_SIZES.join(', ')}, got "${size}"`);
  const out = p.values.get('out');
  if (!out) throw new UsageError('--out DIR is required');
  const dtype = (p.values.get('dtype') ?? 'F16').toUpperCase();
  if (dtype !== 'F16' && dtype !== 'F32' && dtype !== 'BF16') throw new UsageError(`--dtype must be F16, F32 or BF16, got "${dtype}"`);
  const seed = intOption(p, 'seed', 0, 0);
  mkdirSync(out, { recursive: true });
  const t0 = performance.now();
  await synthesizeCheckpoint(out, releasedConfig(size as (typeof RELEASED_SIZES)[number]), { dtype, seed });
  console.error(`wrote a random-weight OpenELM-${size} checkpoint (${dtype}) to ${out} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === 'help' || name === '-h') {
    console.log(usage());
    return;
  }
  const cmd = commands[name];
  if (!cmd) throw new UsageError(`unknown command "${name}" (commands: ${Object.keys(commands).join(', ')})`);
  const parsed = parseArgs(rest, cmd.spec, name);
  if (parsed.flags.has('help')) {
    console.log(helpText(name, cmd.summary, cmd.spec));
    return;
  }
  await cmd.run(parsed);
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (e: unknown) => {
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`openelm: ${msg.split('\n')[0]}\n`);
    if (process.env.OPENELM_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    process.exit(e instanceof UsageError ? 2 : 1);
  },
);
