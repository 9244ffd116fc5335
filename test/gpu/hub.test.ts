// Downloading from the Hugging Face hub into the Hugging Face cache layout, against a local server
// (127.0.0.1 only) that speaks the hub's protocol: HEAD and GET /<owner>/<name>/resolve/<revision>/<file>
// with X-Repo-Commit, LFS files redirected to a "CDN" on another origin with X-Linked-Etag /
// X-Linked-Size, Range requests, gated repos, 404s, and failure modes (cut connections, stalls,
// wrong sha256). Also: a cache written the way Python's huggingface_hub writes it, and offline mode.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { downloadModel, fileNameProblem, hubCacheDir, isHubId, parseHubId, repoCacheDir, type DownloadOptions } from '../../src/io/hub.ts';
import { resolveModelSource } from '../../src/index.ts';
import { progressBar, type DownloadProgress } from '../../src/io/progress.ts';
import { openCheckpoint, writeCheckpointWeights } from '../../src/io/node-source.ts';
import { readTensorBytes, readTensorF32 } from '../../src/io/safetensors.ts';
import { fixtureDir } from '../helpers.ts';

const TINY = fixtureDir('tiny-elm');
const GOOD_TOKEN = 'hf_goodtoken123';
const COMMIT_A = 'c0ffee'.padEnd(40, '0');
const COMMIT_B = 'beef'.padEnd(40, '1');

interface Repo {
  files: Map<string, Buffer>;
  gated?: boolean;
  /** Serve .safetensors by a 302 to the CDN server (as the hub does for LFS files). */
  redirect?: boolean;
}

interface Logged {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  range: string | undefined;
  auth: string | undefined;
}

/** Failure modes, keyed by file name (any repo). */
const modes = {
  /** Cut the connection after `after` bytes of body, for the next `times` requests of the file. */
  cut: new Map<string, { after: number; times: number }>(),
  /** Send `after` bytes, then nothing (the socket stays open), for the next `times` requests. */
  stall: new Map<string, { after: number; times: number }>(),
  /** Announce a wrong sha256. */
  badSha: new Set<string>(),
  /** Answer Range requests with the whole file (200). */
  ignoreRange: false,
  /** The hub answers anonymous requests for unknown repos with 401 RepoNotFound (it does, to hide private repos). */
  unknownRepo401: false,
  /** Error replies without X-Error-Code (an older hub or a mirror). */
  plainErrors: false,
  /** The commit `main` points to; other known commits are served too. */
  head: COMMIT_A,
  /** Refuse every request with HTTP 500 (to prove a call made none that mattered). */
  refuseAll: false,
};

const repos = new Map<string, Repo>();
const log: Logged[] = [];
const stalled: ServerResponse[] = [];
let hub: Server;
let cdn: Server;
let hubBase = '';
let cdnBase = '';
const tmpRoots: string[] = [];
const savedEnv: Record<string, string | undefined> = {};

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'openelm-hub-'));
  tmpRoots.push(d);
  return d;
}

function record(server: 'hub' | 'cdn', req: IncomingMessage): void {
  const h = req.headers;
  log.push({ server, method: req.method ?? '', path: decodeURIComponent(req.url ?? ''), range: h.range, auth: h.authorization });
}

/** Sends `bytes` honouring Range, with the failure modes applied to `file`. */
function serveBytes(req: IncomingMessage, res: ServerResponse, file: string, bytes: Buffer, headers: Record<string, string>): void {
  let start = 0;
  let status = 200;
  const range = req.headers.range;
  const m = range ? /^bytes=(\d+)-$/.exec(range) : null;
  if (m && !modes.ignoreRange) {
    start = Number(m[1]);
    if (start >= bytes.length) {
      res.writeHead(416, { 'content-range': `bytes */${bytes.length}` });
      res.end();
      return;
    }
    status = 206;
    headers = { ...headers, 'content-range': `bytes ${start}-${bytes.length - 1}/${bytes.length}` };
  }
  const body = bytes.subarray(start);
  res.writeHead(status, { ...headers, 'content-length': String(body.length), 'accept-ranges': 'bytes' });
  if (req.method === 'HEAD') {
    res.end(); // failure modes apply to downloads only
    return;
  }
  const cut = modes.cut.get(file);
  if (cut && cut.times > 0) {
    cut.times--;
    res.write(body.subarray(0, cut.after), () => res.socket?.destroy());
    return;
  }
  const stall = modes.stall.get(file);
  if (stall && stall.times > 0) {
    stall.times--;
    res.write(body.subarray(0, stall.after));
    stalled.push(res);
    return;
  }
  res.end(body);
}

function hubHandler(req: IncomingMessage, res: ServerResponse): void {
  record('hub', req);
  if (modes.refuseAll) {
    res.writeHead(500).end('refused');
    return;
  }
  const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(req.url ?? '');
  const notFound = (code: string) => {
    const status = code === 'RepoNotFound' && modes.unknownRepo401 && !req.headers.authorization ? 401 : 404;
    res.writeHead(status, modes.plainErrors ? {} : { 'x-error-code': code, 'x-error-message': `${code} for ${req.url}` });
    res.end('not found');
  };
  if (!m || (req.method !== 'GET' && req.method !== 'HEAD')) return notFound('EntryNotFound');
  const repoId = `${m[1]}/${m[2]}`;
  const revision = decodeURIComponent(m[3]);
  const file = m[4].split('/').map(decodeURIComponent).join('/');
  const repo = repos.get(repoId);
  if (!repo) return notFound('RepoNotFound');
  if (repo.gated) {
    const auth = req.headers.authorization;
    if (!auth) {
      res.writeHead(401, { 'x-error-code': 'GatedRepo', 'x-error-message': 'Access to this model is restricted.' });
      res.end('gated');
      return;
    }
    if (auth !== `Bearer ${GOOD_TOKEN}`) {
      res.writeHead(403, { 'x-error-code': 'GatedRepo', 'x-error-message': 'You have not accepted the license.' });
      res.end('forbidden');
      return;
    }
  }
  const commit = revision === 'main' ? modes.head : revision;
  if (commit !== COMMIT_A && commit !== COMMIT_B) return notFound('RevisionNotFound');
  const bytes = repo.files.get(file);
  if (!bytes) return notFound('EntryNotFound');
  const lfs = file.endsWith('.safetensors');
  const sha = modes.badSha.has(file) ? sha256(Buffer.from('not the file')) : sha256(bytes);
  const common = { 'x-repo-commit': commit };
  if (lfs && repo.redirect) {
    res.writeHead(302, {
      ...common,
      location: `${cdnBase}/blob/${repoId}/${encodeURIComponent(file)}?signature=abc`,
      'x-linked-etag': `"${sha}"`,
      'x-linked-size': String(bytes.length),
      etag: `"${sha}"`,
    });
    res.end();
    return;
  }
  // Non-LFS files carry a git blob id (40 hex) as ETag, LFS files their sha256.
  const etag = lfs ? sha : createHash('sha1').update(bytes).digest('hex');
  serveBytes(req, res, file, bytes, { ...common, etag: `"${etag}"` });
}

function cdnHandler(req: IncomingMessage, res: ServerResponse): void {
  record('cdn', req);
  const m = /^\/blob\/([^/]+)\/([^/]+)\/([^/?]+)\?signature=abc$/.exec(req.url ?? '');
  const bytes = m ? repos.get(`${m[1]}/${m[2]}`)?.files.get(decodeURIComponent(m[3])) : undefined;
  if (!m || !bytes) {
    res.writeHead(404);
    res.end();
    return;
  }
  // An S3-style multipart ETag: not a sha256, must not be used for verification.
  serveBytes(req, res, decodeURIComponent(m[3]), bytes, { etag: '"0123456789abcdef0123456789abcdef-2"' });
}

function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Server> {
  return new Promise((resolvePromise, reject) => {
    const s = createServer(handler);
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolvePromise(s));
  });
}

function close(s: Server | undefined): Promise<void> {
  if (!s) return Promise.resolve();
  s.closeAllConnections();
  return new Promise((r) => s.close(() => r()));
}

const single = {
  config: readFileSync(join(TINY, 'config.json')),
  weights: readFileSync(join(TINY, 'model.safetensors')),
};
const tokenizerJson = Buffer.from(JSON.stringify({ model: { type: 'BPE' }, note: 'test tokenizer' }));
let shardFiles = new Map<string, Buffer>();

before(async () => {
  const envKeys = ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_ENDPOINT', 'OPENELM_CACHE', 'HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HOME', 'XDG_CACHE_HOME'];
  for (const k of [...envKeys, 'HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'HF_HUB_DISABLE_SYMLINKS', 'HF_TOKEN_PATH']) {
    savedEnv[k] = process.env[k];
    delete process.env[k];
  }
  process.env.HF_TOKEN_PATH = join(tmpdir(), 'openelm-hub-test-no-token-here');
  // A sharded variant of the fixture, written like save_pretrained does.
  const src = await openCheckpoint(TINY);
  const shardDir = tempDir();
  const tensors = [];
  for (const e of src.values()) tensors.push({ name: e.name, dtype: 'F16' as const, shape: e.shape, data: await readTensorF32(e) });
  const names = await writeCheckpointWeights(shardDir, tensors, { maxShardBytes: 700_000 });
  shardFiles = new Map(names.map((n) => [n, readFileSync(join(shardDir, n))]));
  assert.ok(shardFiles.size >= 3, `expected an index and at least two shards, got ${names.join(', ')}`);

  repos.set('test/tiny', {
    files: new Map([
      ['config.json', single.config],
      ['model.safetensors', single.weights],
      ['tokenizer.json', tokenizerJson],
    ]),
    redirect: true,
  });
  repos.set('test/direct', { files: new Map([['config.json', single.config], ['model.safetensors', single.weights]]) });
  repos.set('test/sharded', { files: new Map([['config.json', single.config], ...shardFiles]) });
  repos.set('apple/OpenELM-270M', { files: new Map([['config.json', single.config], ['model.safetensors', single.weights]]), gated: true, redirect: true });
  repos.set('test/noweights', { files: new Map([['config.json', single.config]]) });

  hub = await listen(hubHandler);
  cdn = await listen(cdnHandler);
  hubBase = `http://127.0.0.1:${(hub.address() as AddressInfo).port}`;
  cdnBase = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;
});

after(async () => {
  for (const r of stalled) r.socket?.destroy();
  await close(hub);
  await close(cdn);
  for (const d of tmpRoots) rmSync(d, { recursive: true, force: true });
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

function dl(repo: string, cacheDir: string, opts: DownloadOptions = {}): Promise<string> {
  return downloadModel(repo, { endpoint: hubBase, cacheDir, retryDelayMs: 0, ...opts });
}

function resetModes(): void {
  modes.head = COMMIT_A;
  modes.refuseAll = false;
  modes.cut.clear();
  modes.stall.clear();
  modes.badSha.clear();
  modes.ignoreRange = false;
  modes.unknownRepo401 = false;
  modes.plainErrors = false;
  log.length = 0;
}

/** Downloads of weights (GET; the HEAD requests before them carry no bytes). */
const weightRequests = () => log.filter((l) => l.method === 'GET' && l.path.includes('.safetensors') && !l.path.endsWith('index.json'));
const gets = () => log.filter((l) => l.method === 'GET');
/** The snapshot folder of a repository at a commit in cache root `cache`. */
const snap = (cache: string, repo: string, commit = COMMIT_A) => join(repoCacheDir(repo, cache), 'snapshots', commit);

test('repo ids, revisions and file names', () => {
  assert.equal(isHubId('apple/OpenELM-270M-Instruct'), true);
  assert.equal(isHubId('apple/OpenELM-270M@main'), true);
  assert.deepEqual(parseHubId('apple/OpenELM-270M@refs/pr/1'), { repoId: 'apple/OpenELM-270M', revision: 'refs/pr/1' });
  for (const bad of ['apple', 'a/b/c', '../x', 'a/..', 'a/../b', './a', 'a/b@', 'a/b@../x', 'a--b/c', 'a/b..c', '/abs/path', 'a/b c', 'a\\b/c', '', 'a/.b', 'a/b-']) {
    assert.equal(isHubId(bad), false, bad);
  }
  assert.equal(isHubId(TINY), false);
  // An existing local folder that looks like owner/name is a path, not a hub id.
  const cwd = process.cwd();
  const d = tempDir();
  mkdirSync(join(d, 'owner', 'name'), { recursive: true });
  try {
    process.chdir(d);
    assert.equal(isHubId('owner/name'), false);
    assert.equal(isHubId('owner/other'), true);
  } finally {
    process.chdir(cwd);
  }
  for (const bad of ['', '/etc/passwd', '../evil', 'a/../../b', 'a\\b', 'C:/x', 'a//b', './a', 'a/.', 'x\u0000y', 'model.safetensors.incomplete']) {
    assert.notEqual(fileNameProblem(bad), undefined, JSON.stringify(bad));
  }
  assert.equal(fileNameProblem('tokenizer.json'), undefined);
  assert.equal(fileNameProblem('onnx/model.onnx'), undefined);
  assert.notEqual(fileNameProblem('onnx/model.onnx', true), undefined);
  assert.equal(repoCacheDir('apple/OpenELM-270M', '/c'), '/c/models--apple--OpenELM-270M');
});

test('the cache root: cacheDir, else HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub', () => {
  const keep = { HF_HUB_CACHE: process.env.HF_HUB_CACHE, HF_HOME: process.env.HF_HOME, XDG_CACHE_HOME: process.env.XDG_CACHE_HOME };
  try {
    process.env.HF_HUB_CACHE = '/a/hub-cache';
    process.env.HF_HOME = '/b/hf-home';
    process.env.XDG_CACHE_HOME = '/c/xdg';
    assert.equal(hubCacheDir('/explicit'), '/explicit');
    assert.equal(hubCacheDir(), '/a/hub-cache');
    delete process.env.HF_HUB_CACHE;
    assert.equal(hubCacheDir(), '/b/hf-home/hub');
    delete process.env.HF_HOME;
    assert.equal(hubCacheDir(), '/c/xdg/huggingface/hub');
    delete process.env.XDG_CACHE_HOME;
    assert.equal(hubCacheDir(), join(homedir(), '.cache', 'huggingface', 'hub'));
  } finally {
    for (const [k, v] of Object.entries(keep)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});

test('downloads a single-file model through the CDN redirect into the HF layout, then serves it from the cache', { timeout: 30_000 }, async () => {
  resetModes();
  const cache = tempDir();
  const events: DownloadProgress[] = [];
  const dir = await dl('test/tiny', cache, { files: ['tokenizer.json', 'generation_config.json', 'tokenizer.model'], onProgress: (p) => events.push(p) });
  const repoDir = join(cache, 'models--test--tiny');
  assert.equal(dir, join(repoDir, 'snapshots', COMMIT_A));
  assert.deepEqual(readFileSync(join(dir, 'config.json')), single.config);
  assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), single.weights);
  assert.deepEqual(readFileSync(join(dir, 'tokenizer.json')), tokenizerJson);
  assert.equal(existsSync(join(dir, 'generation_config.json')), false);
  const tensors = await openCheckpoint(dir);
  assert.ok(tensors.has('transformer.token_embeddings.weight'));

  // huggingface_hub's layout: blobs named by the ETag (sha256 for LFS files, the git blob id
  // otherwise), relative links from the snapshot, refs/main holding the commit, .no_exist markers.
  const sha1 = (b: Uint8Array) => createHash('sha1').update(b).digest('hex');
  assert.deepEqual(readdirSync(join(repoDir, 'blobs')).sort(), [sha256(single.weights), sha1(single.config), sha1(tokenizerJson)].sort());
  for (const [f, blob] of [['config.json', sha1(single.config)], ['model.safetensors', sha256(single.weights)], ['tokenizer.json', sha1(tokenizerJson)]]) {
    assert.ok(lstatSync(join(dir, f)).isSymbolicLink(), f);
    assert.equal(readlinkSync(join(dir, f)), `../../blobs/${blob}`, f);
  }
  assert.equal(readFileSync(join(repoDir, 'refs', 'main'), 'utf8'), COMMIT_A);
  assert.deepEqual(readdirSync(join(repoDir, '.no_exist', COMMIT_A)).sort(), ['generation_config.json', 'model.safetensors.index.json', 'tokenizer.model']);

  // The weights came from the CDN, without the token (none here) and after one redirect; every
  // file after config.json was asked for at the commit config.json's answer named.
  const cdnReqs = log.filter((l) => l.server === 'cdn');
  assert.deepEqual(cdnReqs.map((l) => `${l.method} ${l.path}`), ['GET /blob/test/tiny/model.safetensors?signature=abc']);
  assert.deepEqual(
    log.filter((l) => l.server === 'hub').map((l) => `${l.method} ${l.path}`),
    [
      'HEAD /test/tiny/resolve/main/config.json',
      `GET /test/tiny/resolve/${COMMIT_A}/config.json`,
      `HEAD /test/tiny/resolve/${COMMIT_A}/model.safetensors.index.json`,
      `HEAD /test/tiny/resolve/${COMMIT_A}/model.safetensors`,
      `GET /test/tiny/resolve/${COMMIT_A}/model.safetensors`,
      `HEAD /test/tiny/resolve/${COMMIT_A}/tokenizer.json`,
      `GET /test/tiny/resolve/${COMMIT_A}/tokenizer.json`,
      `HEAD /test/tiny/resolve/${COMMIT_A}/generation_config.json`,
      `HEAD /test/tiny/resolve/${COMMIT_A}/tokenizer.model`,
    ],
  );

  // Progress: monotone per file, ends with done at the full size.
  const w = events.filter((e) => e.file === 'model.safetensors');
  for (let i = 1; i < w.length; i++) assert.ok(w[i].received >= w[i - 1].received);
  assert.deepEqual(w[w.length - 1], { file: 'model.safetensors', received: single.weights.length, total: single.weights.length, done: true });
  assert.ok(w.every((e) => e.total === single.weights.length));

  // Second call: refs/main names a complete snapshot, no request at all.
  log.length = 0;
  assert.equal(await dl('test/tiny', cache, { files: ['tokenizer.json', 'generation_config.json', 'tokenizer.model'] }), dir);
  assert.equal(await dl('test/tiny', cache), dir);
  assert.equal(await dl(`test/tiny@${COMMIT_A}`, cache), dir);
  assert.deepEqual(log.map((l) => `${l.method} ${l.path}`), []);

  // Without refs/main (a run that stopped before writing it): one HEAD names the commit, whose
  // snapshot is complete, so nothing is downloaded.
  rmSync(join(repoDir, 'refs'), { recursive: true });
  assert.equal(await dl('test/tiny', cache, { files: ['tokenizer.json'] }), dir);
  assert.deepEqual(log.map((l) => `${l.method} ${l.path}`), ['HEAD /test/tiny/resolve/main/config.json']);
  assert.equal(readFileSync(join(repoDir, 'refs', 'main'), 'utf8'), COMMIT_A);

  // main moves to a new commit with the same files: asked for explicitly, the new snapshot links
  // the blobs already in the cache and downloads nothing.
  log.length = 0;
  modes.head = COMMIT_B;
  const dirB = await dl(`test/tiny@${COMMIT_B}`, cache);
  assert.equal(dirB, join(repoDir, 'snapshots', COMMIT_B));
  assert.deepEqual(readFileSync(join(dirB, 'model.safetensors')), single.weights);
  assert.deepEqual(gets(), []);
  assert.equal(readFileSync(join(repoDir, 'refs', 'main'), 'utf8'), COMMIT_A, 'a commit revision writes no ref');
});

test('downloads a sharded model: the index, then each distinct shard', { timeout: 30_000 }, async () => {
  resetModes();
  const cache = tempDir();
  const dir = await dl('test/sharded', cache);
  for (const [name, bytes] of shardFiles) assert.deepEqual(readFileSync(join(dir, name)), bytes, name);
  assert.equal(existsSync(join(dir, 'model.safetensors')), false);
  const shards = [...shardFiles.keys()].filter((n) => n.endsWith('.safetensors'));
  for (const s of shards) assert.equal(gets().filter((l) => l.path.endsWith('/' + s)).length, 1, s);
  assert.equal(log.filter((l) => l.path.endsWith('/model.safetensors')).length, 0, 'the single file is not asked for');
  // The folder opens as a checkpoint and holds the fixture's tensors.
  const got = await openCheckpoint(dir);
  const want = await openCheckpoint(TINY);
  assert.equal(got.size, want.size);
  for (const [name, e] of want) assert.deepEqual(await readTensorBytes(got.get(name)!), await readTensorBytes(e), name);

  log.length = 0;
  await dl('test/sharded', cache);
  assert.deepEqual(log.map((l) => l.path), []);
});

test('a gated model needs a token; HF_TOKEN is used; the token never goes to the CDN', { timeout: 30_000 }, async () => {
  resetModes();
  const cache = tempDir();
  await assert.rejects(dl('apple/OpenELM-270M', cache), (e: Error) => {
    assert.equal(e.message, 'apple/OpenELM-270M: the hub refused access (HTTP 401); this model is gated: pass --hf_access_token TOKEN or set HF_TOKEN');
    return true;
  });
  await assert.rejects(dl('apple/OpenELM-270M', cache, { token: 'hf_wrong' }), (e: Error) => {
    assert.match(e.message, /^apple\/OpenELM-270M: the hub refused access with the access token given \(HTTP 403\): this model is gated; accept its license at http:\/\/127\.0\.0\.1:\d+\/apple\/OpenELM-270M/);
    assert.doesNotMatch(e.message, /\n/);
    return true;
  });
  assert.equal(existsSync(join(snap(cache, 'apple/OpenELM-270M'), 'config.json')), false);

  log.length = 0;
  process.env.HF_TOKEN = GOOD_TOKEN;
  try {
    const dir = await dl('apple/OpenELM-270M', cache);
    assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), single.weights);
  } finally {
    delete process.env.HF_TOKEN;
  }
  for (const l of log) assert.equal(l.auth, l.server === 'hub' ? `Bearer ${GOOD_TOKEN}` : undefined, `${l.server} ${l.path}`);
  assert.ok(log.some((l) => l.server === 'cdn'));

  // An explicit token wins over HF_TOKEN.
  process.env.HF_TOKEN = 'hf_wrong';
  try {
    await dl('apple/OpenELM-270M', tempDir(), { token: GOOD_TOKEN });
  } finally {
    delete process.env.HF_TOKEN;
  }
});

test('unknown models, revisions and missing weights give one clear line', { timeout: 30_000 }, async () => {
  resetModes();
  const cache = tempDir();
  const msg = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p;
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error('expected a rejection');
  };
  assert.match(await msg(dl('nobody/nothing', cache)), /^nobody\/nothing: model not found at http:\/\/127\.0\.0\.1:\d+ \(HTTP 404\): check the model id$/);
  assert.match(await msg(dl('test/tiny', cache, { revision: 'v9' })), /^test\/tiny: revision "v9" not found at http:\/\/127\.0\.0\.1:\d+ \(HTTP 404\): check --revision$/);
  await assert.rejects(dl('test/tiny@v9', cache), /revision "v9" not found/);
  modes.unknownRepo401 = true;
  assert.match(
    await msg(dl('nobody/nothing', cache)),
    /^nobody\/nothing: not found at http:\/\/127\.0\.0\.1:\d+ \(HTTP 401\): check the model id; if it is private or gated, pass --hf_access_token TOKEN or set HF_TOKEN$/,
  );
  modes.plainErrors = true;
  assert.match(
    await msg(dl('test/tiny', cache, { revision: 'v9' })),
    /^test\/tiny: model id or revision "v9" not found at http:\/\/127\.0\.0\.1:\d+ \(HTTP 404 for http:\/\/127\.0\.0\.1:\d+\/test\/tiny\/resolve\/v9\/config\.json\): check the model id and --revision$/,
  );
  modes.unknownRepo401 = false;
  modes.plainErrors = false;
  // Failed downloads leave no empty snapshot folders behind.
  assert.equal(existsSync(repoCacheDir('nobody/nothing', cache)), false);
  assert.match(await msg(dl('test/noweights', cache)), /^test\/noweights: no weights at revision "main": neither model\.safetensors nor model\.safetensors\.index\.json exists/);
  // Bad ids and file names are refused before any request.
  log.length = 0;
  await assert.rejects(dl('a/../b', cache), /is not a Hugging Face model id/);
  await assert.rejects(dl('a/b c', cache), /is not a Hugging Face model id/);
  await assert.rejects(dl('test/tiny', cache, { revision: '../x' }), /revision "\.\.\/x" is not usable/);
  await assert.rejects(dl('test/tiny', cache, { files: ['../outside.json'] }), /refusing to download it/);
  await assert.rejects(dl('test/tiny', cache, { files: ['/etc/passwd'] }), /absolute path/);
  await assert.rejects(dl('test/tiny', cache, { files: ['a\\b.json'] }), /backslash/);
  await assert.rejects(dl('test/tiny', cache, { files: [''] }), /is empty/);
  assert.deepEqual(log.map((l) => l.path), []);
});

test('a failed download into a fresh cache leaves no empty folders (cache root, repository)', { timeout: 30_000 }, async () => {
  resetModes();
  const parent = tempDir();
  const cache = join(parent, 'fresh', 'cache'); // nothing of it exists yet
  await assert.rejects(dl('nobody/nothing', cache), /model not found/);
  assert.deepEqual(readdirSync(parent), [], 'every folder the download created is gone');
  // An existing cache keeps its root and other repositories; only the new, empty folders go.
  mkdirSync(join(cache, 'models--other--repo'), { recursive: true });
  await assert.rejects(dl('nobody/nothing', cache), /model not found/);
  assert.deepEqual(readdirSync(cache), ['models--other--repo']);
});

test('a network error names the URL and the cause', { timeout: 30_000 }, async () => {
  const s = await listen((_req, res) => res.end());
  const port = (s.address() as AddressInfo).port;
  await close(s); // nothing listens there now
  await assert.rejects(downloadModel('test/tiny', { endpoint: `http://127.0.0.1:${port}`, cacheDir: tempDir(), retryDelayMs: 0 }), (e: Error) => {
    assert.equal(e.message.split('\n').length, 1);
    assert.ok(e.message.includes(`http://127.0.0.1:${port}/test/tiny/resolve/main/config.json`), e.message);
    assert.match(e.message, /ECONNREFUSED/);
    return true;
  });
  await assert.rejects(downloadModel('test/tiny', { endpoint: 'ftp://example.invalid', cacheDir: tempDir() }), /is not an http\(s\) URL/);
});

test('an index pointing outside the model folder is rejected', { timeout: 30_000 }, async () => {
  resetModes();
  for (const evil of ['../evil', '../../evil.safetensors', '/tmp/evil', 'sub\\..\\evil', '', 'sub/evil.safetensors']) {
    const cache = tempDir();
    const index = Buffer.from(JSON.stringify({ metadata: {}, weight_map: { 'transformer.norm.weight': evil } }));
    repos.set('test/traversal', { files: new Map([['config.json', single.config], ['model.safetensors.index.json', index], ['evil', single.weights]]) });
    log.length = 0;
    await assert.rejects(dl('test/traversal', cache), (e: Error) => {
      assert.match(e.message, /^test\/traversal: model\.safetensors\.index\.json: weight_map\["transformer\.norm\.weight"\] is .*shard names must be plain file names inside the model folder$/);
      return true;
    });
    assert.deepEqual(gets().map((l) => l.path.split('/').pop()), ['config.json', 'model.safetensors.index.json'], evil);
    assert.equal(existsSync(join(cache, 'evil')), false);
    assert.equal(existsSync(join(repoCacheDir('test/traversal', cache), 'evil')), false);
    assert.equal(existsSync(join(snap(cache, 'test/traversal'), 'evil')), false);
    // The bad index is not kept (neither its link nor its blob), so a fixed repository is picked up next time.
    assert.equal(existsSync(join(snap(cache, 'test/traversal'), 'model.safetensors.index.json')), false);
    assert.deepEqual(readdirSync(join(repoCacheDir('test/traversal', cache), 'blobs')), [createHash('sha1').update(single.config).digest('hex')]);
  }
});

test('a cut connection is resumed with a Range request', { timeout: 30_000 }, async () => {
  resetModes();
  const cache = tempDir();
  modes.cut.set('model.safetensors', { after: 300_000, times: 1 });
  const dir = await dl('test/tiny', cache);
  assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), single.weights);
  const cdnReqs = log.filter((l) => l.server === 'cdn');
  assert.equal(cdnReqs.length, 2);
  assert.ok(cdnReqs.every((l) => l.method === 'GET'));
  assert.equal(cdnReqs[0].range, undefined);
  const m = /^bytes=(\d+)-$/.exec(cdnReqs[1].range ?? '');
  assert.ok(m, `second request asks for a range, got ${cdnReqs[1].range}`);
  assert.ok(Number(m[1]) > 0 && Number(m[1]) <= 300_000, cdnReqs[1].range);
  // The range request went through the hub again (a fresh signed URL), with the Range header.
  const hubWeights = gets().filter((l) => l.server === 'hub' && l.path.endsWith('/model.safetensors'));
  assert.equal(hubWeights.length, 2);
  assert.equal(hubWeights[1].range, cdnReqs[1].range);
});

test('a server that ignores Range (200) restarts the file from zero', { timeout: 30_000 }, async () => {
  resetModes();
  modes.cut.set('model.safetensors', { after: 200_000, times: 1 });
  modes.ignoreRange = true;
  const dir = await dl('test/direct', tempDir());
  assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), single.weights);
  const reqs = weightRequests();
  assert.equal(reqs.length, 2);
  assert.match(reqs[1].range ?? '', /^bytes=\d+-$/);
});

test('a stalled connection times out and resumes', { timeout: 30_000 }, async () => {
  resetModes();
  modes.stall.set('model.safetensors', { after: 100_000, times: 1 });
  const dir = await dl('test/direct', tempDir(), { idleTimeoutMs: 300 });
  assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), single.weights);
  const reqs = weightRequests();
  assert.equal(reqs.length, 2);
  assert.match(reqs[1].range ?? '', /^bytes=\d+-$/);
});

test('a connection cut on every attempt fails after bounded retries, and a later run resumes from blobs/<sha256>.incomplete', { timeout: 30_000 }, async () => {
  resetModes();
  const cache = tempDir();
  modes.cut.set('model.safetensors', { after: 100_000, times: 1000 });
  const dir = snap(cache, 'test/direct');
  const blob = join(repoCacheDir('test/direct', cache), 'blobs', sha256(single.weights));
  await assert.rejects(dl('test/direct', cache, { retries: 3 }), (e: Error) => {
    assert.match(e.message, /^test\/direct: downloading model\.safetensors failed after 4 attempts: the connection (broke|closed) after \d+ of \d+ bytes.*; the \d+ bytes received are kept in .*blobs\/[0-9a-f]{64}\.incomplete and the next run resumes from there$/);
    return true;
  });
  assert.equal(weightRequests().length, 4);
  assert.equal(existsSync(join(dir, 'model.safetensors')), false);
  assert.equal(existsSync(blob), false);
  const partial = readFileSync(blob + '.incomplete');
  assert.ok(partial.length > 0 && partial.length < single.weights.length);
  assert.deepEqual(partial, single.weights.subarray(0, partial.length));

  modes.cut.clear();
  log.length = 0;
  await dl('test/direct', cache);
  assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), single.weights);
  const reqs = weightRequests();
  assert.equal(reqs.length, 1);
  assert.equal(reqs[0].range, `bytes=${partial.length}-`);
  assert.equal(existsSync(blob + '.incomplete'), false);
});

test('a partial blob left by huggingface_hub (blobs/<sha256>.incomplete) is resumed', { timeout: 30_000 }, async () => {
  resetModes();
  const cache = tempDir();
  const blobs = join(repoCacheDir('test/tiny', cache), 'blobs');
  mkdirSync(blobs, { recursive: true });
  writeFileSync(join(blobs, sha256(single.weights) + '.incomplete'), single.weights.subarray(0, 123_457));
  const dir = await dl('test/tiny', cache);
  assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), single.weights);
  assert.deepEqual(weightRequests().map((l) => l.range), ['bytes=123457-', 'bytes=123457-']); // the hub's redirect, then the CDN
  assert.deepEqual(readdirSync(blobs).filter((f) => f.endsWith('.incomplete')), []);

  // A partial blob that holds the whole file (stopped before the rename) is verified and used as it is.
  resetModes();
  const cache2 = tempDir();
  const blobs2 = join(repoCacheDir('test/tiny', cache2), 'blobs');
  mkdirSync(blobs2, { recursive: true });
  writeFileSync(join(blobs2, sha256(single.weights) + '.incomplete'), single.weights);
  const dir2 = await dl('test/tiny', cache2);
  assert.deepEqual(readFileSync(join(dir2, 'model.safetensors')), single.weights);
  assert.deepEqual(weightRequests(), []);
});

test('a wrong sha256 fails and leaves no file', { timeout: 30_000 }, async () => {
  for (const repo of ['test/tiny', 'test/direct']) {
    // X-Linked-Etag through the redirect, or the ETag of a direct answer.
    resetModes();
    modes.badSha.add('model.safetensors');
    const cache = tempDir();
    const dir = snap(cache, repo);
    await assert.rejects(dl(repo, cache), (e: Error) => {
      assert.match(e.message, new RegExp(`^${repo.replace('/', '\\/')}: model\\.safetensors: sha256 of the download is ${sha256(single.weights)}, but the hub says [0-9a-f]{64} \\(corrupted in transit\\?\\); deleted the download, try again$`));
      return true;
    });
    assert.equal(existsSync(join(dir, 'model.safetensors')), false);
    const blobs = readdirSync(join(repoCacheDir(repo, cache), 'blobs'));
    assert.deepEqual(blobs, [createHash('sha1').update(single.config).digest('hex')], 'only the config blob');
  }
  // With a resume in the middle, the hash still covers the whole file.
  resetModes();
  modes.cut.set('model.safetensors', { after: 500_000, times: 1 });
  const dir = await dl('test/tiny', tempDir());
  assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), single.weights);
});

/**
 * Writes a cache the way huggingface_hub does (blobs named by ETag, relative links, refs/main
 * without a newline) for `files` at `commit`; returns the snapshot folder.
 */
function pythonCache(cache: string, repo: string, commit: string, files: Map<string, Buffer>): string {
  const repoDir = repoCacheDir(repo, cache);
  const dir = join(repoDir, 'snapshots', commit);
  mkdirSync(join(repoDir, 'blobs'), { recursive: true });
  mkdirSync(join(repoDir, 'refs'), { recursive: true });
  mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of files) {
    const etag = name.endsWith('.safetensors') ? sha256(bytes) : createHash('sha1').update(bytes).digest('hex');
    writeFileSync(join(repoDir, 'blobs', etag), bytes);
    symlinkSync(`../../blobs/${etag}`, join(dir, name));
  }
  writeFileSync(join(repoDir, 'refs', 'main'), commit);
  mkdirSync(join(repoDir, '.no_exist', commit), { recursive: true });
  writeFileSync(join(repoDir, '.no_exist', commit, 'model.safetensors.index.json'), '');
  return dir;
}

test('a cache written by huggingface_hub is used with no request (single file and sharded)', { timeout: 30_000 }, async () => {
  resetModes();
  modes.refuseAll = true;
  const cache = tempDir();
  // Python fetched more than we need (its remote code, a README); we take what we use.
  const extra: [string, Buffer][] = [['modeling_openelm.py', Buffer.from('# remote code\n')], ['README.md', Buffer.from('# tiny\n')]];
  const want = pythonCache(cache, 'acme/py-tiny', COMMIT_B, new Map([['config.json', single.config], ['model.safetensors', single.weights], ...extra]));
  const shardedWant = pythonCache(cache, 'acme/py-sharded', COMMIT_A, new Map([['config.json', single.config], ...shardFiles]));
  for (const [repo, dir] of [['acme/py-tiny', want], ['acme/py-sharded', shardedWant]]) {
    log.length = 0;
    // As loadModel resolves a hub id (with the optional tokenizer files it would also like).
    process.env.HF_HUB_CACHE = cache;
    process.env.HF_ENDPOINT = hubBase;
    try {
      assert.equal(await resolveModelSource(repo), dir);
    } finally {
      delete process.env.HF_HUB_CACHE;
      delete process.env.HF_ENDPOINT;
    }
    assert.deepEqual(log.map((l) => `${l.method} ${l.path}`), [], `${repo}: no request`);
    const got = await openCheckpoint(dir);
    const ref = await openCheckpoint(TINY);
    assert.equal(got.size, ref.size);
    for (const [name, e] of ref) assert.deepEqual(await readTensorBytes(got.get(name)!), await readTensorBytes(e), name);
  }
  // A snapshot missing its weights (Python fetched only the config) is completed from the hub.
  modes.refuseAll = false;
  const partialDir = pythonCache(cache, 'test/direct', COMMIT_A, new Map([['config.json', single.config]]));
  rmSync(join(repoCacheDir('test/direct', cache), '.no_exist'), { recursive: true });
  log.length = 0;
  assert.equal(await dl('test/direct', cache), partialDir);
  assert.deepEqual(readFileSync(join(partialDir, 'model.safetensors')), single.weights);
  assert.equal(gets().filter((l) => l.path.endsWith('/config.json')).length, 0, 'the config blob is reused');
});

test('HF_HUB_OFFLINE=1: a cached model without a request, a missing one as one clear line', { timeout: 30_000 }, async () => {
  resetModes();
  const cache = tempDir();
  const dir = await dl('test/tiny', cache);
  log.length = 0;
  process.env.HF_HUB_OFFLINE = '1';
  try {
    assert.equal(await dl('test/tiny', cache), dir);
    assert.equal(await dl(`test/tiny@${COMMIT_A}`, cache), dir);
    const repoDir = repoCacheDir('test/direct', cache);
    await assert.rejects(dl('test/direct', cache), (e: Error) => {
      assert.equal(e.message, `test/direct: not in the Hugging Face cache at ${repoDir} (no refs/main), and offline mode (HF_HUB_OFFLINE) forbids downloading it`);
      return true;
    });
    await assert.rejects(dl(`test/tiny@${COMMIT_B}`, cache), /: test\/tiny: not in the Hugging Face cache at .*models--test--tiny \(no snapshot beef1+\), and offline mode/);
    // A snapshot that lost its weights is a miss too.
    rmSync(join(dir, 'model.safetensors'));
    await assert.rejects(dl('test/tiny', cache), /\(snapshot c0ffee0+ lacks config\.json or the weights\)/);
  } finally {
    delete process.env.HF_HUB_OFFLINE;
  }
  assert.deepEqual(log.map((l) => `${l.method} ${l.path}`), [], 'offline: no request at all');
  // TRANSFORMERS_OFFLINE counts too; offline: false in the options overrides the environment.
  process.env.TRANSFORMERS_OFFLINE = 'true';
  try {
    await assert.rejects(dl('test/tiny', cache), /offline mode/);
    assert.equal(await dl('test/tiny', cache, { offline: false }), dir);
  } finally {
    delete process.env.TRANSFORMERS_OFFLINE;
  }
  // The lost link was remade from the blob still in the cache: no weights downloaded.
  assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), single.weights);
  assert.deepEqual(weightRequests(), []);
});

test('HF_HUB_DISABLE_SYMLINKS=1: snapshot files are copies of their blobs', { timeout: 30_000 }, async () => {
  resetModes();
  process.env.HF_HUB_DISABLE_SYMLINKS = '1';
  try {
    const dir = await dl('test/direct', tempDir());
    assert.equal(lstatSync(join(dir, 'model.safetensors')).isSymbolicLink(), false);
    assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), single.weights);
  } finally {
    delete process.env.HF_HUB_DISABLE_SYMLINKS;
  }
});

test('progress bar: redrawn in place on a TTY, one line per file otherwise', () => {
  let out = '';
  let t = 0;
  const tty = { isTTY: true, columns: 100, write: (s: string) => ((out += s), true) };
  const bar = progressBar(tty, { now: () => t });
  bar({ file: 'model.safetensors', received: 0, total: 270_100_000 });
  t = 1000;
  bar({ file: 'model.safetensors', received: 120_300_000, total: 270_100_000 });
  t = 1050; // throttled: not drawn
  bar({ file: 'model.safetensors', received: 121_000_000, total: 270_100_000 });
  t = 3000;
  bar({ file: 'model.safetensors', received: 270_100_000, total: 270_100_000, done: true });
  const lines = out.split('\r').filter(Boolean);
  assert.equal(lines.length, 3, JSON.stringify(out));
  assert.match(lines[1], /^model\.safetensors \[#+ +\]  44% 120\.3\/270\.1 MB 120 MB\/s\x1b\[K$/);
  assert.match(lines[2], /^model\.safetensors \[#+\] 100% 270\.1\/270\.1 MB 90 MB\/s\x1b\[K\n$/);

  let plain = '';
  const pipe = { isTTY: false, write: (s: string) => ((plain += s), true) };
  const quiet = progressBar(pipe);
  quiet({ file: 'config.json', received: 994, total: 994 });
  quiet({ file: 'config.json', received: 994, total: 994, done: true });
  quiet({ file: 'model.safetensors', received: 100, total: 1_366_240 });
  quiet({ file: 'model.safetensors', received: 1_366_240, total: 1_366_240, done: true });
  assert.equal(plain, 'config.json 994 B\nmodel.safetensors 1.4 MB\n');
});
