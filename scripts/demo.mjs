// `npm run demo`: serves the browser demo (demo/), the browser bundle (dist/browser/) and model
// folders on 127.0.0.1, with HTTP Range support, and prints the URL. Needs no download: the
// models are the tiny-elm reference fixture (test/fixtures/tiny-elm) and a small synthetic
// model with random weights written on first use (Llama-2's 32000-token vocabulary, so text
// prompts work with the built-in tokenizer).
//
//   node scripts/demo.mjs [--port 8080] [--host 127.0.0.1] [--model NAME=DIR ...] [--compact-270m] [--json]
//
// --model adds a folder served at /models/NAME/ (e.g. --model synth270=/tmp/synth270 after
// `node bin/openelm.js synth --size 270M --out /tmp/synth270`). --port 0 picks a free port.
// --compact-270m also serves a synthetic OpenELM-270M-shaped model as Apple publishes it (float32,
// 1.1 GB) and its `openelm convert --dtype q4` (153 MB), written on first use.
// --json prints one line {"url": ...} when listening (for tests). GET /models/ lists the models
// (with each folder's size, and the format of compact checkpoints);
// GET /__demo/requests gives per-path request counts (POST /__demo/requests resets them);
// GET /__demo/ranges gives the Range header of each request per path. POST /__demo/cut?path=P&at=N
// makes every response for path P end (the connection dropped) at byte N of the file, to test
// resumed downloads (&stall=1: hang there instead); POST /__demo/cut?path=P (no at) lifts it.
// Responses carry Cache-Control: no-store, so only the page's own cache (the Cache API) can
// spare a download.
import { createServer } from 'node:http';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = resolve(new URL('..', import.meta.url).pathname);

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
};

// ---- The small synthetic model ----

export const SYNTH_SMALL_CONFIG = {
  architectures: ['OpenELMForCausalLM'],
  model_type: 'openelm',
  num_transformer_layers: 4,
  model_dim: 256,
  head_dim: 64,
  num_gqa_groups: 2,
  qkv_multipliers: [0.5, 1.0],
  ffn_multipliers: [0.5, 4.0],
  ffn_dim_divisor: 256,
  ffn_with_glu: true,
  normalize_qk_projections: true,
  share_input_output_layers: true,
  rope_freq_constant: 10000,
  rope_max_length: 4096,
  max_context_length: 512,
  vocab_size: 32000,
  bos_token_id: 1,
  eos_token_id: 2,
};
// v2: written by the library's synthesizeCheckpoint (seed 0x5eed) instead of a copy here.
const SYNTH_VERSION = 'synth-small-v2';

/** Writes config.json and model.safetensors (F16) for SYNTH_SMALL_CONFIG into dir, once. */
async function ensureSynthSmall(dir) {
  const marker = join(dir, '.version');
  if (existsSync(marker) && existsSync(join(dir, 'model.safetensors'))) return dir;
  // The built library's writer: the tensors and shapes come from the engine's own plan.
  const { synthesizeCheckpoint } = await import(pathToFileURL(join(root, 'dist/index.js')).href);
  await synthesizeCheckpoint(dir, SYNTH_SMALL_CONFIG, { dtype: 'F16', seed: 0x5eed });
  writeFileSync(marker, SYNTH_VERSION + '\n'); // last, so an interrupted write is redone
  return dir;
}

const COMPACT_VERSION = 'synth-270m-v1';

/** A synthetic OpenELM-270M (F32, seed 0) and its q4 conversion under `dir`, written once. */
async function ensureCompact270m(dir) {
  const src = join(dir, 'f32');
  const q4 = join(dir, 'q4');
  const marker = join(dir, '.version');
  if (!existsSync(marker)) {
    const lib = await import(pathToFileURL(join(root, 'dist/index.js')).href);
    rmSync(dir, { recursive: true, force: true });
    console.error(`writing a synthetic OpenELM-270M (float32) and its q4 conversion to ${dir} ...`);
    await lib.synthesizeCheckpoint(src, lib.releasedConfig('270M'), { dtype: 'F32', seed: 0 });
    await lib.convertCheckpoint(src, q4, { format: 'q4' });
    writeFileSync(marker, COMPACT_VERSION + '\n');
  }
  return { 'synth-270m-f32': src, 'synth-270m-q4': q4 };
}

/** What GET /models/ says of a folder: its size, and the format of a compact checkpoint. */
/** The format a config's checkpoint is stored in: openelm convert's q8/q4, MLX's mlx4/mlx8, else undefined (floats). */
export function storedFormat(config) {
  if (typeof config?.openelm_webgpu?.format === 'string') return config.openelm_webgpu.format;
  const bits = config?.quantization?.bits;
  return bits === 4 || bits === 8 ? `mlx${bits}` : undefined;
}

function describeModel(dir) {
  let bytes = 0;
  for (const f of readdirSync(dir)) {
    const st = statSync(join(dir, f));
    if (st.isFile()) bytes += st.size;
  }
  let format;
  try {
    format = storedFormat(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
  } catch {
    // served as it is; the page reports a bad config when it loads
  }
  return { bytes, ...(typeof format === 'string' ? { format } : {}) };
}

// ---- The server ----

function parseRange(header, size) {
  // One range only (bytes=a-b, bytes=a-, bytes=-n); anything else is served whole (allowed by RFC 9110).
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start;
  let end;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/**
 * Starts the demo server. `models` maps a name to a folder served at /models/NAME/. Returns the
 * URL, the per-path request counts and close().
 */
export async function startDemoServer({ port = 8080, host = '127.0.0.1', models = {}, log = () => {} } = {}) {
  const requests = new Map();
  /** Range header (or "" for none) of each request, per path. */
  const ranges = new Map();
  /** path -> file offset at which responses are cut. */
  const cuts = new Map();
  /** paths whose cut responses hang instead of ending. */
  const stalls = new Set();
  const mounts = [
    ['/demo/', join(root, 'demo')],
    ['/dist/', join(root, 'dist')],
    ...Object.entries(models).map(([name, dir]) => [`/models/${name}/`, resolve(dir)]),
  ];
  const cors = {
    'Access-Control-Allow-Origin': '*',
    'Access-Control-Allow-Headers': 'Range, Authorization',
    'Access-Control-Expose-Headers': 'Content-Range, Content-Length, Accept-Ranges, ETag, Last-Modified',
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    let path;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      res.writeHead(400).end('bad path');
      return;
    }
    if (!path.startsWith('/__demo/')) {
      requests.set(path, (requests.get(path) ?? 0) + 1);
      ranges.set(path, [...(ranges.get(path) ?? []), req.headers.range ?? '']);
    }
    const send = (status, body, type = 'text/plain; charset=utf-8', extra = {}) => {
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', ...cors, ...extra });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method === 'OPTIONS') return send(204, '');
    if (path === '/__demo/requests') {
      if (req.method === 'POST') {
        requests.clear();
        ranges.clear();
      }
      return send(200, JSON.stringify(Object.fromEntries(requests)), TYPES['.json']);
    }
    if (path === '/__demo/ranges') return send(200, JSON.stringify(Object.fromEntries(ranges)), TYPES['.json']);
    if (path === '/__demo/cut' && req.method === 'POST') {
      const p = url.searchParams.get('path') ?? '';
      const at = url.searchParams.get('at');
      if (at === null) cuts.delete(p);
      else cuts.set(p, Number(at));
      if (at !== null && url.searchParams.get('stall') === '1') stalls.add(p);
      else stalls.delete(p);
      return send(200, JSON.stringify(Object.fromEntries(cuts)), TYPES['.json']);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'only GET and HEAD', undefined, { Allow: 'GET, HEAD' });
    if (path === '/' || path === '/index.html') return send(302, '', undefined, { Location: '/demo/' });
    if (path === '/bench' || path === '/bench.html') return send(302, '', undefined, { Location: '/demo/bench.html' });
    if (path === '/models/' || path === '/models') {
      const list = Object.entries(models).map(([name, dir]) => ({ name, url: `/models/${name}/`, ...describeModel(dir) }));
      return send(200, JSON.stringify(list), TYPES['.json']);
    }
    const mount = mounts.find(([prefix]) => path.startsWith(prefix) || path + '/' === prefix);
    if (!mount) return send(404, `not found: ${path}`);
    if (path + '/' === mount[0]) return send(302, '', undefined, { Location: mount[0] });
    let file = normalize(join(mount[1], path.slice(mount[0].length)));
    if (file !== mount[1] && !file.startsWith(mount[1] + sep)) return send(403, 'outside the served folder');
    let st;
    try {
      st = statSync(file);
      if (st.isDirectory()) {
        file = join(file, 'index.html');
        st = statSync(file);
      }
    } catch {
      return send(404, `not found: ${path}`);
    }
    const type = TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream';
    const etag = `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
    const headers = { 'Content-Type': type, 'Cache-Control': 'no-store', 'Accept-Ranges': 'bytes', 'Last-Modified': st.mtime.toUTCString(), ETag: etag, ...cors };
    const range = req.headers.range ? parseRange(req.headers.range, st.size) : undefined;
    if (range === 'unsatisfiable') {
      res.writeHead(416, { ...headers, 'Content-Range': `bytes */${st.size}` });
      res.end();
      return;
    }
    const start = range ? range.start : 0;
    const end = range ? range.end : st.size - 1;
    res.writeHead(range ? 206 : 200, {
      ...headers,
      'Content-Length': String(st.size === 0 ? 0 : end - start + 1),
      ...(range ? { 'Content-Range': `bytes ${start}-${end}/${st.size}` } : {}),
    });
    if (req.method === 'HEAD' || st.size === 0) {
      res.end();
      return;
    }
    const cut = cuts.get(path);
    if (cut !== undefined && end >= cut) {
      // Send the bytes before the cut, then drop the connection (the client sees a short body).
      if (cut <= start) {
        res.flushHeaders();
        setTimeout(() => res.destroy(), 20);
        return;
      }
      const stream = createReadStream(file, { start, end: cut - 1 });
      stream.pipe(res, { end: false });
      // stall=1: hold the connection open after the cut (a download that hangs, for tab-close tests).
      if (!stalls.has(path)) stream.on('end', () => setTimeout(() => res.destroy(), 20));
      stream.on('error', () => res.destroy());
      return;
    }
    const stream = createReadStream(file, { start, end });
    stream.on('error', () => res.destroy());
    stream.pipe(res);
    log(`${req.method} ${path}${range ? ` bytes ${start}-${end}` : ''}`);
  });
  await new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, host, ok);
  });
  const addr = server.address();
  const url = `http://${host}:${addr.port}/`;
  return {
    url,
    requests,
    cuts,
    close: () => new Promise((ok) => server.close(() => ok())),
  };
}

// The small synthetic model again with a chat template (OpenELM-Instruct's Zephyr-style role
// tags) in tokenizer_config.json, so the chat page has a model to talk to without a download.
const SYNTH_CHAT_TEMPLATE =
  '{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}';

/** A folder linking synth-small's config and weights, plus tokenizer_config.json with the template. */
function ensureSynthChat(small) {
  // One folder per synth-small folder (servers run side by side: never rewrite a finished one).
  const dir = join(tmpdir(), 'openelm-demo', `synth-chat-${SYNTH_VERSION}-${small.replace(/[^A-Za-z0-9]+/g, '_').slice(-60)}`);
  if (existsSync(join(dir, 'tokenizer_config.json'))) return dir;
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'model.safetensors']) {
    try {
      symlinkSync(join(small, f), join(dir, f));
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
  }
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: SYNTH_CHAT_TEMPLATE, bos_token: '<s>', eos_token: '</s>' }));
  return dir;
}

/** The default model folders: the tiny-elm fixture, the small synthetic model, and it with a chat template. */
export async function defaultModels() {
  const models = {};
  const fixtures = process.env.OPENELM_FIXTURES ?? resolve(root, 'test/fixtures');
  const tiny = join(fixtures, 'tiny-elm');
  if (existsSync(join(tiny, 'config.json'))) models['tiny-elm'] = tiny;
  else console.error(`note: the tiny-elm fixture is not at ${tiny} (set OPENELM_FIXTURES); serving without it`);
  models['synth-small'] = await ensureSynthSmall(process.env.OPENELM_DEMO_SYNTH ?? join(tmpdir(), 'openelm-demo', SYNTH_VERSION));
  models['synth-chat'] = ensureSynthChat(models['synth-small']);
  return models;
}

async function main(argv) {
  let port = 8080;
  let host = '127.0.0.1';
  let json = false;
  let verbose = false;
  let compact = false;
  const extra = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--port') port = Number(value());
    else if (a === '--host') host = value();
    else if (a === '--json') json = true;
    else if (a === '--verbose') verbose = true;
    else if (a === '--compact-270m') compact = true;
    else if (a === '--model') {
      const v = value();
      const eq = v.indexOf('=');
      if (eq <= 0) throw new Error(`--model takes NAME=DIR, got "${v}"`);
      const dir = resolve(v.slice(eq + 1));
      if (!existsSync(join(dir, 'config.json'))) throw new Error(`--model ${v}: ${dir} has no config.json`);
      extra[v.slice(0, eq)] = dir;
    } else if (a === '--help' || a === '-h') {
      console.log('usage: node scripts/demo.mjs [--port 8080] [--host 127.0.0.1] [--model NAME=DIR ...] [--compact-270m] [--json] [--verbose]');
      return;
    } else throw new Error(`unknown option ${a} (see --help)`);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error('--port must be 0..65535');
  for (const f of ['dist/browser/openelm.js', 'demo/dist/app.js', 'dist/index.js']) {
    if (!existsSync(join(root, f))) throw new Error(`${f} is missing: run npm run build first`);
  }
  const compactModels = compact ? await ensureCompact270m(process.env.OPENELM_DEMO_COMPACT ?? join(tmpdir(), 'openelm-demo', COMPACT_VERSION)) : {};
  const models = { ...(await defaultModels()), ...compactModels, ...extra };
  const s = await startDemoServer({ port, host, models, log: verbose ? (m) => console.error(m) : undefined });
  if (json) {
    console.log(JSON.stringify({ url: s.url, models: Object.keys(models) }));
  } else {
    console.log(`openelm-webgpu demo: ${s.url}demo/  (benchmark: ${s.url}demo/bench.html)`);
    for (const [name, dir] of Object.entries(models)) console.log(`  model ${name}: ${s.url}models/${name}/  (${dir})`);
    console.log('Ctrl-C to stop.');
  }
  const stop = () => s.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).catch((e) => {
    if (e.code === 'EADDRINUSE') console.error(`demo: port ${e.port} is in use: pick another with --port N (--port 0 picks a free one)`);
    else console.error(`demo: ${e.message}`);
    process.exit(1);
  });
}
