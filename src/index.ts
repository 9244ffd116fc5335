// Node entry point of the library: `import { loadModel } from 'openelm-webgpu'`.
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseConfigText } from './config/config.ts';
import { derivePlan } from './config/plan.ts';
import { acquireDevice, type DeviceOptions } from './gpu/device.ts';
import { Gpu } from './gpu/gpu.ts';
import { nodeGpu } from './gpu/node-gpu.ts';
import { openCheckpoint } from './io/node-source.ts';
import { downloadModel, isHubId, type DownloadOptions } from './io/hub.ts';
import { defaultNodeTuningStore } from './io/node-tuning-store.ts';
import { OpenElmModel, type ModelLoader, type ModelOptions } from './api/model.ts';
import { checkCheckpoint } from './runtime/model-weights.ts';
import { loadChatTemplate, loadTokenizer } from './tokenizer/node-load.ts';
import type { ChatTemplate } from './tokenizer/chat.ts';
import type { Tokenizer } from './tokenizer/tokenizer.ts';

export { OpenElmModel, DTYPES, type DType, type ModelOptions, type GenerateOptions, type GenerateResult, type AssistantSpec } from './api/model.ts';
export type { GenerationStats, GeneratedToken, SpeculativeStats } from './generate/generate.ts';
export type { GenerationConfig } from './generate/options.ts';
export { encodePair, type ScoreResult, type ScoreOptions, type TokenRequest } from './generate/score.ts';
export { TASKS, TASK_NAMES, isTaskName, type TaskName, type McItem } from './eval/tasks.ts';
export { evaluate, loadItems, summarizeEval, type EvalItem, type EvalReport } from './eval/eval.ts';
export type { Tokenizer } from './tokenizer/tokenizer.ts';
export { loadTokenizer, loadChatTemplate } from './tokenizer/node-load.ts';
export { renderChat, encodeChat, checkChatMessages, chatTemplateFromConfig, type ChatMessage, type ChatTemplate } from './tokenizer/chat.ts';
export type { ModelPlan, LayerPlan } from './config/plan.ts';
export { synthesizeCheckpoint, type SynthOptions } from './io/synth.ts';
export { startServer, SERVE_DEFAULTS, type ServeOptions, type ServerHandle } from './serve/server.ts';

export interface LoadOptions extends ModelOptions {
  /** Reuse a device (several models on one GPU); by default each model gets its own. */
  gpu?: Gpu;
  /**
   * A tokenizer, or a folder/file to load one from. Default: the model folder's tokenizer.json or
   * tokenizer.model, else the built-in Llama-2 tokenizer (Apple's folders ship none).
   */
  tokenizer?: Tokenizer | string;
  /**
   * The chat template for model.chat. Default: the chat_template of tokenizer_config.json in the
   * tokenizer's folder (when `tokenizer` names one) or the model folder; null: none.
   */
  chatTemplate?: ChatTemplate | null;
  /** For a hub id (`apple/OpenELM-270M`): token, endpoint, revision, cache folder, progress. */
  hub?: Omit<DownloadOptions, 'files'>;
}

/** Optional files a hub download also fetches when the repository has them. */
const HUB_EXTRA_FILES = ['tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'generation_config.json'];

/** A local model folder for `source`: the folder itself, or the hub snapshot it names (downloaded once). */
export async function resolveModelSource(source: string, hub: LoadOptions['hub'] = {}): Promise<string> {
  if (!isHubId(source)) return source;
  return downloadModel(source, { ...hub, files: HUB_EXTRA_FILES });
}

/** Reads and validates `dir/config.json` and derives the layer plan. */
export async function loadPlan(dir: string) {
  const file = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new Error(`${file}: cannot read the model's config.json (is ${dir} a model folder in the Hugging Face layout?)`);
  }
  return derivePlan(parseConfigText(text, file), file);
}

export async function createGpu(opts: DeviceOptions = {}): Promise<Gpu> {
  return new Gpu(await acquireDevice(await nodeGpu(), opts));
}

/** The folder whose tokenizer_config.json holds the chat template: the tokenizer's, else the model's. */
async function tokenizerFolder(tokenizer: LoadOptions['tokenizer'], dir: string): Promise<string> {
  if (typeof tokenizer !== 'string') return dir;
  const st = await stat(tokenizer).catch(() => undefined);
  return st?.isFile() ? dirname(tokenizer) : tokenizer;
}

/** Loads a model onto the GPU from a folder in the Hugging Face layout or a hub id. */
export async function loadModel(source: string, opts: LoadOptions = {}): Promise<OpenElmModel> {
  const dir = await resolveModelSource(source, opts.hub);
  const plan = await loadPlan(dir);
  const tensors = await openCheckpoint(dir);
  checkCheckpoint(plan, tensors); // names and shapes against the config, before any device exists
  const tokenizer = typeof opts.tokenizer === 'object' ? opts.tokenizer : await loadTokenizer(opts.tokenizer ?? dir);
  const chatTemplate = opts.chatTemplate === null ? undefined : (opts.chatTemplate ?? (await loadChatTemplate(await tokenizerFolder(opts.tokenizer, dir))));
  const gpu = opts.gpu ?? (await createGpu());
  try {
    // Assistants (speculative decoding) load on this model's device with its tokenizer and kernels.
    const tuningStore = opts.tuningStore === undefined ? defaultNodeTuningStore() : opts.tuningStore;
    const loader: ModelLoader = (src, o) => loadModel(src, { hub: opts.hub, gemv: opts.gemv, prefillMatmul: opts.prefillMatmul, tuningStore, tokenizer, ...o });
    return await OpenElmModel.create(gpu, plan, tensors, { ...opts, tuningStore, tokenizer, chatTemplate, ownsGpu: !opts.gpu, loader });
  } catch (e) {
    if (!opts.gpu) gpu.destroy();
    throw e;
  }
}
export { setKernelVariant, kernelOrigin, KERNEL_NAMES, type KernelName } from './gpu/kernel-variants.ts';
export { tune, TUNING_ENGINE_VERSION, type Tuned } from './runtime/tuning.ts';
export { memoryTuningStore, retuningStore, type TuningStore, type TuningRecord } from './io/tuning-store.ts';
export { nodeTuningStore, defaultNodeTuningStore } from './io/node-tuning-store.ts';
export { runDoctor, formatReport, reportJson, type DoctorReport, type DoctorOptions, type DoctorModel, type CheckResult } from './doctor/doctor.ts';
