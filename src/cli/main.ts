// The `openelm` command: logits, generate, synth, eval, doctor over the library API. `runCli` takes
// further commands from its caller: bench/cli.ts adds the benchmark harness's `bench`, so the
// library never imports the harness.
import { mkdirSync } from 'node:fs';
import { GEMV_KERNELS, PREFILL_KERNELS, type GemvKernel, type PrefillKernel } from '../runtime/linear.ts';
import { KV_DTYPES, type KvDtype } from '../../kernels/attention.ts';
import { ATTENTION_CHOICES, type AttentionChoice } from '../runtime/attention-choice.ts';
import { RELEASED_SIZES, releasedConfig } from '../config/released.ts';
import { synthesizeCheckpoint } from '../io/synth.ts';
import { defaultNodeTuningStore } from '../io/node-tuning-store.ts';
import { DTYPES, loadModel, resolveModelSource, type DType, type GenerationStats, type Tuned } from '../index.ts';
import { emptyStats } from '../generate/generate.ts';
import { applyKwargs, KWARGS, resolveGeneration, type GenerationConfig } from '../generate/options.ts';
import { asUsage, checkIdsInVocab, helpText, intOption, parseArgs, parseIdList, UsageError, type Parsed, type Spec } from './args.ts';
import { doctorCommand } from './doctor-command.ts';
import { defaultModel } from './default-model.ts';
import { progressBar } from '../io/progress.ts';
import { evalCommands } from './eval-commands.ts';
import { serveCommand } from './serve-command.ts';
import { disposeWhenIdle, startLifecycle } from './lifecycle.ts';
import { checkFiniteRows } from './finite.ts';

// Exit codes, signals and a closed stdout (see lifecycle.ts); commands stop when life.signal aborts.
const life = startLifecycle();

const common: Spec = {
  model: { kind: 'string', value: 'DIR|ID', help: 'model folder in the Hugging Face layout (config.json + safetensors), or a hub id like apple/OpenELM-270M (downloaded once into the cache). Default: a synthetic OpenELM-270M-shaped checkpoint with random weights' },
  hf_access_token: { kind: 'string', value: 'TOKEN', help: 'Hugging Face token for gated models (else $HF_TOKEN); $HF_ENDPOINT picks a mirror' },
  'input-ids': { kind: 'string', value: 'IDS', help: 'comma-separated token ids, fed as they are (include the BOS id 1 yourself)' },
  dtype: { kind: 'string', value: 'FORMAT', help: `weight format on the GPU: ${DTYPES.join(' | ')} (default f16)` },
  'context-length': { kind: 'string', value: 'N', help: 'KV cache length in tokens (default: the model\'s max_context_length)' },
  gemv: { kind: 'string', value: 'KERNEL', help: 'decode matmul kernel: auto (time both at load, keep the faster) | rows (a thread a row) | coalesced (threads stride over K; subgroups where the GPU has them). Default auto' },
  retune: { kind: 'flag', help: 'time the kernel choices again instead of taking those remembered for this GPU and model shape (in <cache>/tuning.json), and remember the new ones; also OPENELM_RETUNE=1' },
  'kv-dtype': { kind: 'string', value: 'f32|f16', help: 'KV cache element type: f32 (default) or f16 (half the cache memory and the bytes attention reads)' },
  attention: { kind: 'string', value: 'MODE', help: 'decode attention kernel: auto (split-K on GPUs, single-pass on the CPU fallback) | single | split. Default auto' },
  'prefill-matmul': { kind: 'string', value: 'KERNEL', help: 'prefill/scoring matmul: auto (time both at load; register on a fallback adapter) | register (register-tiled) | tiled (blocks in workgroup memory). Default auto' },
  json: { kind: 'flag', help: 'print one JSON object instead of text for people' },
  help: { kind: 'flag', help: 'show this help' },
};

/** One subcommand: its options, its one-line summary for `openelm --help`, and what it does. */
export interface Command {
  summary: string;
  spec: Spec;
  run: (p: Parsed) => Promise<void>;
  help?: () => string;
}

const commands: Record<string, Command> = {
  logits: {
    summary: 'print the logits after the last input token (or every one)',
    spec: { ...common, 'all-positions': { kind: 'flag', help: 'logits of every position, not only the last' } },
    run: runLogits,
  },
  generate: {
    summary: 'continue a prompt (text or token ids): greedy by default, Hugging Face generation options',
    spec: {
      ...common,
      prompt: { kind: 'string', value: 'TEXT', help: 'text to continue (tokenized, bos prepended) instead of --input-ids' },
      tokenizer: { kind: 'string', value: 'DIR|FILE', help: 'tokenizer.json / tokenizer.model, or a folder with one (default: the model folder\'s, else the built-in Llama-2 tokenizer)' },
      'max-new-tokens': { kind: 'string', value: 'N', help: 'number of new tokens (default 32)' },
      generate_kwargs: { kind: 'list', value: 'K=V...', help: `Hugging Face generation options: ${KWARGS.join(', ')} (stop_strings may repeat)` },
      chat: { kind: 'flag', help: 'wrap --prompt in the chat template of the model\'s (or --tokenizer\'s) tokenizer_config.json, as one user message' },
      'stop-at-eos': { kind: 'flag', help: 'stop after the eos token (default with --prompt; with --input-ids exactly the requested number of tokens is generated, as in the reference fixtures)' },
      max_length: { kind: 'string', value: 'N', help: 'total length, prompt included (generate_openelm.py\'s option), instead of --max-new-tokens' },
      assistant_model: { kind: 'string', value: 'DIR|ID', help: 'speculative decoding with a draft model of the same vocabulary (a smaller OpenELM, or this one in q4); greedy output is unchanged. See num_assistant_tokens, num_assistant_tokens_schedule' },
      assistant_dtype: { kind: 'string', value: 'FORMAT', help: `the assistant's weight format: ${DTYPES.join(' | ')} (default: --dtype)` },
      'decode-ahead': { kind: 'string', value: 'N', help: 'submit N decode steps at once and read their ids back together (no CPU round trip per token; same tokens; text streams in groups of N). Default 1' },
      device: { kind: 'string', value: 'DEVICE', help: 'accepted for generate_openelm.py compatibility: this engine always runs on the GPU through WebGPU (gpu, cuda, cuda:N, mps and auto all mean that)' },
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
  ...evalCommands(common, openModel),
  doctor: doctorCommand,
  serve: serveCommand(common, openModel, life),
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

function dtypeOption(p: Parsed, name = 'dtype'): DType {
  const d = p.values.get(name) ?? 'f16';
  if (!DTYPES.includes(d)) throw new UsageError(`--${name} must be one of ${DTYPES.join(', ')}, got "${d}"`);
  return d as DType;
}

/** generate_openelm.py's --device: anything naming the GPU is fine; there is no CPU path. */
function deviceOption(p: Parsed): void {
  const d = p.values.get('device');
  if (d === undefined || /^(gpu|webgpu|auto|mps|cuda(:\d+)?)$/i.test(d.trim())) return;
  throw new UsageError(`--device ${d}: this engine runs only on the GPU through WebGPU; leave --device out (or give gpu)`);
}

async function openModel(p: Parsed) {
  const json = p.flags.has('json');
  const hub = { token: p.values.get('hf_access_token') };
  const bar = progressBar(process.stderr);
  let dir: string;
  try {
    dir = await resolveModelSource(p.values.get('model') ?? (await defaultModel(json)), { ...hub, onProgress: json ? undefined : bar });
  } finally {
    bar.end();
  }
  const contextLength = p.values.has('context-length') ? intOption(p, 'context-length', 1, 0) : undefined;
  const t0 = performance.now();
  const gemv = p.values.get('gemv') ?? 'auto';
  if (gemv !== 'auto' && !(GEMV_KERNELS as readonly string[]).includes(gemv)) throw new UsageError(`--gemv must be auto, ${GEMV_KERNELS.join(' or ')}, got "${gemv}"`);
  const prefillMatmul = p.values.get('prefill-matmul') ?? 'auto';
  if (prefillMatmul !== 'auto' && !(PREFILL_KERNELS as readonly string[]).includes(prefillMatmul)) throw new UsageError(`--prefill-matmul must be auto, ${PREFILL_KERNELS.join(' or ')}, got "${prefillMatmul}"`);
  const kvDtype = p.values.get('kv-dtype') ?? 'f32';
  if (!(KV_DTYPES as readonly string[]).includes(kvDtype)) throw new UsageError(`--kv-dtype must be ${KV_DTYPES.join(' or ')}, got "${kvDtype}"`);
  const attention = p.values.get('attention') ?? 'auto';
  if (!(ATTENTION_CHOICES as readonly string[]).includes(attention)) throw new UsageError(`--attention must be ${ATTENTION_CHOICES.join(', ')}, got "${attention}"`);
  const model = await loadModel(dir, {
    dtype: dtypeOption(p),
    contextLength,
    tokenizer: p.values.get('tokenizer'),
    gemv: gemv as GemvKernel | 'auto',
    prefillMatmul: prefillMatmul as PrefillKernel | 'auto',
    kvDtype: kvDtype as KvDtype,
    attention: attention as AttentionChoice,
    tuningStore: defaultNodeTuningStore({ retune: p.flags.has('retune') }),
  });
  return { model, dir, loadMs: performance.now() - t0 };
}

/** How the decode matmul kernel was chosen, for generate's stats: timed now or remembered, and the times. */
function gemvTuningStats(t: Tuned<GemvKernel> | undefined) {
  return t ? { choice: t.choice, remembered: t.remembered, ms: t.ms, measured_at: t.at } : null;
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
  life.trapSignals();
  const ids = inputIds(p);
  const { model } = await openModel(p);
  try {
    checkIdsInVocab(ids, model.plan.vocabSize, '--input-ids');
    life.signal.throwIfAborted();
    const rows = await model.logits(ids, { allPositions: p.flags.has('all-positions') });
    life.signal.throwIfAborted();
    checkFiniteRows(rows, (i) => (p.flags.has('all-positions') ? i : ids.length - 1));
    if (p.flags.has('json')) {
      await life.write(`{"logits":[${rows.map((r) => `[${Array.from(r).join(',')}]`).join(',')}]}\n`);
    } else {
      rows.forEach((r, i) => {
        const pos = p.flags.has('all-positions') ? i : ids.length - 1;
        const top = [...r.keys()].sort((a, b) => r[b] - r[a] || a - b).slice(0, 5);
        console.log(`position ${pos}: top ${top.map((t) => `${t} (${r[t].toFixed(4)})`).join(', ')}`);
      });
    }
  } finally {
    await disposeWhenIdle(model);
  }
}

async function runGenerate(p: Parsed): Promise<void> {
  life.trapSignals();
  const json = p.flags.has('json');
  const prompt = p.values.get('prompt');
  if (prompt !== undefined && p.values.has('input-ids')) throw new UsageError('give either --prompt or --input-ids, not both');
  let kw: Partial<GenerationConfig> = {};
  if (p.values.has('max-new-tokens')) kw.maxNewTokens = intOption(p, 'max-new-tokens', 0, 32);
  kw = asUsage(() => applyKwargs(kw, p.lists.get('generate_kwargs') ?? []));
  if (p.values.has('max-new-tokens') && (p.lists.get('generate_kwargs') ?? []).some((k) => k.startsWith('max_new_tokens='))) {
    throw new UsageError('give max_new_tokens once: --max-new-tokens or --generate_kwargs max_new_tokens=N');
  }
  if (p.values.has('max_length')) {
    if (kw.maxLength !== undefined) throw new UsageError('give max_length once: --max_length or --generate_kwargs max_length=N');
    kw.maxLength = intOption(p, 'max_length', 1, 0);
  }
  if (p.values.has('decode-ahead')) kw.decodeAhead = intOption(p, 'decode-ahead', 1, 1);
  if (kw.maxLength !== undefined && kw.maxNewTokens !== undefined) throw new UsageError('give max_length or max_new_tokens, not both');
  deviceOption(p);
  const assistantSource = p.values.get('assistant_model');
  if (p.values.has('assistant_dtype') && assistantSource === undefined) throw new UsageError('--assistant_dtype needs --assistant_model');
  const assistantDtype = p.values.has('assistant_dtype') ? dtypeOption(p, 'assistant_dtype') : dtypeOption(p);
  if (assistantSource !== undefined && kw.promptLookupNumTokens !== undefined) {
    throw new UsageError('give --assistant_model or --generate_kwargs prompt_lookup_num_tokens=N, not both');
  }
  // Text prompts stop at eos as Hugging Face does; raw ids generate exactly the tokens asked for.
  kw.stopAtEos = prompt !== undefined || p.flags.has('stop-at-eos');
  const cfg = asUsage(() => resolveGeneration(kw));
  const ids = prompt === undefined ? inputIds(p, p.values.has('model') ? undefined : [1]) : undefined;
  if (p.flags.has('chat') && prompt === undefined) throw new UsageError('--chat needs --prompt');
  const { model, dir, loadMs } = await openModel(p);
  try {
    if (ids) checkIdsInVocab(ids, model.plan.vocabSize, '--input-ids');
    let input: string | readonly number[] = prompt ?? ids!;
    if (p.flags.has('chat')) {
      if (!model.chatTemplate) throw new Error(`${p.values.get('tokenizer') ?? dir}: --chat needs a chat_template in tokenizer_config.json, and there is none`);
      input = model.chatIds([{ role: 'user', content: prompt! }]);
    }
    const stats: GenerationStats = emptyStats();
    const out: number[] = [];
    let text = '';
    life.signal.throwIfAborted();
    if (!json && prompt !== undefined) await life.write(prompt);
    const assistant = assistantSource === undefined ? undefined : { source: await resolveModelSource(assistantSource, { token: p.values.get('hf_access_token') }), dtype: assistantDtype };
    for await (const t of model.generate(input, { ...cfg, stats, assistant, signal: life.signal })) {
      out.push(t.id);
      text += t.text;
      if (!json) await life.write(model.tokenizer && prompt !== undefined ? t.text : `${out.length === 1 ? '' : ' '}${t.id}`);
    }
    if (json) {
      await life.write(`${JSON.stringify({ output_ids: out, text, stats: { ...stats, load_ms: loadMs, gemv: model.engine.gemv, gemv_tuning: gemvTuningStats(model.gemvTuning), attention: model.engine.attention, kv_dtype: model.engine.kvDtype, prefill_matmul: model.engine.prefillMatmul } })}\n`);
    } else {
      await life.write('\n');
      console.error(
        `[prompt ${stats.prompt_tokens} tokens, ${stats.new_tokens} new; prefill ${stats.prefill_tokens_per_s.toFixed(2)} tok/s, ` +
          `decode ${stats.decode_tokens_per_s.toFixed(2)} tok/s, ${stats.dispatches_per_token} dispatches/token; load ${(loadMs / 1000).toFixed(1)} s]`,
      );
      const sp = stats.speculative;
      if (sp) {
        console.error(
          `[${sp.method.replace('_', ' ')}: ${sp.accepted}/${sp.drafted} drafts accepted (${(sp.acceptance_rate * 100).toFixed(1)}%), ` +
            `${sp.tokens_per_main_pass.toFixed(2)} tokens per main pass, ${sp.main_passes} main and ${sp.draft_passes} draft passes]`,
        );
      }
    }
  } finally {
    await disposeWhenIdle(model);
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
    console.log(cmd.help?.() ?? helpText(name, cmd.summary, cmd.spec));
    return;
  }
  await cmd.run(parsed);
}

/** Runs `openelm ARGV...` with the built-in commands plus `extra`, then exits as lifecycle.ts says. */
export function runCli(argv: string[], extra: Record<string, Command> = {}): void {
  Object.assign(commands, extra);
  main(argv).then(
    () => life.settle({ ok: true }),
    (error: unknown) => life.settle({ ok: false, error }),
  );
}
