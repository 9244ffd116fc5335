// One weight file downloading into OPFS parts (opfs-files.ts) while the loader reads it: one
// `Range: bytes=N-` request from the first byte not held, written as it arrives; a cut
// connection is resumed from where it stopped; before resuming, the server's copy must be the one
// started (size, and ETag or Last-Modified when given), else the file is fetched from the start.
import { QuotaError } from './browser-cache.ts';
import { fileOf, partSizes, readParts, removeParts, writeFile, type FileRecord } from './opfs-files.ts';
import type { ByteSource } from './safetensors.ts';
import { describeStatus, fetchRetrying, HttpError, parseContentRange, sleep, type HttpSourceOptions } from './web-source.ts';

/** What a download needs from its store (OpfsModelStore). */
export interface DownloadHost {
  readonly dir: FileSystemDirectoryHandle;
  readonly partBytes: number;
  readonly counters: { cacheBytes: number };
  heldOfModel: number;
  record(url: string): FileRecord | undefined;
  setRecord(url: string, rec: FileRecord | undefined): Promise<void>;
  stemFor(url: string): string;
  mapQuota(e: unknown, what: string, bytes: number): Promise<unknown>;
}

export function checkRead(name: string, offset: number, length: number, size: number): void {
  if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= size)) {
    throw new Error(`${name}: read of ${length} bytes at offset ${offset} is past the end of the file (${size} bytes)`);
  }
}

/** One weight file being downloaded into OPFS parts while the loader reads it. */
export class Download {
  size = 0;
  /** Bytes [0, held) have arrived (on disk, or in `mem` for the part being filled). */
  held = 0;
  /** Bytes held when this load began. */
  heldAtStart = 0;
  private rec!: FileRecord;
  /** The part being filled: index, buffer, bytes in it. */
  private memPart = 0;
  private mem: Uint8Array | undefined;
  private memFill = 0;
  private error: unknown;
  private waiters: (() => void)[] = [];
  private readonly files = new Map<number, File>();
  done: Promise<void> = Promise.resolve();
  private readonly ctrl = new AbortController();
  private readonly net: HttpSourceOptions;

  constructor(
    private readonly store: DownloadHost,
    private readonly url: string,
    private readonly name: string,
    net: HttpSourceOptions,
  ) {
    // The load's signal, or cancel() when the load fails elsewhere, stops the download.
    const outer = net.signal;
    outer?.addEventListener('abort', () => this.ctrl.abort(outer.reason), { once: true });
    if (outer?.aborted) this.ctrl.abort(outer.reason);
    this.net = { ...net, signal: this.ctrl.signal };
  }

  cancel(reason: string): void {
    this.ctrl.abort(new DOMException(reason, 'AbortError'));
  }

  private get P(): number {
    return this.rec.partBytes;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Picks up the parts held, makes the request, learns the size; the body streams in the background. */
  async start(): Promise<void> {
    const old = this.store.record(this.url);
    this.rec = old && !old.missing ? { ...old, complete: false } : { stem: this.store.stemFor(this.url), partBytes: this.store.partBytes, complete: false };
    const sizes = old ? await partSizes(this.store.dir, this.rec.stem, this.rec.partBytes) : [];
    await this.setHeld(sizes);
    let res = await this.request(this.held);
    if (res === 'restart') {
      await this.restart();
      res = await this.request(0);
      if (res === 'restart') throw new Error(`${this.name}: the server's answers for this file disagree with each other; reload to try again`);
    }
    this.heldAtStart = this.held;
    this.store.heldOfModel += this.held;
    await this.store.setRecord(this.url, this.rec);
    const first = res;
    this.done = this.run(first);
    this.done.catch(() => {}); // seen by reads and flush()
  }

  /** Full parts on disk, then the short last part (if any) back into memory to be filled on. */
  private async setHeld(sizes: number[]): Promise<void> {
    this.held = sizes.reduce((a, b) => a + b, 0);
    const last = sizes.length > 0 && sizes[sizes.length - 1] < this.P ? sizes.length - 1 : sizes.length;
    this.memPart = last;
    this.memFill = 0;
    this.mem = undefined;
    if (last < sizes.length) {
      const f = await fileOf(this.store.dir, `${this.rec.stem}.${last}`);
      this.mem = new Uint8Array(this.P);
      const b = new Uint8Array(await f!.arrayBuffer());
      this.mem.set(b);
      this.memFill = b.byteLength;
    }
  }

  private async restart(): Promise<void> {
    await removeParts(this.store.dir, this.rec.stem);
    this.rec = { stem: this.rec.stem, partBytes: this.store.partBytes, complete: false };
    await this.setHeld([]);
  }

  /**
   * GET from byte `from` to the end. Returns the response to stream (the size and validators
   * recorded), or 'restart' when the server's file is not the one partly held.
   */
  private async request(from: number): Promise<Response | 'restart' | undefined> {
    const headers = { ...(this.net.headers ?? {}), Range: `bytes=${from}-` };
    const res = await fetchRetrying(this.url, { headers }, this.net, this.name);
    const etag = res.headers.get('ETag') ?? undefined;
    const lastModified = res.headers.get('Last-Modified') ?? undefined;
    const r = this.rec;
    const changed = (size: number) =>
      from > 0 && (r.size !== size || (r.etag !== undefined && etag !== undefined && r.etag !== etag) || (r.etag === undefined && r.lastModified !== undefined && lastModified !== undefined && r.lastModified !== lastModified));
    if (res.status === 206) {
      const cr = parseContentRange(res.headers.get('Content-Range'));
      const len = Number(res.headers.get('Content-Length') ?? NaN);
      const size = cr?.size ?? (Number.isSafeInteger(len) ? from + len : undefined);
      if (size === undefined) {
        await res.body?.cancel().catch(() => {});
        throw new HttpError(this.url, `${this.name}: cannot learn the file's size (the server hides Content-Range and Content-Length from this page; it must list them in Access-Control-Expose-Headers)`);
      }
      if (cr && cr.start !== undefined && cr.start !== from) {
        await res.body?.cancel().catch(() => {});
        throw new Error(`${this.name}: asked for bytes from ${from}, the server sent from ${cr.start}`);
      }
      if (changed(size)) {
        await res.body?.cancel().catch(() => {});
        return 'restart';
      }
      Object.assign(r, { size, etag, lastModified });
      return res;
    }
    if (res.status === 416 && from > 0 && r.size === from) {
      return undefined; // all held already
    }
    if (res.ok) {
      // The whole file (Range ignored): start over with this body.
      const len = Number(res.headers.get('Content-Length') ?? NaN);
      if (!Number.isSafeInteger(len)) {
        await res.body?.cancel().catch(() => {});
        throw new HttpError(this.url, `${this.name}: the server ignores Range and hides Content-Length; load with { storage: 'cache' } or 'none'`);
      }
      if (from > 0) await this.restart();
      Object.assign(this.rec, { size: len, etag, lastModified });
      return res;
    }
    await res.body?.cancel().catch(() => {});
    if (res.status === 416) return 'restart';
    throw describeStatus(this.url, res, this.name);
  }

  /** Streams bodies into parts until the file is complete, resuming cut connections. */
  private async run(first: Response | undefined): Promise<void> {
    this.size = this.rec.size!;
    let res = first;
    let attempts = 0;
    const retries = this.net.retries ?? 3;
    try {
      for (;;) {
        const before = this.held;
        try {
          if (res) await this.pump(res);
          if (this.held < this.size) throw new Error(`${this.name}: the connection ended after ${this.held} of ${this.size} bytes`);
          break;
        } catch (e) {
          await this.commit(); // keep what arrived
          if (this.net.signal?.aborted || e instanceof QuotaError) throw e;
          if (attempts >= retries) {
            throw new Error(`${this.name}: the download broke off at byte ${this.held} of ${this.size} (${(e as Error).message}); the bytes received are kept and the next load resumes from there`);
          }
          attempts = this.held > before ? 0 : attempts + 1;
          await sleep((this.net.retryDelayMs ?? 500) * Math.max(1, attempts), this.net.signal);
          const next = await this.request(this.held);
          if (next === 'restart') throw new Error(`${this.name}: the file changed on the server while it was being downloaded; reload to start over`);
          res = next;
        }
      }
      await this.commit();
      this.rec.complete = true;
      await this.store.setRecord(this.url, this.rec);
    } catch (e) {
      this.error = e;
      this.wake();
      throw e;
    }
    this.wake();
  }

  private async pump(res: Response): Promise<void> {
    if (!res.body) throw new Error(`${this.name}: the response has no body`);
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        if (this.held + value.byteLength > this.size) throw new Error(`${this.name}: the server sent more than the file's ${this.size} bytes`);
        this.net.onBytes?.(value.byteLength);
        for (let at = 0; at < value.byteLength; ) {
          const partLen = Math.min(this.P, this.size - this.memPart * this.P);
          this.mem ??= new Uint8Array(partLen);
          const n = Math.min(value.byteLength - at, partLen - this.memFill);
          this.mem.set(value.subarray(at, at + n), this.memFill);
          this.memFill += n;
          this.held += n;
          at += n;
          if (this.memFill === partLen) await this.commit();
        }
        this.wake();
      }
    } finally {
      reader.releaseLock();
    }
  }

  /** Writes the part being filled; a full part is then done and the next one starts. */
  private async commit(): Promise<void> {
    if (!this.mem || this.memFill === 0) return;
    const k = this.memPart;
    try {
      await writeFile(this.store.dir, `${this.rec.stem}.${k}`, this.mem.subarray(0, this.memFill));
    } catch (e) {
      throw await this.store.mapQuota(e, `${this.name} part ${k}`, this.memFill);
    }
    this.store.heldOfModel += this.memFill;
    const partLen = Math.min(this.P, this.size - k * this.P);
    if (this.memFill === partLen) {
      this.files.delete(k);
      this.memPart++;
      this.memFill = 0;
      this.mem = undefined;
    }
  }

  source(): ByteSource {
    const size = this.rec.size!;
    return {
      name: this.name,
      size,
      read: async (offset, length) => {
        checkRead(this.name, offset, length, size);
        const end = offset + length;
        while (this.held < end) {
          if (this.error !== undefined) throw this.error;
          await new Promise<void>((r) => this.waiters.push(r));
        }
        const out = new Uint8Array(length);
        // Copy the bytes still in memory now, before any await lets the part be reused.
        const memStart = this.memPart * this.P;
        if (this.mem && end > memStart) {
          const a = Math.max(offset, memStart);
          out.set(this.mem.subarray(a - memStart, end - memStart), a - offset);
        }
        const diskEnd = Math.min(end, memStart);
        if (diskEnd > offset) await readParts(this.store.dir, this.rec, offset, diskEnd - offset, out, 0, this.files);
        this.store.counters.cacheBytes += Math.max(0, Math.min(end, this.heldAtStart) - offset);
        return out;
      },
    };
  }
}
