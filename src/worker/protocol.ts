// The messages between a page and the worker that runs the engine (see host.ts and
// ../worker-entry.ts). Everything here crosses postMessage, so it is plain data: no functions, no
// GPU objects, no class instances other than Files.
import type { ModelOptions, AssistantSpec, GenerateOptions } from '../api/model.ts';
import type { ModelPlan } from '../config/plan.ts';
import type { GeneratedToken, GenerationStats } from '../generate/generate.ts';
import type { LoadEvent } from '../io/load-event.ts';
import type { StorageChoice } from '../io/model-store.ts';
import type { ChatMessage, ChatTemplate } from '../tokenizer/chat.ts';

/** browser loadModel's options that can cross to a worker (no callbacks, no device, no fetch). */
export interface WorkerLoadOptions extends Omit<ModelOptions, 'onProgress' | 'tuningStore'> {
  /** The URL of a tokenizer.json / tokenizer.model, or false for none (default: as loadModel). */
  tokenizer?: string | false;
  chatTemplate?: ChatTemplate | null;
  hub?: { endpoint?: string; revision?: string; token?: string };
  cache?: boolean;
  cacheName?: string;
  /** Where downloaded files are kept (see BrowserLoadOptions.storage); OPFS works in the worker too. */
  storage?: StorageChoice;
  storagePartBytes?: number;
}

/** Generation options that can cross: an assistant only as a spec (loaded in the worker). */
export type WorkerGenerateOptions = Omit<GenerateOptions, 'assistant' | 'signal' | 'stats'> & { assistant?: AssistantSpec };

/** What the page knows about the model in the worker, refreshed after every call. */
export interface WorkerModelInfo {
  plan: ModelPlan;
  dtype: string;
  contextLength: number;
  dispatchesPerToken: number;
  /** Bytes allocated on the worker's GPU device. */
  gpuBytes: number;
  /** The most bytes allocated on it at once (the load's peak, usually). */
  peakGpuBytes: number;
  hasTokenizer: boolean;
  hasChatTemplate: boolean;
}

export type Prompt = string | readonly number[];

export type CallRequest =
  | { method: 'generate'; prompt: Prompt; opts: WorkerGenerateOptions }
  | { method: 'chat'; messages: readonly ChatMessage[]; opts: WorkerGenerateOptions }
  | { method: 'logits'; ids: readonly number[]; allPositions: boolean }
  | { method: 'encode'; text: string }
  | { method: 'chatIds'; messages: readonly ChatMessage[] };

export type ToWorker =
  /** `base`: the page's URL, against which relative model and tokenizer URLs resolve. */
  | { type: 'load'; source: string | File[]; options: WorkerLoadOptions; base?: string }
  | { type: 'call'; id: number; call: CallRequest }
  | { type: 'abort'; id: number }
  | { type: 'dispose' };

/** An error as it crossed: the same one-line message and name as thrown in the worker. */
export interface WireError {
  name: string;
  message: string;
}

export type FromWorker =
  | { type: 'progress'; event: LoadEvent }
  | { type: 'loaded'; info: WorkerModelInfo }
  | { type: 'load-error'; error: WireError }
  | { type: 'token'; id: number; token: GeneratedToken; stats: GenerationStats }
  | { type: 'result'; id: number; value: unknown; stats?: GenerationStats; info: WorkerModelInfo }
  | { type: 'error'; id: number; error: WireError; info?: WorkerModelInfo }
  | { type: 'disposed' };

export function toWire(e: unknown): WireError {
  if (e instanceof Error || (typeof e === 'object' && e !== null && 'message' in e)) {
    const x = e as { name?: unknown; message: unknown };
    return { name: typeof x.name === 'string' ? x.name : 'Error', message: String(x.message) };
  }
  return { name: 'Error', message: String(e) };
}

export function fromWire(w: WireError): Error {
  const e = new Error(w.message);
  e.name = w.name;
  return e;
}
