// Names the hub hands us or the caller gives: repo ids, revisions and file names, checked before
// any of them becomes part of a URL or a path in the cache.
import { existsSync } from 'node:fs';

/** A download failure; `message` is one line meant for people. */
export class HubError extends Error {
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.name = 'HubError';
    this.status = status;
  }
}

/** Suffix of a blob still being downloaded (huggingface_hub's name, so either side can resume it). */
export const INCOMPLETE = '.incomplete';

// Hugging Face's rules for each half of a repo id: word characters, '.', '-', starting and ending
// with a word character, at most 96 characters; '--' and '..' are not allowed.
const ID_PART = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$/;
const REVISION = /^[A-Za-z0-9_.\-/]{1,255}$/;

export function repoIdProblem(repoId: string): string | undefined {
  const parts = repoId.split('/');
  if (parts.length !== 2) return 'expected owner/name';
  if (repoId.includes('..') || repoId.includes('--')) return 'it may not contain ".." or "--"';
  if (!parts.every((p) => ID_PART.test(p))) return 'owner and name may hold only letters, digits, "_", "-" and "." (not first or last), at most 96 each';
  return undefined;
}

export function revisionProblem(rev: string): string | undefined {
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
  if (name.endsWith(INCOMPLETE)) return 'is reserved by the download cache';
  return undefined;
}
