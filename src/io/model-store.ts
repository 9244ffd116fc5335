// Where a browser keeps downloaded model files: the Origin Private File System (opfs-store.ts) or
// the Cache API (browser-cache.ts), behind one interface; which one, from what the browser offers
// ('auto' prefers OPFS: files stream to disk and interrupted downloads resume). Also: asking the
// browser to keep the data (persist), the up-front quota check, and listing / deleting stored
// models across both.
import { cacheUnavailableReason, clearCache, listCache, ModelCache, QuotaError, type CacheOptions } from './browser-cache.ts';
import { opfsModelsDir, opfsUnavailableReason, partSizes, readManifest, removeEntry, safeName } from './opfs-files.ts';
import { OpfsModelStore, type OpfsOptions } from './opfs-store.ts';
import type { ByteSource } from './safetensors.ts';
import type { HttpSourceOptions } from './web-source.ts';

export type StorageKind = 'opfs' | 'cache';
export type StorageChoice = 'auto' | StorageKind | 'none';
export const STORAGE_CHOICES: readonly StorageChoice[] = ['auto', 'opfs', 'cache', 'none'];

/** What the loader needs from a store (both ModelCache and OpfsModelStore are one). */
export interface ModelStore {
  readonly kind: StorageKind;
  /** Total bytes of the model's files (for quota messages); set by the loader. */
  modelBytes: number;
  /** Bytes served from storage. */
  readonly counters: { cacheBytes: number };
  getWhole(url: string): Promise<Uint8Array | undefined>;
  putWhole(url: string, bytes: Uint8Array): Promise<void>;
  isMissing(url: string): Promise<boolean>;
  markMissing(url: string): Promise<void>;
  /** A weight file, from storage where held, else fetched and stored; a 404 throws HttpError 404. */
  weightSource(url: string, name: string, net: HttpSourceOptions): Promise<ByteSource>;
  heldBytes(url: string): Promise<number>;
  /** Waits for pending writes; throws their failure. */
  flush(): Promise<void>;
  /** Stops background downloads when the load fails (OPFS streams whole files). */
  cancel?(reason: string): void;
}

/** Which storage a load used, and why. */
export interface StorageReport {
  kind: StorageKind | 'none';
  requested: StorageChoice;
  /** Whether the browser agreed to keep the site's data (navigator.storage.persist()); undefined: cannot ask. */
  persisted?: boolean;
  /** Why the requested (or preferred) storage is not used, when it is not. */
  reason?: string;
}

export interface StoreOptions extends OpfsOptions {
  cacheName?: string;
}

let persisting: Promise<boolean | undefined> | undefined;
/** Asks once per page that the browser not evict the site's data; whether it agreed. */
export function requestPersistence(): Promise<boolean | undefined> {
  persisting ??= (async () => {
    const s = (globalThis as { navigator?: Navigator }).navigator?.storage;
    try {
      if (typeof s?.persisted === 'function' && (await s.persisted())) return true;
      if (typeof s?.persist !== 'function') return undefined;
      return await s.persist();
    } catch {
      return undefined;
    }
  })();
  return persisting;
}

/** Opens the storage `choice` asks for; with 'auto', OPFS, else the Cache API, else none. */
export async function openModelStore(base: string, choice: StorageChoice, o: StoreOptions = {}): Promise<{ store?: ModelStore; report: StorageReport }> {
  if (!STORAGE_CHOICES.includes(choice)) throw new Error(`option storage: expected one of ${STORAGE_CHOICES.join(', ')}, got "${String(choice)}"`);
  const p = o.partBytes;
  if (p !== undefined && !(Number.isSafeInteger(p) && p >= 4096)) throw new Error(`option storagePartBytes: expected an integer of at least 4096, got ${p}`);
  if (choice === 'none') return { report: { kind: 'none', requested: choice } };
  const reasons: string[] = [];
  if (choice === 'auto' || choice === 'opfs') {
    const why = opfsUnavailableReason();
    if (!why) {
      try {
        const store = await OpfsModelStore.open(base, o);
        return { store, report: { kind: 'opfs', requested: choice, persisted: await requestPersistence() } };
      } catch (e) {
        reasons.push(`OPFS failed to open (${(e as Error).message})`);
      }
    } else reasons.push(why);
  }
  if (choice === 'auto' || choice === 'cache') {
    const why = cacheUnavailableReason();
    const cache = why ? undefined : await ModelCache.open({ cacheName: o.cacheName });
    if (cache) {
      return { store: cache, report: { kind: 'cache', requested: choice, persisted: await requestPersistence(), reason: reasons.join('; ') || undefined } };
    }
    reasons.push(why ?? 'the Cache API refused to open');
  }
  return { report: { kind: 'none', requested: choice, reason: `${reasons.join('; ')}; the model is not stored` } };
}

export function fmtSize(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

/** A short name for a model folder URL: `owner/name` for hub folders, else the URL. */
export function modelLabel(base: string): string {
  const m = /\/([^/]+\/[^/]+)\/resolve\/[^/]+\/$/.exec(base);
  return m ? `${m[1]} (${base})` : base;
}

/**
 * Fails before downloading when the browser says the files not held yet cannot fit: one line with
 * the model, its size, the free space, and what to do.
 */
export async function checkRoom(store: ModelStore, sources: ByteSource[], total: number, base: string): Promise<void> {
  let est: StorageEstimate | undefined;
  try {
    est = await (globalThis as { navigator?: Navigator }).navigator?.storage?.estimate?.();
  } catch {
    return;
  }
  if (!est || est.quota === undefined || est.usage === undefined) return;
  let held = 0;
  for (const s of sources) held += await store.heldBytes(s.name);
  const needed = total - held;
  const free = Math.max(0, est.quota - est.usage);
  if (needed <= free) return;
  throw new QuotaError(
    `${modelLabel(base)} does not fit in this browser's storage: its files take ${fmtSize(total)} (${fmtSize(held)} already stored), ` +
      `${fmtSize(needed)} more is needed but only ${fmtSize(free)} is free (this site uses ${fmtSize(est.usage)} of ${fmtSize(est.quota)}). ` +
      `Delete stored models (deleteStoredModel(url), or the demo's "Stored models" list) or other site data, ` +
      `free disk space, or load with { storage: 'none' } to run it without storing.`,
    needed,
    est.usage,
    est.quota,
  );
}

export interface StoredFile {
  url: string;
  size?: number;
  storedBytes: number;
  complete: boolean;
  missing?: boolean;
}

export interface StoredModel {
  /** The model folder's URL (what deleteStoredModel takes). */
  url: string;
  storage: StorageKind;
  files: StoredFile[];
  /** Bytes held. */
  bytes: number;
  /** The files' full size, when every size is known. */
  sizeBytes?: number;
  /** Every file fully held (an interrupted download is not). */
  complete: boolean;
}

function summarize(url: string, storage: StorageKind, files: StoredFile[]): StoredModel {
  const held = files.filter((f) => !f.missing);
  const known = held.every((f) => f.size !== undefined);
  return {
    url,
    storage,
    files: files.sort((a, b) => a.url.localeCompare(b.url)),
    bytes: held.reduce((a, f) => a + f.storedBytes, 0),
    sizeBytes: known ? held.reduce((a, f) => a + (f.size ?? 0), 0) : undefined,
    complete: files.every((f) => f.complete),
  };
}

async function listOpfs(): Promise<StoredModel[]> {
  if (opfsUnavailableReason()) return [];
  const root = await opfsModelsDir(false);
  if (!root) return [];
  const out: StoredModel[] = [];
  for await (const [name, h] of (root as FileSystemDirectoryHandle & { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
    if (h.kind !== 'directory') continue;
    const dir = h as FileSystemDirectoryHandle;
    const m = await readManifest(dir);
    if (!m) continue;
    const files: StoredFile[] = [];
    for (const [url, rec] of Object.entries(m.files)) {
      if (rec.missing) {
        files.push({ url, storedBytes: 0, complete: true, missing: true });
        continue;
      }
      const stored = (await partSizes(dir, rec.stem, rec.partBytes)).reduce((a, b) => a + b, 0);
      files.push({ url, size: rec.size, storedBytes: stored, complete: rec.complete && rec.size === stored });
    }
    if (safeName(m.url) === name) out.push(summarize(m.url, 'opfs', files));
  }
  return out;
}

async function listCacheModels(o: CacheOptions): Promise<StoredModel[]> {
  const byFolder = new Map<string, StoredFile[]>();
  for (const f of await listCache(o)) {
    const folder = f.url.slice(0, f.url.lastIndexOf('/') + 1);
    const list = byFolder.get(folder) ?? [];
    list.push({ url: f.url, size: f.size, storedBytes: f.cachedBytes, complete: f.complete, missing: f.missing });
    byFolder.set(folder, list);
  }
  return [...byFolder].map(([url, files]) => summarize(url, 'cache', files));
}

/** Every stored model, in both OPFS and the Cache API, with sizes and completeness. */
export async function listStoredModels(o: { cacheName?: string } = {}): Promise<StoredModel[]> {
  const all = [...(await listOpfs()), ...(await listCacheModels({ cacheName: o.cacheName }))];
  return all.sort((a, b) => a.url.localeCompare(b.url) || a.storage.localeCompare(b.storage));
}

/**
 * Deletes a stored model (a folder URL as listStoredModels gives it) from both OPFS and the Cache
 * API; without a URL, every stored model. Returns the files and bytes removed.
 */
export async function deleteStoredModel(url?: string, o: { cacheName?: string } = {}): Promise<{ files: number; bytes: number }> {
  const listed = (await listStoredModels(o)).filter((m) => url === undefined || m.url === url);
  const files = listed.reduce((a, m) => a + m.files.filter((f) => !f.missing).length, 0);
  const bytes = listed.reduce((a, m) => a + m.bytes, 0);
  if (!opfsUnavailableReason()) {
    const root = await opfsModelsDir(false);
    if (root) {
      if (url === undefined) {
        const names: string[] = [];
        for await (const [name] of (root as FileSystemDirectoryHandle & { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) names.push(name);
        for (const name of names) await removeEntry(root, name, true);
      } else await removeEntry(root, safeName(url), true);
    }
  }
  if (!cacheUnavailableReason()) await clearCache(url, { cacheName: o.cacheName });
  return { files, bytes };
}
