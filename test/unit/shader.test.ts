// The WGSL preprocessor (src/gpu/shader.ts): `#include` pastes snippets from shaders/include/
// (nested, each once, unknown names and cycles refused), `#if` / `#elif` / `#else` nest, every
// define must have a value; and the built-in shaders share snippets instead of copying them.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { preprocess, resolveIncludes, SHADER_INCLUDES } from '../../src/gpu/shader.ts';
import { repoRoot } from '../helpers.ts';

const lines = (s: string) => s.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('//'));

test('#include pastes a snippet, nested snippets once each, in order', () => {
  const inc = { a: 'fn a() {}\n', b: '#include a\nfn b() {}\n', c: '#include a\n#include b\nfn c() {}\n' };
  assert.deepEqual(lines(resolveIncludes('#include c\nfn main() {}', inc)), ['fn a() {}', 'fn b() {}', 'fn c() {}', 'fn main() {}']);
  // Indented include lines work; text merely mentioning #include mid-line is left alone.
  assert.deepEqual(lines(resolveIncludes('  #include a\nlet s = 1; // see #include b', inc)), ['fn a() {}', 'let s = 1; // see #include b']);
});

test('an unknown include and an include cycle are clear errors', () => {
  assert.throws(() => resolveIncludes('#include nope\n', { a: '' }), /shader include nope is unknown \(known: a\)/);
  assert.throws(() => preprocess('#include no_such_snippet\n'), /shader include no_such_snippet is unknown \(known: .*matmul_out/);
  assert.throws(() => resolveIncludes('#include x\n', { x: '#include y\n', y: '#include x\n' }), /shader include cycle: x -> y -> x/);
});

test('#if / #elif / #else nest, inside includes too; a define without a value is refused', () => {
  const src = ['#if A', '#if B', 'ab', '#else', 'a', '#endif', '#elif C', 'c', '#else', 'none', '#endif'].join('\n');
  assert.deepEqual(lines(preprocess(src, { A: true, B: true, C: false })), ['ab']);
  assert.deepEqual(lines(preprocess(src, { A: true, B: false, C: true })), ['a']);
  assert.deepEqual(lines(preprocess(src, { A: false, B: true, C: true })), ['c']);
  assert.deepEqual(lines(preprocess(src, { A: false, B: false, C: false })), ['none']);
  // matmul_out's own #if GLU / #if NORM / #if ACC resolve with the includer's defines.
  const out = preprocess('#include matmul_out\n', { GLU: true, NORM: false, SILU: false, ACC: true });
  assert.match(out, /const OWN: u32 = 2u;/);
  assert.match(out, /y\[i\] = y\[i\] \+ v;/);
  assert.doesNotMatch(out, /#if|#else|#endif|#include/);
  assert.throws(() => preprocess(src, { A: true, B: true }), /shader define C has no value \(known: A, B\)/);
});

test('every snippet in shaders/include/ is known to the preprocessor and used by a shader', () => {
  const dir = join(repoRoot, 'shaders/include');
  const files = readdirSync(dir).filter((f) => f.endsWith('.wgsl')).map((f) => f.slice(0, -5)).sort();
  assert.deepEqual(Object.keys(SHADER_INCLUDES).sort(), files);
  for (const f of files) assert.equal(SHADER_INCLUDES[f], readFileSync(join(dir, `${f}.wgsl`), 'utf8'), f);
  const all = [...readdirSync(join(repoRoot, 'shaders')).filter((f) => f.endsWith('.wgsl')).map((f) => readFileSync(join(repoRoot, 'shaders', f), 'utf8')), ...Object.values(SHADER_INCLUDES)].join('\n');
  for (const f of files) assert.match(all, new RegExp(`^#include ${f}$`, 'm'), `${f} is included somewhere`);
});

/** The module-scope functions of a WGSL file: name and whitespace-normalized text (to the `}` at column 0). */
function functions(src: string): { name: string; text: string }[] {
  return [...src.matchAll(/^fn (\w+)[^]*?^\}/gm)].map((m) => ({ name: m[1], text: m[0].replace(/\s+/g, ' ') }));
}

test('no WGSL function is copied between shaders (shared ones come from shaders/include/)', () => {
  const seen = new Map<string, string>();
  const dirs = ['shaders', 'shaders/include'];
  for (const d of dirs)
    for (const f of readdirSync(join(repoRoot, d)).filter((x) => x.endsWith('.wgsl'))) {
      const fns = functions(readFileSync(join(repoRoot, d, f), 'utf8'));
      for (const { name, text } of fns) {
        const where = `${d}/${f}`;
        const other = seen.get(text);
        assert.ok(other === undefined || other === where, `fn ${name} appears in ${other} and ${where}`);
        seen.set(text, where);
      }
    }
  assert.ok(seen.size > 30, `found the shaders' functions (${seen.size})`);
});
