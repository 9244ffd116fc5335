// Browser entry point of the library (dist/browser/openelm.js):
//   import { loadModel } from 'openelm-webgpu';   // resolved to this bundle by the "browser" condition
//   const model = await loadModel('https://example.org/models/OpenELM-270M/');   // or 'apple/OpenELM-270M', or picked Files
//   for await (const t of model.generate('Once upon a time', { maxNewTokens: 32 })) out.textContent += t.text;
// Same model API as Node. No Node modules may be imported from here (a test greps the bundle).
import { parseConfigText } from './config/config.ts';
import { derivePlan, type ModelPlan } from './config/plan.ts';
import { acquireDevice, engineLimits, type AcquiredDevice, type EngineLimit } from './gpu/device.ts';
import { fmtBytes, Gpu } from './gpu/gpu.ts';
import { DEFAULT_CACHE_NAME } from './io/browser-cache.ts';
import { checkRoom, deleteStoredModel as deleteStored, openModelStore, type ModelStore, type StorageChoice, type StorageReport } from './io/model-store.ts';
import { parseSafetensors, type ByteSource, type TensorEntry } from './io/safetensors.ts';
import { assembleShards, INDEX_FILE, parseShardIndex } from './io/shard-index.ts';
import { blobSource, fetchOptional, httpSource, HttpError } from './io/web-source.ts';
import { OpenElmModel, type ModelOptions } from './api/model.ts';
import { browserTuningStore } from './io/browser-tuning-store.ts';
import { tokenizerFromJson, tokenizerFromModelProto } from './tokenizer/load.ts';
import { chatTemplateFromConfig, type ChatTemplate } from './tokenizer/chat.ts';
import { parseJson } from './util/json.ts';
import type { LoadEvent } from './io/load-event.ts';
import type { Tokenizer } from './tokenizer/tokenizer.ts';

export { OpenElmModel, DTYPES, type DType, type ModelOptions, type GenerateOptions, type GenerateResult, type AssistantSpec } from './api/model.ts';
export { encodePair, type ScoreResult, type ScoreOptions, type TokenRequest } from './generate/score.ts';
export { TASKS, TASK_NAMES, isTaskName, type TaskName, type McItem } from './eval/tasks.ts';
export { evaluate, loadItems, summarizeEval, type EvalItem, type EvalReport } from './eval/eval.ts';
export { emptyStats, type GenerationStats, type GeneratedToken, type SpeculativeStats } from './generate/generate.ts';
export type { GenerationConfig } from './generate/options.ts';
export { tokenizerFromJson, tokenizerFromModelProto } from './tokenizer/load.ts';
export { StreamDecoder, type Tokenizer } from './tokenizer/tokenizer.ts';
export { renderChat, encodeChat, checkChatMessages, chatTemplateFromConfig, type ChatMessage, type ChatTemplate } from './tokenizer/chat.ts';
export type { ModelPlan, LayerPlan } from './config/plan.ts';
export { parseConfig } from './config/config.ts';
export { derivePlan } from './config/plan.ts';
export { Gpu, fmtBytes } from './gpu/gpu.ts';
export { acquireDevice, type AcquiredDevice, type DeviceFeatures } from './gpu/device.ts';
export { parseSafetensors, type ByteSource, type TensorEntry } from './io/safetensors.ts';
export { httpSource, blobSource, HttpError, type HttpSourceOptions, type HttpByteSource } from './io/web-source.ts';
export { listCache, clearCache, QuotaError, DEFAULT_CACHE_NAME, type CachedFile, type CacheOptions } from './io/browser-cache.ts';
export { listStoredModels, STORAGE_CHOICES, type StoredModel, type StoredFile, type StorageChoice, type StorageKind, type StorageReport } from './io/model-store.ts';
export { browserFeatures, type BrowserFeature } from './io/browser-features.ts';
// Lower-level pieces for the browser benchmark page (kernel timing).
export { matmulDispatches } from './runtime/linear.ts';
export { uploadWeight, destroyWeight, type GpuWeight, type WeightFormat } from './weights/gpu-weight.ts';
export { releaseDispatches, runDispatches, type Dispatch } from './gpu/dispatch.ts';
export { runDoctor, formatReport, reportJson, type DoctorReport, type DoctorOptions, type DoctorModel, type CheckResult } from './doctor/doctor.ts';
export { randomFill } from './doctor/matmul-check.ts';
export { browserTuningStore } from './io/browser-tuning-store.ts';
export { memoryTuningStore, retuningStore, type TuningStore, type TuningRecord } from './io/tuning-store.ts';
export type { Tuned } from './runtime/tuning.ts';
export { createWorkerModel, WorkerModel, type WorkerModelOptions, type WorkerCallOptions } from './worker/host.ts';
export type { WorkerModelInfo, WorkerLoadOptions, WorkerGenerateOptions } from './worker/protocol.ts';

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';
const CONFIG_FILE = 'config.json';
const SINGLE_FILE = 'model.safetensors';
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer.model'];

/** A model folder's URL, a Hugging Face hub id (`owner/name`, optionally `@revision`), or the files of a model folder. */
export type ModelSource = string | URL | FileList | Iterable<File>;

export type { LoadEvent } from './io/load-event.ts';

export interface BrowserLoadOptions extends ModelOptions {
  /** Reuse a device (several models on one GPU); by default each model gets its own. */
  gpu?: Gpu;
  /**
   * A tokenizer, or the URL of a tokenizer.json / tokenizer.model. Default: the folder's
   * tokenizer.json or tokenizer.model, else the built-in Llama-2 tokenizer (loaded on first use:
   * Apple's folders ship none). `false`: no tokenizer (token ids only).
   */
  tokenizer?: Tokenizer | string | false;
  /** The chat template for model.chat. Default: the folder's tokenizer_config.json chat_template; null: none. */
  chatTemplate?: ChatTemplate | null;
  /** For hub ids: endpoint (default https://huggingface.co), revision (default main), access token. */
  hub?: { endpoint?: string; revision?: string; token?: string };
  /**
   * Where to keep fetched files: 'auto' (default: the Origin Private File System, else the Cache
   * API), 'opfs', 'cache', or 'none'. `cache: false` is 'none'.
   */
  storage?: StorageChoice;
  /** false: store nothing (same as storage: 'none'). */
  cache?: boolean;
  /** OPFS: files are written in parts of this size (default 16 MiB; a closed tab loses at most the part being filled). */
  storagePartBytes?: number;
  /** Cache name (default 'openelm-webgpu-v1'). */
  cacheName?: string;
  /** fetch to use; default globalThis.fetch. */
  fetch?: typeof fetch;
  /** Aborts the download/upload; the partial model is freed. */
  signal?: AbortSignal;
  /** Load progress: files, bytes (network and cache) and tensors. */
  onLoadProgress?: (e: LoadEvent) => void;
}

export const NO_WEBGPU_HELP =
  'WebGPU is not available in this browser (navigator.gpu is missing). Use Chrome or Edge 113+, Safari 26+ (macOS, iOS), ' +
  'or Firefox 141+ (Windows); on Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu. WebGPU also needs a secure ' +
  'page: https://, or http://localhost / 127.0.0.1.';

function navigatorGpu(): GPU {
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!gpu) throw new Error(NO_WEBGPU_HELP);
  return gpu;
}

/** A device from navigator.gpu, with the limits and features the engine uses. */
export async function createGpu(): Promise<Gpu> {
  return new Gpu(await acquireDevice(navigatorGpu()));
}

export interface WebGpuSupport {
  available: boolean;
  /** Why not, when not. */
  reason?: string;
  info?: AcquiredDevice['info'];
  features?: { shaderF16: boolean; subgroups: boolean; timestampQuery: boolean; all: string[] };
  limits?: Record<EngineLimit, number>;
}

/** Feature detection without creating a device: the adapter, its features and main limits. */
export async function webgpuSupport(): Promise<WebGpuSupport> {
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!gpu && (globalThis as { isSecureContext?: boolean }).isSecureContext === false) {
    return { available: false, reason: 'this page is not a secure context, and browsers offer WebGPU only to secure pages: serve it over https://, or from http://localhost / 127.0.0.1.' };
  }
  if (!gpu) return { available: false, reason: NO_WEBGPU_HELP };
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    return { available: false, reason: `requestAdapter failed: ${(e as Error).message}` };
  }
  if (!adapter) return { available: false, reason: 'navigator.gpu exists but no WebGPU adapter was found (GPU blocklisted or disabled?)' };
  const a = adapter as GPUAdapter & { requestAdapterInfo?: () => Promise<GPUAdapterInfo>; isFallbackAdapter?: boolean };
  const ai = a.info ?? (await a.requestAdapterInfo?.());
  const has = (f: string) => adapter!.features.has(f as GPUFeatureName);
  return {
    available: true,
    info: {
      vendor: ai?.vendor ?? '',
      architecture: ai?.architecture ?? '',
      device: ai?.device ?? '',
      description: ai?.description ?? '',
      isFallback: (ai as GPUAdapterInfo & { isFallbackAdapter?: boolean })?.isFallbackAdapter ?? a.isFallbackAdapter ?? false,
    },
    features: { shaderF16: has('shader-f16'), subgroups: has('subgroups'), timestampQuery: has('timestamp-query'), all: [...adapter.features].sort() },
    limits: engineLimits(adapter.limits),
  };
}

// ---- Sources ----

const ID_PART = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$/;

/** `owner/name` or `owner/name@revision` as Hugging Face spells repo ids (not a relative URL). */
export function isHubId(s: string): boolean {
  if (s.includes('://') || s.startsWith('/') || s.startsWith('.')) return false;
  const [id] = s.split('@');
  const parts = id.split('/');
  return parts.length === 2 && parts.every((p) => ID_PART.test(p) && !p.includes('--') && !p.includes('..'));
}

/** The folder URL files of a hub model are fetched from: `<endpoint>/<owner>/<name>/resolve/<revision>/`. */
export function hubFolderUrl(id: string, o: BrowserLoadOptions['hub'] = {}): string {
  const [repo, atRev] = id.split('@');
  const revision = o.revision ?? atRev ?? 'main';
  const endpoint = (o.endpoint ?? DEFAULT_HUB_ENDPOINT).replace(/\/+$/, '');
  return `${endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/`;
}

/** Where a model's files come from: a web folder or picked files. */
interface Folder {
  /** For messages: the folder URL or "picked files". */
  name: string;
  /** URL prefix of the folder (web folders), for the cache. */
  url?: string;
  /** A small file whole, or undefined when the folder has none. */
  bytes(file: string): Promise<Uint8Array | undefined>;
  /** A large file as a ByteSource, or undefined when the folder has none. */
  source(file: string): Promise<ByteSource | undefined>;
}

interface Counters {
  networkBytes: number;
  cache?: ModelStore;
}

function webFolder(base: string, o: BrowserLoadOptions, cache: ModelStore | undefined, counters: Counters): Folder {
  const headers: Record<string, string> = o.hub?.token ? { Authorization: `Bearer ${o.hub.token}` } : {};
  const net = { fetch: o.fetch, headers, signal: o.signal, onBytes: (n: number) => (counters.networkBytes += n) };
  return {
    name: base,
    url: base,
    async bytes(file) {
      const url = new URL(file, base).href;
      if (cache) {
        const hit = await cache.getWhole(url);
        if (hit) return hit;
        if (await cache.isMissing(url)) return undefined;
      }
      const b = await fetchOptional(url, { ...net, name: url });
      if (cache) {
        if (b) await cache.putWhole(url, b);
        else await cache.markMissing(url);
      }
      return b;
    },
    async source(file) {
      const url = new URL(file, base).href;
      try {
        if (cache) {
          if (await cache.isMissing(url)) return undefined;
          return await cache.weightSource(url, url, net);
        }
        return await httpSource(url, { ...net, name: url });
      } catch (e) {
        if (e instanceof HttpError && e.status === 404) {
          await cache?.markMissing(url);
          return undefined;
        }
        throw e;
      }
    },
  };
}

function fileName(f: File): string {
  const rel = (f as File & { webkitRelativePath?: string }).webkitRelativePath;
  return rel || f.name;
}

/** The files of a picked folder (or a picked list of files), matched by name. */
function filesFolder(files: File[]): Folder {
  if (files.length === 0) throw new Error('no files were picked: choose the model folder (config.json, model.safetensors or the index and its shards)');
  // A picked folder lists files with paths (webkitRelativePath); use the folder holding config.json.
  const configs = files.filter((f) => fileName(f).split('/').pop() === CONFIG_FILE);
  if (configs.length === 0) {
    throw new Error(`the picked files hold no ${CONFIG_FILE}: pick the model folder itself, or its ${CONFIG_FILE} with the weights (got ${files.slice(0, 5).map(fileName).join(', ')}${files.length > 5 ? ', ...' : ''})`);
  }
  if (configs.length > 1) {
    throw new Error(`the picked files hold ${configs.length} files named ${CONFIG_FILE} (${configs.map(fileName).join(', ')}): pick one model folder`);
  }
  const dir = fileName(configs[0]).split('/').slice(0, -1).join('/');
  const byName = new Map<string, File>();
  for (const f of files) {
    const parts = fileName(f).split('/');
    if (parts.slice(0, -1).join('/') === dir) byName.set(parts[parts.length - 1], f);
  }
  const label = dir ? `picked folder ${dir}` : 'picked files';
  return {
    name: label,
    async bytes(file) {
      const f = byName.get(file);
      return f ? new Uint8Array(await f.arrayBuffer()) : undefined;
    },
    async source(file) {
      const f = byName.get(file);
      return f ? blobSource(f, `${dir ? dir + '/' : ''}${file}`) : undefined;
    },
  };
}

function folderUrl(source: string | URL): string {
  const base = (globalThis as { location?: Location }).location?.href;
  let u: URL;
  try {
    u = new URL(String(source), base);
  } catch {
    throw new Error(`model source "${String(source)}" is neither a URL nor a hub id like apple/OpenELM-270M`);
  }
  if (u.pathname.endsWith('/' + CONFIG_FILE)) u.pathname = u.pathname.slice(0, -CONFIG_FILE.length);
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  u.hash = '';
  return u.href;
}

function isFileList(s: unknown): s is FileList | Iterable<File> {
  return typeof s === 'object' && s !== null && !(s instanceof URL) && (Symbol.iterator in s || 'length' in s);
}

// ---- Loading ----

/** Opens the weight files: model.safetensors, else the index and its shards. Reads headers only. */
async function openWeights(folder: Folder): Promise<{ tensors: Map<string, TensorEntry>; sources: ByteSource[] }> {
  const single = await folder.source(SINGLE_FILE);
  if (single) return { tensors: await parseSafetensors(single), sources: [single] };
  const index = await folder.bytes(INDEX_FILE);
  if (!index) throw new Error(`${folder.name}: no weights found: looked for ${SINGLE_FILE} and ${INDEX_FILE}`);
  const where = `${folder.name} ${INDEX_FILE}`;
  const byShard = parseShardIndex(new TextDecoder().decode(index), where);
  const shards = new Map<string, Map<string, TensorEntry>>();
  const sources: ByteSource[] = [];
  for (const [file, names] of byShard) {
    const src = await folder.source(file);
    if (!src) throw new Error(`${folder.name}: shard "${file}" (holding "${names[0]}"${names.length > 1 ? ` and ${names.length - 1} more` : ''}) is missing`);
    sources.push(src);
    shards.set(file, await parseSafetensors(src));
  }
  return { tensors: assembleShards(byShard, shards, where), sources };
}

let defaultTok: Promise<Tokenizer> | undefined;
/** The built-in Llama-2 tokenizer (a separate chunk of the bundle, fetched on first use). */
export function loadDefaultTokenizer(): Promise<Tokenizer> {
  defaultTok ??= import('./tokenizer/default.ts').then((m) => m.defaultTokenizer());
  return defaultTok;
}

function tokenizerFrom(bytes: Uint8Array, file: string): Tokenizer {
  return file.toLowerCase().endsWith('.json') ? tokenizerFromJson(new TextDecoder().decode(bytes), file) : tokenizerFromModelProto(bytes, file);
}

async function resolveTokenizer(folder: Folder, o: BrowserLoadOptions): Promise<Tokenizer | undefined> {
  const t = o.tokenizer;
  if (t === false) return undefined;
  if (typeof t === 'object') return t;
  if (typeof t === 'string') {
    const b = await fetchOptional(t, { fetch: o.fetch, signal: o.signal });
    if (!b) throw new Error(`${t}: tokenizer file not found (HTTP 404)`);
    return tokenizerFrom(b, t);
  }
  for (const file of TOKENIZER_FILES) {
    const b = await folder.bytes(file);
    if (b) return tokenizerFrom(b, `${folder.name}${folder.url ? '' : '/'}${file}`);
  }
  return loadDefaultTokenizer();
}

const TOKENIZER_CONFIG = 'tokenizer_config.json';

/** The chat template in the folder's tokenizer_config.json, or undefined when it has none. */
async function folderChatTemplate(folder: Folder): Promise<ChatTemplate | undefined> {
  const b = await folder.bytes(TOKENIZER_CONFIG);
  if (!b) return undefined;
  const name = `${folder.name}${folder.url ? '' : '/'}${TOKENIZER_CONFIG}`;
  return chatTemplateFromConfig(parseJson(new TextDecoder().decode(b), name), name);
}

/**
 * Loads a model onto the GPU (navigator.gpu) from a folder URL in the Hugging Face layout, a hub
 * id (`apple/OpenELM-270M`), or the files of a model folder the user picked. Weights are read in
 * ranges (HTTP Range requests, or Blob slices), one tensor at a time, and kept in the Cache API
 * (see browser-cache.ts) so a reload needs no download.
 */
export async function loadModel(source: ModelSource, opts: BrowserLoadOptions = {}): Promise<OpenElmModel> {
  const counters: Counters = { networkBytes: 0 };
  try {
    return await loadWith(source, opts, counters);
  } catch (e) {
    counters.cache?.cancel?.(`the load failed: ${(e as Error)?.message ?? String(e)}`);
    throw e;
  }
}

async function loadWith(source: ModelSource, opts: BrowserLoadOptions, counters: Counters): Promise<OpenElmModel> {
  const ev: LoadEvent = { stage: 'files', message: '', bytesRead: 0, bytesTotal: 0, networkBytes: 0, cacheBytes: 0, tensorsDone: 0, tensorsTotal: 0 };
  const emit = (stage: LoadEvent['stage'], message: string) => {
    ev.stage = stage;
    ev.message = message;
    ev.networkBytes = counters.networkBytes;
    ev.cacheBytes = counters.cache?.counters.cacheBytes ?? 0;
    opts.onLoadProgress?.({ ...ev });
  };
  navigatorGpu(); // fail first, before any download, when there is no WebGPU

  let folder: Folder;
  let cacheNote = '';
  if (isFileList(source)) {
    folder = filesFolder(Array.from(source as Iterable<File>));
  } else {
    const base = modelBase(source as string | URL, opts.hub);
    const choice: StorageChoice = opts.cache === false ? 'none' : (opts.storage ?? 'auto');
    const { store, report } = await openModelStore(base, choice, { cacheName: opts.cacheName ?? DEFAULT_CACHE_NAME, partBytes: opts.storagePartBytes });
    counters.cache = store;
    ev.storage = report;
    if (report.kind === 'none' && report.reason) cacheNote = ` (${report.reason})`;
    else if (report.kind !== 'none') cacheNote = ` (stored in ${report.kind === 'opfs' ? 'the Origin Private File System' : 'the Cache API'}${report.persisted ? ', persistent' : ''})`;
    folder = webFolder(base, opts, counters.cache, counters);
  }

  emit('files', `reading ${CONFIG_FILE} from ${folder.name}${cacheNote}`);
  const cfgBytes = await folder.bytes(CONFIG_FILE);
  const cfgName = `${folder.name}${folder.url ? '' : '/'}${CONFIG_FILE}`;
  if (!cfgBytes) throw new Error(`${cfgName}: not found (is ${folder.name} a model folder in the Hugging Face layout?)`);
  const plan: ModelPlan = derivePlan(parseConfigText(new TextDecoder().decode(cfgBytes), cfgName), cfgName);

  emit('files', `reading the weights' headers`);
  const { tensors, sources } = await openWeights(folder);
  const total = sources.reduce((a, s) => a + s.size, 0);
  ev.bytesTotal = total;
  ev.tensorsTotal = plan.tensors.length;
  if (counters.cache) {
    counters.cache.modelBytes = total;
    await checkRoom(counters.cache, sources, total, folder.url ?? folder.name);
  }
  // Count bytes as tensors are read.
  const counted = new Map<ByteSource, ByteSource>();
  for (const s of sources) {
    counted.set(s, {
      name: s.name,
      size: s.size,
      read: async (offset, length) => {
        opts.signal?.throwIfAborted();
        const b = await s.read(offset, length);
        ev.bytesRead += length;
        return b;
      },
    });
  }
  for (const e of tensors.values()) e.source = counted.get(e.source) ?? e.source;

  const tokenizer = await resolveTokenizer(folder, opts);
  const chatTemplate = opts.chatTemplate === null ? undefined : (opts.chatTemplate ?? (await folderChatTemplate(folder)));

  // Each tensor is read (network or cache), converted or quantized on the CPU, then uploaded.
  const dtype = opts.dtype ?? 'f16';
  const weightStep = dtype === 'q8' || dtype === 'q4' ? `quantized to ${dtype} and uploaded` : `converted to ${dtype} and uploaded`;
  emit('gpu', 'requesting a WebGPU device');
  const gpu = opts.gpu ?? (await createGpu());
  try {
    const tuningStore = opts.tuningStore === undefined ? browserTuningStore() : opts.tuningStore;
    const model = await OpenElmModel.create(gpu, plan, tensors, {
      ...opts,
      tuningStore,
      tokenizer,
      chatTemplate,
      ownsGpu: !opts.gpu,
      // Assistants (speculative decoding) load on this model's device, cached like any model.
      loader: (src, o) => loadModel(src, { hub: opts.hub, cache: opts.cache, storage: opts.storage, cacheName: opts.cacheName, gemv: opts.gemv, prefillMatmul: opts.prefillMatmul, tuningStore, tokenizer, ...o }),
      onProgress: (done, n, tensor) => {
        ev.tensorsDone = done;
        ev.tensorsTotal = n;
        emit('weights', `${tensor} ${weightStep} (${done}/${n}, ${fmtBytes(ev.bytesRead)} of ${fmtBytes(total)} read)`);
        opts.onProgress?.(done, n, tensor);
      },
    });
    try {
      await counters.cache?.flush(); // the last cache write: its failure is the load's failure
    } catch (e) {
      model.dispose();
      throw e;
    }
    emit('done', `loaded: ${plan.numLayers} layers, ${(plan.paramCount / 1e6).toFixed(1)}M parameters, ${fmtBytes(gpu.allocatedBytes)} on the GPU`);
    return model;
  } catch (e) {
    if (!opts.gpu) gpu.destroy();
    throw e;
  }
}

/** The folder URL of a model source given as a URL or a hub id. */
function modelBase(source: string | URL, hub: BrowserLoadOptions['hub']): string {
  const s = String(source);
  return typeof source === 'string' && isHubId(s) ? hubFolderUrl(s, hub) : folderUrl(source);
}

/**
 * Deletes a stored model from OPFS and the Cache API: a folder URL (as listStoredModels gives
 * it) or a hub id; without one, every stored model. Returns the files and bytes removed.
 */
export async function deleteStoredModel(source?: string | URL, o: { hub?: BrowserLoadOptions['hub']; cacheName?: string } = {}): Promise<{ files: number; bytes: number }> {
  return deleteStored(source === undefined ? undefined : modelBase(source, o.hub), { cacheName: o.cacheName });
}
