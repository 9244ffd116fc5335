// A persistent cache of model files in the browser's Cache API, keyed by URL, so a reload reads
// the model from disk instead of the network.
//
// Small files (config.json, tokenizer files, the shard index) are stored whole under their URL.
// Weight files are read in ranges (one per tensor, plus the header), and each range fetched is
// stored as it comes, under `URL?openelm-cache=bytes-START-END`, with a small JSON entry
// (`URL?openelm-cache=meta`) recording the file's size and the ranges held. A later load asks for
// the same ranges and gets them from the cache without a single request; a range that is not held
// is fetched and added. Files that do not exist are remembered too (`URL?openelm-cache=missing`),
// so optional files (tokenizer.json) cost no request on a reload.
//
// The cache is never refreshed: a cached `main` of a hub model stays as it was. clearCache()
// (optionally for one URL prefix) starts over. Running out of storage throws a QuotaError that
// says how much the model needs and how to free space; it is never swallowed.
import type { ByteSource } from './safetensors.ts';
import { httpSource, type HttpSourceOptions } from './web-source.ts';

export const DEFAULT_CACHE_NAME = 'openelm-webgpu-v1';
const PARAM = 'openelm-cache';
const SIZE_HEADER = 'X-Openelm-Size';

function fmtMiB(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

/** The browser refused to store more (QuotaExceededError), with the figures people need. */
export class QuotaError extends Error {
  constructor(
    message: string,
    readonly neededBytes: number,
    readonly usageBytes?: number,
    readonly quotaBytes?: number,
  ) {
    super(message);
    this.name = 'QuotaError';
  }
}

export function isQuotaExceeded(e: unknown): boolean {
  if (!(e instanceof Error) && !(typeof e === 'object' && e !== null && 'name' in e)) return false;
  const err = e as { name?: string; code?: number };
  // Old Safari and Firefox used other names / the legacy code 22.
  return err.name === 'QuotaExceededError' || err.name === 'NS_ERROR_DOM_QUOTA_REACHED' || err.code === 22;
}

async function storageEstimate(): Promise<{ usage?: number; quota?: number }> {
  try {
    const nav = (globalThis as { navigator?: Navigator }).navigator;
    const e = await nav?.storage?.estimate?.();
    return { usage: e?.usage, quota: e?.quota };
  } catch {
    return {};
  }
}

/**
 * The message for a QuotaExceededError while caching `what`: how much the model needs, what the
 * browser reports, and how to free space.
 */
export async function quotaError(what: string, writeBytes: number, modelBytes: number, cachedBytes: number): Promise<QuotaError> {
  const { usage, quota } = await storageEstimate();
  const stillNeeded = Math.max(writeBytes, modelBytes - cachedBytes);
  const storage =
    usage !== undefined && quota !== undefined
      ? ` This site uses ${fmtMiB(usage)} of the ${fmtMiB(quota)} the browser allows it (${fmtMiB(Math.max(0, quota - usage))} free).`
      : '';
  const need =
    modelBytes > 0
      ? `the model's files take ${fmtMiB(modelBytes)}, ${fmtMiB(cachedBytes)} of it already cached, so about ${fmtMiB(stillNeeded)} more is needed.`
      : `at least ${fmtMiB(writeBytes)} more is needed.`;
  return new QuotaError(
    `Out of browser storage while storing ${what} (${fmtMiB(writeBytes)}): ${need}${storage} ` +
      `To free space: deleteStoredModel(url) (the demo's "Stored models" list) removes stored models; the browser's site settings ` +
      `(Settings > Privacy > Site data) remove other data; or load with { storage: 'none' } to skip storing.`,
    stillNeeded,
    usage,
    quota,
  );
}

/** key for `url` with `openelm-cache=<what>` appended. */
function keyOf(url: string, what: string): string {
  const u = new URL(url);
  u.hash = '';
  u.searchParams.append(PARAM, what);
  return u.href;
}

/** The file URL and the kind of entry a cache key stands for. */
function parseKey(key: string): { url: string; kind: 'whole' | 'meta' | 'range' | 'missing' | 'other' } {
  const u = new URL(key);
  const all = u.searchParams.getAll(PARAM);
  if (all.length === 0) return { url: key, kind: 'whole' };
  const what = all[all.length - 1];
  // Remove our (last) parameter to get the file's URL back.
  const params = [...u.searchParams.entries()];
  let idx = -1;
  params.forEach(([k], i) => {
    if (k === PARAM) idx = i;
  });
  params.splice(idx, 1);
  u.search = params.length ? new URLSearchParams(params).toString() : '';
  const url = u.href;
  if (what === 'meta') return { url, kind: 'meta' };
  if (what === 'missing') return { url, kind: 'missing' };
  if (what.startsWith('bytes-')) return { url, kind: 'range' };
  return { url, kind: 'other' };
}

interface Meta {
  url: string;
  size: number;
  /** [offset, length] pairs held, in the order they were stored. */
  ranges: [number, number][];
  updated: string;
}

/** The parts of CacheStorage this module uses (tests hand in their own). */
export interface CacheStorageLike {
  open(name: string): Promise<Cache>;
  delete(name: string): Promise<boolean>;
  has?(name: string): Promise<boolean>;
}

export interface CacheOptions {
  /** Cache name; default 'openelm-webgpu-v1'. */
  cacheName?: string;
  /** CacheStorage to use; default globalThis.caches. */
  storage?: CacheStorageLike;
}

function defaultStorage(): CacheStorageLike | undefined {
  return (globalThis as { caches?: CacheStorage }).caches;
}

/** Why the Cache API is not there (insecure context, private browsing in some browsers), or undefined. */
export function cacheUnavailableReason(storage = defaultStorage()): string | undefined {
  if (storage) return undefined;
  const secure = (globalThis as { isSecureContext?: boolean }).isSecureContext;
  return secure === false
    ? 'the Cache API needs a secure context (https:// or http://localhost / 127.0.0.1); models are not cached'
    : 'this browser has no Cache API here; models are not cached';
}

export interface CacheCounters {
  /** Bytes served from the cache. */
  cacheBytes: number;
}

/** One open cache, as the loader uses it. */
export class ModelCache {
  readonly kind = 'cache' as const;
  /** Total bytes of the files of the model being loaded (for quota messages); set by the loader. */
  modelBytes = 0;
  readonly counters: CacheCounters = { cacheBytes: 0 };
  private readonly metaLocks = new Map<string, Promise<unknown>>();

  private constructor(private readonly cache: Cache) {}

  /** The cache, or undefined when the Cache API is unavailable (see cacheUnavailableReason). */
  static async open(o: CacheOptions = {}): Promise<ModelCache | undefined> {
    const storage = o.storage ?? defaultStorage();
    if (!storage) return undefined;
    try {
      return new ModelCache(await storage.open(o.cacheName ?? DEFAULT_CACHE_NAME));
    } catch {
      // e.g. Firefox private windows throw SecurityError: run without a cache.
      return undefined;
    }
  }

  /** Bytes already held for the model being loaded (for quota messages). */
  private cachedBytesOfModel = 0;
  /** Sizes of the files opened with rangedSource so far (the model's size before the loader knows it). */
  private openedBytes = 0;

  private async put(key: string, body: Uint8Array | string, what: string, headers: Record<string, string> = {}): Promise<void> {
    const len = typeof body === 'string' ? body.length : body.byteLength;
    try {
      await this.cache.put(key, new Response(body as BodyInit, { headers: { 'Content-Type': 'application/octet-stream', [SIZE_HEADER]: String(len), ...headers } }));
    } catch (e) {
      if (isQuotaExceeded(e)) throw await quotaError(what, len, Math.max(this.modelBytes, this.openedBytes), this.cachedBytesOfModel);
      throw e;
    }
  }

  /** A whole small file, or undefined when not cached. */
  async getWhole(url: string): Promise<Uint8Array | undefined> {
    const r = await this.cache.match(url);
    if (!r) return undefined;
    const b = new Uint8Array(await r.arrayBuffer());
    this.counters.cacheBytes += b.byteLength;
    this.cachedBytesOfModel += b.byteLength;
    return b;
  }

  async putWhole(url: string, bytes: Uint8Array): Promise<void> {
    await this.put(url, bytes, url);
    this.cachedBytesOfModel += bytes.byteLength;
  }

  /** Whether `url` is known not to exist (a 404 seen before). */
  async isMissing(url: string): Promise<boolean> {
    return (await this.cache.match(keyOf(url, 'missing'))) !== undefined;
  }

  async markMissing(url: string): Promise<void> {
    await this.put(keyOf(url, 'missing'), '404', url);
  }

  private async readMeta(url: string): Promise<Meta | undefined> {
    const r = await this.cache.match(keyOf(url, 'meta'));
    if (!r) return undefined;
    try {
      const m = (await r.json()) as Meta;
      if (typeof m.size === 'number' && Array.isArray(m.ranges)) return m;
    } catch {
      // unreadable: start over
    }
    return undefined;
  }

  private async writeMeta(m: Meta): Promise<void> {
    m.updated = new Date().toISOString();
    await this.put(keyOf(m.url, 'meta'), JSON.stringify(m), m.url, { 'Content-Type': 'application/json' });
  }

  /** Serialises updates of one file's meta entry. */
  private locked<T>(url: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.metaLocks.get(url) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.metaLocks.set(
      url,
      next.catch(() => {}),
    );
    return next;
  }

  /** The cache write in flight, if any. */
  private writing: Promise<void> | undefined;

  /** Waits for the cache write in flight; throws its error (a QuotaError, say). */
  async flush(): Promise<void> {
    const w = this.writing;
    this.writing = undefined;
    if (w) await w;
  }

  /** Bytes of `url` held in the cache (0 when none). */
  async heldBytes(url: string): Promise<number> {
    const m = await this.readMeta(url);
    return m ? coveredBytes(m.ranges) : 0;
  }

  /** The file's size when any of it is cached (no request needed), else undefined. */
  async cachedSize(url: string): Promise<number | undefined> {
    return (await this.readMeta(url))?.size;
  }

  /** A weight file: ranges held are served from the cache, the others fetched (and stored). */
  weightSource(url: string, name: string, net: HttpSourceOptions): Promise<ByteSource> {
    return this.rangedSource(url, name, () => httpSource(url, { ...net, name }));
  }

  /**
   * A ByteSource for `url` that serves ranges held in the cache and fetches (and stores) the
   * others. `open` opens the network source; it is called only when a range is missing, or to
   * learn the size of a file not cached yet, so a fully cached file makes no request at all.
   */
  async rangedSource(url: string, name: string, open: () => Promise<ByteSource>): Promise<ByteSource> {
    let meta = await this.readMeta(url);
    let net: Promise<ByteSource> | undefined;
    const network = () => (net ??= open());
    if (!meta) {
      const src = await network();
      meta = { url, size: src.size, ranges: [], updated: '' };
      await this.locked(url, () => this.writeMeta(meta!));
    } else {
      for (const [, l] of meta.ranges) this.cachedBytesOfModel += l;
    }
    const m = meta;
    const size = m.size;
    this.openedBytes += size;
    return {
      name,
      size,
      read: async (offset: number, length: number): Promise<Uint8Array> => {
        if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= size)) {
          throw new Error(`${name}: read of ${length} bytes at offset ${offset} is past the end of the file (${size} bytes)`);
        }
        if (length === 0) return new Uint8Array(0);
        const held = m.ranges.find(([o, l]) => o <= offset && offset + length <= o + l);
        if (held) {
          const r = await this.cache.match(keyOf(url, `bytes-${held[0]}-${held[0] + held[1] - 1}`));
          if (r) {
            const buf = await r.arrayBuffer();
            if (buf.byteLength === held[1]) {
              this.counters.cacheBytes += length;
              const b = new Uint8Array(buf);
              return offset === held[0] && length === held[1] ? b : b.slice(offset - held[0], offset - held[0] + length);
            }
          }
          // The entry went away (storage cleared under us): forget it and fetch again.
          m.ranges = m.ranges.filter((x) => x !== held);
        }
        const bytes = await (await network()).read(offset, length);
        // Store in the background, so that writing this range overlaps fetching the next one; a
        // failed write surfaces at the next read or at flush(), never lost. One write at a time
        // is in flight (memory stays at about two tensors).
        await this.flush();
        this.writing = this.locked(url, async () => {
          await this.put(keyOf(url, `bytes-${offset}-${offset + length - 1}`), bytes, `${name} bytes ${offset}-${offset + length - 1}`);
          m.ranges.push([offset, length]);
          this.cachedBytesOfModel += length;
          await this.writeMeta(m);
        });
        this.writing.catch(() => {}); // handled by the next flush()
        return bytes;
      },
    };
  }
}

export interface CachedFile {
  /** The file's URL. */
  url: string;
  /** The file's size, when known. */
  size?: number;
  /** Bytes of it held in the cache. */
  cachedBytes: number;
  /** Whether every byte of the file is held. */
  complete: boolean;
  /** The file does not exist (a remembered 404). */
  missing?: boolean;
}

/** Union of [offset, length] ranges: bytes covered. */
function coveredBytes(ranges: [number, number][]): number {
  const s = [...ranges].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let end = -1;
  for (const [o, l] of s) {
    const e = o + l;
    if (e <= end) continue;
    total += e - Math.max(o, end < 0 ? o : end);
    end = Math.max(end, e);
  }
  return total;
}

/** Every file held in the cache, with how much of it is held. */
export async function listCache(o: CacheOptions = {}): Promise<CachedFile[]> {
  const storage = o.storage ?? defaultStorage();
  if (!storage) return [];
  const name = o.cacheName ?? DEFAULT_CACHE_NAME;
  if (storage.has && !(await storage.has(name))) return [];
  const cache = await storage.open(name);
  const files = new Map<string, CachedFile>();
  const get = (url: string) => {
    let f = files.get(url);
    if (!f) files.set(url, (f = { url, cachedBytes: 0, complete: false }));
    return f;
  };
  for (const req of await cache.keys()) {
    const { url, kind } = parseKey(req.url);
    if (kind === 'whole') {
      const r = await cache.match(req);
      const size = Number(r?.headers.get(SIZE_HEADER) ?? NaN);
      const f = get(url);
      f.size = Number.isFinite(size) ? size : undefined;
      f.cachedBytes = f.size ?? 0;
      f.complete = true;
    } else if (kind === 'meta') {
      const r = await cache.match(req);
      try {
        const m = (await r!.json()) as Meta;
        const f = get(url);
        f.size = m.size;
        f.cachedBytes = coveredBytes(m.ranges);
        f.complete = f.cachedBytes >= m.size;
      } catch {
        // skip an unreadable entry
      }
    } else if (kind === 'missing') {
      const f = get(url);
      f.missing = true;
      f.complete = true;
    }
  }
  return [...files.values()].sort((a, b) => a.url.localeCompare(b.url));
}

/**
 * Removes cached files: all of them, or those whose URL starts with `prefix` (e.g. a model
 * folder's URL). Returns how many files and bytes were removed.
 */
export async function clearCache(prefix?: string, o: CacheOptions = {}): Promise<{ files: number; bytes: number }> {
  const storage = o.storage ?? defaultStorage();
  if (!storage) return { files: 0, bytes: 0 };
  const list = await listCache(o);
  const hit = list.filter((f) => prefix === undefined || f.url.startsWith(prefix));
  const bytes = hit.reduce((a, f) => a + f.cachedBytes, 0);
  const name = o.cacheName ?? DEFAULT_CACHE_NAME;
  if (prefix === undefined) {
    await storage.delete(name);
  } else {
    const cache = await storage.open(name);
    for (const req of await cache.keys()) {
      if (parseKey(req.url).url.startsWith(prefix)) await cache.delete(req);
    }
  }
  return { files: hit.filter((f) => !f.missing).length, bytes };
}
