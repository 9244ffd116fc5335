// The worker script of createWorkerModel (built as dist/browser/worker.js): loads the model with
// the browser loadModel and serves the page's calls (see worker/protocol.ts). Calls on the model
// are serialised by the model itself, as on a page; an abort message aborts one call.
import { emptyStats } from './generate/generate.ts';
import { isHubId, loadModel, type OpenElmModel } from './browser.ts';
import { toWire, type CallRequest, type FromWorker, type ToWorker, type WorkerModelInfo } from './worker/protocol.ts';

interface WorkerScope {
  postMessage(m: FromWorker, transfer?: Transferable[]): void;
  addEventListener(type: 'message', f: (ev: MessageEvent<ToWorker>) => void): void;
  close(): void;
}
const scope = globalThis as unknown as WorkerScope;

let model: OpenElmModel | undefined;
const running = new Map<number, AbortController>();

function info(m: OpenElmModel): WorkerModelInfo {
  return {
    plan: m.plan,
    dtype: m.dtype,
    contextLength: m.engine.contextLength,
    dispatchesPerToken: m.engine.dispatchesPerToken,
    gpuBytes: m.gpu.allocatedBytes,
    peakGpuBytes: m.gpu.peakAllocatedBytes,
    hasTokenizer: m.tokenizer !== undefined,
    hasChatTemplate: m.chatTemplate !== undefined,
  };
}

/** A relative URL means the page's folder, not this script's. */
function resolveUrl(s: string, base: string | undefined): string {
  return isHubId(s) || !base ? s : new URL(s, base).href;
}

async function load(m: Extract<ToWorker, { type: 'load' }>): Promise<void> {
  try {
    const o = m.options;
    const source = typeof m.source === 'string' ? resolveUrl(m.source, m.base) : m.source;
    const tokenizer = typeof o.tokenizer === 'string' ? resolveUrl(o.tokenizer, m.base) : o.tokenizer;
    model = await loadModel(source, { ...o, tokenizer, onLoadProgress: (event) => scope.postMessage({ type: 'progress', event }) });
    scope.postMessage({ type: 'loaded', info: info(model) });
  } catch (e) {
    scope.postMessage({ type: 'load-error', error: toWire(e) });
  }
}

async function call(id: number, c: CallRequest): Promise<void> {
  const ctrl = new AbortController();
  running.set(id, ctrl);
  try {
    if (!model) throw new Error('the model is not loaded');
    const m = model;
    if (c.method === 'generate' || c.method === 'chat') {
      const stats = emptyStats();
      const opts = { ...c.opts, stats, signal: ctrl.signal };
      const it = c.method === 'chat' ? m.chat(c.messages, opts) : m.generate(c.prompt, opts);
      for await (const token of it) scope.postMessage({ type: 'token', id, token, stats: { ...stats } });
      scope.postMessage({ type: 'result', id, value: undefined, stats, info: info(m) });
    } else if (c.method === 'logits') {
      const rows = await m.logits(c.ids, { allPositions: c.allPositions });
      // Each row is a view of one buffer: copy rows out so each can move without a copy.
      const own = rows.map((r) => r.slice());
      scope.postMessage({ type: 'result', id, value: own, info: info(m) }, own.map((r) => r.buffer));
    } else if (c.method === 'encode') {
      scope.postMessage({ type: 'result', id, value: m.encode(c.text), info: info(m) });
    } else {
      scope.postMessage({ type: 'result', id, value: m.chatIds(c.messages), info: info(m) });
    }
  } catch (e) {
    scope.postMessage({ type: 'error', id, error: toWire(e), info: model && info(model) });
  } finally {
    running.delete(id);
  }
}

scope.addEventListener('message', (ev) => {
  const m = ev.data;
  switch (m.type) {
    case 'load':
      void load(m);
      break;
    case 'call':
      void call(m.id, m.call);
      break;
    case 'abort':
      running.get(m.id)?.abort();
      break;
    case 'dispose':
      for (const c of running.values()) c.abort();
      model?.dispose();
      model = undefined;
      scope.postMessage({ type: 'disposed' });
      scope.close();
      break;
  }
});
