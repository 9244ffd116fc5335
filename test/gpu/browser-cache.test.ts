// The browser I/O layer under Node (which has fetch, Response and Blob): HTTP Range reads against a
// local server, the Cache API cache (over an in-memory CacheStorage), listCache / clearCache,
// and the QuotaExceededError message.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, test } from 'node:test';
import { clearCache, listCache, ModelCache, QuotaError, type CacheStorageLike } from '../../src/io/browser-cache.ts';
import { parseSafetensors, readTensorF32 } from '../../src/io/safetensors.ts';
import { blobSource, httpSource, HttpError } from '../../src/io/web-source.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixtureDir } from '../helpers.ts';

const file = readFileSync(join(fixtureDir('tiny-elm'), 'model.safetensors'));
let server: Server;
let base = '';
const log: { path: string; range?: string }[] = [];
let honourRange = true;

before(async () => {
  server = createServer((req, res) => {
    const path = req.url ?? '/';
    log.push({ path, range: req.headers.range });
    if (path !== '/m/model.safetensors') {
      res.writeHead(404).end('not found');
      return;
    }
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (m && honourRange) {
      const start = Number(m[1]);
      const end = Math.min(Number(m[2]), file.length - 1);
      res.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${file.length}`, 'Content-Length': end - start + 1 });
      res.end(file.subarray(start, end + 1));
    } else {
      res.writeHead(200, { 'Content-Length': file.length });
      res.end(file);
    }
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const a = server.address() as { port: number };
  base = `http://127.0.0.1:${a.port}`;
});
after(() => new Promise<void>((ok) => server.close(() => ok())));

/** An in-memory CacheStorage: enough of the Cache API for browser-cache.ts. */
function memoryStorage(opts: { quotaBytes?: number } = {}): CacheStorageLike & { bytes(): number } {
  const caches = new Map<string, Map<string, { body: Uint8Array; headers: [string, string][] }>>();
  let used = 0;
  const cacheOf = (name: string): Cache => {
    let c = caches.get(name);
    if (!c) caches.set(name, (c = new Map()));
    const store = c;
    const keyOf = (r: RequestInfo | URL) => (typeof r === 'string' ? r : r instanceof URL ? r.href : r.url);
    return {
      async match(r: RequestInfo | URL) {
        const e = store.get(keyOf(r));
        return e ? new Response(e.body.slice(), { headers: e.headers }) : undefined;
      },
      async put(r: RequestInfo | URL, res: Response) {
        const body = new Uint8Array(await res.arrayBuffer());
        if (opts.quotaBytes !== undefined && used + body.byteLength > opts.quotaBytes) {
          throw new DOMException('Quota exceeded.', 'QuotaExceededError');
        }
        used += body.byteLength - (store.get(keyOf(r))?.body.byteLength ?? 0);
        const headers: [string, string][] = [];
        res.headers.forEach((v, k) => headers.push([k, v]));
        store.set(keyOf(r), { body, headers });
      },
      async keys() {
        return [...store.keys()].map((k) => new Request(k));
      },
      async delete(r: RequestInfo | URL) {
        const e = store.get(keyOf(r));
        if (e) used -= e.body.byteLength;
        return store.delete(keyOf(r));
      },
    } as unknown as Cache;
  };
  return {
    async open(name: string) {
      return cacheOf(name);
    },
    async delete(name: string) {
      const c = caches.get(name);
      if (c) for (const e of c.values()) used -= e.body.byteLength;
      return caches.delete(name);
    },
    async has(name: string) {
      return caches.has(name);
    },
    bytes: () => used,
  };
}

test('httpSource reads exactly the ranges asked for', async () => {
  log.length = 0;
  const src = await httpSource(`${base}/m/model.safetensors`);
  assert.equal(src.size, file.length);
  assert.equal(src.rangeRequests, true);
  const bytes = await src.read(1000, 64);
  assert.deepEqual(Buffer.from(bytes), file.subarray(1000, 1064));
  assert.deepEqual(
    log.map((l) => l.range),
    ['bytes=0-0', 'bytes=1000-1063'],
  );
  const tensors = await parseSafetensors(src);
  const e = tensors.get('transformer.norm.weight')!;
  assert.equal((await readTensorF32(e)).length, 128);
  await assert.rejects(src.read(file.length - 2, 4), /past the end of the file/);
});

test('httpSource: a 404 is an HttpError with status 404; a server ignoring Range is read once, whole', async () => {
  await assert.rejects(httpSource(`${base}/m/nothing.safetensors`), (e: unknown) => e instanceof HttpError && e.status === 404 && /HTTP 404 not found/.test(e.message));
  honourRange = false;
  try {
    log.length = 0;
    const src = await httpSource(`${base}/m/model.safetensors`);
    assert.equal(src.rangeRequests, false);
    assert.deepEqual(Buffer.from(await src.read(8, 16)), file.subarray(8, 24));
    assert.deepEqual(Buffer.from(await src.read(100, 4)), file.subarray(100, 104));
    assert.equal(log.length, 1, 'the probe response is kept as the whole file');
  } finally {
    honourRange = true;
  }
});

test('blobSource slices a Blob', async () => {
  const src = blobSource(new Blob([file]), 'model.safetensors');
  assert.equal(src.size, file.length);
  assert.deepEqual(Buffer.from(await src.read(5, 10)), file.subarray(5, 15));
  await assert.rejects(src.read(file.length, 1), /past the end/);
});

test('the cache serves a second load without a single request', async () => {
  const storage = memoryStorage();
  const url = `${base}/m/model.safetensors`;
  const load = async () => {
    const cache = (await ModelCache.open({ storage }))!;
    const src = await cache.rangedSource(url, url, () => httpSource(url));
    const tensors = await parseSafetensors(src);
    let sum = 0;
    for (const e of tensors.values()) sum += (await readTensorF32(e)).reduce((a, b) => a + b, 0);
    await cache.flush();
    return { sum, cache };
  };
  log.length = 0;
  const first = await load();
  const firstRequests = log.length;
  assert.ok(firstRequests > 10, `the first load fetched ranges (${firstRequests} requests)`);
  log.length = 0;
  const second = await load();
  assert.equal(log.length, 0, 'no request on the second load');
  assert.equal(second.sum, first.sum);
  assert.ok(second.cache.counters.cacheBytes >= file.length - 4096);

  const listed = await listCache({ storage });
  assert.equal(listed.length, 1);
  assert.equal(listed[0].url, url);
  assert.equal(listed[0].size, file.length);
  assert.equal(listed[0].complete, true, 'header and every tensor cover the whole file');

  // Whole small files and remembered 404s.
  const cache = (await ModelCache.open({ storage }))!;
  await cache.putWhole(`${base}/m/config.json`, new TextEncoder().encode('{}'));
  await cache.markMissing(`${base}/m/tokenizer.json`);
  assert.deepEqual(await cache.getWhole(`${base}/m/config.json`), new TextEncoder().encode('{}'));
  assert.equal(await cache.isMissing(`${base}/m/tokenizer.json`), true);
  assert.equal(await cache.isMissing(`${base}/m/config.json`), false);
  assert.equal((await listCache({ storage })).length, 3);

  const cleared = await clearCache(`${base}/m/config`, { storage });
  assert.deepEqual(cleared, { files: 1, bytes: 2 });
  assert.equal((await listCache({ storage })).length, 2);
  await clearCache(undefined, { storage });
  assert.deepEqual(await listCache({ storage }), []);
  assert.equal(storage.bytes(), 0);
});

test('a full cache gives a QuotaError saying how much is needed and how to free space', async () => {
  const storage = memoryStorage({ quotaBytes: 200_000 });
  const url = `${base}/m/model.safetensors`;
  const cache = (await ModelCache.open({ storage }))!;
  cache.modelBytes = file.length;
  const src = await cache.rangedSource(url, url, () => httpSource(url));
  const tensors = await parseSafetensors(src);
  let err: unknown;
  try {
    for (const e of tensors.values()) await readTensorF32(e);
    await cache.flush();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof QuotaError, `expected a QuotaError, got ${err}`);
  assert.match(err.message, /^Out of browser storage while storing .*model\.safetensors bytes \d+-\d+ \(.+\): the model's files take 1\.3 MiB, .* already cached, so about .* more is needed\./);
  assert.match(err.message, /deleteStoredModel\(url\)/);
  assert.match(err.message, /storage: 'none'/);
  assert.ok(err.neededBytes > 0 && err.neededBytes <= file.length);
});

test('browser entry: hub ids, folder URLs, and a clear error without WebGPU', async () => {
  const { hubFolderUrl, isHubId, loadModel, NO_WEBGPU_HELP } = await import('../../src/browser.ts');
  assert.equal(isHubId('apple/OpenELM-270M'), true);
  assert.equal(isHubId('apple/OpenELM-270M@v1.0'), true);
  for (const s of ['/models/tiny-elm/', './models/x', 'https://huggingface.co/apple/OpenELM-270M', 'a/b/c', 'models--x/y', 'tiny-elm']) assert.equal(isHubId(s), false, s);
  assert.equal(hubFolderUrl('apple/OpenELM-270M'), 'https://huggingface.co/apple/OpenELM-270M/resolve/main/');
  assert.equal(hubFolderUrl('apple/OpenELM-270M@refs/pr/1', { endpoint: 'https://mirror.example/' }), 'https://mirror.example/apple/OpenELM-270M/resolve/refs%2Fpr%2F1/');
  assert.equal(hubFolderUrl('apple/OpenELM-270M', { revision: 'abc123' }), 'https://huggingface.co/apple/OpenELM-270M/resolve/abc123/');
  // Node has no navigator.gpu: the browser entry says so before fetching anything.
  log.length = 0;
  await assert.rejects(loadModel(`${base}/m/`), (e: Error) => e.message === NO_WEBGPU_HELP);
  assert.equal(log.length, 0);
});
