// The generation page (demo/index.html). Query parameters fill the form (model, dtype, ids or
// prompt, max_new_tokens, do_sample, temperature, top_k, top_p, repetition_penalty, seed,
// storage=auto|opfs|cache|none (cache=0: none);
// speculative decoding: spec=lookup|assistant, lookup_tokens, assistant, assistant_dtype,
// assistant_tokens) and autorun=1 starts generating at once; window.openelmDemo exposes the last
// run and timings. The model runs in a Web Worker (createWorkerModel) so the page never blocks;
// worker=0 runs it on the page's thread instead (loadModel).
import { createWorkerModel, emptyStats, fmtBytes, loadModel, type DType, type GenerationStats, type LoadEvent, type OpenElmModel, type StorageReport, type WorkerCallOptions, type WorkerModel } from '../../src/browser.ts';
import { $, clearError, fmt, loadFiguresText, loadPresets, loadProgressText, memoryProbe, params, refreshCache, setupCacheButton, setupPicker, showError, showSupport, type LoadFigures, type Preset } from './common.ts';

// Sampled from page start, so the load's peak is seen whatever starts it.
const memory = memoryProbe();

interface RunRecord {
  ids: number[];
  text: string;
  stats: GenerationStats;
  stopped: boolean;
  /** performance.now() (ms since the page started loading) when the first new token arrived. */
  firstTokenAt?: number;
  clickToFirstTokenMs?: number;
  loadMs?: number;
  gpuBytes: number;
}

/** The model in a worker (the default), or on this thread (worker=0). */
type AppModel = OpenElmModel | WorkerModel;
const inWorker = params.get('worker') !== '0';
const gpuBytes = (m: AppModel) => ('info' in m ? m.info.gpuBytes : m.gpu.allocatedBytes);
const peakGpuBytes = (m: AppModel) => ('info' in m ? m.info.peakGpuBytes : m.gpu.peakAllocatedBytes);
const dispatches = (m: AppModel) => ('info' in m ? m.info.dispatchesPerToken : m.engine.dispatchesPerToken);

const state: {
  model?: AppModel;
  modelKey?: string;
  loading?: Promise<AppModel>;
  running?: AbortController;
  lastRun?: RunRecord;
  runs: number;
  pageToFirstTokenMs?: number;
  /** Time the last model load took. */
  loadMs?: number;
  /** Download size, load time and peak memory of the last load. */
  load?: LoadFigures;
  /** Where the last load kept the files. */
  storage?: StorageReport;
  error?: string;
} = { runs: 0 };

let markReady: () => void = () => {};
const ready = new Promise<void>((r) => (markReady = r));
(globalThis as unknown as { openelmDemo: unknown }).openelmDemo = { state, ready };

function setStat(id: string, v: string): void {
  $(id).textContent = v;
}

function setBusy(busy: boolean): void {
  $<HTMLButtonElement>('generate').disabled = busy;
  $<HTMLButtonElement>('load').disabled = busy;
  $<HTMLButtonElement>('stop').disabled = !busy;
}

function readOptions(picker: ReturnType<typeof setupPicker>): WorkerCallOptions {
  const num = (id: string, what: string, int = false): number => {
    const el = $<HTMLInputElement>(id);
    const v = Number(el.value);
    if (el.value.trim() === '' || !Number.isFinite(v) || (int && !Number.isInteger(v))) throw new Error(`${what} must be ${int ? 'an integer' : 'a number'}, got "${el.value}"`);
    return v;
  };
  const spec = $<HTMLSelectElement>('spec').value;
  let speculative: WorkerCallOptions = {};
  if (spec === 'lookup') speculative = { promptLookupNumTokens: num('lookup-tokens', 'prompt_lookup_num_tokens', true) };
  else if (spec === 'assistant') {
    let source = $<HTMLInputElement>('assistant').value.trim();
    if (!source) {
      const main = picker.source();
      if (typeof main !== 'string') throw new Error('picked files load once: give the assistant a folder URL or hub id');
      source = main;
    }
    speculative = {
      assistant: { source, dtype: $<HTMLSelectElement>('assistant-dtype').value as DType },
      numAssistantTokens: num('assistant-tokens', 'num_assistant_tokens', true),
    };
  }
  return {
    ...speculative,
    maxNewTokens: num('max-new-tokens', 'max_new_tokens', true),
    doSample: $<HTMLInputElement>('do-sample').checked,
    temperature: num('temperature', 'temperature'),
    topK: num('top-k', 'top_k', true),
    topP: num('top-p', 'top_p'),
    repetitionPenalty: num('repetition-penalty', 'repetition_penalty'),
    seed: num('seed', 'seed', true),
  };
}

function readInput(): string | number[] {
  const mode = ($<HTMLInputElement>('mode-ids').checked ? 'ids' : 'text') as 'ids' | 'text';
  const v = $<HTMLTextAreaElement>('prompt').value;
  if (mode === 'text') {
    if (!v.trim()) throw new Error('the prompt is empty: type some text (or switch to token ids)');
    return v;
  }
  const parts = v.split(/[\s,]+/).filter(Boolean);
  if (parts.length === 0) throw new Error('give at least one token id (e.g. 1 for <s>)');
  return parts.map((p, i) => {
    const n = Number(p);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`token id ${i + 1} is "${p}", not a non-negative integer`);
    return n;
  });
}

function setMode(mode: 'ids' | 'text', value?: string): void {
  $<HTMLInputElement>(mode === 'ids' ? 'mode-ids' : 'mode-text').checked = true;
  $('prompt-label').textContent = mode === 'ids' ? 'Token ids (comma or space separated; 1 is <s>)' : 'Prompt';
  if (value !== undefined) $<HTMLTextAreaElement>('prompt').value = value;
}

async function ensureModel(picker: ReturnType<typeof setupPicker>, signal?: AbortSignal): Promise<AppModel> {
  const key = picker.key();
  if (state.model && state.modelKey === key) return state.model;
  if (state.loading && state.modelKey === key) return state.loading;
  state.model?.dispose();
  state.model = undefined;
  state.modelKey = key;
  const t0 = performance.now();
  const bar = $<HTMLProgressElement>('load-progress');
  bar.hidden = false;
  bar.removeAttribute('value');
  setStat('load-status', 'loading…');
  let last: LoadEvent | undefined;
  state.storage = undefined;
  const opts = {
    dtype: picker.dtype() as DType,
    storage: picker.storage(),
    signal,
    onLoadProgress: (e: LoadEvent) => {
      last = e;
      memory.sample();
      if (e.storage) state.storage = e.storage;
      if (e.bytesTotal > 0) {
        bar.max = e.bytesTotal;
        bar.value = e.bytesRead;
      }
      setStat('load-status', loadProgressText(e));
    },
  };
  state.loading = inWorker ? createWorkerModel(picker.source(), opts) : loadModel(picker.source(), opts);
  try {
    const m = await state.loading;
    state.model = m;
    const loadMs = performance.now() - t0;
    state.loadMs = loadMs;
    const st = state.storage as StorageReport | undefined; // set by the progress callback
    const where = st ? ` · files kept in ${st.kind === 'opfs' ? 'OPFS' : st.kind === 'cache' ? 'the Cache API' : 'no storage'}${st.persisted ? ' (persistent)' : ''}` : '';
    setStat('load-status', `${m.plan.numLayers} layers, ${(m.plan.paramCount / 1e6).toFixed(1)}M parameters, ${m.dtype} weights, loaded in ${fmt(loadMs / 1000, 2)} s${where}`);
    state.load = {
      load_ms: loadMs,
      download_bytes: last?.networkBytes ?? 0,
      cache_bytes: last?.cacheBytes ?? 0,
      weight_file_bytes: last?.bytesTotal ?? 0,
      peak_js_heap_bytes: memory.peak(),
      gpu_bytes_after_load: gpuBytes(m),
      peak_gpu_bytes: peakGpuBytes(m),
    };
    setStat('stat-load', loadFiguresText(state.load));
    setStat('stat-gpu-mem', fmtBytes(gpuBytes(m)));
    setStat('stat-dispatches', String(dispatches(m)));
    bar.hidden = true;
    void refreshCache();
    return m;
  } catch (e) {
    state.modelKey = undefined;
    bar.hidden = true;
    setStat('load-status', 'not loaded');
    throw e;
  } finally {
    state.loading = undefined;
  }
}

async function generate(picker: ReturnType<typeof setupPicker>): Promise<void> {
  clearError();
  const ctrl = new AbortController();
  state.running = ctrl;
  setBusy(true);
  const out = $('output');
  const idsOut = $('output-ids');
  out.textContent = '';
  idsOut.textContent = '';
  const t0 = performance.now();
  const rec: RunRecord = { ids: [], text: '', stats: emptyStats(), stopped: false, gpuBytes: 0 };
  try {
    const opts = readOptions(picker);
    const input = readInput();
    const model = await ensureModel(picker, ctrl.signal);
    rec.loadMs = state.loadMs;
    const tGen = performance.now();
    const stats = rec.stats;
    setStat('run-status', 'generating…');
    try {
      for await (const t of model.generate(input, { ...opts, stats, signal: ctrl.signal })) {
        if (rec.ids.length === 0) {
          rec.firstTokenAt = performance.now();
          rec.clickToFirstTokenMs = rec.firstTokenAt - t0;
          state.pageToFirstTokenMs ??= rec.firstTokenAt;
          setStat('stat-ttft', `${fmt(rec.clickToFirstTokenMs)} ms (page load → first token ${fmt(state.pageToFirstTokenMs)} ms)`);
        }
        rec.ids.push(t.id);
        rec.text += t.text;
        out.textContent += t.text;
        idsOut.textContent = rec.ids.join(', ');
        setStat('stat-tokens', `${rec.ids.length} (prompt ${stats.prompt_tokens})`);
        setStat('stat-prefill', `${fmt(stats.prefill_tokens_per_s)} tokens/s (${fmt(stats.prefill_ms)} ms)`);
        setStat('stat-decode', rec.ids.length > 1 ? `${fmt(stats.decode_tokens_per_s, 2)} tokens/s` : '–');
        setStat('stat-gpu-mem', fmtBytes(gpuBytes(model)));
        const sp = stats.speculative;
        setStat(
          'stat-spec',
          sp
            ? `${sp.method.replace('_', ' ')}: ${sp.accepted}/${sp.drafted} drafts accepted (${fmt(sp.acceptance_rate * 100)}%), ${fmt(sp.tokens_per_main_pass, 2)} tokens per main pass`
            : 'off',
        );
      }
    } catch (e) {
      if (!ctrl.signal.aborted) throw e;
      rec.stopped = true;
    }
    rec.gpuBytes = gpuBytes(model);
    const secs = (performance.now() - tGen) / 1000;
    setStat('run-status', `${rec.stopped ? 'stopped' : 'done'}: ${rec.ids.length} tokens in ${fmt(secs, 2)} s`);
    setStat('stat-dispatches', String(stats.dispatches_per_token));
  } catch (e) {
    if (ctrl.signal.aborted) {
      rec.stopped = true;
      setStat('run-status', 'stopped while loading');
    } else {
      setStat('run-status', 'failed');
      state.error = (e as Error).message;
      showError(e);
    }
  } finally {
    state.runs++;
    state.lastRun = rec;
    state.running = undefined;
    setBusy(false);
  }
}

async function main(): Promise<void> {
  const support = await showSupport();
  const presets = await loadPresets();
  const picker = setupPicker(presets, (p: Preset) => {
    if (p.ids) setMode('ids', p.ids);
    else if (p.text) setMode('text', p.text);
  });
  for (const [name, id] of [
    ['max_new_tokens', 'max-new-tokens'],
    ['temperature', 'temperature'],
    ['top_k', 'top-k'],
    ['top_p', 'top-p'],
    ['repetition_penalty', 'repetition-penalty'],
    ['seed', 'seed'],
  ]) {
    const v = params.get(name);
    if (v !== null) $<HTMLInputElement>(id).value = v;
  }
  if (params.get('do_sample') === 'true' || params.get('do_sample') === '1') $<HTMLInputElement>('do-sample').checked = true;
  for (const [name, id] of [
    ['spec', 'spec'],
    ['lookup_tokens', 'lookup-tokens'],
    ['assistant', 'assistant'],
    ['assistant_dtype', 'assistant-dtype'],
    ['assistant_tokens', 'assistant-tokens'],
  ]) {
    const v = params.get(name);
    if (v !== null) $<HTMLInputElement | HTMLSelectElement>(id).value = v;
  }
  if (params.get('ids')) setMode('ids', params.get('ids')!);
  else if (params.get('prompt')) setMode('text', params.get('prompt')!);
  $('mode-ids').addEventListener('change', () => setMode('ids'));
  $('mode-text').addEventListener('change', () => setMode('text'));

  $('generate').addEventListener('click', () => void generate(picker));
  $('stop').addEventListener('click', () => state.running?.abort());
  $('load').addEventListener('click', async () => {
    clearError();
    const ctrl = new AbortController();
    state.running = ctrl;
    setBusy(true);
    try {
      await ensureModel(picker, ctrl.signal);
    } catch (e) {
      if (!ctrl.signal.aborted) showError(e);
    } finally {
      state.running = undefined;
      setBusy(false);
    }
  });
  setupCacheButton();
  await refreshCache();
  $<HTMLButtonElement>('stop').disabled = true;
  if (!support.available) {
    $<HTMLButtonElement>('generate').disabled = true;
    $<HTMLButtonElement>('load').disabled = true;
  }
  markReady();
  if (params.get('autorun') === '1' && support.available) await generate(picker);
}

main().catch(showError);
