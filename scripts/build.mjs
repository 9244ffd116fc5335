// Builds the Node entry points, the CLI, the browser bundle and the test files with esbuild.
// WGSL files are inlined as text so the same sources serve Node and the browser.
import { build } from 'esbuild';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

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
  external: ['webgpu'],
  // esbuild's ESM output needs require() for any CommonJS dependency bundled in.
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
};

rmSync(join(root, 'build'), { recursive: true, force: true });
// `node scripts/build.mjs NAME...` builds only the test files whose names contain a NAME.
const only = process.argv.slice(2);
const tests = readdirSync(join(root, 'test'))
  .filter((f) => f.endsWith('.test.ts'))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .map((f) => join(root, 'test', f));

await Promise.all([
  build({ ...nodeCommon, entryPoints: { index: join(root, 'src/index.ts'), cli: join(root, 'src/cli/main.ts') }, outdir: join(root, 'dist') }),
  build({ ...nodeCommon, entryPoints: tests, outdir: join(root, 'build/test') }),
]);
