// The architecture as the import graph shows it: no cycles, and data flowing one way,
// config -> plan -> weights -> kernels -> runtime -> generate -> API/CLI, with the bench harness
// and the demo on top (the library never imports them) and kernels knowing nothing about models.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { importGraph, cycles } from '../../scripts/import-graph.mjs';
import { repoRoot } from '../helpers.ts';

/** The layer of each folder: a module imports only from its own folder or lower layers. */
const LAYERS: Record<string, number> = {
  'src/util': 0,
  'src/config': 1,
  'src/io': 2,
  'src/gpu': 2,
  'src/tokenizer': 2,
  'src/weights': 3,
  kernels: 4,
  'src/runtime': 5,
  'src/generate': 6,
  'src/eval': 7,
  'src/api': 8,
  'src/doctor': 9,
  'src/serve': 9.5, // the HTTP server over a loaded model (api); the CLI starts it
  src: 10, // the entry points: index.ts (Node), browser.ts
  'src/cli': 11,
  bench: 12,
  'demo/src': 13,
};

function folderOf(file: string): string {
  const parts = file.split('/');
  if (parts[0] === 'src') return parts.length > 2 ? `src/${parts[1]}` : 'src';
  if (parts[0] === 'demo') return 'demo/src';
  return parts[0];
}

const { edges } = importGraph(repoRoot);

test('no import cycles anywhere in the tree', () => {
  assert.deepEqual(cycles(edges), []);
});

test('every import goes down the layers: the library never imports the harness, the demo or the tests', () => {
  const wrong: string[] = [];
  for (const [from, tos] of edges) {
    const a = folderOf(from);
    if (!(a in LAYERS)) continue; // tests and scripts may import anything
    for (const to of tos) {
      const b = folderOf(to);
      const ok = b in LAYERS && (LAYERS[b] < LAYERS[a] || a === b);
      if (!ok) wrong.push(`${from} -> ${to}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('kernels import only GPU plumbing, weight layouts and utilities: nothing about models', () => {
  const allowed = new Set(['kernels', 'src/gpu', 'src/weights', 'src/util']);
  const wrong = [...edges].filter(([f]) => f.startsWith('kernels/')).flatMap(([f, tos]) => tos.filter((t) => !allowed.has(folderOf(t))).map((t) => `${f} -> ${t}`));
  assert.deepEqual(wrong, []);
});

test('the import graph sees the whole tree (a guard against this test passing on nothing)', () => {
  assert.ok(edges.size > 100, `${edges.size} modules`);
  assert.ok(edges.get('src/runtime/engine.ts')?.includes('src/runtime/forward.ts'), 'engine.ts imports forward.ts');
});
