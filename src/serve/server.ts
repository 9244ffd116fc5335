// The OpenAI-compatible HTTP server over one loaded model (Node's http; routes are few and fixed):
//   GET  /health                 status, queue and process memory (no key needed)
//   GET  /v1/models[/ID]         the served model
//   POST /v1/completions         text (or token ids) in, continuation out
//   POST /v1/chat/completions    a conversation in (the model's chat template), the reply out
// Bodies are JSON up to a size limit; with an API key, /v1/ routes need `Authorization: Bearer KEY`.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { OpenElmModel } from '../api/model.ts';
import { handleGeneration } from './completions.ts';
import { ApiError, asApiError } from './errors.ts';
import { RequestQueue } from './queue.ts';

export interface ServeOptions {
  model: OpenElmModel;
  /** The id clients name in `model`, and GET /v1/models lists. */
  modelId: string;
  host?: string;
  /** 0 picks a free port (ServerHandle.port tells which). */
  port?: number;
  /** Required as `Authorization: Bearer KEY` on /v1/ routes when set. */
  apiKey?: string;
  /** Requests that may wait while one runs; more are refused with 429. */
  maxQueue?: number;
  /** Most new tokens a request may ask for. */
  maxTokens?: number;
  /** Largest request body in bytes; larger is refused with 413. */
  maxBodyBytes?: number;
  /** Called once per finished request (for logs). */
  onRequest?: (line: string) => void;
}

export interface ServerHandle {
  server: Server;
  url: string;
  port: number;
  queue: RequestQueue;
  /**
   * Stops taking requests (new and waiting ones get 503), lets the running generation finish for
   * up to `graceMs`, then aborts it and closes every connection.
   */
  close(graceMs?: number): Promise<void>;
}

export const SERVE_DEFAULTS = { host: '127.0.0.1', port: 8080, maxQueue: 16, maxTokens: 512, maxBodyBytes: 1 << 20 };

const ROUTES: Record<string, string> = { '/health': 'GET', '/v1/models': 'GET', '/v1/completions': 'POST', '/v1/chat/completions': 'POST' };

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const json = JSON.stringify(value);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(json), ...headers });
  res.end(json);
}

function sendError(res: ServerResponse, e: ApiError): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  sendJson(res, e.status, e.body(), e.status === 429 ? { 'Retry-After': '1' } : {});
}

/** The body as JSON, refused with 413 past `limit` bytes (counting as it arrives, not trusting Content-Length). */
function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const tooLarge = () => new ApiError(413, `the request body is larger than this server's limit of ${limit} bytes (--max-body)`, 'invalid_request_error', null, 'request_too_large');
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (d: Buffer) => {
      if (failed) return;
      size += d.length;
      if (size > limit) {
        failed = true;
        reject(tooLarge());
        return;
      }
      parts.push(d);
    });
    req.on('error', reject);
    req.on('end', () => {
      if (failed) return;
      const text = Buffer.concat(parts).toString('utf8');
      if (text.trim() === '') return reject(new ApiError(400, 'the request body is empty; send a JSON object', 'invalid_request_error', null, 'invalid_json'));
      try {
        resolve(JSON.parse(text));
      } catch (e) {
        reject(new ApiError(400, `the request body is not valid JSON (${(e as Error).message})`, 'invalid_request_error', null, 'invalid_json'));
      }
    });
  });
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function checkKey(req: IncomingMessage, key: Buffer | undefined): void {
  if (!key) return;
  const h = req.headers.authorization;
  if (h === undefined) throw new ApiError(401, 'this server needs an API key: send the header "Authorization: Bearer KEY"', 'authentication_error', null, 'missing_api_key');
  const m = /^Bearer\s+(.+)$/i.exec(h.trim());
  // Compare digests in constant time: the key's length and content do not leak through timing.
  if (!m || !timingSafeEqual(digest(m[1]), key)) throw new ApiError(401, 'the API key is wrong (Authorization: Bearer KEY must carry the key the server was started with)', 'authentication_error', null, 'invalid_api_key');
}

export async function startServer(o: ServeOptions): Promise<ServerHandle> {
  const opts = { ...SERVE_DEFAULTS, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) } as Required<Omit<ServeOptions, 'apiKey' | 'onRequest'>> & ServeOptions;
  const queue = new RequestQueue(opts.maxQueue);
  const key = opts.apiKey ? digest(opts.apiKey) : undefined;
  const ctx = { model: opts.model, modelId: opts.modelId, queue, maxTokens: opts.maxTokens };
  const created = Math.floor(Date.now() / 1000);
  const modelEntry = { id: opts.modelId, object: 'model', created, owned_by: 'openelm-webgpu' };
  const running = new Set<AbortController>();
  let closing = false;

  async function route(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname.replace(/\/+$/, '') || '/';
    const modelPath = path.startsWith('/v1/models/') ? decodeURIComponent(path.slice('/v1/models/'.length)) : undefined;
    const method = modelPath !== undefined ? 'GET' : ROUTES[path];
    if (method === undefined) throw new ApiError(404, `no route ${req.method} ${path} (routes: GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions)`, 'invalid_request_error', null, 'unknown_url');
    if (req.method !== method) {
      res.setHeader('Allow', method);
      throw new ApiError(405, `${path} takes ${method}, not ${req.method}`, 'invalid_request_error', null, 'method_not_allowed');
    }
    if (path === '/health') {
      const mem = process.memoryUsage();
      sendJson(res, closing ? 503 : 200, { status: closing ? 'shutting_down' : 'ok', model: opts.modelId, queue: queue.state(), rss_bytes: mem.rss, heap_used_bytes: mem.heapUsed, uptime_s: process.uptime() });
      return;
    }
    checkKey(req, key);
    if (closing) throw new ApiError(503, 'the server is shutting down', 'service_unavailable', null, 'shutting_down');
    if (path === '/v1/models') return sendJson(res, 200, { object: 'list', data: [modelEntry] });
    if (modelPath !== undefined) {
      if (modelPath !== opts.modelId) throw new ApiError(404, `the model "${modelPath}" does not exist here: this server serves "${opts.modelId}"`, 'invalid_request_error', 'model', 'model_not_found');
      return sendJson(res, 200, modelEntry);
    }
    const body = await readJson(req, opts.maxBodyBytes);
    await handleGeneration(ctx, path === '/v1/chat/completions' ? 'chat' : 'completion', body, res, signal);
  }

  const server = createServer((req, res) => {
    const t0 = performance.now();
    const ac = new AbortController();
    running.add(ac);
    // The response closing before it finished means the client went away: stop its work.
    res.on('close', () => {
      running.delete(ac);
      if (!res.writableFinished) ac.abort(new Error('the client disconnected'));
      opts.onRequest?.(`${req.method} ${req.url} ${res.writableFinished ? res.statusCode : 'disconnected'} ${(performance.now() - t0).toFixed(0)} ms`);
    });
    route(req, res, ac.signal).catch((e: unknown) => {
      if (ac.signal.aborted) return;
      const err = asApiError(e);
      // A refused upload: answer, then close, so the client stops sending the rest.
      if (err.status === 413) res.setHeader('Connection', 'close');
      sendError(res, err);
    });
  });
  server.headersTimeout = 30_000;
  server.requestTimeout = 0; // a long generation is a long response, not a slow client

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;

  return {
    server,
    url: `http://${host}:${port}`,
    port,
    queue,
    async close(graceMs = 10_000): Promise<void> {
      closing = true;
      queue.close(new ApiError(503, 'the server is shutting down', 'service_unavailable', null, 'shutting_down'));
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([queue.idle(), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      for (const ac of running) ac.abort(new Error('the server is shutting down'));
      await queue.idle();
      server.closeAllConnections();
      await closed;
    },
  };
}
