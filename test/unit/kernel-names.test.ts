// A kernel is one shaders/NAME.wgsl plus one kernels/NAME.ts, and the kernel lab's switchboard
// (KERNEL_NAMES) offers exactly those, each dispatched by the library.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { KERNEL_NAMES } from '../../src/gpu/kernel-variants.ts';
import { repoRoot } from '../helpers.ts';

const names = (dir: string, ext: string) =>
  readdirSync(join(repoRoot, dir))
    .filter((f) => f.endsWith(ext) && !f.endsWith('.d.ts'))
    .map((f) => f.slice(0, -ext.length))
    .sort();

test('every kernel name has shaders/NAME.wgsl and kernels/NAME.ts, and every such pair is a kernel name', () => {
  const switchboard = [...KERNEL_NAMES].sort();
  assert.deepEqual(names('shaders', '.wgsl'), switchboard);
  assert.deepEqual(names('kernels', '.ts'), switchboard);
});

test("each kernel wrapper compiles its own shader under its own name, and the library's runtime imports it", () => {
  const runtime = readdirSync(join(repoRoot, 'src/runtime'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => readFileSync(join(repoRoot, 'src/runtime', f), 'utf8'))
    .join('\n');
  for (const k of KERNEL_NAMES) {
    const src = readFileSync(join(repoRoot, 'kernels', `${k}.ts`), 'utf8');
    assert.match(src, new RegExp(`import builtIn from '\\.\\./shaders/${k}\\.wgsl';`), `kernels/${k}.ts imports shaders/${k}.wgsl`);
    assert.match(src, new RegExp(`shaderSource\\('${k}', builtIn\\)`), `kernels/${k}.ts lets a variant stand in for ${k}`);
    assert.ok(runtime.includes(`kernels/${k}.ts'`), `src/runtime/ imports kernels/${k}.ts (the engine dispatches ${k})`);
  }
});
