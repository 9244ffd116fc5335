// Shared by the demo pages: element lookup, WebGPU feature display, the model picker (presets,
// URL / hub id, folder or file picker), the cache panel, number formatting.
import { browserFeatures, deleteStoredModel, fmtBytes, listStoredModels, STORAGE_CHOICES, webgpuSupport, type ModelSource, type StorageChoice, type StoredModel, type WebGpuSupport } from '../../src/browser.ts';

export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c);
  return el;
}

export const params = new URLSearchParams(location.search);

export function fmt(n: number | undefined, digits = 1): string {
  if (n === undefined || !Number.isFinite(n)) return '–';
  if (Math.abs(n) >= 100) return n.toFixed(0);
  return n.toFixed(digits);
}

export function showError(e: unknown): void {
  const box = $('error');
  const msg = e instanceof Error ? e.message : String(e);
  box.textContent = msg;
  box.hidden = false;
  console.error(e);
}

export function clearError(): void {
  $('error').hidden = true;
}

// ---- WebGPU features ----

export async function showSupport(): Promise<WebGpuSupport> {
  const box = $('support');
  const s = await webgpuSupport();
  box.replaceChildren();
  if (!s.available) {
    box.className = 'support missing';
    box.append(h('strong', {}, 'No WebGPU. '), s.reason ?? '');
    return s;
  }
  box.className = 'support';
  const chip = (name: string, ok: boolean | undefined) => h('span', { class: ok ? 'chip yes' : 'chip no', title: ok ? 'supported' : 'not supported' }, `${ok ? '✓' : '✗'} ${name}`);
  const i = s.info!;
  const desc = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' · ') || 'unknown adapter';
  box.append(
    h('span', { class: 'adapter' }, `Adapter: ${desc}${i.isFallback ? ' (software fallback)' : ''}`),
    chip('shader-f16', s.features?.shaderF16),
    chip('subgroups', s.features?.subgroups),
    chip('timestamp-query', s.features?.timestampQuery),
    h('span', { class: 'limits' }, `max buffer ${fmtBytes(s.limits!.maxBufferSize)}, max storage binding ${fmtBytes(s.limits!.maxStorageBufferBindingSize)}`),
  );
  // Optional features this browser lacks (the chips above cover the GPU's).
  const missing = browserFeatures(s).filter((f) => !f.ok && f.name !== 'shader-f16');
  if (missing.length > 0) box.append(h('span', { class: 'limits' }, `Missing here: ${missing.map((f) => `${f.name} (${f.detail})`).join('; ')}`));
  return s;
}

// ---- Model picker ----

export interface Preset {
  label: string;
  value: string;
  /** Token ids to prefill the prompt with (the fixture has a 512-token vocabulary: no text). */
  ids?: string;
  text?: string;
  /** The weight format to select with this preset (a compact checkpoint loads only in its own). */
  dtype?: string;
}

const KNOWN: Record<string, Omit<Preset, 'value'>> = {
  'tiny-elm': { label: 'tiny-elm reference fixture (1.4 MB, token ids only)', ids: '1, 357, 111, 111, 135, 300, 145' },
  'synth-small': { label: 'small synthetic model (random weights, Llama-2 vocabulary)', text: 'Once upon a time' },
  'synth-chat': { label: 'small synthetic model with a chat template (random weights)', text: 'Once upon a time' },
};

const HUB_PRESETS: Preset[] = [
  { label: 'apple/OpenELM-270M-Instruct (Hugging Face, 1.1 GB)', value: 'apple/OpenELM-270M-Instruct', text: 'Once upon a time there was' },
  { label: 'apple/OpenELM-270M (Hugging Face, 1.1 GB)', value: 'apple/OpenELM-270M', text: 'Once upon a time there was' },
];

/** Presets: the models the demo server serves (GET /models/), then hub models. */
export async function loadPresets(): Promise<Preset[]> {
  let local: Preset[] = [];
  try {
    const r = await fetch('/models/', { cache: 'no-store' });
    if (r.ok) {
      const list = (await r.json()) as { name: string; url: string; format?: string; bytes?: number }[];
      local = list.map((m) => {
        const size = m.bytes !== undefined ? `, ${fmtBytes(m.bytes)}` : '';
        // A compact checkpoint (openelm convert) says its format; the demo server reads it from config.json.
        if (m.format) return { value: m.url, label: `${m.name} (compact ${m.format} checkpoint${size})`, text: 'Once upon a time', dtype: m.format };
        return { value: m.url, ...(KNOWN[m.name] ?? { label: `${m.name} (served by npm run demo${size})`, text: 'Once upon a time' }) };
      });
    }
  } catch {
    // not served by scripts/demo.mjs: static presets only
  }
  if (local.length === 0) local = Object.entries(KNOWN).map(([name, k]) => ({ value: `/models/${name}/`, ...k }));
  return [...local, ...HUB_PRESETS];
}

export interface Picker {
  /** The source chosen now: picked files, or the URL / hub id in the text box. */
  source(): ModelSource;
  /** A key that changes when the source changes (to know when to reload). */
  key(): string;
  dtype(): string;
  cache(): boolean;
  /** Where loads keep files: #storage when the page has it, else from #use-cache. */
  storage(): StorageChoice;
}

/**
 * Wires the model controls: #preset (select), #model-url (text), #pick-folder / #pick-files (file
 * inputs; webkitdirectory works in Chrome, Edge, Firefox and Safari), #dtype, #use-cache.
 */
export function setupPicker(presets: Preset[], onPreset: (p: Preset) => void): Picker {
  const select = $<HTMLSelectElement>('preset');
  const url = $<HTMLInputElement>('model-url');
  const folder = $<HTMLInputElement>('pick-folder');
  const files = $<HTMLInputElement>('pick-files');
  const picked = $('picked');
  let pickedFiles: File[] | undefined;
  let pickedKey = '';
  select.replaceChildren(...presets.map((p, i) => h('option', { value: String(i) }, p.label)), h('option', { value: 'custom' }, 'custom URL or hub id…'));
  const apply = () => {
    const p = presets[Number(select.value)];
    if (!p) return;
    url.value = p.value;
    if (p.dtype) $<HTMLSelectElement>('dtype').value = p.dtype;
    pickedFiles = undefined;
    picked.textContent = '';
    onPreset(p);
  };
  select.addEventListener('change', apply);
  url.addEventListener('input', () => {
    select.value = 'custom';
    pickedFiles = undefined;
    picked.textContent = '';
  });
  const onFiles = (input: HTMLInputElement) => {
    const list = input.files ? Array.from(input.files) : [];
    if (list.length === 0) return;
    pickedFiles = list;
    pickedKey = `files:${list.map((f) => `${f.name}:${f.size}:${f.lastModified}`).join('|')}`;
    const total = list.reduce((a, f) => a + f.size, 0);
    picked.textContent = `${list.length} file${list.length > 1 ? 's' : ''} picked (${fmtBytes(total)})`;
    select.value = 'custom';
    url.value = '';
  };
  folder.addEventListener('change', () => onFiles(folder));
  files.addEventListener('change', () => onFiles(files));

  const fromQuery = params.get('model');
  if (fromQuery) {
    const i = presets.findIndex((p) => p.value === fromQuery);
    if (i >= 0) {
      select.value = String(i);
      apply();
    } else {
      select.value = 'custom';
      url.value = fromQuery;
    }
  } else {
    select.value = '0';
    apply();
  }
  const dtypeSel = $<HTMLSelectElement>('dtype');
  const d = params.get('dtype');
  if (d) dtypeSel.value = d;
  const useCache = document.getElementById('use-cache') as HTMLInputElement | null;
  if (params.get('cache') === '0' && useCache) useCache.checked = false;
  const storageSel = document.getElementById('storage') as HTMLSelectElement | null;
  const st = params.get('cache') === '0' ? 'none' : params.get('storage');
  if (storageSel && st) {
    if (!STORAGE_CHOICES.includes(st as StorageChoice)) throw new Error(`storage=${st}: expected one of ${STORAGE_CHOICES.join(', ')}`);
    storageSel.value = st;
  }
  const storage = (): StorageChoice => (storageSel ? (storageSel.value as StorageChoice) : useCache?.checked === false ? 'none' : 'auto');
  return {
    source: () => {
      if (pickedFiles) return pickedFiles;
      const v = url.value.trim();
      if (!v) throw new Error('give a model: pick a preset, type a folder URL or a hub id (owner/name), or choose a folder');
      return v;
    },
    key: () => `${pickedFiles ? pickedKey : url.value.trim()}|${dtypeSel.value}|${storage()}`,
    dtype: () => dtypeSel.value,
    cache: () => storage() !== 'none',
    storage,
  };
}

// ---- Stored models panel ----

const STORAGE_NAMES: Record<StoredModel['storage'], string> = { opfs: 'OPFS', cache: 'Cache API' };

/** #cache-info: a summary of stored models; #stored-models (when the page has it): one row each with a Delete button. */
export async function refreshCache(): Promise<void> {
  const info = $('cache-info');
  const list = document.getElementById('stored-models');
  try {
    const models = await listStoredModels();
    const bytes = models.reduce((a, m) => a + m.bytes, 0);
    const files = models.reduce((a, m) => a + m.files.filter((f) => !f.missing).length, 0);
    info.textContent = models.length === 0 ? 'Stored: nothing' : `Stored: ${models.length} model${models.length > 1 ? 's' : ''}, ${files} file${files > 1 ? 's' : ''}, ${fmtBytes(bytes)}`;
    info.title = models.flatMap((m) => m.files.map((f) => `${f.url}: ${fmtBytes(f.storedBytes)}${f.size !== undefined ? ` of ${fmtBytes(f.size)}` : ''}${f.complete ? '' : ' (partial)'}`)).join('\n');
    list?.replaceChildren(
      ...models.map((m) => {
        const del = h('button', { type: 'button', class: 'secondary', 'data-url': m.url }, 'Delete');
        del.addEventListener('click', async () => {
          try {
            await deleteStoredModel(m.url);
          } catch (e) {
            showError(e);
          }
          await refreshCache();
        });
        const size = m.sizeBytes !== undefined && !m.complete ? `${fmtBytes(m.bytes)} of ${fmtBytes(m.sizeBytes)}` : fmtBytes(m.bytes);
        return h('li', { 'data-url': m.url, 'data-storage': m.storage, 'data-complete': String(m.complete) }, h('span', { class: 'mono' }, m.url), ` ${STORAGE_NAMES[m.storage]} · ${size}${m.complete ? '' : ' · partial (resumes on the next load)'} `, del);
      }),
    );
  } catch (e) {
    info.textContent = `Stored: unavailable (${(e as Error).message})`;
  }
}

export function setupCacheButton(beforeClear: () => void = () => {}): void {
  $('clear-cache').addEventListener('click', async () => {
    beforeClear();
    try {
      const r = await deleteStoredModel();
      await refreshCache();
      $('cache-info').textContent = `Storage cleared (${r.files} files, ${fmtBytes(r.bytes)})`;
    } catch (e) {
      showError(e);
    }
  });
}

/** A progress line for loads. */
export function loadProgressText(e: { message: string; bytesRead: number; bytesTotal: number; networkBytes: number; cacheBytes: number }): string {
  const pct = e.bytesTotal > 0 ? ` ${Math.floor((100 * e.bytesRead) / e.bytesTotal)}%` : '';
  return `${e.message}${pct} · network ${fmtBytes(e.networkBytes)}, cache ${fmtBytes(e.cacheBytes)}`;
}

// ---- Memory ----

interface ChromeMemory {
  usedJSHeapSize: number;
}

/**
 * Peak JS heap of this page, sampled every few ms and at each load event from performance.memory
 * (Chromium only; precise with --enable-precise-memory-info, else rounded). Chromium counts the
 * typed arrays a load reads tensors into (a float32 270M load peaks ~200 MB above a compact one).
 */
export function memoryProbe(everyMs = 10): { peak(): number | undefined; sample(): void } {
  const read = () => (performance as Performance & { memory?: ChromeMemory }).memory?.usedJSHeapSize;
  let peak = read();
  const sample = () => {
    const v = read();
    if (v !== undefined) peak = Math.max(peak ?? 0, v);
  };
  setInterval(sample, everyMs);
  return {
    peak: () => {
      sample();
      return peak;
    },
    sample,
  };
}

/** Load figures both pages show and put in their JSON. */
export interface LoadFigures {
  load_ms: number;
  /** Bytes fetched over the network during the load (all files), and read from the Cache API. */
  download_bytes: number;
  cache_bytes: number;
  /** Size of the weight files (what a cold load downloads). */
  weight_file_bytes: number;
  /** performance.memory's peak since the page started (undefined outside Chromium). */
  peak_js_heap_bytes?: number;
  /** The engine's own GPU allocations: after the load, and their peak. */
  gpu_bytes_after_load: number;
  peak_gpu_bytes: number;
}

export function loadFiguresText(f: LoadFigures): string {
  const heap = f.peak_js_heap_bytes !== undefined ? `peak JS heap ${fmtBytes(f.peak_js_heap_bytes)}` : 'JS heap not measurable in this browser';
  return `${fmt(f.load_ms)} ms; downloaded ${fmtBytes(f.download_bytes)} (weights ${fmtBytes(f.weight_file_bytes)}, cache ${fmtBytes(f.cache_bytes)}); ${heap}; GPU ${fmtBytes(f.gpu_bytes_after_load)} (peak ${fmtBytes(f.peak_gpu_bytes)})`;
}
