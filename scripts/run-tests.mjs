// Runs the built tests with node's test runner, one group after another:
//   unit     CPU only (parsers, tokenizer, options, CPU references)
//   gpu      WebGPU through Dawn (kernels against their CPU references, the engine, the model API)
//   cli      the `openelm` command and other child processes (needs the build in dist/)
//   browser  the bundle and demo pages in headless Chromium (skipped with a reason without one)
// `node scripts/run-tests.mjs [GROUP|NAME...]` runs only the groups, or test files whose names
// contain a NAME. Points the Vulkan loader at SwiftShader when no driver was chosen and Debian's
// chromium ships one, so the GPU tests run on a machine without a GPU.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const GROUPS = ['unit', 'gpu', 'cli', 'browser'];
const root = new URL('..', import.meta.url).pathname;
const dir = join(root, 'build/test');
const only = process.argv.slice(2);
const files = GROUPS.flatMap((g) =>
  (existsSync(join(dir, g)) ? readdirSync(join(dir, g)) : [])
    .filter((f) => f.endsWith('.test.js'))
    .filter((f) => only.length === 0 || only.includes(g) || only.some((o) => f.includes(o)))
    .map((f) => join(dir, g, f)),
);
if (files.length === 0) {
  console.error(`run-tests: no built test matches ${only.join(' ') || '(all)'} in ${dir}; run node scripts/build.mjs first`);
  process.exit(1);
}
const env = { ...process.env };
const swiftshader = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (!env.VK_ICD_FILENAMES && existsSync(swiftshader)) env.VK_ICD_FILENAMES = swiftshader;
// Kernel choices the tests time are remembered in a file of this run's own, not the user's cache.
const tuningDir = env.OPENELM_TUNING_FILE ? undefined : mkdtempSync(join(tmpdir(), 'openelm-tests-tuning-'));
if (tuningDir) env.OPENELM_TUNING_FILE = join(tuningDir, 'tuning.json');
const r = spawnSync(process.execPath, ['--enable-source-maps', '--test', '--test-concurrency=1', ...files], { stdio: 'inherit', env });
if (tuningDir) rmSync(tuningDir, { recursive: true, force: true });
process.exit(r.status ?? 1);
