// Text in, text out through the CLI: --prompt with the built-in Llama-2 tokenizer, --chat with a
// template, and --model as a hub id served by a local stand-in for the hub on 127.0.0.1.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { synthesizeCheckpoint } from '../../src/io/synth.ts';
import { defaultTokenizer } from '../../src/tokenizer/default.ts';
import { encodeChat, renderChat, chatTemplateFromConfig } from '../../src/tokenizer/chat.ts';
import { CHAT_TEMPLATE, fixtureDir, repoRoot, LLAMA_VOCAB_CONFIG } from '../helpers.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function openelm(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin/openelm.js'), ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill(), 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

const tmp = mkdtempSync(join(tmpdir(), 'openelm-text-'));
const modelDir = join(tmp, 'llama-vocab');
const template = CHAT_TEMPLATE;
const COMMIT = '0123456789abcdef0123456789abcdef01234567';

before(async () => {
  // A small random model with Llama-2's 32000-token vocabulary, so real text fits it.
  await synthesizeCheckpoint(
    modelDir,
    LLAMA_VOCAB_CONFIG,
    { dtype: 'F16', seed: 3 },
  );
  writeFileSync(join(modelDir, 'tokenizer_config.json'), JSON.stringify({ chat_template: template, bos_token: '<s>', eos_token: '</s>' }));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

test('--prompt: the text is the decoding of the new ids', async () => {
  const r = await openelm(['generate', '--model', modelDir, '--prompt', 'Once upon a time, in 2024, café 😀', '--max-new-tokens', '12', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  const tok = defaultTokenizer();
  assert.equal(out.stats.prompt_tokens, tok.encode('Once upon a time, in 2024, café 😀').length);
  assert.ok(out.output_ids.length >= 1 && out.output_ids.length <= 12);
  assert.equal(out.text, tok.decode(out.output_ids, { stripLeadingSpace: false }));
});

test('human output streams the prompt and continuation, then a summary on stderr', async () => {
  const r = await openelm(['generate', '--model', modelDir, '--prompt', 'Hello', '--max-new-tokens', '4']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.startsWith('Hello'));
  assert.match(r.stderr, /prompt 2 tokens, \d+ new; prefill [\d.]+ tok\/s, decode [\d.]+ tok\/s/);
});

test('--chat applies the chat template', async () => {
  const r = await openelm(['generate', '--model', modelDir, '--prompt', 'Hi there', '--chat', '--max-new-tokens', '3', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const t = chatTemplateFromConfig({ chat_template: template }, 'x')!;
  const rendered = renderChat(t, [{ role: 'user', content: 'Hi there' }]);
  assert.equal(rendered, '<s><|user|>\nHi there</s>\n<|assistant|>\n');
  const ids = encodeChat(defaultTokenizer(), t, rendered);
  assert.equal(ids[0], 1);
  assert.ok(ids.includes(2));
  assert.equal(JSON.parse(r.stdout).stats.prompt_tokens, ids.length);
  const none = await openelm(['generate', '--model', fixtureDir('tiny-elm'), '--prompt', 'Hi', '--chat']);
  assert.notEqual(none.code, 0);
  assert.match(none.stderr, /--chat needs a chat_template in tokenizer_config.json/);
});

test('text errors: empty prompt, prompt outside a small vocabulary, bad sampling values', async () => {
  const cases: [string[], RegExp][] = [
    [['--model', modelDir, '--prompt', ''], /the prompt is empty/],
    [['--model', fixtureDir('tiny-elm'), '--prompt', 'Hello'], /outside this model's vocabulary of 512/],
    [['--model', modelDir, '--prompt', 'x', '--generate_kwargs', 'do_sample=true', 'temperature=-1'], /temperature must be a number >= 0/],
    [['--model', modelDir, '--prompt', 'x', '--generate_kwargs', 'top_p=1.5'], /top_p must be in \(0, 1\]/],
    [['--model', modelDir, '--prompt', 'x', '--generate_kwargs', 'foo=1'], /unsupported option "foo"/],
  ];
  for (const [args, re] of cases) {
    const r = await openelm(['generate', ...args]);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, re);
  }
});

test('sampling through the CLI: same seed, same tokens', async () => {
  const args = ['generate', '--model', modelDir, '--prompt', 'The', '--max-new-tokens', '8', '--json', '--generate_kwargs', 'do_sample=true', 'top_k=0', 'temperature=1.5', 'seed=11'];
  const a = JSON.parse((await openelm(args)).stdout);
  const b = JSON.parse((await openelm(args)).stdout);
  assert.deepEqual(a.output_ids, b.output_ids);
});

test('--model as a hub id: a 401 without a token, download with one into the HF cache, then the cache, also offline', async () => {
  const fx = fixtureDir('tiny-elm');
  const files: Record<string, Buffer> = {
    'config.json': readFileSync(join(fx, 'config.json')),
    'model.safetensors': readFileSync(join(fx, 'model.safetensors')),
  };
  let weightRequests = 0;
  const server: Server = createServer((req, res) => {
    const m = new RegExp(`^/acme/tiny-elm/resolve/(?:main|${COMMIT})/(.+)$`).exec(req.url ?? '');
    if (req.headers.authorization !== 'Bearer sekret') {
      res.writeHead(401, { 'X-Error-Code': 'GatedRepo' }).end('gated');
      return;
    }
    const body = m ? files[m[1]] : undefined;
    if (!body) {
      res.writeHead(404, { 'X-Error-Code': 'EntryNotFound' }).end('not found');
      return;
    }
    if (m![1] === 'model.safetensors' && req.method === 'GET') weightRequests++;
    // What the hub sends: the commit, and the blob name (sha256 for LFS files, a git blob id otherwise).
    const etag = createHash(m![1].endsWith('.safetensors') ? 'sha256' : 'sha1').update(body).digest('hex');
    res.writeHead(200, { 'Content-Length': body.length, 'X-Repo-Commit': COMMIT, ETag: `"${etag}"` }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const hfCache = join(tmp, 'hf-cache');
  let firstIds: number[] = [];
  const env = { HF_ENDPOINT: `http://127.0.0.1:${port}`, HF_HUB_CACHE: hfCache, HF_TOKEN: '', HF_HUB_OFFLINE: '' };
  const args = ['generate', '--model', 'acme/tiny-elm', '--input-ids', '1,5,9', '--max-new-tokens', '4', '--json'];
  try {
    const denied = await openelm(args, env);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /acme\/tiny-elm.*401.*--hf_access_token/);
    const first = await openelm([...args, '--hf_access_token', 'sekret'], env);
    assert.equal(first.code, 0, first.stderr);
    firstIds = JSON.parse(first.stdout).output_ids;
    const second = await openelm([...args, '--hf_access_token', 'sekret'], env);
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(JSON.parse(second.stdout).output_ids, JSON.parse(first.stdout).output_ids);
    assert.equal(weightRequests, 1, 'the second run reuses the cache');
    assert.equal(readFileSync(join(hfCache, 'models--acme--tiny-elm', 'refs', 'main'), 'utf8'), COMMIT);
  } finally {
    server.close();
  }
  // With the hub gone and HF_HUB_OFFLINE=1 the cached model still runs; a model not cached is one clear line.
  const offline = await openelm(args, { ...env, HF_HUB_OFFLINE: '1' });
  assert.equal(offline.code, 0, offline.stderr);
  assert.deepEqual(JSON.parse(offline.stdout).output_ids, firstIds);
  const missing = await openelm([...args.slice(0, 2), 'acme/not-cached', ...args.slice(3)], { ...env, HF_HUB_OFFLINE: '1' });
  assert.notEqual(missing.code, 0);
  assert.equal(missing.stderr.trim().split('\n').length, 1, missing.stderr);
  assert.match(missing.stderr, /acme\/not-cached: not in the Hugging Face cache at .*models--acme--not-cached \(no refs\/main\), and offline mode \(HF_HUB_OFFLINE\) forbids downloading it/);
});
