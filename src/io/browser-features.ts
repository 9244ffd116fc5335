// What this browser offers the engine, by feature detection only (never the user agent), so a
// page can say exactly what is missing in Safari, Firefox or an old Chrome, and what it costs.
import { cacheUnavailableReason } from './browser-cache.ts';
import { opfsUnavailableReason } from './opfs-files.ts';

export interface BrowserFeature {
  /** Short name, e.g. "WebGPU (navigator.gpu)". */
  name: string;
  ok: boolean;
  /** Without it the engine cannot run at all (otherwise something is slower or not kept). */
  required: boolean;
  /** What it is for, or what happens without it. */
  detail: string;
}

/** The GPU part of the answer, as webgpuSupport() gives it. */
export interface GpuAnswer {
  available: boolean;
  reason?: string;
  features?: { shaderF16: boolean };
}

/** Every feature the engine and its storage use, with whether it is here. */
export function browserFeatures(gpu?: GpuAnswer): BrowserFeature[] {
  const g = globalThis as {
    isSecureContext?: boolean;
    navigator?: Navigator & { gpu?: unknown; locks?: unknown };
    Worker?: unknown;
    ReadableStream?: unknown;
    Response?: { prototype: object };
  };
  const nav = g.navigator;
  const out: BrowserFeature[] = [];
  const add = (name: string, ok: boolean, required: boolean, yes: string, no: string) => out.push({ name, ok, required, detail: ok ? yes : no });
  add('Secure context', g.isSecureContext !== false, true, 'https:// or localhost: WebGPU and storage are allowed', 'this page is not https:// (or localhost): WebGPU, OPFS and the Cache API are all switched off');
  add('WebGPU (navigator.gpu)', nav?.gpu !== undefined, true, 'the engine runs on the GPU', 'no navigator.gpu: use Chrome or Edge 113+, Safari 26+, or Firefox 141+ (Windows); Linux Chrome needs chrome://flags/#enable-unsafe-webgpu');
  if (gpu && nav?.gpu !== undefined) {
    add('WebGPU adapter', gpu.available, true, 'an adapter was found', gpu.reason ?? 'requestAdapter() gave no adapter');
    if (gpu.available) {
      add('shader-f16', gpu.features?.shaderF16 === true, false, 'f16 arithmetic in shaders', 'f16 weights are unpacked to f32 in the shaders: the same results, somewhat slower');
    }
  }
  const opfsWhy = opfsUnavailableReason();
  const cacheWhy = cacheUnavailableReason();
  add('Origin Private File System', !opfsWhy, false, 'model files stream to disk; a cut download resumes', `${opfsWhy ?? ''}; ${cacheWhy ? 'with no Cache API either, models are not stored' : 'the Cache API is used instead'}`);
  add('Cache API', !cacheWhy, false, 'model files can be kept in the Cache API', cacheWhy ?? '');
  add('Storage estimate', typeof nav?.storage?.estimate === 'function', false, 'a model that cannot fit is refused before downloading', 'a model that does not fit fails only when storage runs out');
  add('Persistent storage', typeof nav?.storage?.persist === 'function', false, 'the site can ask that its models not be evicted', 'the browser may evict stored models under storage pressure');
  add('Web Workers', typeof g.Worker === 'function', false, 'the engine can run off the page thread', 'the engine runs on the page thread (the page may stutter while generating)');
  add('Streaming fetch bodies', typeof g.ReadableStream === 'function' && g.Response !== undefined && 'body' in g.Response.prototype, false, 'weights are read as they arrive', 'fetch responses have no body stream: OPFS downloads fail (use storage: \'cache\'), other reads wait for whole responses');
  add('Web Locks', nav?.locks !== undefined, false, 'two tabs storing one model do not overwrite each other\'s records', 'two tabs storing one model at once may lose a record (the file is fetched again)');
  return out;
}
