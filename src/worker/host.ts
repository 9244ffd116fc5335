// The page's side of the worker engine: createWorkerModel starts a dedicated module Worker
// (dist/browser/worker.js, built from ../worker-entry.ts), loads the model there, and returns a
// proxy with the model API (generate as a streaming async iterator, generateText, chat, chatText,
// logits, abort through AbortSignal, dispose). Loading, prefill and decoding all run in the worker,
// so the page's main thread stays free; only token ids, text and statistics cross.
import { emptyStats, type GeneratedToken, type GenerationStats } from '../generate/generate.ts';
import type { GenerateResult } from '../api/model.ts';
import type { LoadEvent } from '../io/load-event.ts';
import type { ChatMessage } from '../tokenizer/chat.ts';
import { fromWire, type CallRequest, type FromWorker, type Prompt, type ToWorker, type WorkerGenerateOptions, type WorkerLoadOptions, type WorkerModelInfo } from './protocol.ts';

export interface WorkerModelOptions extends WorkerLoadOptions {
  /** The worker script; default worker.js beside the browser bundle (dist/browser/worker.js). */
  workerUrl?: string | URL;
  /** Aborts the load: the worker is terminated and the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Load progress from the worker: files, download and cache bytes, each tensor converted or quantized and uploaded. */
  onLoadProgress?: (e: LoadEvent) => void;
}

/** Options of generate/chat on a worker model: as the model's, plus abort and live statistics. */
export interface WorkerCallOptions extends WorkerGenerateOptions {
  signal?: AbortSignal;
  /** Filled in as tokens arrive. */
  stats?: GenerationStats;
}

type Listener = (m: Exclude<FromWorker, { type: 'progress' | 'loaded' | 'load-error' | 'disposed' }>) => void;

/** Where the worker script is by default: beside the module this code was bundled into. */
function defaultWorkerUrl(): URL {
  return new URL('./worker.js', import.meta.url);
}

/** A model loaded in a dedicated Web Worker, with the model API. */
export class WorkerModel {
  private nextId = 1;
  private readonly calls = new Map<number, Listener>();
  private dead?: Error;

  private constructor(
    private readonly worker: Worker,
    /** What the model is; refreshed after each call (gpuBytes, dispatchesPerToken). */
    public info: WorkerModelInfo,
  ) {
    worker.addEventListener('message', (ev: MessageEvent<FromWorker>) => {
      const m = ev.data;
      if (m.type === 'token' || m.type === 'result' || m.type === 'error') this.calls.get(m.id)?.(m);
    });
    worker.addEventListener('error', (ev) => this.fail(new Error(`the model's worker failed: ${ev.message || 'unknown error'}`)));
  }

  get plan(): WorkerModelInfo['plan'] {
    return this.info.plan;
  }

  get dtype(): string {
    return this.info.dtype;
  }

  /** Every pending call fails with `e`, and every later one too. */
  private fail(e: Error): void {
    this.dead ??= e;
    for (const [id, l] of this.calls) l({ type: 'error', id, error: { name: e.name, message: e.message } });
  }

  private post(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  /** One call's messages as a stream: its tokens, then the result or the error. */
  private async *stream(call: CallRequest, opts: { signal?: AbortSignal; stats?: GenerationStats } = {}): AsyncGenerator<GeneratedToken, unknown> {
    if (this.dead) throw this.dead;
    opts.signal?.throwIfAborted();
    const id = this.nextId++;
    const queue: Parameters<Listener>[0][] = [];
    let wake: (() => void) | undefined;
    this.calls.set(id, (m) => {
      queue.push(m);
      wake?.();
    });
    const onAbort = () => this.post({ type: 'abort', id });
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    let finished = false;
    try {
      this.post({ type: 'call', id, call });
      for (;;) {
        while (queue.length === 0) await new Promise<void>((r) => (wake = r));
        const m = queue.shift()!;
        // As the plain API: once aborted, the next token is not given (tokens already on their way are dropped).
        if (opts.signal?.aborted && m.type === 'token') throw opts.signal.reason;
        if (m.type === 'token') {
          if (opts.stats) Object.assign(opts.stats, m.stats);
          yield m.token;
        } else if (m.type === 'result') {
          finished = true;
          this.info = m.info;
          if (opts.stats && m.stats) Object.assign(opts.stats, m.stats);
          return m.value;
        } else {
          finished = true;
          if (m.info) this.info = m.info;
          // As the plain API: an aborted call throws the signal's reason.
          if (opts.signal?.aborted) throw opts.signal.reason;
          throw m.error.name === 'Error' && this.dead ? this.dead : fromWire(m.error);
        }
      }
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      // Left early (break, return): stop the worker's generation so the model is free again.
      if (!finished && !this.dead) this.post({ type: 'abort', id });
      this.calls.delete(id);
    }
  }

  /** A call that yields no tokens: its result. */
  private async request<T>(call: CallRequest): Promise<T> {
    const it = this.stream(call);
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value as T;
    }
  }

  /** Streams new tokens after a prompt (text, encoded with bos, or token ids), as OpenElmModel.generate. */
  generate(prompt: Prompt, opts: WorkerCallOptions = {}): AsyncGenerator<GeneratedToken> {
    const { signal, stats, ...rest } = opts;
    return this.tokens({ method: 'generate', prompt: typeof prompt === 'string' ? prompt : [...prompt], opts: rest }, signal, stats);
  }

  /** Streams the assistant's reply to a conversation (the model's chat template), as OpenElmModel.chat. */
  chat(messages: readonly ChatMessage[], opts: WorkerCallOptions = {}): AsyncGenerator<GeneratedToken> {
    const { signal, stats, ...rest } = opts;
    return this.tokens({ method: 'chat', messages: messages.map((m) => ({ role: m.role, content: m.content })), opts: rest }, signal, stats);
  }

  private async *tokens(call: CallRequest, signal?: AbortSignal, stats?: GenerationStats): AsyncGenerator<GeneratedToken> {
    yield* this.stream(call, { signal, stats });
  }

  async generateText(prompt: Prompt, opts: WorkerCallOptions = {}): Promise<GenerateResult> {
    const stats = opts.stats ?? emptyStats();
    return this.collect(this.generate(prompt, { ...opts, stats }), stats);
  }

  async chatText(messages: readonly ChatMessage[], opts: WorkerCallOptions = {}): Promise<GenerateResult> {
    const stats = opts.stats ?? emptyStats();
    return this.collect(this.chat(messages, { ...opts, stats }), stats);
  }

  private async collect(it: AsyncGenerator<GeneratedToken>, stats: GenerationStats): Promise<GenerateResult> {
    const ids: number[] = [];
    let text = '';
    for await (const t of it) {
      ids.push(t.id);
      text += t.text;
    }
    return { ids, text, stats };
  }

  /** Logits after the last id ([vocab]), or after every id. */
  logits(ids: readonly number[], opts: { allPositions?: boolean } = {}): Promise<Float32Array[]> {
    return this.request<Float32Array[]>({ method: 'logits', ids: [...ids], allPositions: !!opts.allPositions });
  }

  /** Token ids of a prompt (bos first). */
  encode(text: string): Promise<number[]> {
    return this.request<number[]>({ method: 'encode', text });
  }

  /** Token ids of a conversation with the chat template applied (ending with the assistant's prompt). */
  chatIds(messages: readonly ChatMessage[]): Promise<number[]> {
    return this.request<number[]>({ method: 'chatIds', messages: messages.map((m) => ({ role: m.role, content: m.content })) });
  }

  /** Frees the model and its GPU device, and ends the worker. Pending calls fail. */
  dispose(): void {
    if (this.dead) return;
    this.post({ type: 'dispose' });
    this.fail(new Error('this model was disposed'));
    const w = this.worker;
    // The worker frees the GPU and closes itself; terminate in case it cannot.
    const stop = setTimeout(() => w.terminate(), 5000);
    w.addEventListener('message', (ev: MessageEvent<FromWorker>) => {
      if (ev.data.type === 'disposed') {
        clearTimeout(stop);
        w.terminate();
      }
    });
  }

  /** Starts the worker and loads the model there; see WorkerModelOptions. */
  static async create(source: string | URL | FileList | Iterable<File>, options: WorkerModelOptions = {}): Promise<WorkerModel> {
    const { workerUrl, signal, onLoadProgress, ...load } = options;
    signal?.throwIfAborted();
    if (typeof Worker === 'undefined') throw new Error('this environment has no Web Workers (Worker is undefined): use loadModel instead of createWorkerModel');
    const worker = new Worker(workerUrl ?? defaultWorkerUrl(), { type: 'module', name: 'openelm-webgpu' });
    const src = typeof source === 'string' || source instanceof URL ? String(source) : Array.from(source as Iterable<File>);
    try {
      const info = await new Promise<WorkerModelInfo>((resolve, reject) => {
        const onAbort = () => reject(signal!.reason);
        signal?.addEventListener('abort', onAbort, { once: true });
        worker.addEventListener('message', (ev: MessageEvent<FromWorker>) => {
          const m = ev.data;
          if (m.type === 'progress') onLoadProgress?.(m.event);
          else if (m.type === 'loaded') resolve(m.info);
          else if (m.type === 'load-error') reject(fromWire(m.error));
        });
        worker.addEventListener('error', (ev) => reject(new Error(`the model's worker failed to start (${String(workerUrl ?? defaultWorkerUrl())}): ${ev.message || 'could not load the script'}`)));
        const base = (globalThis as { location?: Location }).location?.href;
        worker.postMessage({ type: 'load', source: src, options: load, base } satisfies ToWorker);
      });
      return new WorkerModel(worker, info);
    } catch (e) {
      worker.terminate();
      throw e;
    }
  }
}

/**
 * Loads a model in a dedicated Web Worker: the same sources and options as loadModel (those that
 * can cross to a worker), the same model API, but the page's thread never runs the engine.
 */
export function createWorkerModel(source: string | URL | FileList | Iterable<File>, options: WorkerModelOptions = {}): Promise<WorkerModel> {
  return WorkerModel.create(source, options);
}
