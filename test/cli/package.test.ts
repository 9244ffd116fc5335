// The package as a user gets it: `npm pack` of this repository (dist/ as `npm run build` left it),
// installed with npm into a throwaway project, then used the ways a user would: the library from
// Node (a synthetic model, a few tokens on the GPU), the `openelm` command through npx, and a
// small browser app bundled with esbuild and run in headless Chromium. Needs `npm run build` first
// and npm on PATH; npm takes the dependencies from its cache when it can (--prefer-offline).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize, sep } from 'node:path';
import { after, before, test } from 'node:test';
import { LLAMA_VOCAB_CONFIG, repoRoot } from '../helpers.ts';
import { CHROMIUM, launchChromium } from '../browser-session.ts';

const tmp = mkdtempSync(join(tmpdir(), 'openelm-package-'));
const app = join(tmp, 'consumer');
const modelDir = join(app, 'model');
// A small vocabulary keeps the model tiny; the shape is otherwise the helpers' small OpenELM.
const CONFIG = { ...LLAMA_VOCAB_CONFIG, vocab_size: 512 };
let tarball = '';
let packed: string[] = [];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command with the environment of a user's shell: no npm_* variables of an `npm test` around us. */
function run(cmd: string, args: string[], cwd: string, timeoutMs = 150_000): Promise<Run> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_(lifecycle|package|command|execpath|node_execpath)/i.test(k)) env[k] = v;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const ok = (r: Run, what: string) => assert.equal(r.code, 0, `${what} failed (exit ${r.code}):\n${r.stderr.slice(-3000)}`);

before(async () => {
  for (const f of ['dist/index.js', 'dist/cli.js', 'dist/browser/openelm.js', 'dist/types/index.d.ts']) {
    assert.ok(existsSync(join(repoRoot, f)), `${f} is missing: run npm run build first`);
  }
  // --ignore-scripts: `prepare` would rebuild (and delete build/, where the tests run from).
  const r = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], repoRoot);
  ok(r, 'npm pack');
  const info = JSON.parse(r.stdout) as { filename: string; files: { path: string }[] }[];
  tarball = join(tmp, info[0].filename);
  packed = info[0].files.map((f) => f.path);
  mkdirSync(app);
  // A user's project. allowScripts approves webgpu's install script (it clears macOS's quarantine
  // flag on dawn.node), so npm 11 has nothing to warn about and npm 12 runs it. npm counts the
  // `prepare` of a package installed from a tarball (not from the registry) as an install script
  // too (under the key `file:<tarball>`), but never runs it for a tarball (it would fail: the
  // package has no scripts/build.mjs, and needs no build); `false` records that, as
  // `npm install-scripts deny` would for a user installing our tarball.
  const allowScripts = { webgpu: true, [`file:${tarball}`]: false };
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module', allowScripts }, null, 2));
});

after(() => rmSync(tmp, { recursive: true, force: true }));

test('npm pack: the built library, types, CLI, README and LICENSE; no sources, tests or data', () => {
  for (const f of ['package.json', 'README.md', 'LICENSE', 'bin/openelm.js', 'dist/index.js', 'dist/cli.js', 'dist/browser/openelm.js', 'dist/types/index.d.ts', 'dist/types/browser.d.ts']) {
    assert.ok(packed.includes(f), `${f} is in the package`);
  }
  const stray = packed.filter((f) => !/^(package\.json|README\.md|LICENSE|bin\/openelm\.js|dist\/.+)$/.test(f));
  assert.deepEqual(stray, [], 'only the files a user needs');
  assert.deepEqual(packed.filter((f) => /^(src|test|fixtures|bench|scripts|demo|shaders|kernels|build)\//.test(f)), []);
  const bytes = readFileSync(tarball).length;
  assert.ok(bytes < 8e6, `the tarball is ${bytes} bytes`);
});

test('installed into a throwaway project: the library and the CLI run a model on the GPU, and a browser app bundles and runs', { timeout: 300_000 }, async (t) => {
  const install = await run('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund'], app);
  ok(install, 'npm install of the tarball');
  assert.doesNotMatch(install.stdout + install.stderr, /allow-scripts|not yet covered/, 'no warning about install scripts');
  const installed = readdirSync(join(app, 'node_modules'));
  for (const dev of ['esbuild', 'typescript', 'playwright-core', '@tensorflow', 'wgsl-preprocessor', '@types']) assert.ok(!installed.includes(dev), `devDependency ${dev} is not installed`);

  // (a) The library from Node.
  writeFileSync(
    join(app, 'lib.mjs'),
    `import { loadModel, synthesizeCheckpoint } from 'openelm-webgpu';
const [dir, config] = process.argv.slice(2);
await synthesizeCheckpoint(dir, JSON.parse(config), { dtype: 'F16', seed: 7 });
const model = await loadModel(dir);
const ids = [];
for await (const t of model.generate([1], { maxNewTokens: 3 })) ids.push(t.id);
const [logits] = await model.logits([1, 5, 9]);
model.dispose();
console.log(JSON.stringify({ resolved: import.meta.resolve('openelm-webgpu'), ids, logits: Array.from(logits) }));
`,
  );
  const lib = await run(process.execPath, ['lib.mjs', modelDir, JSON.stringify(CONFIG)], app);
  ok(lib, 'the library script');
  const fromLib = JSON.parse(lib.stdout) as { resolved: string; ids: number[]; logits: number[] };
  assert.ok(fromLib.resolved.endsWith('/node_modules/openelm-webgpu/dist/index.js'), fromLib.resolved);
  assert.equal(fromLib.ids.length, 3);
  assert.equal(fromLib.logits.length, CONFIG.vocab_size);

  // (b) The CLI through npx: the same greedy tokens as the library.
  const cli = await run('npx', ['--no', 'openelm', 'generate', '--model', modelDir, '--input-ids', '1', '--max-new-tokens', '3', '--json'], app);
  ok(cli, 'npx openelm generate');
  const fromCli = JSON.parse(cli.stdout) as { output_ids: number[] };
  assert.deepEqual(fromCli.output_ids, fromLib.ids);

  // (c) A browser app: esbuild resolves the "browser" export condition to the browser bundle.
  writeFileSync(
    join(app, 'app.mjs'),
    `import { loadModel } from 'openelm-webgpu';
globalThis.runModel = async (url) => {
  const model = await loadModel(url, { cache: false });
  const [logits] = await model.logits([1, 5, 9]);
  model.dispose();
  return Array.from(logits);
};
`,
  );
  const esbuild = join(repoRoot, 'node_modules/.bin/esbuild');
  const bundle = await run(esbuild, ['app.mjs', '--bundle', '--platform=browser', '--format=iife', '--outfile=app.js', '--metafile=meta.json', '--log-level=warning'], app);
  ok(bundle, 'esbuild');
  const inputs = Object.keys((JSON.parse(readFileSync(join(app, 'meta.json'), 'utf8')) as { inputs: Record<string, unknown> }).inputs);
  assert.ok(inputs.includes('node_modules/openelm-webgpu/dist/browser/openelm.js'), `bundled from ${inputs.join(', ')}`);
  assert.deepEqual(inputs.filter((f) => f.includes('dist/index.js') || f.startsWith('node:')), []);
  assert.doesNotMatch(readFileSync(join(app, 'app.js'), 'utf8'), /\bfrom\s*["']node:|require\(["']node:|import\(["']node:/, 'no node: imports in the browser app');

  if (!existsSync(CHROMIUM)) {
    t.diagnostic(`no Chromium at ${CHROMIUM}: the browser app was bundled but not run`);
    return;
  }
  writeFileSync(join(app, 'index.html'), '<!doctype html><meta charset="utf-8"><script src="app.js"></script>');
  const server = await serve(app);
  const profile = mkdtempSync(join(tmpdir(), 'openelm-chromium-'));
  const ctx = await launchChromium(profile);
  try {
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    await page.goto(`${base}index.html`);
    const fromBrowser = (await page.evaluate(async (url) => (globalThis as unknown as { runModel: (u: string) => Promise<number[]> }).runModel(url), `${base}model/`)) as number[];
    assert.deepEqual(errors, []);
    assert.equal(fromBrowser.length, CONFIG.vocab_size);
    // Same weights, same WebGPU kernels, another process: the logits agree to float rounding.
    let worst = 0;
    for (let i = 0; i < fromBrowser.length; i++) worst = Math.max(worst, Math.abs(fromBrowser[i] - fromLib.logits[i]) / (1 + Math.abs(fromLib.logits[i])));
    assert.ok(worst < 1e-3, `browser and Node logits differ by ${worst}`);
    t.diagnostic(`browser vs Node logits: largest relative difference ${worst.toExponential(2)}`);
  } finally {
    await ctx.close();
    rmSync(profile, { recursive: true, force: true });
    server.closeAllConnections();
    server.close();
  }
});

/** A static file server for `root` on 127.0.0.1 (the page and the model folder). */
function serve(root: string): Promise<Server> {
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json' };
  const s = createServer((req, res) => {
    const path = normalize(join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
    if (!path.startsWith(root + sep) || !existsSync(path)) {
      res.writeHead(404).end();
      return;
    }
    let body: Buffer;
    try {
      body = readFileSync(path);
    } catch {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': types[extname(path)] ?? 'application/octet-stream', 'content-length': body.length }).end(body);
  });
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(s)));
}
