// One file's bytes into its blob: downloaded to `<blob>.incomplete`, resumed with a Range request
// after a cut connection (in this run or a later one, by us or by huggingface_hub), checked against
// the size the hub announced and, when the blob name is one, its sha256, and only then renamed to
// the blob's name: a blob under its final name is always complete.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { HubError, INCOMPLETE } from './hub-names.ts';
import { accessError, describeCause, discard, fileUrl, get, headerInt, IdleTimeout, NetError, notFoundError, requestHeaders, sleep, type Ctx, type FileKind, type Reply } from './hub-http.ts';

async function sizeOf(p: string): Promise<number | undefined> {
  return stat(p).then((s) => (s.isFile() ? s.size : undefined), () => undefined);
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

type Attempt = { kind: 'done'; size: number } | { kind: 'absent' } | { kind: 'retry'; problem: string };

/** What the blob must turn out to be: the hub's size and, when the blob is named by one, sha256. */
export interface Expected {
  size: number | undefined;
  sha256: string | undefined;
}

/**
 * Downloads `file` (at ctx.urlRevision) into `blob`: returns its size, or undefined when the hub
 * answers 404 for an optional file. Throws HubError with one line once the retries are spent,
 * keeping the partial blob for the next run.
 */
export async function downloadBlob(ctx: Ctx, file: string, kind: FileKind, blob: string, expected: Expected): Promise<number | undefined> {
  await mkdir(dirname(blob), { recursive: true });
  const tmp = blob + INCOMPLETE;
  const url = fileUrl(ctx, file);
  // A partial blob that is in fact whole (a run stopped between the last byte and the rename):
  // verified, it needs no request (the hub would answer 416 to a range past its end).
  const whole = await sizeOf(tmp);
  if (whole !== undefined && whole > 0 && whole === expected.size && expected.sha256 !== undefined && (await sha256File(tmp)) === expected.sha256) {
    await rename(tmp, blob);
    ctx.onProgress?.({ file, received: whole, total: whole, done: true });
    return whole;
  }
  // Hash state carried across attempts of this call: it covers bytes [0, hashed) of tmp.
  const state: HashState = { hasher: undefined, hashed: 0 };
  let problem = '';
  const attempts = ctx.retries + 1;
  for (let attempt = 0; attempt < attempts; attempt++) {
    if (attempt > 0 && ctx.retryDelayMs > 0) await sleep(Math.min(10_000, ctx.retryDelayMs * attempt));
    const r = await attemptOnce(ctx, file, kind, url, tmp, blob, expected, state);
    if (r.kind === 'done') return r.size;
    if (r.kind === 'absent') return undefined;
    problem = r.problem;
  }
  const kept = (await sizeOf(tmp)) ?? 0;
  throw new HubError(
    `${ctx.repoId}: downloading ${file} failed after ${attempts} attempts: ${problem}${kept > 0 ? `; the ${kept} bytes received are kept in ${tmp} and the next run resumes from there` : ''}`,
  );
}

interface HashState {
  hasher: Hash | undefined;
  hashed: number;
}

async function attemptOnce(ctx: Ctx, file: string, kind: FileKind, url: string, tmp: string, final: string, expected: Expected, state: HashState): Promise<Attempt> {
  const have = (await sizeOf(tmp)) ?? 0;
  const headers = requestHeaders(ctx);
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
    const sha = expected.sha256;
    const linkedSize = expected.size;
    let start = 0;
    let total: number | undefined;
    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec((res.headers.get('content-range') ?? '').trim());
      if (!m || Number(m[1]) !== have || have === 0) {
        // Not the continuation we asked for: start over.
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

