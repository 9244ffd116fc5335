// ByteSources for browsers (and any runtime with fetch and Blob): a file on a web server read with
// HTTP Range requests, fetching only the byte ranges asked for, and a File/Blob the user picked.
// No Node modules: this file is part of the browser bundle.
import type { ByteSource } from './safetensors.ts';

/** An HTTP failure, one line for people; `status` is the HTTP status (undefined: no response). */
export class HttpError extends Error {
  readonly status: number | undefined;
  readonly url: string;
  constructor(url: string, message: string, status?: number) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.url = url;
  }
}

export interface HttpSourceOptions {
  /** fetch to use; default globalThis.fetch. */
  fetch?: typeof fetch;
  /** Extra request headers (e.g. Authorization for a gated Hugging Face model). */
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Attempts after the first for a network error or a 5xx/429 reply, per request; default 3. */
  retries?: number;
  /** Wait before retry n is n times this; default 500 ms. */
  retryDelayMs?: number;
  /** Called as response bytes arrive (network bytes only). */
  onBytes?: (n: number) => void;
  /** Name in error messages; default the URL. */
  name?: string;
}

/** A ByteSource over HTTP; `rangeRequests` is false when the server ignored Range (the file is then fetched once, whole). */
export interface HttpByteSource extends ByteSource {
  readonly url: string;
  readonly rangeRequests: boolean;
  /** Requests made so far (the size probe included). */
  readonly requests: number;
}

export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** The HttpError for an unwanted status, with a hint for the common ones. */
export function describeStatus(url: string, res: Response, name: string): HttpError {
  const s = res.status;
  const hint =
    s === 404
      ? 'not found'
      : s === 401 || s === 403
        ? 'access denied (a gated or private model needs an access token: the hub.token option)'
        : s === 416
          ? 'the server refused the byte range'
          : res.statusText || 'request failed';
  return new HttpError(url, `${name}: HTTP ${s} ${hint}`, s);
}

function isAbort(e: unknown): boolean {
  return e instanceof Error && (e.name === 'AbortError' || e.name === 'TimeoutError');
}

/**
 * fetch with retries for network errors and 5xx/429 replies. Other statuses are returned as they
 * are, for the caller to judge.
 */
export async function fetchRetrying(url: string, init: RequestInit, o: HttpSourceOptions, name: string): Promise<Response> {
  const f = o.fetch ?? globalThis.fetch.bind(globalThis);
  const retries = o.retries ?? 3;
  const delay = o.retryDelayMs ?? 500;
  for (let attempt = 0; ; attempt++) {
    o.signal?.throwIfAborted();
    let res: Response | undefined;
    let err: unknown;
    try {
      res = await f(url, { ...init, signal: o.signal });
    } catch (e) {
      if (isAbort(e) || o.signal?.aborted) throw o.signal?.reason ?? e;
      err = e;
    }
    const retryable = res === undefined || res.status >= 500 || res.status === 429;
    if (!retryable) return res!;
    if (attempt >= retries) {
      if (res) throw describeStatus(url, res, name);
      throw new HttpError(url, `${name}: network error (${(err as Error)?.message ?? String(err)}); is the server reachable, and does it allow this page's origin (CORS)?`);
    }
    await res?.body?.cancel().catch(() => {});
    await sleep(delay * (attempt + 1), o.signal);
  }
}

/** Reads a response body of exactly `length` bytes into a fresh buffer, reporting progress. */
async function readBody(res: Response, length: number, name: string, onBytes?: (n: number) => void): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  if (!res.body) {
    const b = new Uint8Array(await res.arrayBuffer());
    if (b.byteLength !== length) throw new Error(`${name}: the server sent ${b.byteLength} bytes, expected ${length}`);
    onBytes?.(b.byteLength);
    out.set(b);
    return out;
  }
  const reader = res.body.getReader();
  let at = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (at + value.byteLength > length) {
      await reader.cancel().catch(() => {});
      throw new Error(`${name}: the server sent more than the ${length} bytes asked for`);
    }
    out.set(value, at);
    at += value.byteLength;
    onBytes?.(value.byteLength);
  }
  if (at !== length) throw new Error(`${name}: the connection ended after ${at} of ${length} bytes`);
  return out;
}

/** `bytes START-END/SIZE` (or `bytes * /SIZE`): the parts, or undefined when unreadable. */
export function parseContentRange(v: string | null): { start?: number; end?: number; size?: number } | undefined {
  if (!v) return undefined;
  const m = /^bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)$/i.exec(v.trim());
  if (!m) return undefined;
  return {
    start: m[1] !== undefined ? Number(m[1]) : undefined,
    end: m[2] !== undefined ? Number(m[2]) : undefined,
    size: m[3] !== '*' ? Number(m[3]) : undefined,
  };
}

/**
 * Opens a file on a web server. One request learns the size (`Range: bytes=0-0`); each `read`
 * then fetches exactly the range asked for. A server that ignores Range gets one whole-file
 * request, kept as a Blob that later reads slice (the browser may keep a large Blob on disk).
 * A 404 throws an HttpError with status 404.
 */
export async function httpSource(url: string, o: HttpSourceOptions = {}): Promise<HttpByteSource> {
  const name = o.name ?? url;
  const headers = o.headers ?? {};
  let requests = 0;
  let whole: Promise<Blob> | undefined;

  const probe = await fetchRetrying(url, { headers: { ...headers, Range: 'bytes=0-0' } }, o, name);
  requests++;
  let size: number;
  let ranges: boolean;
  if (probe.status === 206) {
    const cr = parseContentRange(probe.headers.get('Content-Range'));
    await probe.body?.cancel().catch(() => {});
    if (cr?.size === undefined) {
      // Cross-origin servers must expose Content-Range; try a HEAD for Content-Length instead.
      const head = await fetchRetrying(url, { method: 'HEAD', headers }, o, name);
      requests++;
      const len = Number(head.headers.get('Content-Length') ?? NaN);
      if (!head.ok || !Number.isSafeInteger(len)) {
        throw new HttpError(url, `${name}: cannot learn the file's size (the server hides Content-Range and Content-Length from this page; it must list them in Access-Control-Expose-Headers)`);
      }
      size = len;
    } else {
      size = cr.size;
    }
    ranges = true;
  } else if (probe.status === 416) {
    // Only an empty file has no byte 0.
    await probe.body?.cancel().catch(() => {});
    size = parseContentRange(probe.headers.get('Content-Range'))?.size ?? 0;
    ranges = true;
  } else if (probe.ok) {
    // Range ignored: this response is the whole file. Keep it rather than fetch it twice.
    ranges = false;
    const len = Number(probe.headers.get('Content-Length') ?? NaN);
    whole = probe.blob().then((b) => {
      o.onBytes?.(b.size);
      return b;
    });
    size = Number.isSafeInteger(len) ? len : (await whole).size;
  } else {
    await probe.body?.cancel().catch(() => {});
    throw describeStatus(url, probe, name);
  }

  const src: HttpByteSource = {
    name,
    url,
    size,
    rangeRequests: ranges,
    get requests() {
      return requests;
    },
    async read(offset: number, length: number): Promise<Uint8Array> {
      if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= size)) {
        throw new Error(`${name}: read of ${length} bytes at offset ${offset} is past the end of the file (${size} bytes)`);
      }
      if (length === 0) return new Uint8Array(0);
      o.signal?.throwIfAborted();
      if (!ranges) {
        if (!whole) {
          requests++;
          whole = fetchRetrying(url, { headers }, o, name).then(async (r) => {
            if (!r.ok) throw describeStatus(url, r, name);
            const b = await r.blob();
            o.onBytes?.(b.size);
            return b;
          });
        }
        const b = await whole;
        if (b.size !== size) throw new Error(`${name}: the file is now ${b.size} bytes, it was ${size}`);
        return new Uint8Array(await b.slice(offset, offset + length).arrayBuffer());
      }
      const end = offset + length - 1;
      const res = await fetchRetrying(url, { headers: { ...headers, Range: `bytes=${offset}-${end}` } }, o, name);
      requests++;
      if (res.status === 206) {
        const cr = parseContentRange(res.headers.get('Content-Range'));
        if (cr && (cr.start !== offset || cr.end !== end)) {
          await res.body?.cancel().catch(() => {});
          throw new Error(`${name}: asked for bytes ${offset}-${end}, the server sent ${cr.start}-${cr.end}`);
        }
        if (cr?.size !== undefined && cr.size !== size) {
          await res.body?.cancel().catch(() => {});
          throw new Error(`${name}: the file changed on the server while reading (now ${cr.size} bytes, was ${size}); reload to start over`);
        }
        return readBody(res, length, name, o.onBytes);
      }
      if (res.ok) {
        // The server stopped honouring Range: take the whole file from this response.
        ranges = false;
        whole = res.blob().then((b) => {
          o.onBytes?.(b.size);
          return b;
        });
        return src.read(offset, length);
      }
      await res.body?.cancel().catch(() => {});
      throw describeStatus(url, res, name);
    },
  };
  return src;
}

/** A Blob or File (e.g. one the user picked) as a ByteSource: each read slices it. */
export function blobSource(blob: Blob, name: string = (blob as File).name ?? 'blob'): ByteSource {
  const size = blob.size;
  return {
    name,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= size)) {
        throw new Error(`${name}: read of ${length} bytes at offset ${offset} is past the end of the file (${size} bytes)`);
      }
      if (length === 0) return new Uint8Array(0);
      try {
        return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
      } catch (e) {
        throw new Error(`${name}: cannot read the file (${(e as Error).message}); was it moved or changed after it was picked?`);
      }
    },
  };
}

/**
 * A small file's bytes over HTTP (config.json, tokenizer files). Returns undefined on a 404, so
 * callers can look for optional files; any other failure throws.
 */
export async function fetchOptional(url: string, o: HttpSourceOptions = {}): Promise<Uint8Array | undefined> {
  const name = o.name ?? url;
  const res = await fetchRetrying(url, { headers: o.headers ?? {} }, o, name);
  if (res.status === 404) {
    await res.body?.cancel().catch(() => {});
    return undefined;
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => {});
    throw describeStatus(url, res, name);
  }
  const b = new Uint8Array(await res.arrayBuffer());
  o.onBytes?.(b.byteLength);
  return b;
}
