// Properties of the checkout itself: a fresh clone has what the tests need, and `npm ci` runs only
// the install scripts package.json approves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fixtureDir, repoRoot } from '../helpers.ts';

test('the reference fixture ships inside the repository (unless OPENELM_FIXTURES points elsewhere)', () => {
  const dir = fixtureDir('tiny-elm');
  if (process.env.OPENELM_FIXTURES === undefined) assert.ok(!relative(repoRoot, dir).startsWith('..'), `${dir} is outside ${repoRoot}`);
  for (const f of ['config.json', 'model.safetensors', 'reference.json', 'reference.bin']) assert.ok(existsSync(join(dir, f)), `${dir}/${f}`);
  // No test reaches for a folder beside the checkout.
  const src = join(repoRoot, 'test');
  for (const f of readdirSync(src, { recursive: true }).map(String).filter((n) => n.endsWith('.ts'))) {
    assert.doesNotMatch(readFileSync(join(src, f), 'utf8'), /\.\.\/shared\/|\/work\/shared/, f);
  }
});

test('every dependency install script is covered by allowScripts (npm install-scripts ls)', (t) => {
  const r = spawnSync('npm', ['install-scripts', 'ls'], { cwd: repoRoot, encoding: 'utf8' });
  if (r.error || /Unknown command/i.test(r.stdout + r.stderr)) {
    t.skip(`this npm has no install-scripts command (${r.error?.message ?? 'unknown command'})`);
    return;
  }
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /No packages with unreviewed install scripts/, r.stdout);
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean> };
  assert.deepEqual(Object.keys(pkg.allowScripts ?? {}).sort(), ['esbuild', 'webgpu']);
});
