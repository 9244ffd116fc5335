// Builds the Node entry points, the CLI, the browser bundle, the demo pages, the type declarations
// and the test files with esbuild (tsc for the declarations). WGSL files are inlined as text so the
// same sources serve Node and the browser.
//
// Outputs: dist/index.js, dist/cli.js (Node); dist/browser/openelm.js (+ dist/browser/chunks/*: the
// built-in tokenizer, loaded on first use); dist/browser/worker.js (the worker engine's script); demo/dist/{app,chat,bench,eval,gpu}.js (the demo pages, importing
// the browser bundle); dist/types/{index,browser}.d.ts (declarations); build/test/*.test.js.
import { build } from 'esbuild';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const common = {
  bundle: true,
  format: 'esm',
  sourcemap: true,
  target: 'es2022',
  loader: { '.wgsl': 'text' },
  logLevel: 'warning',
};
const nodeCommon = {
  ...common,
  platform: 'node',
  external: ['webgpu', 'playwright-core'],
  // esbuild's ESM output needs require() for any CommonJS dependency bundled in.
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
};
const browserCommon = {
  ...common,
  platform: 'browser',
  // Anything Node-only reaching the browser graph fails the build here rather than in a page.
  external: [],
};

rmSync(join(root, 'build'), { recursive: true, force: true });
// `node scripts/build.mjs NAME...` builds only the test files whose names contain a NAME.
const only = process.argv.slice(2);
// Tests live in test/GROUP/ (unit, gpu, cli, browser); a NAME may also be a group.
const tests = readdirSync(join(root, 'test'), { recursive: true })
  .map(String)
  .filter((f) => f.endsWith('.test.ts'))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .map((f) => join(root, 'test', f));

// The demo pages import the library as '../../src/browser.ts' (for types); in the built page that
// import is the real bundle, so the pages exercise dist/browser/openelm.js itself.
const useBrowserBundle = {
  name: 'use-browser-bundle',
  setup(b) {
    b.onResolve({ filter: /\/src\/browser\.ts$/ }, () => ({ path: '../../dist/browser/openelm.js', external: true }));
  },
};

/** Declarations with tsc, `.ts` import extensions rewritten to `.js`, plus the two entry stubs. */
async function declarations() {
  const out = join(root, 'dist/types');
  const tsc = join(root, 'node_modules/.bin/tsc');
  const code = await new Promise((resolve) => {
    const p = spawn(tsc, ['-p', join(root, 'scripts/tsconfig.types.json')], { stdio: 'inherit' });
    p.on('close', resolve);
    p.on('error', () => resolve(1));
  });
  // tsc still writes declarations when the code has type errors; `npm test` fails on those
  // (tsc --noEmit), so here they are a warning and the rest of the build goes on.
  if (code !== 0) console.error('warning: tsc reported errors while writing dist/types (see above)');
  if (!existsSync(out)) return;
  const walk = (dir) => {
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.d.ts')) {
        const s = readFileSync(p, 'utf8');
        const t = s.replace(/((?:from|import)\s*\(?\s*['"])(\.{1,2}\/[^'"]+?)\.ts(['"])/g, '$1$2.js$3');
        if (t !== s) writeFileSync(p, t);
      }
    }
  };
  walk(out);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'index.d.ts'), "export * from './src/index.js';\n");
  writeFileSync(join(out, 'browser.d.ts'), "export * from './src/browser.js';\n");
}

const results = await Promise.all([
  build({ ...nodeCommon, entryPoints: { index: join(root, 'src/index.ts'), cli: join(root, 'bench/cli.ts') }, outdir: join(root, 'dist') }),
  build({ ...nodeCommon, entryPoints: tests, outdir: join(root, 'build/test'), outbase: join(root, 'test') }),
  (async () => {
    // Written in place (other builds and tests may be reading it), then stale chunks are removed.
    const r = await build({
      ...browserCommon,
      entryPoints: { openelm: join(root, 'src/browser.ts') },
      outdir: join(root, 'dist/browser'),
      splitting: true,
      chunkNames: 'chunks/[name]-[hash]',
      metafile: true,
    });
    const keep = new Set(Object.keys(r.metafile.outputs).map((f) => resolve(f)));
    const chunks = join(root, 'dist/browser/chunks');
    for (const f of existsSync(chunks) ? readdirSync(chunks) : []) {
      if (!keep.has(join(chunks, f))) rmSync(join(chunks, f), { force: true });
    }
    return r;
  })(),
  // The worker engine's script (createWorkerModel): one file, no chunks, so the page's bundle finds
  // it beside itself (new URL('./worker.js', import.meta.url)).
  build({ ...browserCommon, entryPoints: { worker: join(root, 'src/worker-entry.ts') }, outdir: join(root, 'dist/browser') }),
  build({
    ...browserCommon,
    entryPoints: { app: join(root, 'demo/src/app.ts'), chat: join(root, 'demo/src/chat.ts'), bench: join(root, 'demo/src/bench.ts'), eval: join(root, 'demo/src/eval.ts'), gpu: join(root, 'demo/src/gpu.ts') },
    outdir: join(root, 'demo/dist'),
    plugins: [useBrowserBundle],
  }),
  only.length === 0 ? declarations() : undefined,
]);

// Bundle sizes, for people (the browser test checks what is inside).
const meta = results[2].metafile;
if (process.env.OPENELM_BUILD_QUIET !== '1' && meta) {
  const sizes = Object.entries(meta.outputs)
    .filter(([f]) => f.endsWith('.js'))
    .map(([f, o]) => `${relative(root, resolve(f))} ${(o.bytes / 1024).toFixed(0)} KiB`);
  console.error(`browser bundle: ${sizes.join(', ')}`);
}
