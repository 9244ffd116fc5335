// The project's import graph: cycles, files over 400 lines, and which folder imports which.
// `node scripts/import-graph.mjs` prints a report; `--json` prints it as JSON (test/unit/structure
// reads that). Only relative imports of .ts files count: packages are leaves.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const defaultRoot = resolve(new URL('..', import.meta.url).pathname);
const ROOTS = ['src', 'kernels', 'bench', 'demo/src', 'test', 'scripts'];
const LONG = 400;

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name === 'fixtures' || name === 'reference') continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (/\.(ts|mjs|wgsl)$/.test(name) && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Relative import specifiers of a TypeScript/JS file (static, dynamic and `export ... from`). */
function importsOf(text) {
  const specs = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm;
  for (let m = re.exec(text); m; m = re.exec(text)) specs.push(m[1]);
  return specs;
}

/** The folder a file belongs to, for the folder matrix: src/runtime, kernels, bench, test/unit ... */
function folderOf(rel) {
  const parts = rel.split('/');
  if (parts[0] === 'src' || parts[0] === 'test' || parts[0] === 'demo') return parts.length > 2 ? `${parts[0]}/${parts[1]}` : parts[0];
  return parts[0];
}

/** Files (relative to `root`) with the files they import, and their line counts. */
export function importGraph(root = defaultRoot) {
  const files = ROOTS.flatMap((r) => {
    try {
      return walk(join(root, r), []);
    } catch {
      return [];
    }
  });
  const edges = new Map();
  const lines = new Map();
  for (const f of files) {
    const rel = relative(root, f);
    const text = readFileSync(f, 'utf8');
    lines.set(rel, text.split('\n').length - (text.endsWith('\n') ? 1 : 0));
    if (f.endsWith('.wgsl')) continue;
    const to = importsOf(text)
      .map((s) => relative(root, resolve(dirname(f), s)))
      .filter((t) => /\.(ts|mjs)$/.test(t));
    edges.set(rel, [...new Set(to)]);
  }
  return { edges, lines };
}

/** Strongly connected components with more than one file (or a file importing itself): the cycles. */
export function cycles(edges) {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const on = new Set();
  const out = [];
  const visit = (v) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do {
        w = stack.pop();
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (edges.get(v) ?? []).includes(v)) out.push(comp.sort());
    }
  };
  for (const v of edges.keys()) if (!idx.has(v)) visit(v);
  return out;
}

export function report(root = defaultRoot) {
  const { edges, lines } = importGraph(root);
  const folders = {};
  for (const [from, tos] of edges) {
    const a = folderOf(from);
    for (const t of tos) {
      const b = folderOf(t);
      if (a === b) continue;
      (folders[a] ??= new Set()).add(b);
    }
  }
  const long = [...lines].filter(([, n]) => n > LONG).sort((x, y) => y[1] - x[1]);
  return {
    files: edges.size,
    cycles: cycles(edges),
    long: long.map(([file, n]) => ({ file, lines: n })),
    folders: Object.fromEntries(Object.entries(folders).sort().map(([k, v]) => [k, [...v].sort()])),
  };
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) {
  const r = report();
  if (process.argv.includes('--json')) {
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  } else {
    console.log(`${r.files} modules`);
    console.log(`cycles: ${r.cycles.length === 0 ? 'none' : ''}`);
    for (const c of r.cycles) console.log(`  ${c.join(' <-> ')}`);
    console.log(`files over ${LONG} lines:`);
    for (const { file, lines } of r.long) console.log(`  ${lines}  ${file}`);
    console.log('folder -> folders it imports:');
    for (const [k, v] of Object.entries(r.folders)) console.log(`  ${k} -> ${v.join(', ')}`);
  }
}
