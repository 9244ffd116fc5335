// Downloads a model from the Hugging Face hub (or a mirror speaking the same protocol) into a
// local cache folder in the Hugging Face layout, so the rest of the engine opens it like any
// model folder. Node only.
//
// Cache layout: `<cacheDir>/hub/<owner>--<name>/<revision>/` holding config.json, the weights
// (model.safetensors, or model.safetensors.index.json and its shards) and any optional files
// that exist. `/` in a revision becomes `--` in the folder name.
//
// Each file is downloaded to `<file>.incomplete`, resumed with a Range request after a cut
// connection (in this run or a later one), checked against the size the server announced and,
// when the hub gives one, the sha256 of the file (the hub's ETag / X-Linked-Etag for LFS files),
// and only then renamed to its final name: a file under its final name is always complete.
//
// When every file is in place, `.openelm-complete.json` records them; a later call that finds
// this marker (and every file it lists, with its size) returns at once without touching the
// network, so a cached model works offline. A revision is therefore fetched once: a cached
// `main` is not refreshed when the repository changes upstream. Delete the folder (or pass
// another revision, e.g. a commit hash) to get a newer snapshot. Two processes downloading the
// same model at the same time are not coordinated; the sha256 check catches the damage.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { INDEX_FILE, SINGLE_FILE } from './node-source.ts';
import { parseShardIndex } from './shard-index.ts';
import type { DownloadProgress } from './progress.ts';

export type { DownloadProgress } from './progress.ts';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';
export const CONFIG_FILE = 'config.json';
/** Written last into a snapshot folder: the files it holds, so a later call needs no network. */
export const COMPLETE_MARKER = '.openelm-complete.json';
const INCOMPLETE = '.incomplete';
const MAX_REDIRECTS = 10;
const USER_AGENT = 'openelm-webgpu';

export interface DownloadOptions {
  /** Access token for gated or private models; else $HF_TOKEN (then $HUGGING_FACE_HUB_TOKEN). */
  token?: string;
  /** Hub URL; else $HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Branch, tag or commit; default `main` (or the `@revision` of the repo id). */
  revision?: string;
  /** Cache root; else $OPENELM_CACHE, else ~/.cache/openelm-webgpu. Files go under hub/<owner>--<name>/<revision>/. */
  cacheDir?: string;
  /** Extra files fetched when the repository has them (a 404 skips them), e.g. tokenizer.json. */
  files?: string[];
  /** Called as bytes arrive (and once with done: true per finished file); see progressBar. */
  onProgress?: (p: DownloadProgress) => void;
  /** fetch to use (tests); default globalThis.fetch. */
  fetch?: typeof fetch;
  /** Attempts after the first for a cut connection or a 5xx/429 reply, per file; default 5. */
  retries?: number;
  /** Wait before retry n is n times this, at most 10 s; default 1000. */
  retryDelayMs?: number;
  /** A connection that delivers nothing for this long counts as cut; default 60000. */
  idleTimeoutMs?: number;
}

/** A download failure; `message` is one line meant for people. */
export class HubError extends Error {
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.name = 'HubError';
    this.status = status;
  }
}

// ---- Names ----

// Hugging Face's rules for each half of a repo id: word characters, '.', '-', starting and ending
// with a word character, at most 96 characters; '--' and '..' are not allowed.
const ID_PART = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$/;
const REVISION = /^[A-Za-z0-9_.\-/]{1,255}$/;

function repoIdProblem(repoId: string): string | undefined {
  const parts = repoId.split('/');
  if (parts.length !== 2) return 'expected owner/name';
  if (repoId.includes('..') || repoId.includes('--')) return 'it may not contain ".." or "--"';
  if (!parts.every((p) => ID_PART.test(p))) return 'owner and name may hold only letters, digits, "_", "-" and "." (not first or last), at most 96 each';
  return undefined;
}

function revisionProblem(rev: string): string | undefined {
  if (!REVISION.test(rev)) return 'it may hold only letters, digits, "_", "-", "." and "/"';
  if (rev.split('/').some((s) => s === '' || s === '.' || s === '..') || rev.includes('..')) return 'it may not contain "..", "//" or start or end with "/"';
  return undefined;
}

/** Splits `owner/name` or `owner/name@revision`; undefined when `s` is not of that form. */
export function parseHubId(s: string): { repoId: string; revision: string | undefined } | undefined {
  const at = s.indexOf('@');
  const repoId = at < 0 ? s : s.slice(0, at);
  const revision = at < 0 ? undefined : s.slice(at + 1);
  if (repoIdProblem(repoId) !== undefined) return undefined;
  if (revision !== undefined && revisionProblem(revision) !== undefined) return undefined;
  return { repoId, revision };
}

/** True for `owner/name` or `owner/name@revision` that is not an existing local path. */
export function isHubId(s: string): boolean {
  return parseHubId(s) !== undefined && !existsSync(s);
}

/**
 * Checks a file name taken from the hub or the caller: a relative path that stays inside the
 * model folder (no absolute path, no `.`/`..`/empty segment, no backslash or control character).
 * With `plain`, no folders either. Returns the problem, or undefined when the name is fine.
 */
export function fileNameProblem(name: unknown, plain = false): string | undefined {
  if (typeof name !== 'string') return `must be a string, got ${JSON.stringify(name)}`;
  if (name.length === 0) return 'is empty';
  if (name.length > 1024) return 'is too long';
  if (/[\u0000-\u001f\u007f\\]/.test(name)) return 'holds a backslash or a control character';
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) return 'is an absolute path';
  const segs = name.split('/');
  if (segs.some((s) => s === '' || s === '.' || s === '..')) return 'has an empty, "." or ".." path segment';
  if (plain && segs.length > 1) return 'must be a plain file name (no folders)';
  if (name.endsWith(INCOMPLETE) || name === COMPLETE_MARKER) return 'is reserved by the download cache';
  return undefined;
}

function safePath(dir: string, name: string, what: string): string {
  const problem = fileNameProblem(name);
  const p = resolve(dir, name);
  if (problem !== undefined || !p.startsWith(resolve(dir) + sep)) {
    throw new HubError(`${what}: ${JSON.stringify(name)} ${problem ?? 'leaves the model folder'}; refusing to write it`);
  }
  return p;
}

/** The cache root: `cacheDir`, else $OPENELM_CACHE, else ~/.cache/openelm-webgpu. */
export function cacheRoot(cacheDir?: string): string {
  return resolve(cacheDir ?? process.env.OPENELM_CACHE ?? join(homedir(), '.cache', 'openelm-webgpu'));
}

/** The folder a snapshot of `repoId` at `revision` is cached in. */
export function snapshotDir(repoId: string, revision = 'main', cacheDir?: string): string {
  const [owner, name] = repoId.split('/');
  return join(cacheRoot(cacheDir), 'hub', `${owner}--${name}`, revision.split('/').join('--'));
}

// ---- HTTP ----

interface Ctx {
  repoId: string;
  revision: string;
  endpoint: string;
  origin: string;
  token: string | undefined;
  tokenFrom: string;
  dir: string;
  fetch: typeof fetch;
  onProgress: ((p: DownloadProgress) => void) | undefined;
  retries: number;
  retryDelayMs: number;
  idleTimeoutMs: number;
  commit: string | undefined;
}

function fileUrl(ctx: Ctx, file: string): string {
  const path = file.split('/').map(encodeURIComponent).join('/');
  return `${ctx.endpoint}/${ctx.repoId}/resolve/${encodeURIComponent(ctx.revision)}/${path}`;
}

/** A network failure before any response: names the URL; `retryable` for transient causes. */
class NetError extends Error {
  constructor(
    readonly url: string,
    override readonly cause: unknown,
    readonly retryable: boolean,
  ) {
    super(`${url}: ${describeCause(cause)}`);
  }
}

class IdleTimeout extends Error {}

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

function describeCause(e: unknown): string {
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

interface Reply {
  res: Response;
  /** URL of the final response (after redirects). */
  url: string;
  /** The hub's answer before any redirect: its ETag is the one that names the content. */
  hubEtag: string | null;
  linkedEtag: string | null;
  linkedSize: string | null;
}

async function discard(res: Response): Promise<void> {
  try {
    await res.body?.cancel();
  } catch {
    // nothing to release
  }
}

/**
 * GET with redirects followed by hand, so the hub's own headers (X-Linked-Etag, X-Linked-Size,
 * ETag, X-Repo-Commit) are seen before the CDN answers, and the Authorization header is sent only
 * to the hub's origin (a CDN gets a signed URL instead).
 */
async function get(ctx: Ctx, url: string, headers: Record<string, string>, signal: AbortSignal): Promise<Reply> {
  let cur = url;
  let hubEtag: string | null = null;
  let linkedEtag: string | null = null;
  let linkedSize: string | null = null;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const h = { ...headers };
    if (new URL(cur).origin !== ctx.origin) delete h.authorization;
    let res: Response;
    try {
      res = await ctx.fetch(cur, { headers: h, redirect: 'manual', signal });
    } catch (e) {
      throw new NetError(cur, signal.aborted ? signal.reason : e, signal.aborted || isRetryable(e));
    }
    if (hop === 0) {
      hubEtag = res.headers.get('etag');
      ctx.commit ??= res.headers.get('x-repo-commit') ?? undefined;
    }
    linkedEtag ??= res.headers.get('x-linked-etag');
    linkedSize ??= res.headers.get('x-linked-size');
    if ([301, 302, 303, 307, 308].includes(res.status)) {
      const loc = res.headers.get('location');
      await discard(res);
      if (!loc) throw new HubError(`${ctx.repoId}: ${cur} answered HTTP ${res.status} without a Location header`, res.status);
      cur = new URL(loc, cur).href;
      if (!/^https?:$/.test(new URL(cur).protocol)) throw new HubError(`${ctx.repoId}: ${url} redirects to a non-HTTP URL (${cur})`);
      continue;
    }
    if (res.type === 'opaqueredirect') throw new HubError(`${ctx.repoId}: ${cur}: this fetch cannot follow redirects by hand (redirect: 'manual' gave an opaque response)`);
    return { res, url: cur, hubEtag, linkedEtag, linkedSize };
  }
  throw new HubError(`${ctx.repoId}: ${url}: more than ${MAX_REDIRECTS} redirects`);
}

/** The sha256 an ETag names: strong ETags of 64 hex digits (the hub's for LFS files). */
function shaOfEtag(etag: string | null): string | undefined {
  if (!etag || etag.startsWith('W/')) return undefined;
  const v = etag.replace(/^"|"$/g, '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(v) ? v : undefined;
}

function hubSays(res: Response): string {
  const m = res.headers.get('x-error-message');
  if (!m) return '';
  const clean = m.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return clean ? ` (hub: ${clean.length > 200 ? clean.slice(0, 200) + '...' : clean})` : '';
}

type FileKind = 'config' | 'index' | 'single' | 'shard' | 'optional';

function accessError(ctx: Ctx, res: Response): HubError {
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

function notFoundError(ctx: Ctx, file: string, kind: FileKind, url: string, res: Response): HubError {
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

async function statOrUndefined(p: string): Promise<{ size: number; isFile: boolean } | undefined> {
  try {
    const st = await stat(p);
    return { size: st.size, isFile: st.isFile() };
  } catch {
    return undefined;
  }
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function headerInt(v: string | null): number | undefined {
  if (v === null || !/^\d+$/.test(v.trim())) return undefined;
  const n = Number(v.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

type Attempt = { kind: 'done'; size: number } | { kind: 'absent' } | { kind: 'retry'; problem: string };

/**
 * Makes `file` present under its final name in ctx.dir: returns its size, or undefined when the
 * file is optional and the hub has none. A final file already on disk is taken as it is.
 */
async function fetchFile(ctx: Ctx, file: string, kind: FileKind): Promise<number | undefined> {
  const final = safePath(ctx.dir, file, `${ctx.repoId}: file name`);
  const have = await statOrUndefined(final);
  if (have?.isFile) return have.size;
  await mkdir(dirname(final), { recursive: true });
  const tmp = final + INCOMPLETE;
  const url = fileUrl(ctx, file);
  // Hash state carried across attempts of this call: it covers bytes [0, hashed) of tmp.
  const state: { hasher: Hash | undefined; hashed: number; sha: string | undefined } = { hasher: undefined, hashed: 0, sha: undefined };
  let problem = '';
  const attempts = ctx.retries + 1;
  for (let attempt = 0; attempt < attempts; attempt++) {
    if (attempt > 0 && ctx.retryDelayMs > 0) await sleep(Math.min(10_000, ctx.retryDelayMs * attempt));
    const r = await attemptOnce(ctx, file, kind, url, tmp, final, state);
    if (r.kind === 'done') return r.size;
    if (r.kind === 'absent') return undefined;
    problem = r.problem;
  }
  const kept = (await statOrUndefined(tmp))?.size ?? 0;
  throw new HubError(
    `${ctx.repoId}: downloading ${file} failed after ${attempts} attempts: ${problem}${kept > 0 ? `; the ${kept} bytes received are kept in ${tmp} and the next run resumes from there` : ''}`,
  );
}

async function attemptOnce(
  ctx: Ctx,
  file: string,
  kind: FileKind,
  url: string,
  tmp: string,
  final: string,
  state: { hasher: Hash | undefined; hashed: number; sha: string | undefined },
): Promise<Attempt> {
  const have = (await statOrUndefined(tmp))?.size ?? 0;
  const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': USER_AGENT };
  if (ctx.token) headers.authorization = `Bearer ${ctx.token}`;
  if (have > 0) headers.range = `bytes=${have}-`;

  const ac = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => ac.abort(new IdleTimeout(`no data for ${Math.round(ctx.idleTimeoutMs / 1000)} s`)), ctx.idleTimeoutMs);
  };
  arm();
  try {
    let reply: Reply;
    try {
      reply = await get(ctx, url, headers, ac.signal);
    } catch (e) {
      if (e instanceof NetError) {
        if (e.retryable) return { kind: 'retry', problem: `${e.url}: ${describeCause(e.cause)}` };
        throw new HubError(`${ctx.repoId}: could not download ${file}: ${e.url}: ${describeCause(e.cause)}`);
      }
      throw e;
    }
    const { res } = reply;
    const fromHub = new URL(reply.url).origin === ctx.origin;

    if (res.status === 404 && fromHub) {
      await discard(res);
      if (kind === 'optional' || kind === 'index') return { kind: 'absent' };
      throw notFoundError(ctx, file, kind, url, res);
    }
    if ((res.status === 401 || res.status === 403) && fromHub) {
      await discard(res);
      throw accessError(ctx, res);
    }
    if (res.status === 416 && have > 0) {
      // What we hold is not a prefix of the file any more (or is all of it, unverified): restart.
      await discard(res);
      await rm(tmp, { force: true });
      return { kind: 'retry', problem: `${reply.url} refused to resume at byte ${have} (HTTP 416)` };
    }
    if (res.status === 429 || res.status >= 500 || res.status === 401 || res.status === 403 || res.status === 404) {
      // Overload, server trouble, or a CDN refusing a (signed, fresh on every attempt) URL.
      await discard(res);
      return { kind: 'retry', problem: `HTTP ${res.status} ${res.statusText} from ${reply.url}` };
    }
    if (res.status !== 200 && res.status !== 206) {
      await discard(res);
      throw new HubError(`${ctx.repoId}: could not download ${file}: unexpected HTTP ${res.status} ${res.statusText} from ${reply.url}`, res.status);
    }

    const encoded = (res.headers.get('content-encoding') ?? 'identity').toLowerCase() !== 'identity';
    const length = encoded ? undefined : headerInt(res.headers.get('content-length'));
    const sha = shaOfEtag(reply.linkedEtag) ?? shaOfEtag(reply.hubEtag);
    const linkedSize = headerInt(reply.linkedSize);
    let start = 0;
    let total: number | undefined;
    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec((res.headers.get('content-range') ?? '').trim());
      if (!m || Number(m[1]) !== have || have === 0 || (state.sha !== undefined && sha !== undefined && sha !== state.sha)) {
        // Not the continuation we asked for, or the file changed on the hub: start over.
        await discard(res);
        await rm(tmp, { force: true });
        state.hasher = undefined;
        return { kind: 'retry', problem: `${reply.url} answered a resume request with an unusable range (${res.headers.get('content-range') ?? 'none'})` };
      }
      start = have;
      total = m[3] === '*' ? undefined : Number(m[3]);
      if (total === undefined && length !== undefined) total = start + length;
    } else {
      total = length;
    }
    total ??= linkedSize;
    state.sha = sha;
    if (start === 0) {
      state.hasher = sha ? createHash('sha256') : undefined;
      state.hashed = 0;
    } else if (state.hashed !== start) {
      state.hasher = undefined; // resumed from an earlier run: hash the file from disk at the end
    }

    const body = res.body;
    if (!body) throw new HubError(`${ctx.repoId}: ${reply.url} sent HTTP ${res.status} without a body`);
    const reader = body.getReader();
    const fh = await open(tmp, start > 0 ? 'a' : 'w');
    let received = start;
    let cut: string | undefined;
    let overflow = false;
    let ok = false;
    try {
      ctx.onProgress?.({ file, received, total });
      for (;;) {
        let chunk: Uint8Array;
        try {
          const r = await reader.read();
          if (r.done) break;
          chunk = r.value;
        } catch (e) {
          cut = `the connection broke after ${received}${total !== undefined ? ` of ${total}` : ''} bytes (${describeCause(ac.signal.aborted ? ac.signal.reason : e)})`;
          break;
        }
        arm();
        if (total !== undefined && received + chunk.byteLength > total) {
          overflow = true;
          break;
        }
        let off = 0;
        while (off < chunk.byteLength) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.byteLength - off, null);
          off += bytesWritten;
        }
        if (state.hasher && state.hashed === received) {
          state.hasher.update(chunk);
          state.hashed += chunk.byteLength;
        }
        received += chunk.byteLength;
        ctx.onProgress?.({ file, received, total });
      }
      ok = true;
    } finally {
      if (!ok || cut !== undefined || overflow) await reader.cancel().catch(() => {});
      await fh.close();
    }
    if (overflow) {
      await rm(tmp, { force: true });
      throw new HubError(`${ctx.repoId}: ${file}: ${reply.url} sent more than the ${total} bytes it announced; deleted the download, try again`);
    }
    if (cut !== undefined) return { kind: 'retry', problem: cut };
    if (total !== undefined && received < total) {
      return { kind: 'retry', problem: `the connection closed after ${received} of ${total} bytes` };
    }

    // Verify, then move into place.
    const fail = async (msg: string): Promise<never> => {
      await rm(tmp, { force: true });
      throw new HubError(`${ctx.repoId}: ${file}: ${msg}; deleted the download, try again`);
    };
    if (linkedSize !== undefined && received !== linkedSize) await fail(`got ${received} bytes, but the hub lists the file as ${linkedSize} bytes`);
    if (sha) {
      const digest = state.hasher && state.hashed === received ? state.hasher.digest('hex') : await sha256File(tmp);
      state.hasher = undefined;
      if (digest !== sha) await fail(`sha256 of the download is ${digest}, but the hub says ${sha} (corrupted in transit?)`);
    }
    await rename(tmp, final);
    ctx.onProgress?.({ file, received, total: received, done: true });
    return { kind: 'done', size: received };
  } finally {
    clearTimeout(timer);
  }
}

// ---- The model ----

interface Marker {
  repo: string;
  revision: string;
  commit?: string;
  files: Record<string, number>;
  absent: string[];
}

/** True when the marker lists every needed file and each is on disk with its recorded size. */
async function cachedComplete(dir: string, repoId: string, revision: string, optional: string[]): Promise<boolean> {
  let m: Marker;
  try {
    m = JSON.parse(await readFile(join(dir, COMPLETE_MARKER), 'utf8')) as Marker;
  } catch {
    return false;
  }
  if (!m || m.repo !== repoId || m.revision !== revision || typeof m.files !== 'object' || m.files === null || !Array.isArray(m.absent)) return false;
  const names = Object.keys(m.files);
  if (!names.includes(CONFIG_FILE) || !(names.includes(SINGLE_FILE) || names.includes(INDEX_FILE))) return false;
  if (!optional.every((f) => names.includes(f) || m.absent.includes(f))) return false;
  for (const [f, size] of Object.entries(m.files)) {
    if (fileNameProblem(f) !== undefined) return false;
    const st = await statOrUndefined(join(dir, f));
    if (!st?.isFile || st.size !== size) return false;
  }
  return true;
}

async function readJson(ctx: Ctx, file: string): Promise<unknown> {
  const path = join(ctx.dir, file);
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    await rm(path, { force: true }); // do not keep a bad file as if it were the hub's answer
    throw new HubError(`${ctx.repoId}: ${file} from ${fileUrl(ctx, file)} is not valid JSON (${(e as Error).message}); deleted it`);
  }
}

/** The distinct shard names of an index's weight_map, in order, each checked to be a plain file name. */
async function shardsOf(ctx: Ctx): Promise<string[]> {
  const where = `${ctx.repoId}: ${INDEX_FILE}`;
  const bad = async (msg: string): Promise<never> => {
    await rm(join(ctx.dir, INDEX_FILE), { force: true }); // do not keep a bad index as if it were the hub's answer
    throw new HubError(msg);
  };
  let byShard: Map<string, string[]>;
  try {
    byShard = parseShardIndex(await readFile(join(ctx.dir, INDEX_FILE), 'utf8'), where);
  } catch (e) {
    return bad((e as Error).message);
  }
  // The download cache is stricter than a local folder: its own marker names are reserved too.
  for (const [f, names] of byShard) {
    const problem = fileNameProblem(f, true);
    if (problem !== undefined) return bad(`${where}: weight_map["${names[0]}"] is ${JSON.stringify(f)}, which ${problem}: shard names must be plain file names inside the model folder`);
    if (f === CONFIG_FILE || f === INDEX_FILE) return bad(`${where}: weight_map["${names[0]}"] names ${f}, which is not a shard`);
  }
  return [...byShard.keys()];
}

/**
 * Downloads `repoId` (`owner/name`, optionally `owner/name@revision`) from the hub into the
 * cache and returns the local folder, in the Hugging Face layout: config.json, then
 * model.safetensors.index.json and its shards or else model.safetensors, then the optional
 * `files` the repository has. Files already complete in the cache are not fetched again, and a
 * snapshot completed before is returned without any request. Throws HubError with one clear line.
 */
export async function downloadModel(repoId: string, opts: DownloadOptions = {}): Promise<string> {
  const parsedAt = repoId.indexOf('@');
  let revision = opts.revision;
  if (parsedAt >= 0) {
    const fromId = repoId.slice(parsedAt + 1);
    repoId = repoId.slice(0, parsedAt);
    if (revision !== undefined && revision !== fromId) throw new HubError(`${repoId}: revision given twice ("@${fromId}" and "${revision}")`);
    revision = fromId;
  }
  const idProblem = repoIdProblem(repoId);
  if (idProblem !== undefined) throw new HubError(`${JSON.stringify(repoId)} is not a Hugging Face model id: ${idProblem}`);
  revision ??= 'main';
  const revProblem = revisionProblem(revision);
  if (revProblem !== undefined) throw new HubError(`${repoId}: revision ${JSON.stringify(revision)} is not usable: ${revProblem}`);

  const endpoint = (opts.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).trim().replace(/\/+$/, '');
  let origin: string;
  try {
    const u = new URL(endpoint);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
    origin = u.origin;
  } catch {
    throw new HubError(`hub endpoint ${JSON.stringify(endpoint)} is not an http(s) URL (set by --endpoint or HF_ENDPOINT)`);
  }

  const fromOption = opts.token !== undefined && opts.token.trim() !== '';
  const rawToken = fromOption ? opts.token : (process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN);
  const token = rawToken?.trim() || undefined;
  const tokenFrom = fromOption ? 'the access token given' : process.env.HF_TOKEN?.trim() ? 'the token in HF_TOKEN' : 'the token in HUGGING_FACE_HUB_TOKEN';
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) throw new HubError(`${repoId}: ${tokenFrom} holds spaces or non-ASCII characters; it is not a hub token`);

  const optional: string[] = [];
  for (const f of opts.files ?? []) {
    const problem = fileNameProblem(f);
    if (problem !== undefined) throw new HubError(`${repoId}: file name ${JSON.stringify(f)} ${problem}; refusing to download it`);
    if (f !== CONFIG_FILE && f !== INDEX_FILE && f !== SINGLE_FILE && !optional.includes(f)) optional.push(f);
  }

  const dir = snapshotDir(repoId, revision, opts.cacheDir);
  if (await cachedComplete(dir, repoId, revision, optional)) return dir;
  // The first folder this call creates (the cache root itself, on a first run), or undefined.
  const created = await mkdir(dir, { recursive: true });
  try {
    return await download(repoId, revision, endpoint, origin, token, tokenFrom, optional, dir, opts);
  } catch (e) {
    // Leave no empty folders behind (a mistyped id, a refused token): the snapshot folder, its
    // repository folder, and every parent this call created (hub/, the cache root). rmdir fails
    // on non-empty ones, which keeps partial downloads for resuming and other repositories' files.
    const stop = dirname(created ?? dirname(dir));
    for (let d = dir; d !== stop && d !== dirname(d); d = dirname(d)) {
      if (!(await rmdir(d).then(() => true, () => false))) break;
    }
    throw e;
  }
}

async function download(
  repoId: string,
  revision: string,
  endpoint: string,
  origin: string,
  token: string | undefined,
  tokenFrom: string,
  optional: string[],
  dir: string,
  opts: DownloadOptions,
): Promise<string> {
  const fetchImpl = opts.fetch ?? globalThis.fetch;
  if (typeof fetchImpl !== 'function') throw new HubError(`${repoId}: no fetch available to download with (Node 18+ has one)`);
  const ctx: Ctx = {
    repoId,
    revision,
    endpoint,
    origin,
    token,
    tokenFrom,
    dir,
    fetch: fetchImpl,
    onProgress: opts.onProgress,
    retries: Math.max(0, Math.floor(opts.retries ?? 5)),
    retryDelayMs: Math.max(0, opts.retryDelayMs ?? 1000),
    idleTimeoutMs: Math.max(1, opts.idleTimeoutMs ?? 60_000),
    commit: undefined,
  };

  const files: Record<string, number> = {};
  const absent: string[] = [];
  files[CONFIG_FILE] = (await fetchFile(ctx, CONFIG_FILE, 'config')) as number;
  const config = await readJson(ctx, CONFIG_FILE);
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    await rm(join(dir, CONFIG_FILE), { force: true });
    throw new HubError(`${repoId}: ${CONFIG_FILE} is not a JSON object; deleted it`);
  }

  // Weights: the index and its shards when the hub has an index, else the single file. A single
  // file already complete locally (and no local index) settles it without asking.
  const localIndex = await statOrUndefined(join(dir, INDEX_FILE));
  const localSingle = await statOrUndefined(join(dir, SINGLE_FILE));
  const indexSize = localSingle?.isFile && !localIndex?.isFile ? undefined : await fetchFile(ctx, INDEX_FILE, 'index');
  if (indexSize !== undefined) {
    files[INDEX_FILE] = indexSize;
    for (const shard of await shardsOf(ctx)) files[shard] = (await fetchFile(ctx, shard, 'shard')) as number;
  } else {
    files[SINGLE_FILE] = (await fetchFile(ctx, SINGLE_FILE, 'single')) as number;
  }

  for (const f of optional) {
    const size = await fetchFile(ctx, f, 'optional');
    if (size === undefined) absent.push(f);
    else files[f] = size;
  }

  // Keep what an earlier marker knew about other optional files, so asking for fewer files later
  // still finds the snapshot complete.
  try {
    const old = JSON.parse(await readFile(join(dir, COMPLETE_MARKER), 'utf8')) as Marker;
    if (old && old.repo === repoId && old.revision === revision) {
      for (const f of Array.isArray(old.absent) ? old.absent : []) if (typeof f === 'string' && !(f in files) && !absent.includes(f)) absent.push(f);
      for (const [f, size] of Object.entries(old.files ?? {})) {
        if (f in files || fileNameProblem(f) !== undefined) continue;
        const st = await statOrUndefined(join(dir, f));
        if (st?.isFile && st.size === size) files[f] = size;
      }
    }
  } catch {
    // no earlier marker
  }
  const marker: Marker = { repo: repoId, revision, ...(ctx.commit ? { commit: ctx.commit } : {}), files, absent };
  const markerPath = join(dir, COMPLETE_MARKER);
  await writeFile(markerPath + INCOMPLETE, JSON.stringify(marker, null, 2) + '\n');
  await rename(markerPath + INCOMPLETE, markerPath);
  return dir;
}
