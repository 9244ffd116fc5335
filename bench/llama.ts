// Peer: llama.cpp through node-llama-cpp on the same weights, converted to GGUF (gguf.ts).
// node-llama-cpp is not a dependency (its optional builds weigh ~670 MB): install it on demand
// with `NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm i --no-save node-llama-cpp@3.22.1`.
//
// Loop timed: a bare loop of one-token evaluations (LlamaContextSequence.controlledEvaluate with
// generateNext.token on the fed token, so the logits are computed and the next token sampled,
// greedily), not node-llama-cpp's chat/completion loop (which adds ~12 ms a token here).
// Prefill: one controlledEvaluate of the whole prompt, next token generated after the last one.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, realpathSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { loadPlan } from '../src/index.ts';
import { INDEX_FILE, openCheckpoint, SINGLE_FILE } from '../src/io/node-source.ts';
import { writeOpenElmGguf, type GgmlTypeName } from './gguf.ts';
import { withLoad, type LoadSample } from './machine.ts';
import { promptIds } from './prompt.ts';
import { rate, summarize, type Stat } from './stats.ts';

export const NODE_LLAMA_CPP_VERSION = '3.22.1';
export const LLAMA_INSTALL_HINT = `NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm i --no-save node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`;
const NLC = 'node-llama-cpp'; // in a variable: esbuild leaves the import to Node at run time

export interface LlamaFormatResult {
  format: GgmlTypeName;
  ok: boolean;
  error?: string;
  gguf?: string;
  gguf_bytes?: number;
  /** Time to write the GGUF file (absent when it was cached). */
  gguf_write_ms?: number;
  load_ms?: number;
  context_size?: number;
  prefill?: { prompt_tokens: number; tokens_per_s: Stat; ttft_ms: Stat; first_run_ms: number; load: LoadSample }[];
  decode?: { context_tokens: number; warmup_steps: number; step_ms: Stat; tokens_per_s: Stat; ids: number[]; load: LoadSample };
}

export interface LlamaPeerResult {
  ok: boolean;
  error?: string;
  backend: 'cpu' | 'vulkan';
  version?: string;
  llama_cpp_release?: string;
  build_type?: string;
  threads?: number;
  loop: string;
  formats: LlamaFormatResult[];
}

/** Where the GGUF of a checkpoint is cached: keyed by the folder and its weight files' size and mtime. */
export function ggufPath(cacheDir: string, modelDir: string, format: GgmlTypeName): string {
  const real = realpathSync(modelDir);
  const h = createHash('sha256').update(real);
  for (const f of [SINGLE_FILE, INDEX_FILE, 'config.json']) {
    const p = join(real, f);
    if (existsSync(p)) {
      const st = statSync(p);
      h.update(`${f}:${st.size}:${st.mtimeMs}`);
    }
  }
  const base = real.split('/').filter(Boolean).pop() ?? 'model';
  return join(cacheDir, `${base}-${h.digest('hex').slice(0, 12)}.${format}.gguf`);
}

/** Writes (or reuses) the GGUF of `modelDir` in `format`. */
export async function ensureGguf(cacheDir: string, modelDir: string, format: GgmlTypeName, log: (s: string) => void = () => {}): Promise<{ path: string; writeMs?: number }> {
  const path = ggufPath(cacheDir, modelDir, format);
  if (existsSync(path)) return { path };
  mkdirSync(cacheDir, { recursive: true });
  log(`  writing ${format} GGUF of ${modelDir} to ${path} ...`);
  const t0 = performance.now();
  const plan = await loadPlan(modelDir);
  await writeOpenElmGguf(path, plan, await openCheckpoint(modelDir), format, `OpenELM (${modelDir})`);
  return { path, writeMs: performance.now() - t0 };
}

// The few parts of node-llama-cpp's API used here.
interface NlcSequence {
  clearHistory(): Promise<void>;
  controlledEvaluate(input: (number | [number, { generateNext?: { token?: boolean } }])[]): Promise<({ next: { token?: number | null } } | undefined)[]>;
}
interface NlcContext {
  contextSize: number;
  getSequence(): NlcSequence;
  dispose(): Promise<void>;
}
interface NlcModel {
  createContext(o: { contextSize: number; batchSize: number; threads: number; sequences: number }): Promise<NlcContext>;
  dispose(): Promise<void>;
}
interface NlcLlama {
  gpu: string | false;
  buildType: string;
  llamaCppRelease: { release: string };
  loadModel(o: { modelPath: string; gpuLayers?: number | 'max' }): Promise<NlcModel>;
  dispose(): Promise<void>;
}
interface Nlc {
  getLlama(o: Record<string, unknown>): Promise<NlcLlama>;
}

export async function importNodeLlamaCpp(): Promise<Nlc> {
  try {
    return (await import(NLC)) as Nlc;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_MODULE_NOT_FOUND' || /Cannot find (package|module)/.test(err.message)) {
      throw new Error(`node-llama-cpp is not installed; install it for the llama.cpp peer with: ${LLAMA_INSTALL_HINT}`);
    }
    throw e;
  }
}

export interface LlamaBenchOptions {
  modelDir: string;
  cacheDir: string;
  formats: GgmlTypeName[];
  promptLengths: number[];
  decodeTokens: number;
  runs: number;
  warmupSteps?: number;
  backend: 'cpu' | 'vulkan';
  threads?: number;
  log?: (s: string) => void;
}

export async function benchLlama(o: LlamaBenchOptions): Promise<LlamaPeerResult> {
  const log = o.log ?? (() => {});
  const threads = o.threads ?? cpus().length;
  const out: LlamaPeerResult = { ok: false, backend: o.backend, threads, loop: 'bare controlledEvaluate, one token a call, next token sampled (greedy) after it', formats: [] };
  let llama: NlcLlama | undefined;
  try {
    const nlc = await importNodeLlamaCpp();
    out.version = NODE_LLAMA_CPP_VERSION;
    llama = await nlc.getLlama({
      gpu: o.backend === 'vulkan' ? 'vulkan' : false,
      build: 'never',
      skipDownload: true,
      maxThreads: threads,
      progressLogs: false,
      logLevel: 'error',
    });
    out.llama_cpp_release = llama.llamaCppRelease?.release;
    out.build_type = llama.buildType;
    const plan = await loadPlan(o.modelDir);
    const warmup = o.warmupSteps ?? 2;
    const decodeSteps = o.decodeTokens * Math.max(1, o.runs);
    const contextSize = Math.max(...o.promptLengths, o.promptLengths[0] + warmup + decodeSteps) + 8;
    for (const format of o.formats) {
      const r: LlamaFormatResult = { format, ok: false };
      out.formats.push(r);
      let model: NlcModel | undefined;
      let ctx: NlcContext | undefined;
      try {
        const g = await ensureGguf(o.cacheDir, o.modelDir, format, log);
        r.gguf = g.path;
        r.gguf_bytes = statSync(g.path).size;
        if (g.writeMs !== undefined) r.gguf_write_ms = g.writeMs;
        const t0 = performance.now();
        model = await llama.loadModel({ modelPath: g.path, gpuLayers: o.backend === 'vulkan' ? 'max' : 0 });
        r.load_ms = performance.now() - t0;
        ctx = await model.createContext({ contextSize, batchSize: Math.max(...o.promptLengths), threads, sequences: 1 });
        r.context_size = ctx.contextSize;
        const seq = ctx.getSequence();
        const evalPrompt = async (ids: number[]): Promise<number> => {
          const res = await seq.controlledEvaluate([...ids.slice(0, -1), [ids[ids.length - 1], { generateNext: { token: true } }]]);
          const tok = res[ids.length - 1]?.next.token;
          if (typeof tok !== 'number') throw new Error('llama.cpp returned no next token');
          return tok;
        };
        r.prefill = [];
        for (const L of o.promptLengths) {
          const ids = promptIds(L, plan.vocabSize, plan.bosTokenId);
          const once = async () => {
            await seq.clearHistory();
            const s = performance.now();
            await evalPrompt(ids);
            return performance.now() - s;
          };
          const first = await once();
          const { value: samples, load } = await withLoad(async () => {
            const s: number[] = [];
            for (let i = 0; i < Math.max(1, o.runs); i++) s.push(await once());
            return s;
          });
          const ttft = summarize(samples);
          r.prefill.push({ prompt_tokens: L, tokens_per_s: rate(L, ttft), ttft_ms: ttft, first_run_ms: first, load });
          log(`  llama.cpp ${o.backend} ${format}: prefill ${L} tokens: ${(L / (ttft.median / 1000)).toFixed(2)} tok/s`);
        }
        if (o.decodeTokens > 0) {
          await seq.clearHistory();
          let tok = await evalPrompt(promptIds(o.promptLengths[0], plan.vocabSize, plan.bosTokenId));
          const ids = [tok];
          const stepOnce = async () => {
            const res = await seq.controlledEvaluate([[tok, { generateNext: { token: true } }]]);
            const next = res[0]?.next.token;
            if (typeof next !== 'number') throw new Error('llama.cpp returned no next token');
            tok = next;
            ids.push(next);
          };
          for (let i = 0; i < warmup; i++) await stepOnce();
          const steps: number[] = [];
          const { load } = await withLoad(async () => {
            for (let i = 0; i < decodeSteps; i++) {
              const s = performance.now();
              await stepOnce();
              steps.push(performance.now() - s);
            }
          });
          const stepMs = summarize(steps);
          r.decode = { context_tokens: o.promptLengths[0] + warmup, warmup_steps: warmup, step_ms: stepMs, tokens_per_s: rate(1, stepMs), ids, load };
          log(`  llama.cpp ${o.backend} ${format}: decode: ${(1000 / stepMs.median).toFixed(2)} tok/s`);
        }
        r.ok = true;
      } catch (e) {
        r.error = (e as Error).message.split('\n')[0];
        log(`  llama.cpp ${o.backend} ${format}: failed: ${r.error}`);
      } finally {
        await ctx?.dispose();
        await model?.dispose();
      }
    }
    out.ok = out.formats.some((f) => f.ok);
    if (!out.ok) out.error = out.formats.find((f) => f.error)?.error;
  } catch (e) {
    out.error = (e as Error).message.split('\n')[0];
    log(`  llama.cpp ${o.backend}: ${out.error}`);
  } finally {
    await llama?.dispose();
  }
  return out;
}

export const LAVAPIPE_ICD = '/usr/share/vulkan/icd.d/lvp_icd.x86_64.json';

/**
 * Runs benchLlama in a child process (`node CLI bench --llama-child JSON`), for the Vulkan
 * backend: the Vulkan loader reads VK_ICD_FILENAMES once per process, and this process points it
 * at SwiftShader for Dawn, on which ggml-vulkan crashes (no 16-bit storage). The child gets Mesa's
 * lavapipe and GGML_VK_VISIBLE_DEVICES=0 (ggml-vulkan ignores CPU devices otherwise).
 */
export async function benchLlamaInChild(o: LlamaBenchOptions, cliPath: string): Promise<LlamaPeerResult> {
  const { spawn } = await import('node:child_process');
  const log = o.log ?? (() => {});
  const opts = { ...o, log: undefined };
  const env: NodeJS.ProcessEnv = { ...process.env, GGML_VK_VISIBLE_DEVICES: '0' };
  if (o.backend === 'vulkan' && existsSync(LAVAPIPE_ICD)) env.VK_ICD_FILENAMES = LAVAPIPE_ICD;
  return new Promise((resolveResult) => {
    const child = spawn(process.execPath, [cliPath, 'bench', '--llama-child', JSON.stringify(opts)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let pending = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => {
      pending += b.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) if (l.trim()) log(l);
    });
    child.on('close', (code, signal) => {
      try {
        resolveResult(JSON.parse(stdout) as LlamaPeerResult);
      } catch {
        const why = signal ? `killed by ${signal}` : `exit code ${code}`;
        resolveResult({ ok: false, backend: o.backend, loop: '', formats: [], error: `the llama.cpp ${o.backend} child process failed (${why})${pending ? `: ${pending.trim()}` : ''}` });
      }
    });
  });
}
