// Model files in the Origin Private File System (layout in opfs-files.ts), as the loader uses them.
// Small files are stored whole; a weight file fully held is read from disk with no request, and
// one not fully held is downloaded from its first missing byte (opfs-download.ts) while the loader
// reads what has arrived.
import { quotaError, isQuotaExceeded } from './browser-cache.ts';
import { checkRead, Download } from './opfs-download.ts';
import {
  DEFAULT_PART_BYTES, opfsModelsDir, partSizes, readManifest, readParts, removeEntry, safeName, withManifestLock, writeFile, writeManifest,
  type FileRecord, type Manifest,
} from './opfs-files.ts';
import type { ByteSource } from './safetensors.ts';
import type { HttpSourceOptions } from './web-source.ts';

const WRITE_TEST = '.write-test';

export interface OpfsOptions {
  /** Part size of newly stored files (default 16 MiB). */
  partBytes?: number;
}

/** One model folder in OPFS, for one load. */
export class OpfsModelStore {
  readonly kind = 'opfs' as const;
  /** Total bytes of the model's files (for quota messages); set by the loader. */
  modelBytes = 0;
  readonly counters = { cacheBytes: 0 };
  /** Bytes of the model held before or written during this load (for quota messages). */
  heldOfModel = 0;
  private readonly downloads = new Set<Download>();
  private readonly heldBefore = new Map<string, number>();
  private readonly touched = new Set<string>();

  private constructor(
    readonly base: string,
    readonly dir: FileSystemDirectoryHandle,
    readonly dirName: string,
    private manifest: Manifest,
    readonly partBytes: number,
  ) {}

  static async open(base: string, o: OpfsOptions = {}): Promise<OpfsModelStore> {
    const root = (await opfsModelsDir(true))!;
    const dirName = safeName(base);
    const dir = await root.getDirectoryHandle(dirName, { create: true });
    // Feature detection can promise more than a browser does: prove a write works here.
    await writeFile(dir, WRITE_TEST, new Uint8Array(1));
    await removeEntry(dir, WRITE_TEST);
    const m = (await readManifest(dir)) ?? { url: base, files: {}, updated: '' };
    return new OpfsModelStore(base, dir, dirName, m, o.partBytes ?? DEFAULT_PART_BYTES);
  }

  record(url: string): FileRecord | undefined {
    return this.manifest.files[url];
  }

  /** Sets (or removes) a file's record and saves the manifest, merged with what others saved. */
  async setRecord(url: string, rec: FileRecord | undefined): Promise<void> {
    if (rec) this.manifest.files[url] = rec;
    else delete this.manifest.files[url];
    this.touched.add(url);
    await withManifestLock(this.dirName, async () => {
      const disk = (await readManifest(this.dir)) ?? { url: this.base, files: {}, updated: '' };
      for (const u of this.touched) {
        if (this.manifest.files[u]) disk.files[u] = this.manifest.files[u];
        else delete disk.files[u];
      }
      this.manifest = disk;
      try {
        await writeManifest(this.dir, disk);
      } catch (e) {
        throw await this.mapQuota(e, `the list of stored files of ${this.base}`, 1024);
      }
    });
  }

  /** A QuotaExceededError as the QuotaError with the figures; other errors unchanged. */
  async mapQuota(e: unknown, what: string, bytes: number): Promise<unknown> {
    return isQuotaExceeded(e) ? quotaError(what, bytes, this.modelBytes, this.heldOfModel) : e;
  }

  stemFor(url: string): string {
    return safeName(url.startsWith(this.base) ? url.slice(this.base.length) : url, 60);
  }

  async getWhole(url: string): Promise<Uint8Array | undefined> {
    const rec = this.record(url);
    if (!rec?.complete || rec.missing || rec.size === undefined) return undefined;
    const out = new Uint8Array(rec.size);
    try {
      await readParts(this.dir, rec, 0, rec.size, out, 0, new Map());
    } catch {
      await this.setRecord(url, undefined); // parts gone: fetch again
      return undefined;
    }
    this.counters.cacheBytes += out.byteLength;
    this.heldOfModel += out.byteLength;
    return out;
  }

  async putWhole(url: string, bytes: Uint8Array): Promise<void> {
    const rec: FileRecord = { stem: this.stemFor(url), size: bytes.byteLength, partBytes: this.partBytes, complete: true };
    for (let k = 0, at = 0; at < bytes.byteLength || k === 0; k++, at += this.partBytes) {
      const part = bytes.subarray(at, Math.min(bytes.byteLength, at + this.partBytes));
      try {
        await writeFile(this.dir, `${rec.stem}.${k}`, part);
      } catch (e) {
        throw await this.mapQuota(e, url, part.byteLength);
      }
    }
    this.heldOfModel += bytes.byteLength;
    await this.setRecord(url, rec);
  }

  async isMissing(url: string): Promise<boolean> {
    return this.record(url)?.missing === true;
  }

  async markMissing(url: string): Promise<void> {
    await this.setRecord(url, { stem: this.stemFor(url), partBytes: this.partBytes, complete: true, missing: true });
  }

  /** Bytes of `url` held (0 when none). */
  async heldBytes(url: string): Promise<number> {
    // A file downloading now: what was held when this load began (the quota check must not count
    // the bytes this load is already writing, or a fast download would hide a model that cannot fit).
    const before = this.heldBefore.get(url);
    if (before !== undefined) return before;
    const rec = this.record(url);
    if (!rec || rec.missing) return 0;
    return (await partSizes(this.dir, rec.stem, rec.partBytes)).reduce((a, b) => a + b, 0);
  }

  /**
   * A weight file: read from OPFS when held; else downloaded (from the first byte not held) and
   * stored as it arrives. A missing file throws an HttpError with status 404.
   */
  async weightSource(url: string, name: string, net: HttpSourceOptions): Promise<ByteSource> {
    const rec = this.record(url);
    if (rec?.complete && !rec.missing && rec.size !== undefined) {
      const held = await this.heldBytes(url);
      if (held === rec.size) return this.diskSource(rec, name);
    }
    const d = new Download(this, url, name, net);
    await d.start();
    this.heldBefore.set(url, d.heldAtStart);
    this.downloads.add(d);
    return d.source();
  }

  private diskSource(rec: FileRecord, name: string): ByteSource {
    const size = rec.size!;
    const files = new Map<number, File>();
    this.heldOfModel += size;
    return {
      name,
      size,
      read: async (offset, length) => {
        checkRead(name, offset, length, size);
        const out = new Uint8Array(length);
        await readParts(this.dir, rec, offset, length, out, 0, files);
        this.counters.cacheBytes += length;
        return out;
      },
    };
  }

  /** Stops the downloads (the load failed); what arrived is kept for the next load. */
  cancel(reason: string): void {
    for (const d of this.downloads) d.cancel(reason);
  }

  /** Waits for every download to finish writing; throws the first failure (a QuotaError, say). */
  async flush(): Promise<void> {
    for (const d of this.downloads) await d.done;
  }
}
