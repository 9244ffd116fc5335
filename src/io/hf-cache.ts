// The Hugging Face hub cache, laid out as Python's huggingface_hub lays it out, so a model either
// side downloads is one copy both can use:
//
//   <root>/models--<owner>--<name>/
//     blobs/<etag>                    the file's bytes; etag = sha256 for LFS files, git blob id otherwise
//     blobs/<etag>.incomplete         a download in progress (resumed from here)
//     snapshots/<commit>/<file>       a relative symlink to ../../blobs/<etag> (a copy where links fail)
//     refs/<revision>                 the commit sha a branch or tag pointed to when last fetched
//     .no_exist/<commit>/<file>       an empty file: the hub has no such file at that commit
//
// root: the caller's cacheDir, else $HF_HUB_CACHE, else $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub (huggingface_hub's order).
import { constants } from 'node:fs';
import { copyFile, mkdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { INDEX_FILE, SINGLE_FILE } from './node-source.ts';
import { parseShardIndex } from './shard-index.ts';

export const CONFIG_FILE = 'config.json';

const env = (k: string): string | undefined => process.env[k]?.trim() || undefined;
const expandHome = (p: string): string => (p === '~' || p.startsWith('~/') ? join(homedir(), p.slice(1)) : p);

/** True for huggingface_hub's "true" spellings: 1, ON, YES, TRUE (any case). */
function truthy(v: string | undefined): boolean {
  return v !== undefined && ['1', 'ON', 'YES', 'TRUE'].includes(v.trim().toUpperCase());
}

/** The hub cache root (see the top of this file). */
export function hubCacheDir(cacheDir?: string): string {
  if (cacheDir !== undefined && cacheDir.trim() !== '') return resolve(expandHome(cacheDir));
  const direct = env('HF_HUB_CACHE') ?? env('HUGGINGFACE_HUB_CACHE');
  if (direct) return resolve(expandHome(direct));
  const home = env('HF_HOME') ?? join(env('XDG_CACHE_HOME') ?? join(homedir(), '.cache'), 'huggingface');
  return resolve(expandHome(home), 'hub');
}

/** HF_HUB_OFFLINE (or transformers' TRANSFORMERS_OFFLINE) is set: never touch the network. */
export function hubOffline(): boolean {
  return truthy(process.env.HF_HUB_OFFLINE) || truthy(process.env.TRANSFORMERS_OFFLINE);
}

/** huggingface_hub copies instead of linking when HF_HUB_DISABLE_SYMLINKS is set. */
const symlinksDisabled = (): boolean => truthy(process.env.HF_HUB_DISABLE_SYMLINKS);

/** The folder of one model repository in the cache: `<root>/models--owner--name`. */
export function repoCacheDir(repoId: string, cacheDir?: string): string {
  return join(hubCacheDir(cacheDir), ['models', ...repoId.split('/')].join('--'));
}

export const isCommitHash = (s: string): boolean => /^[0-9a-f]{40}$/.test(s);

/** The commit `refs/<revision>` names, or undefined when there is none (or it is not a commit sha). */
export async function readRef(repoDir: string, revision: string): Promise<string | undefined> {
  try {
    const s = (await readFile(join(repoDir, 'refs', revision), 'utf8')).trim();
    return isCommitHash(s) ? s : undefined;
  } catch {
    return undefined;
  }
}

/** Writes `refs/<revision>` (no newline, as huggingface_hub does), atomically, when it changed. */
export async function writeRef(repoDir: string, revision: string, commit: string): Promise<void> {
  if (revision === commit || (await readRef(repoDir, revision)) === commit) return;
  const path = join(repoDir, 'refs', revision);
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, commit);
  await rename(tmp, path);
}

/** The snapshot folder of a commit. */
export const snapshotPath = (repoDir: string, commit: string): string => join(repoDir, 'snapshots', commit);

/** The blob path for an etag. */
export const blobPath = (repoDir: string, etag: string): string => join(repoDir, 'blobs', etag);

/**
 * Points `pointer` (a file in a snapshot) at `blob` with a relative symlink; where the file system
 * refuses links (or HF_HUB_DISABLE_SYMLINKS is set) the blob is copied instead.
 */
export async function linkBlob(blob: string, pointer: string): Promise<void> {
  await mkdir(dirname(pointer), { recursive: true });
  await rm(pointer, { force: true });
  if (!symlinksDisabled()) {
    try {
      await symlink(relative(dirname(pointer), blob), pointer);
      return;
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== 'EPERM' && code !== 'EACCES' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw e;
    }
  }
  const tmp = `${pointer}.${process.pid}.tmp`;
  await copyFile(blob, tmp, constants.COPYFILE_FICLONE);
  await rename(tmp, pointer);
}

/** Records that the hub has no `file` at `commit` (huggingface_hub's `.no_exist` marker). */
export async function markAbsent(repoDir: string, commit: string, file: string): Promise<void> {
  const path = join(repoDir, '.no_exist', commit, file);
  try {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, '');
  } catch {
    // Only a hint for later runs (ours and Python's); a read-only cache is fine without it.
  }
}

export async function isFile(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isFile(), () => false);
}

/**
 * True when a snapshot folder holds a loadable model: config.json and the weights (the index and
 * every shard it names, else model.safetensors). Links are followed, so a link whose blob is gone
 * does not count. Blobs only get their final name once complete and verified (by us or by
 * huggingface_hub), so presence is enough.
 */
export async function snapshotComplete(dir: string): Promise<boolean> {
  if (!(await isFile(join(dir, CONFIG_FILE)))) return false;
  const indexPath = join(dir, INDEX_FILE);
  if (await isFile(indexPath)) {
    let shards: string[];
    try {
      shards = [...parseShardIndex(await readFile(indexPath, 'utf8'), indexPath).keys()];
    } catch {
      return false;
    }
    for (const s of shards) if (!(await isFile(join(dir, s)))) return false;
    return true;
  }
  return isFile(join(dir, SINGLE_FILE));
}

/**
 * The commit a revision names without asking the hub: the revision itself when it is a commit
 * sha, else the one `refs/<revision>` records.
 */
export async function localCommit(repoDir: string, revision: string): Promise<string | undefined> {
  return isCommitHash(revision) ? revision : readRef(repoDir, revision);
}
