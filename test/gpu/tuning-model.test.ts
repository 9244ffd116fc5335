// A model load takes its decode matmul kernel from the tuning store when the store remembers one
// for this adapter and shape (no timing, and the engine really runs the remembered kernel), times
// it when the shape changes, and the Node entry point's default store is <cache>/tuning.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../../src/index.ts';
import { gpuTuningKey, keyString } from '../../src/runtime/tuning.ts';
import { memoryTuningStore, parseTuningText, type TuningRecord, type TuningStore } from '../../src/io/tuning-store.ts';
import { nodeTuningStore } from '../../src/io/node-tuning-store.ts';
import { loadFixture, maxAbsDiff, testGpu } from '../helpers.ts';

const fx = loadFixture('tiny-elm');
const ids = fx.manifest.prompts[0].input_ids;

/** A store that counts its writes (a write follows every timing, and only a timing). */
function countingStore(inner: TuningStore = memoryTuningStore()): TuningStore & { sets: number } {
  const s = {
    where: inner.where,
    sets: 0,
    get: (k: string) => inner.get(k),
    set: (k: string, r: TuningRecord) => {
      s.sets++;
      return inner.set(k, r);
    },
    entries: () => inner.entries(),
  };
  return s;
}

test('a second load with the same store takes the remembered GEMV choice without timing; another shape is timed', { timeout: 120_000 }, async () => {
  const gpu = await testGpu();
  const store = countingStore();
  const a = await loadModel(fx.dir, { gpu, dtype: 'f16', tuningStore: store });
  try {
    assert.equal(a.gemvTuning?.remembered, false);
    assert.equal(store.sets, 1);
    const b = await loadModel(fx.dir, { gpu, dtype: 'f16', tuningStore: store });
    try {
      assert.equal(b.gemvTuning?.remembered, true);
      assert.equal(b.gemvTuning?.choice, a.gemvTuning?.choice);
      assert.deepEqual(b.gemvTuning?.ms, a.gemvTuning?.ms, 'the times are those of the first load');
      assert.equal(b.engine.gemv, a.gemvTuning?.choice);
      assert.equal(store.sets, 1, 'not timed again');
    } finally {
      b.dispose();
    }
    // q8 weights are another shape for the GEMV (the format is part of it): timed and stored.
    const c = await loadModel(fx.dir, { gpu, dtype: 'q8', tuningStore: store });
    c.dispose();
    assert.equal(c.gemvTuning?.remembered, false);
    assert.equal(store.sets, 2);
    assert.deepEqual((await store.entries()).map(([, r]) => r.shape.split(':')[0]).sort(), ['f16', 'q8']);
    // No store: every load times.
    const d = await loadModel(fx.dir, { gpu, dtype: 'f16', tuningStore: null });
    d.dispose();
    assert.equal(d.gemvTuning?.remembered, false);
  } finally {
    a.dispose();
  }
});

test('the remembered choice is the kernel the engine runs (planted records for each kernel), with the same logits', { timeout: 120_000 }, async () => {
  const gpu = await testGpu();
  const probe = await loadModel(fx.dir, { gpu, dtype: 'f32', tuningStore: null });
  probe.dispose();
  const key = probe.gemvTuning!.key;
  assert.deepEqual(key, gpuTuningKey(gpu, 'gemv', key.shape), 'the key names this adapter');
  assert.match(key.shape, /^f32:N=\d+:K=128$/);
  const logits: Float32Array[] = [];
  for (const choice of ['rows', 'coalesced'] as const) {
    const store = countingStore();
    await store.set(keyString(key), { ...key, choice, ms: { rows: choice === 'rows' ? 1 : 2, coalesced: choice === 'rows' ? 2 : 1 }, at: '2026-01-01T00:00:00.000Z' });
    const m = await loadModel(fx.dir, { gpu, dtype: 'f32', tuningStore: store });
    try {
      assert.deepEqual([m.gemvTuning?.remembered, m.gemvTuning?.choice, m.engine.gemv, store.sets], [true, choice, choice, 1]);
      const out = await m.generateText(ids, { maxNewTokens: 2, stopAtEos: false });
      assert.deepEqual(out.ids, fx.manifest.prompts[0].greedy.tokens.slice(0, 2));
      logits.push((await m.logits([...ids, ...out.ids]))[0]);
    } finally {
      m.dispose();
    }
  }
  assert.ok(maxAbsDiff(logits[0], logits[1]) < 1e-3, 'both kernels give the same decode logits');
});

test("Node's default store is <cache>/tuning.json: kept across loads, two loads at once leave a whole file, OPENELM_RETUNE=1 times again", { timeout: 180_000 }, async () => {
  const gpu = await testGpu();
  const dir = mkdtempSync(join(tmpdir(), 'openelm-tuning-gpu-'));
  const saved = { cache: process.env.OPENELM_CACHE, retune: process.env.OPENELM_RETUNE, file: process.env.OPENELM_TUNING_FILE };
  process.env.OPENELM_CACHE = dir;
  delete process.env.OPENELM_TUNING_FILE;
  delete process.env.OPENELM_RETUNE;
  try {
    const [a, b] = await Promise.all([loadModel(fx.dir, { gpu, dtype: 'f16' }), loadModel(fx.dir, { gpu, dtype: 'q4' })]);
    a.dispose();
    b.dispose();
    assert.deepEqual([a.gemvTuning?.remembered, b.gemvTuning?.remembered], [false, false]);
    const file = join(dir, 'tuning.json');
    const onDisk = parseTuningText(readFileSync(file, 'utf8'));
    assert.deepEqual([...onDisk.values()].map((r) => r.shape.split(':')[0]).sort(), ['f16', 'q4'], 'both loads are in the file');
    assert.deepEqual(readdirSync(dir), ['tuning.json']);

    const c = await loadModel(fx.dir, { gpu, dtype: 'q4' });
    c.dispose();
    assert.deepEqual([c.gemvTuning?.remembered, c.gemvTuning?.choice], [true, b.gemvTuning?.choice]);

    process.env.OPENELM_RETUNE = '1';
    const d = await loadModel(fx.dir, { gpu, dtype: 'q4' });
    d.dispose();
    assert.equal(d.gemvTuning?.remembered, false);
    const at = parseTuningText(readFileSync(file, 'utf8')).get(keyString(d.gemvTuning!.key))?.at;
    assert.equal(at, d.gemvTuning?.at, 'the new timing replaced the record');
    // An explicit store wins over the default.
    delete process.env.OPENELM_RETUNE;
    const e = await loadModel(fx.dir, { gpu, dtype: 'q4', tuningStore: nodeTuningStore({ file: join(dir, 'other.json') }) });
    e.dispose();
    assert.equal(e.gemvTuning?.remembered, false);
  } finally {
    for (const [k, v] of [['OPENELM_CACHE', saved.cache], ['OPENELM_RETUNE', saved.retune], ['OPENELM_TUNING_FILE', saved.file]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    rmSync(dir, { recursive: true, force: true });
  }
});
