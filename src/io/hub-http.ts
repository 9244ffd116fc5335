// Talking to the hub (or a mirror speaking its protocol): requests with redirects followed by hand,
// errors turned into one line for people, and the metadata request that names a file's blob.
import { HubError } from './hub-names.ts';
import { CONFIG_FILE } from './hf-cache.ts';
import { INDEX_FILE, SINGLE_FILE } from './node-source.ts';
import type { DownloadProgress } from './progress.ts';

const MAX_REDIRECTS = 10;
const USER_AGENT = 'openelm-webgpu';

/** One download call's settings and what it learned so far. */
export interface Ctx {
  repoId: string;
  /** The revision asked for (a branch, tag or commit). */
  revision: string;
  /** The revision put in URLs: `revision` until the commit is known, then the commit, so every file comes from one commit. */
  urlRevision: string;
  endpoint: string;
  origin: string;
  token: string | undefined;
  tokenFrom: string;
  fetch: typeof fetch;
  onProgress: ((p: DownloadProgress) => void) | undefined;
  retries: number;
  retryDelayMs: number;
  idleTimeoutMs: number;
}

export function fileUrl(ctx: Ctx, file: string): string {
  const path = file.split('/').map(encodeURIComponent).join('/');
  return `${ctx.endpoint}/${ctx.repoId}/resolve/${encodeURIComponent(ctx.urlRevision)}/${path}`;
}

export function requestHeaders(ctx: Ctx): Record<string, string> {
  const h: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': USER_AGENT };
  if (ctx.token) h.authorization = `Bearer ${ctx.token}`;
  return h;
}

/** A network failure before any response: names the URL; `retryable` for transient causes. */
export class NetError extends Error {
  constructor(
    readonly url: string,
    override readonly cause: unknown,
    readonly retryable: boolean,
  ) {
    super(`${url}: ${describeCause(cause)}`);
  }
}

export class IdleTimeout extends Error {}

const RETRYABLE_CODES = new Set([
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

function errorCode(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

/** The innermost useful cause of a fetch failure (fetch wraps them in TypeError('fetch failed')). */
function rootCause(e: unknown): unknown {
  let c = e;
  for (let i = 0; i < 5; i++) {
    if (c instanceof AggregateError && c.errors.length > 0 && !c.message) {
      const code = errorCode(c);
      c = c.errors[0];
      if (code && !errorCode(c)) return Object.assign(new Error(String((c as Error)?.message ?? c)), { code });
      continue;
    }
    if (c instanceof Error && c.cause !== undefined && (c.message === 'fetch failed' || c.message === 'terminated' || !c.message)) {
      c = c.cause;
      continue;
    }
    break;
  }
  return c;
}

export function describeCause(e: unknown): string {
  const c = rootCause(e);
  if (c instanceof IdleTimeout) return c.message;
  const code = errorCode(c);
  const msg = (c instanceof Error ? c.message : String(c)).replace(/\s+/g, ' ').trim();
  if (!msg) return code ?? 'unknown error';
  return code && !msg.includes(code) ? `${msg} (${code})` : msg;
}

function isRetryable(e: unknown): boolean {
  const c = rootCause(e);
  if (c instanceof IdleTimeout) return true;
  for (let x: unknown = e, i = 0; x && i < 5; x = (x as { cause?: unknown }).cause, i++) {
    const code = errorCode(x);
    if (code && RETRYABLE_CODES.has(code)) return true;
  }
  const code = errorCode(c);
  return code !== undefined && RETRYABLE_CODES.has(code);
}

export interface Reply {
  res: Response;
  /** URL of the final response (after redirects). */
  url: string;
  /** The first X-Repo-Commit on the way (a same-origin redirect may carry it, the final answer not). */
  commit: string | null;
  linkedEtag: string | null;
  linkedSize: string | null;
}

export async function discard(res: Response): Promise<void> {
  try {
    await res.body?.cancel();
  } catch {
    // nothing to release
  }
}

/**
 * GET (or HEAD) with redirects followed by hand, so the hub's own headers (X-Linked-Etag,
 * X-Linked-Size, X-Repo-Commit) are seen before the CDN answers, and the Authorization header is
 * sent only to the hub's origin (a CDN gets a signed URL instead). A HEAD stops at a redirect to
 * another origin.
 */
export async function get(ctx: Ctx, url: string, headers: Record<string, string>, signal: AbortSignal, method: 'GET' | 'HEAD' = 'GET'): Promise<Reply> {
  let cur = url;
  let commit: string | null = null;
  let linkedEtag: string | null = null;
  let linkedSize: string | null = null;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const h = { ...headers };
    if (new URL(cur).origin !== ctx.origin) delete h.authorization;
    let res: Response;
    try {
      res = await ctx.fetch(cur, { method, headers: h, redirect: 'manual', signal });
    } catch (e) {
      throw new NetError(cur, signal.aborted ? signal.reason : e, signal.aborted || isRetryable(e));
    }
    commit ??= res.headers.get('x-repo-commit');
    linkedEtag ??= res.headers.get('x-linked-etag');
    linkedSize ??= res.headers.get('x-linked-size');
    if ([301, 302, 303, 307, 308].includes(res.status)) {
      const loc = res.headers.get('location');
      if (!loc) throw new HubError(`${ctx.repoId}: ${cur} answered HTTP ${res.status} without a Location header`, res.status);
      const next = new URL(loc, cur).href;
      // A metadata request stops at the hub: a redirect elsewhere (the CDN) carries what it needs.
      if (method === 'HEAD' && new URL(next).origin !== ctx.origin) return { res, url: cur, commit, linkedEtag, linkedSize };
      await discard(res);
      cur = next;
      if (!/^https?:$/.test(new URL(cur).protocol)) throw new HubError(`${ctx.repoId}: ${url} redirects to a non-HTTP URL (${cur})`);
      continue;
    }
    if (res.type === 'opaqueredirect') throw new HubError(`${ctx.repoId}: ${cur}: this fetch cannot follow redirects by hand (redirect: 'manual' gave an opaque response)`);
    return { res, url: cur, commit, linkedEtag, linkedSize };
  }
  throw new HubError(`${ctx.repoId}: ${url}: more than ${MAX_REDIRECTS} redirects`);
}

function hubSays(res: Response): string {
  const m = res.headers.get('x-error-message');
  if (!m) return '';
  const clean = m.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return clean ? ` (hub: ${clean.length > 200 ? clean.slice(0, 200) + '...' : clean})` : '';
}

export type FileKind = 'config' | 'index' | 'single' | 'shard' | 'optional';

export function accessError(ctx: Ctx, res: Response): HubError {
  const s = res.status;
  const code = res.headers.get('x-error-code');
  const id = ctx.repoId;
  if (!ctx.token) {
    if (code === 'RepoNotFound') {
      return new HubError(`${id}: not found at ${ctx.endpoint} (HTTP ${s}): check the model id; if it is private or gated, pass --hf_access_token TOKEN or set HF_TOKEN`, s);
    }
    return new HubError(`${id}: the hub refused access (HTTP ${s}); this model is gated: pass --hf_access_token TOKEN or set HF_TOKEN`, s);
  }
  if (code === 'RepoNotFound') {
    return new HubError(`${id}: not found at ${ctx.endpoint} (HTTP ${s}), or ${ctx.tokenFrom} cannot see it: check the model id and the token`, s);
  }
  if (s === 401) {
    return new HubError(`${id}: the hub refused ${ctx.tokenFrom} (HTTP 401): it is invalid or expired; create a read token at ${ctx.endpoint}/settings/tokens${hubSays(res)}`, s);
  }
  return new HubError(
    `${id}: the hub refused access with ${ctx.tokenFrom} (HTTP ${s}): this model is gated; accept its license at ${ctx.endpoint}/${id} with the token's account (a fine-grained token also needs read access to gated repos)${hubSays(res)}`,
    s,
  );
}

export function notFoundError(ctx: Ctx, file: string, kind: FileKind, url: string, res: Response): HubError {
  const code = res.headers.get('x-error-code');
  const id = ctx.repoId;
  const rev = ctx.revision;
  if (code === 'RepoNotFound') return new HubError(`${id}: model not found at ${ctx.endpoint} (HTTP 404): check the model id`, 404);
  if (code === 'RevisionNotFound') return new HubError(`${id}: revision "${rev}" not found at ${ctx.endpoint} (HTTP 404): check --revision`, 404);
  switch (kind) {
    case 'config':
      if (code === 'EntryNotFound') return new HubError(`${id}: has no ${CONFIG_FILE} at revision "${rev}" (HTTP 404 from ${url}): is it a Hugging Face model repository?`, 404);
      return new HubError(`${id}: model id or revision "${rev}" not found at ${ctx.endpoint} (HTTP 404 for ${url}): check the model id and --revision`, 404);
    case 'single':
      return new HubError(`${id}: no weights at revision "${rev}": neither ${SINGLE_FILE} nor ${INDEX_FILE} exists (HTTP 404 from ${url}); only safetensors weights are supported`, 404);
    case 'shard':
      return new HubError(`${id}: shard "${file}" listed in ${INDEX_FILE} was not found (HTTP 404 from ${url})`, 404);
    default:
      return new HubError(`${id}: ${file} not found (HTTP 404 from ${url})`, 404);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function headerInt(v: string | null): number | undefined {
  if (v === null || !/^\d+$/.test(v.trim())) return undefined;
  const n = Number(v.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

/** What the hub says about one file at a revision, before any byte of it is downloaded. */
export interface FileMeta {
  /** X-Repo-Commit: the commit the revision resolves to. */
  commit: string | undefined;
  /** The blob name: X-Linked-Etag (an LFS file's sha256), else the ETag; without W/ and quotes. */
  etag: string | undefined;
  /** X-Linked-Size, else the Content-Length of a direct answer. */
  size: number | undefined;
}

/** An ETag header as huggingface_hub names blobs by it: without a weak marker or quotes. */
export function normalizeEtag(v: string | null): string | undefined {
  if (!v) return undefined;
  const s = v.trim().replace(/^W\//, '').replace(/^"|"$/g, '');
  return s || undefined;
}

/**
 * A HEAD request for `file` at ctx.urlRevision (as huggingface_hub makes before downloading),
 * retried like a download: the commit, blob name and size, or 'absent' for a 404 of an optional
 * file or the index. Same-origin redirects (a renamed repository) are followed; a redirect to a
 * CDN is not, its X-Linked-* headers say all that is needed.
 */
export async function headFile(ctx: Ctx, file: string, kind: FileKind): Promise<FileMeta | 'absent'> {
  const url = fileUrl(ctx, file);
  let problem = '';
  const attempts = ctx.retries + 1;
  for (let attempt = 0; attempt < attempts; attempt++) {
    if (attempt > 0 && ctx.retryDelayMs > 0) await sleep(Math.min(10_000, ctx.retryDelayMs * attempt));
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new IdleTimeout(`no answer for ${Math.round(ctx.idleTimeoutMs / 1000)} s`)), ctx.idleTimeoutMs);
    let reply: Reply;
    try {
      reply = await get(ctx, url, requestHeaders(ctx), ac.signal, 'HEAD');
    } catch (e) {
      if (e instanceof NetError && e.retryable) {
        problem = `${e.url}: ${describeCause(e.cause)}`;
        continue;
      }
      if (e instanceof NetError) throw new HubError(`${ctx.repoId}: could not download ${file}: ${e.url}: ${describeCause(e.cause)}`);
      throw e;
    } finally {
      clearTimeout(timer);
    }
    const { res } = reply;
    await discard(res);
    if (res.status === 404) {
      if (kind === 'optional' || kind === 'index') return 'absent';
      throw notFoundError(ctx, file, kind, url, res);
    }
    if (res.status === 401 || res.status === 403) throw accessError(ctx, res);
    if (res.status === 429 || res.status >= 500) {
      problem = `HTTP ${res.status} ${res.statusText} from ${reply.url}`;
      continue;
    }
    if (res.status < 200 || res.status >= 400) {
      throw new HubError(`${ctx.repoId}: could not download ${file}: unexpected HTTP ${res.status} ${res.statusText} from ${reply.url}`, res.status);
    }
    const direct = res.status < 300 && (res.headers.get('content-encoding') ?? 'identity').toLowerCase() === 'identity';
    return {
      commit: reply.commit?.trim() || undefined,
      etag: normalizeEtag(reply.linkedEtag ?? res.headers.get('etag')),
      size: headerInt(reply.linkedSize) ?? (direct ? headerInt(res.headers.get('content-length')) : undefined),
    };
  }
  throw new HubError(`${ctx.repoId}: asking ${url} about ${file} failed after ${attempts} attempts: ${problem}`);
}
