// The Origin Private File System layout of stored models, and the file operations on it.
//
//   <OPFS root>/openelm-webgpu/<model dir>/manifest.json      what is stored, per file URL
//   <OPFS root>/openelm-webgpu/<model dir>/<stem>.<k>          part k of one file (partBytes each)
//
// A file is kept as parts of a fixed size so that a part is written with one call and committed
// at once: on the main thread a createWritable() stream only reaches the file on close(), so a
// single big file would lose everything written so far when the tab closes. The part files'
// sizes are the truth about what is held (full parts, then at most one short part), so an
// interrupted download needs no bookkeeping to resume. In a worker, writes use
// createSyncAccessHandle (no swap file); on the main thread, createWritable.
// No Node modules: this file is part of the browser bundle.

export const OPFS_DIR = 'openelm-webgpu';
export const MANIFEST_FILE = 'manifest.json';
/** Size of the parts a stored file is split into (the most a closed tab can lose of a download). */
export const DEFAULT_PART_BYTES = 16 << 20;

export interface FileRecord {
  /** Part files are `<stem>.<k>`. */
  stem: string;
  /** The file's size, when known. */
  size?: number;
  /** Validators of the server's copy, to notice a changed file when resuming. */
  etag?: string;
  lastModified?: string;
  partBytes: number;
  complete: boolean;
  /** The file does not exist (a remembered 404). */
  missing?: boolean;
}

export interface Manifest {
  /** The model folder's URL. */
  url: string;
  /** Keyed by file URL. */
  files: Record<string, FileRecord>;
  updated: string;
}

interface SyncAccessHandle {
  write(b: Uint8Array, o?: { at?: number }): number;
  truncate(n: number): void;
  flush(): void;
  close(): void;
}
type FileHandle = FileSystemFileHandle & { createSyncAccessHandle?: () => Promise<SyncAccessHandle> };

function nav(): Navigator | undefined {
  return (globalThis as { navigator?: Navigator }).navigator;
}

/** Why OPFS cannot store models here, or undefined when it can. */
export function opfsUnavailableReason(): string | undefined {
  const g = globalThis as { isSecureContext?: boolean; FileSystemFileHandle?: { prototype: Partial<FileHandle> } };
  if (g.isSecureContext === false) return 'the Origin Private File System needs a secure context (https://, or http://localhost / 127.0.0.1)';
  if (typeof nav()?.storage?.getDirectory !== 'function') return 'this browser has no Origin Private File System (navigator.storage.getDirectory)';
  const proto = g.FileSystemFileHandle?.prototype;
  if (!proto || (typeof proto.createWritable !== 'function' && typeof proto.createSyncAccessHandle !== 'function')) {
    return 'this browser cannot write OPFS files here (no createWritable on this thread, and createSyncAccessHandle exists only in workers)';
  }
  return undefined;
}

function isNotFound(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { name?: string }).name === 'NotFoundError';
}

/** FNV-1a of a string, 8 hex digits (names stay short and distinct). */
function hash32(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

/** A file-system-safe name for a URL: readable part plus a hash of the whole. */
export function safeName(url: string, max = 80): string {
  const clean = url.replace(/^[a-z]+:\/\//i, '').replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '');
  return `${clean.slice(-max)}-${hash32(url)}`;
}

/** The folder holding every stored model, or undefined when none was ever created (create: false). */
export async function opfsModelsDir(create: boolean): Promise<FileSystemDirectoryHandle | undefined> {
  const root = await nav()!.storage.getDirectory();
  try {
    return await root.getDirectoryHandle(OPFS_DIR, { create });
  } catch (e) {
    if (!create && isNotFound(e)) return undefined;
    throw e;
  }
}

/** Writes `bytes` as the whole content of `name` in `dir`. */
export async function writeFile(dir: FileSystemDirectoryHandle, name: string, bytes: Uint8Array): Promise<void> {
  const h = (await dir.getFileHandle(name, { create: true })) as FileHandle;
  let a: SyncAccessHandle | undefined;
  if (typeof h.createSyncAccessHandle === 'function') {
    try {
      a = await h.createSyncAccessHandle();
    } catch (e) {
      // A browser may define it where it cannot work (outside a worker): use createWritable then.
      if (typeof h.createWritable !== 'function' || (e as { name?: string }).name === 'NoModificationAllowedError') throw e;
    }
  }
  if (a) {
    try {
      a.truncate(0);
      let at = 0;
      while (at < bytes.byteLength) at += a.write(bytes.subarray(at), { at });
      a.flush();
    } finally {
      a.close();
    }
    return;
  }
  const w = await h.createWritable();
  try {
    await w.write(bytes as Uint8Array<ArrayBuffer>);
    await w.close();
  } catch (e) {
    await w.abort().catch(() => {});
    throw e;
  }
}

/** A file's content as a File (a snapshot), or undefined when it does not exist. */
export async function fileOf(dir: FileSystemDirectoryHandle, name: string): Promise<File | undefined> {
  try {
    return await (await dir.getFileHandle(name)).getFile();
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

export async function removeEntry(dir: FileSystemDirectoryHandle, name: string, recursive = false): Promise<boolean> {
  try {
    await dir.removeEntry(name, { recursive });
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/** Sizes of the parts of `stem` held: full parts, then at most one short one. */
export async function partSizes(dir: FileSystemDirectoryHandle, stem: string, partBytes: number): Promise<number[]> {
  const out: number[] = [];
  for (let k = 0; ; k++) {
    const f = await fileOf(dir, `${stem}.${k}`);
    if (!f) break;
    out.push(f.size);
    if (f.size < partBytes) break;
  }
  return out;
}

/** Removes every part of `stem`. */
export async function removeParts(dir: FileSystemDirectoryHandle, stem: string): Promise<void> {
  for (let k = 0; await removeEntry(dir, `${stem}.${k}`); k++);
}

/** Reads bytes [offset, offset + length) of a file stored as parts into out[at...]. */
export async function readParts(
  dir: FileSystemDirectoryHandle,
  rec: FileRecord,
  offset: number,
  length: number,
  out: Uint8Array,
  at: number,
  files: Map<number, File>,
): Promise<void> {
  const P = rec.partBytes;
  for (let pos = offset; pos < offset + length; ) {
    const k = Math.floor(pos / P);
    let f = files.get(k);
    if (!f) {
      f = await fileOf(dir, `${rec.stem}.${k}`);
      if (!f) throw new Error(`stored ${rec.stem}: part ${k} is gone (was the site's storage cleared?); reload to fetch it again`);
      files.set(k, f);
    }
    const end = Math.min(offset + length, (k + 1) * P);
    const b = new Uint8Array(await f.slice(pos - k * P, end - k * P).arrayBuffer());
    if (b.byteLength !== end - pos) throw new Error(`stored ${rec.stem}: part ${k} is shorter than expected; reload to fetch it again`);
    out.set(b, at + pos - offset);
    pos = end;
  }
}

export async function readManifest(dir: FileSystemDirectoryHandle): Promise<Manifest | undefined> {
  const f = await fileOf(dir, MANIFEST_FILE);
  if (!f) return undefined;
  try {
    const m = JSON.parse(await f.text()) as Manifest;
    if (typeof m.url === 'string' && typeof m.files === 'object' && m.files !== null) return m;
  } catch {
    // unreadable: treated as empty, files are fetched again
  }
  return undefined;
}

export async function writeManifest(dir: FileSystemDirectoryHandle, m: Manifest): Promise<void> {
  m.updated = new Date().toISOString();
  await writeFile(dir, MANIFEST_FILE, new TextEncoder().encode(JSON.stringify(m)));
}

/**
 * Runs `fn` holding a lock on one model folder's manifest, across tabs and workers where the Web
 * Locks API exists (two loads of one model must not overwrite each other's records).
 */
export async function withManifestLock<T>(dirName: string, fn: () => Promise<T>): Promise<T> {
  const locks = (nav() as Navigator & { locks?: LockManager } | undefined)?.locks;
  if (!locks) return fn();
  return locks.request(`openelm-opfs:${dirName}`, fn) as Promise<T>;
}
