// The benchmark page (demo/bench.html): end-to-end prefill (time to first token) and decode figures
// of the loaded model, its dispatches per token (the engine's count and the count seen at the
// WebGPU API), and our matmul kernel alone at the model's biggest shapes. Results: a table, an
// SVG chart, and JSON (download link; also window.openelmBench.result).
// Query parameters: model, dtype, prompt_lengths (e.g. 16,64), decode_tokens, runs, cache=0, autorun=1.
import { fmtBytes, loadModel, type Gpu, type OpenElmModel, type WeightFormat, type WebGpuSupport } from '../../src/browser.ts';
import { GpuTimer } from '../../bench/gpu-timer.ts';
import { kernelShapes, timeOurMatmul, type KernelShape, type MatmulTiming } from '../../bench/matmul.ts';
import { promptIds } from '../../bench/prompt.ts';
import { summarize, type Stat } from '../../bench/stats.ts';
import { $, clearError, fmt, h, loadFiguresText, loadPresets, loadProgressText, memoryProbe, params, refreshCache, setupCacheButton, setupPicker, showError, showSupport, type LoadFigures } from './common.ts';

const memory = memoryProbe();

interface PrefillFigure {
  prompt_tokens: number;
  /** The first prefill of this length (pipeline compilation included for the first length). */
  first_run_ms: number;
  /** Prefill plus reading back the chosen token id. */
  ttft_ms: Stat;
  tokens_per_s: number;
}

/** Our matmul alone on one of the model's biggest shapes, as `openelm bench` times it. */
type MatmulFigure = KernelShape & MatmulTiming & { dtype: string };

export interface BrowserBench {
  schema: 'openelm-webgpu/browser-bench/1';
  when: string;
  user_agent: string;
  adapter: WebGpuSupport['info'];
  features: WebGpuSupport['features'];
  limits: WebGpuSupport['limits'];
  model: { source: string; dtype: string; layers: number; model_dim: number; vocab_size: number; parameters: number; context_length: number; prefill_chunk: number };
  load: { ms: number; network_bytes: number; cache_bytes: number };
  /** Download size, load time and peak memory (JS heap from performance.memory; GPU: the engine's allocations). */
  load_ms: number;
  download_bytes: number;
  weight_file_bytes: number;
  peak_js_heap_bytes?: number;
  gpu_bytes_after_load: number;
  peak_gpu_bytes: number;
  dispatches_per_token: number;
  /** compute dispatches seen at the WebGPU API per decode step (median over the steps). */
  dispatches_counted_per_step: number;
  prefill: PrefillFigure[];
  decode: { context_tokens: number; warmup_steps: number; step_ms: Stat; tokens_per_s: number };
  matmul: MatmulFigure[];
  total_ms: number;
}

const state: { running: boolean; result?: BrowserBench; error?: string; done?: Promise<BrowserBench | undefined> } = { running: false };
(globalThis as unknown as { openelmBench: unknown }).openelmBench = state;

function status(s: string): void {
  $('bench-status').textContent = s;
}

function intList(v: string, what: string): number[] {
  const out = v.split(/[\s,]+/).filter(Boolean).map(Number);
  if (out.length === 0 || out.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`${what} must be positive integers, got "${v}"`);
  return out;
}

function posInt(id: string, what: string): number {
  const n = Number($<HTMLInputElement>(id).value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${what} must be a positive integer`);
  return n;
}

/** Counts compute dispatches encoded while installed (wraps the prototype method). */
function dispatchCounter(): { count: number; stop(): void } {
  const proto = (globalThis as unknown as { GPUComputePassEncoder: { prototype: GPUComputePassEncoder } }).GPUComputePassEncoder.prototype;
  const orig = proto.dispatchWorkgroups;
  const c = {
    count: 0,
    stop() {
      proto.dispatchWorkgroups = orig;
    },
  };
  proto.dispatchWorkgroups = function (this: GPUComputePassEncoder, ...a: Parameters<GPUComputePassEncoder['dispatchWorkgroups']>) {
    c.count++;
    return orig.apply(this, a);
  };
  return c;
}

const nextFrame = () => new Promise((r) => setTimeout(r, 0));

async function benchPrefill(model: OpenElmModel, lengths: number[], runs: number): Promise<PrefillFigure[]> {
  const out: PrefillFigure[] = [];
  for (const L of lengths) {
    const ids = promptIds(L, model.plan.vocabSize, model.plan.bosTokenId);
    const samples: number[] = [];
    let first = 0;
    for (let r = 0; r <= runs; r++) {
      status(`prefill ${L} tokens: run ${r + 1} of ${runs + 1}`);
      await nextFrame();
      const res = await model.generateText(ids, { maxNewTokens: 1, stopAtEos: false, reuseCache: false });
      if (r === 0) first = res.stats.prefill_ms;
      else samples.push(res.stats.prefill_ms);
    }
    const ttft = summarize(samples);
    out.push({ prompt_tokens: L, first_run_ms: first, ttft_ms: ttft, tokens_per_s: L / (ttft.median / 1000) });
  }
  return out;
}

async function benchDecode(model: OpenElmModel, steps: number, warmup: number): Promise<{ decode: BrowserBench['decode']; counted: number }> {
  const context = Math.min(16, Math.max(1, model.engine.contextLength - steps - warmup - 1));
  const ids = promptIds(context, model.plan.vocabSize, model.plan.bosTokenId);
  const times: number[] = [];
  const counts: number[] = [];
  const counter = dispatchCounter();
  try {
    let last = 0;
    let n = 0;
    for await (const _ of model.generate(ids, { maxNewTokens: steps + warmup + 1, stopAtEos: false })) {
      const now = performance.now();
      if (n > warmup) {
        times.push(now - last);
        counts.push(counter.count);
      }
      n++;
      counter.count = 0;
      status(`decode: step ${n} of ${steps + warmup + 1}`);
      last = performance.now();
    }
  } finally {
    counter.stop();
  }
  const step = summarize(times);
  return {
    decode: { context_tokens: context, warmup_steps: warmup, step_ms: step, tokens_per_s: 1000 / step.median },
    counted: summarize(counts).median,
  };
}

async function benchMatmul(gpu: Gpu, model: OpenElmModel, runs: number): Promise<MatmulFigure[]> {
  // The harness's shapes; GEMM at most 64 tokens (a page's run is a quick look).
  const shapes = kernelShapes(model.plan, Math.min(64, model.engine.chunk));
  const timer = new GpuTimer(gpu);
  const format = model.dtype as WeightFormat;
  const out: MatmulFigure[] = [];
  try {
    for (const s of shapes) {
      status(`matmul ${s.name}`);
      await nextFrame();
      // At least 5 timed runs (as the Node harness times GEMV shapes), within 5 s a shape.
      out.push({ ...s, dtype: format, ...(await timeOurMatmul(gpu, timer, s, format, { runs: Math.max(5, runs), budgetMs: 5000 })) });
    }
  } finally {
    timer.destroy();
  }
  return out;
}

// ---- Output: table, chart, JSON ----

const spread = (s: Stat, d = 1) => `${fmt(s.p25, d)}–${fmt(s.p75, d)}`;

function loadFigures(r: BrowserBench): LoadFigures {
  return {
    load_ms: r.load_ms,
    download_bytes: r.download_bytes,
    cache_bytes: r.load.cache_bytes,
    weight_file_bytes: r.weight_file_bytes,
    peak_js_heap_bytes: r.peak_js_heap_bytes,
    gpu_bytes_after_load: r.gpu_bytes_after_load,
    peak_gpu_bytes: r.peak_gpu_bytes,
  };
}

function renderTable(r: BrowserBench): void {
  const rows: (string | number)[][] = [
    ['Model load', `${fmt(r.load.ms)} ms`, '', loadFiguresText(loadFigures(r))],
    ['Dispatches per token', String(r.dispatches_per_token), '', `counted at the API: ${r.dispatches_counted_per_step}`],
    ['GPU memory after load', fmtBytes(r.gpu_bytes_after_load), '', `peak ${fmtBytes(r.peak_gpu_bytes)}`],
    ...r.prefill.map((p) => [`Prefill ${p.prompt_tokens} tokens (TTFT)`, `${fmt(p.ttft_ms.median)} ms`, spread(p.ttft_ms), `${fmt(p.tokens_per_s)} tokens/s; first run ${fmt(p.first_run_ms)} ms`]),
    [`Decode step (context ${r.decode.context_tokens})`, `${fmt(r.decode.step_ms.median)} ms`, spread(r.decode.step_ms), `${fmt(r.decode.tokens_per_s, 2)} tokens/s, ${r.decode.step_ms.n} steps`],
    ...r.matmul.map((m) => [
      `matmul ${m.name} (${m.source}) [${m.T}×${m.K}]·[${m.N}×${m.K}]ᵀ ${m.dtype}`,
      `${fmt(m.ms.median, 2)} ms`,
      spread(m.ms, 2),
      `${fmt(m.gb_s, 2)} GB/s, ${fmt(m.gflop_s, 2)} GFLOP/s, ${m.method}${m.check < 1 ? '' : ', WRONG RESULTS'}`,
    ]),
  ];
  const table = h(
    'table',
    { id: 'results-table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Figure'), h('th', {}, 'Median'), h('th', {}, 'p25–p75'), h('th', {}, 'Notes'))),
    h('tbody', {}, ...rows.map((row) => h('tr', {}, ...row.map((c) => h('td', {}, String(c)))))),
  );
  $('results').replaceChildren(table);
}

const SVG = 'http://www.w3.org/2000/svg';
function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Horizontal bars with p25–p75 whiskers. */
function barChart(title: string, items: { label: string; value: number; lo?: number; hi?: number }[], unit: string): SVGSVGElement {
  const W = 720;
  const rowH = 26;
  const left = 250;
  const top = 28;
  const H = top + items.length * rowH + 24;
  const max = Math.max(...items.map((i) => Math.max(i.value, i.hi ?? 0)), 1e-9) * 1.1;
  const x = (v: number) => left + ((W - left - 60) * v) / max;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });
  root.append(svg('text', { x: 0, y: 16, 'font-weight': 600 }, title));
  root.append(svg('line', { x1: left, y1: top - 4, x2: left, y2: H - 20, class: 'axis' }));
  items.forEach((it, i) => {
    const y = top + i * rowH;
    root.append(svg('text', { x: left - 8, y: y + 15, 'text-anchor': 'end' }, it.label));
    root.append(svg('rect', { x: left, y: y + 3, width: Math.max(1, x(it.value) - left), height: rowH - 8, class: 'bar', rx: 3 }));
    if (it.lo !== undefined && it.hi !== undefined) {
      root.append(svg('line', { x1: x(it.lo), x2: x(it.hi), y1: y + rowH / 2 - 1, y2: y + rowH / 2 - 1, class: 'whisker' }));
    }
    root.append(svg('text', { x: x(Math.max(it.value, it.hi ?? 0)) + 6, y: y + 15 }, `${fmt(it.value, 2)} ${unit}`));
  });
  return root;
}

function renderChart(r: BrowserBench): void {
  const speed = [
    ...r.prefill.map((p) => ({ label: `prefill ${p.prompt_tokens} tokens`, value: p.tokens_per_s, lo: p.prompt_tokens / (p.ttft_ms.p75 / 1000), hi: p.prompt_tokens / (p.ttft_ms.p25 / 1000) })),
    { label: 'decode', value: r.decode.tokens_per_s, lo: 1000 / r.decode.step_ms.p75, hi: 1000 / r.decode.step_ms.p25 },
  ];
  const bw = r.matmul.map((m) => ({ label: m.name, value: m.gb_s, lo: m.weight_bytes / (m.ms.p75 / 1000) / 1e9, hi: m.weight_bytes / (m.ms.p25 / 1000) / 1e9 }));
  $('chart').replaceChildren(barChart('Tokens per second (median, p25–p75)', speed, 'tok/s'), barChart(`matmul weight bandwidth, ${r.model.dtype}`, bw, 'GB/s'));
}

function renderJson(r: BrowserBench): void {
  const text = JSON.stringify(r, null, 2);
  $('json').textContent = text;
  const a = $<HTMLAnchorElement>('download');
  if (a.href.startsWith('blob:')) URL.revokeObjectURL(a.href);
  a.href = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
  a.download = `openelm-browser-bench-${r.model.dtype}-${r.when.replace(/[:.]/g, '-')}.json`;
  a.hidden = false;
}

async function run(picker: ReturnType<typeof setupPicker>, support: WebGpuSupport): Promise<BrowserBench | undefined> {
  if (state.running) return undefined;
  clearError();
  state.running = true;
  state.error = undefined;
  const button = $<HTMLButtonElement>('run-bench');
  button.disabled = true;
  let model: OpenElmModel | undefined;
  const t0 = performance.now();
  try {
    const lengths = intList($<HTMLInputElement>('prompt-lengths').value, 'prompt lengths');
    const decodeTokens = posInt('decode-tokens', 'decode tokens');
    const runs = posInt('runs', 'runs');
    const source = picker.source();
    const bar = $<HTMLProgressElement>('load-progress');
    bar.hidden = false;
    let net = 0;
    let cached = 0;
    let weightBytes = 0;
    const tl = performance.now();
    model = await loadModel(source, {
      dtype: picker.dtype() as WeightFormat,
      cache: picker.cache(),
      onLoadProgress: (e) => {
        net = e.networkBytes;
        cached = e.cacheBytes;
        weightBytes = e.bytesTotal;
        memory.sample();
        if (e.bytesTotal > 0) {
          bar.max = e.bytesTotal;
          bar.value = e.bytesRead;
        }
        status(loadProgressText(e));
      },
    });
    const loadMs = performance.now() - tl;
    const peakHeap = memory.peak();
    bar.hidden = true;
    void refreshCache();
    const gpu = model.gpu;
    const afterLoad = gpu.allocatedBytes;
    const maxLen = model.engine.contextLength - 1;
    const tooLong = lengths.find((L) => L > maxLen);
    if (tooLong) throw new Error(`prompt length ${tooLong} does not fit this model's context of ${model.engine.contextLength} tokens`);
    const prefill = await benchPrefill(model, lengths, runs);
    const { decode, counted } = await benchDecode(model, decodeTokens, 2);
    const matmul = await benchMatmul(gpu, model, runs);
    const plan = model.plan;
    const r: BrowserBench = {
      schema: 'openelm-webgpu/browser-bench/1',
      when: new Date().toISOString(),
      user_agent: navigator.userAgent,
      adapter: support.info,
      features: support.features,
      limits: support.limits,
      model: {
        source: typeof source === 'string' ? source : `${Array.from(source as Iterable<File>).length} picked files`,
        dtype: model.dtype,
        layers: plan.numLayers,
        model_dim: plan.modelDim,
        vocab_size: plan.vocabSize,
        parameters: plan.paramCount,
        context_length: model.engine.contextLength,
        prefill_chunk: model.engine.chunk,
      },
      load: { ms: loadMs, network_bytes: net, cache_bytes: cached },
      load_ms: loadMs,
      download_bytes: net,
      weight_file_bytes: weightBytes,
      peak_js_heap_bytes: peakHeap,
      gpu_bytes_after_load: afterLoad,
      peak_gpu_bytes: gpu.peakAllocatedBytes,
      dispatches_per_token: model.engine.dispatchesPerToken,
      dispatches_counted_per_step: counted,
      prefill,
      decode,
      matmul,
      total_ms: performance.now() - t0,
    };
    state.result = r;
    renderTable(r);
    renderChart(r);
    renderJson(r);
    status(`done in ${fmt(r.total_ms / 1000, 1)} s`);
    return r;
  } catch (e) {
    state.error = (e as Error).message;
    status('failed');
    showError(e);
    return undefined;
  } finally {
    model?.dispose();
    state.running = false;
    button.disabled = !support.available;
  }
}

async function main(): Promise<void> {
  const support = await showSupport();
  const presets = await loadPresets();
  const picker = setupPicker(presets, () => {});
  const set = (name: string, id: string) => {
    const v = params.get(name);
    if (v !== null) $<HTMLInputElement>(id).value = v;
  };
  set('prompt_lengths', 'prompt-lengths');
  set('decode_tokens', 'decode-tokens');
  set('runs', 'runs');
  setupCacheButton();
  await refreshCache();
  const button = $<HTMLButtonElement>('run-bench');
  button.disabled = !support.available;
  button.addEventListener('click', () => {
    state.done = run(picker, support);
  });
  if (params.get('autorun') === '1' && support.available) state.done = run(picker, support);
}

main().catch(showError);
