// Downloads a model from the Hugging Face hub (or a mirror speaking the same protocol) into the
// Hugging Face cache, laid out as Python's huggingface_hub lays it out (see hf-cache.ts), so one
// copy serves both: a model Python fetched loads here without a request, and one fetched here is
// found by transformers. Returns the snapshot folder, which the engine opens like any model folder.
// Node only.
//
// Order of a call: a snapshot the cache already holds for the revision (refs/<revision>, or the
// revision itself when it is a commit sha) with config.json and the weights is returned with no
// request at all; a cached branch is therefore not refreshed (pass owner/name@<commit> or delete
// refs/<branch> to move on). With HF_HUB_OFFLINE=1 a miss is an error. Otherwise config.json's
// answer names the commit (X-Repo-Commit), which is recorded in refs/<revision> and pinned for
// every other file, so a snapshot never mixes commits. Each file is asked about first (HEAD: blob
// name, size), then downloaded into its blob unless the blob is there already (see hub-download.ts
// for resume and verification), then linked into the snapshot. Optional files the hub lacks are
// recorded in .no_exist/ as huggingface_hub does. Two processes downloading the same file at once
// are not coordinated; the size and sha256 checks catch the damage.
import { readFile, realpath, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { INDEX_FILE, SINGLE_FILE } from './node-source.ts';
import { parseShardIndex } from './shard-index.ts';
import { blobPath, CONFIG_FILE, hubOffline, isCommitHash, isFile, linkBlob, localCommit, markAbsent, repoCacheDir, snapshotComplete, snapshotPath, writeRef } from './hf-cache.ts';
import { fileNameProblem, HubError, repoIdProblem, revisionProblem } from './hub-names.ts';
import { fileUrl, headFile, type Ctx, type FileKind, type FileMeta } from './hub-http.ts';
import { downloadBlob } from './hub-download.ts';
import type { DownloadProgress } from './progress.ts';

export type { DownloadProgress } from './progress.ts';
export { HubError, fileNameProblem, isHubId, parseHubId } from './hub-names.ts';
export { CONFIG_FILE, hubCacheDir, hubOffline, repoCacheDir } from './hf-cache.ts';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export interface DownloadOptions {
  /** Access token for gated or private models; else $HF_TOKEN, $HUGGING_FACE_HUB_TOKEN, then the file `huggingface-cli login` writes ($HF_TOKEN_PATH, else $HF_HOME/token). */
  token?: string;
  /** Hub URL; else $HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Branch, tag or commit; default `main` (or the `@revision` of the repo id). */
  revision?: string;
  /** Hub cache root; else $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub (shared with Python). */
  cacheDir?: string;
  /** Never touch the network: only the cache. Default: $HF_HUB_OFFLINE (or $TRANSFORMERS_OFFLINE) is 1/true/yes/on. */
  offline?: boolean;
  /** Extra files fetched along with a download when the repository has them (a 404 skips them), e.g. tokenizer.json. */
  files?: string[];
  /** Called as bytes arrive (and once with done: true per finished file); see progressBar. */
  onProgress?: (p: DownloadProgress) => void;
  /** fetch to use (tests); default globalThis.fetch. */
  fetch?: typeof fetch;
  /** Attempts after the first for a cut connection or a 5xx/429 reply, per request; default 5. */
  retries?: number;
  /** Wait before retry n is n times this, at most 10 s; default 1000. */
  retryDelayMs?: number;
  /** A connection that delivers nothing for this long counts as cut; default 60000. */
  idleTimeoutMs?: number;
}

/**
 * The engine's own cache root, for what only this engine uses (kernel tuning results, synthetic
 * models): `cacheDir`, else $OPENELM_CACHE, else ~/.cache/openelm-webgpu. Hub downloads go to the
 * Hugging Face cache instead (hubCacheDir).
 */
export function cacheRoot(cacheDir?: string): string {
  return resolve(cacheDir ?? process.env.OPENELM_CACHE ?? join(homedir(), '.cache', 'openelm-webgpu'));
}

const isDir = (p: string): Promise<boolean> => stat(p).then((s) => s.isDirectory(), () => false);

/** A file in a snapshot, checked to stay inside it. */
function safePath(dir: string, name: string, what: string): string {
  const problem = fileNameProblem(name);
  const p = resolve(dir, name);
  if (problem !== undefined || !p.startsWith(resolve(dir) + sep)) {
    throw new HubError(`${what}: ${JSON.stringify(name)} ${problem ?? 'leaves the model folder'}; refusing to write it`);
  }
  return p;
}

/** The token and where it came from (for error messages), or undefined. */
async function findToken(repoId: string, given: string | undefined): Promise<{ token: string | undefined; tokenFrom: string }> {
  let token: string | undefined;
  let tokenFrom = '';
  if (given !== undefined && given.trim() !== '') [token, tokenFrom] = [given.trim(), 'the access token given'];
  else if (process.env.HF_TOKEN?.trim()) [token, tokenFrom] = [process.env.HF_TOKEN.trim(), 'the token in HF_TOKEN'];
  else if (process.env.HUGGING_FACE_HUB_TOKEN?.trim()) [token, tokenFrom] = [process.env.HUGGING_FACE_HUB_TOKEN.trim(), 'the token in HUGGING_FACE_HUB_TOKEN'];
  else {
    const home = process.env.HF_HOME?.trim() || join(process.env.XDG_CACHE_HOME?.trim() || join(homedir(), '.cache'), 'huggingface');
    const file = process.env.HF_TOKEN_PATH?.trim() || join(home, 'token');
    const saved = (await readFile(file, 'utf8').catch(() => '')).trim();
    if (saved) [token, tokenFrom] = [saved, `the token in ${file}`];
  }
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) throw new HubError(`${repoId}: ${tokenFrom} holds spaces or non-ASCII characters; it is not a hub token`);
  return { token, tokenFrom };
}

/**
 * Returns the snapshot folder of `repoId` (`owner/name`, optionally `owner/name@revision`) in the
 * Hugging Face cache, downloading what it lacks: config.json, then model.safetensors.index.json
 * and its shards or else model.safetensors, then the optional `files` the repository has. Throws
 * HubError with one clear line.
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

  const optional: string[] = [];
  for (const f of opts.files ?? []) {
    const problem = fileNameProblem(f);
    if (problem !== undefined) throw new HubError(`${repoId}: file name ${JSON.stringify(f)} ${problem}; refusing to download it`);
    if (f !== CONFIG_FILE && f !== INDEX_FILE && f !== SINGLE_FILE && !optional.includes(f)) optional.push(f);
  }

  // The cache first: a complete snapshot needs no request, whoever downloaded it.
  const repoDir = repoCacheDir(repoId, opts.cacheDir);
  const known = await localCommit(repoDir, revision);
  if (known !== undefined && (await snapshotComplete(snapshotPath(repoDir, known)))) return snapshotPath(repoDir, known);
  if (opts.offline ?? hubOffline()) {
    const what =
      known === undefined ? `no refs/${revision}` : !(await isDir(snapshotPath(repoDir, known))) ? `no snapshot ${known}` : `snapshot ${known} lacks config.json or the weights`;
    throw new HubError(`${repoId}: not in the Hugging Face cache at ${repoDir} (${what}), and offline mode (HF_HUB_OFFLINE) forbids downloading it`);
  }

  const endpoint = (opts.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).trim().replace(/\/+$/, '');
  let origin: string;
  try {
    const u = new URL(endpoint);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
    origin = u.origin;
  } catch {
    throw new HubError(`hub endpoint ${JSON.stringify(endpoint)} is not an http(s) URL (set by --endpoint or HF_ENDPOINT)`);
  }
  const fetchImpl = opts.fetch ?? globalThis.fetch;
  if (typeof fetchImpl !== 'function') throw new HubError(`${repoId}: no fetch available to download with (Node 18+ has one)`);
  const ctx: Ctx = {
    repoId,
    revision,
    urlRevision: revision,
    endpoint,
    origin,
    ...(await findToken(repoId, opts.token)),
    fetch: fetchImpl,
    onProgress: opts.onProgress,
    retries: Math.max(0, Math.floor(opts.retries ?? 5)),
    retryDelayMs: Math.max(0, opts.retryDelayMs ?? 1000),
    idleTimeoutMs: Math.max(1, opts.idleTimeoutMs ?? 60_000),
  };
  return download(ctx, repoDir, optional);
}

async function download(ctx: Ctx, repoDir: string, optional: string[]): Promise<string> {
  // config.json's answer names the commit; every other file is fetched at that commit.
  const configMeta = (await headFile(ctx, CONFIG_FILE, 'config')) as FileMeta;
  const commit = configMeta.commit?.toLowerCase();
  if (commit === undefined || !isCommitHash(commit)) {
    throw new HubError(`${ctx.repoId}: ${fileUrl(ctx, CONFIG_FILE)} sent no X-Repo-Commit header naming a commit (got ${JSON.stringify(configMeta.commit ?? null)}); is ${ctx.endpoint} a Hugging Face hub?`);
  }
  ctx.urlRevision = commit;
  await writeRef(repoDir, ctx.revision, commit);
  const snap = snapshotPath(repoDir, commit);
  if (await snapshotComplete(snap)) return snap;

  await ensureFile(ctx, repoDir, commit, CONFIG_FILE, 'config', configMeta);
  const configPath = join(snap, CONFIG_FILE);
  let config: unknown;
  try {
    config = JSON.parse(await readFile(configPath, 'utf8'));
  } catch (e) {
    await forget(configPath); // do not keep a bad file as if it were the hub's answer
    throw new HubError(`${ctx.repoId}: ${CONFIG_FILE} from ${fileUrl(ctx, CONFIG_FILE)} is not valid JSON (${(e as Error).message}); deleted it`);
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    await forget(configPath);
    throw new HubError(`${ctx.repoId}: ${CONFIG_FILE} is not a JSON object; deleted it`);
  }

  // Weights: the index and its shards when the hub has an index, else the single file. A single
  // file already in the snapshot (and no index there), or an index known absent, settles it without asking.
  const knownAbsent = (f: string) => isFile(join(repoDir, '.no_exist', commit, f));
  const haveSingle = await isFile(join(snap, SINGLE_FILE));
  const haveIndex = await isFile(join(snap, INDEX_FILE));
  const indexed = (haveSingle && !haveIndex) || (!haveIndex && (await knownAbsent(INDEX_FILE))) ? false : await ensureFile(ctx, repoDir, commit, INDEX_FILE, 'index');
  if (indexed) {
    for (const shard of await shardsOf(ctx, snap)) await ensureFile(ctx, repoDir, commit, shard, 'shard');
  } else {
    await ensureFile(ctx, repoDir, commit, SINGLE_FILE, 'single');
  }
  for (const f of optional) {
    if (await knownAbsent(f)) continue;
    await ensureFile(ctx, repoDir, commit, f, 'optional');
  }
  return snap;
}

/** Removes a snapshot file and the blob it points to (a bad config or index). */
async function forget(pointer: string): Promise<void> {
  const target = await realpath(pointer).catch(() => undefined);
  await rm(pointer, { force: true });
  if (target !== undefined && target !== pointer) await rm(target, { force: true });
}

/**
 * Makes `file` present in the commit's snapshot: true when it is, false when the hub has none (only
 * for the index and optional files). A file already in the snapshot is taken as it is; a blob
 * already in the cache (another commit had the same file) is linked without downloading.
 */
async function ensureFile(ctx: Ctx, repoDir: string, commit: string, file: string, kind: FileKind, meta?: FileMeta): Promise<boolean> {
  const pointer = safePath(snapshotPath(repoDir, commit), file, `${ctx.repoId}: file name`);
  if (await isFile(pointer)) return true;
  const m = meta ?? (await headFile(ctx, file, kind));
  if (m === 'absent') {
    await markAbsent(repoDir, commit, file);
    return false;
  }
  const etag = m.etag;
  if (etag === undefined || !/^[A-Za-z0-9_.-]{1,255}$/.test(etag) || /^\.+$/.test(etag)) {
    throw new HubError(`${ctx.repoId}: ${fileUrl(ctx, file)} sent ${etag === undefined ? 'no ETag' : `an unusable ETag ${JSON.stringify(etag)}`}, which names the file in the cache; is ${ctx.endpoint} a Hugging Face hub?`);
  }
  const blob = blobPath(repoDir, etag);
  if (!(await isFile(blob))) {
    const sha256 = /^[0-9a-fA-F]{64}$/.test(etag) ? etag.toLowerCase() : undefined;
    const size = await downloadBlob(ctx, file, kind, blob, { size: m.size, sha256 });
    if (size === undefined) {
      await markAbsent(repoDir, commit, file);
      return false;
    }
  }
  await linkBlob(blob, pointer);
  return true;
}

/** The distinct shard names of an index's weight_map, in order, each checked to be a plain file name. */
async function shardsOf(ctx: Ctx, snap: string): Promise<string[]> {
  const where = `${ctx.repoId}: ${INDEX_FILE}`;
  const indexPath = join(snap, INDEX_FILE);
  const bad = async (msg: string): Promise<never> => {
    await forget(indexPath); // do not keep a bad index as if it were the hub's answer
    throw new HubError(msg);
  };
  let byShard: Map<string, string[]>;
  try {
    byShard = parseShardIndex(await readFile(indexPath, 'utf8'), where);
  } catch (e) {
    return bad((e as Error).message);
  }
  for (const [f, names] of byShard) {
    const problem = fileNameProblem(f, true);
    if (problem !== undefined) return bad(`${where}: weight_map["${names[0]}"] is ${JSON.stringify(f)}, which ${problem}: shard names must be plain file names inside the model folder`);
    if (f === CONFIG_FILE || f === INDEX_FILE) return bad(`${where}: weight_map["${names[0]}"] names ${f}, which is not a shard`);
  }
  return [...byShard.keys()];
}
