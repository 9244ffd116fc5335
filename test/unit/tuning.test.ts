// The tuner's memory (src/runtime/tuning.ts and its stores): a choice is timed once per adapter,
// engine version, decision and shape, then taken from the store; the Node file survives corrupt
// contents and writers in parallel; the browser store survives a missing or throwing localStorage.
// The adapters here are stand-ins: only their identity matters to the tuner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENGINE_LIMITS, type EngineLimit } from '../../src/gpu/device.ts';
import {
  adapterIdentity,
  gpuTuningKey,
  keyString,
  rememberedFor,
  tune,
  tuningKey,
  TUNING_ENGINE_VERSION,
  type AdapterFacts,
} from '../../src/runtime/tuning.ts';
import { memoryTuningStore, parseTuningText, retuningStore, type TuningRecord, type TuningStore } from '../../src/io/tuning-store.ts';
import { nodeTuningStore } from '../../src/io/node-tuning-store.ts';
import { browserTuningStore, TUNING_ITEM } from '../../src/io/browser-tuning-store.ts';

function fakeAdapter(over: { vendor?: string; description?: string; shaderF16?: boolean; timestampQuery?: boolean; limit?: [EngineLimit, number] } = {}): AdapterFacts {
  const limits = {} as Record<EngineLimit, number>;
  for (const [i, k] of ENGINE_LIMITS.entries()) limits[k] = 1024 * (i + 1);
  if (over.limit) limits[over.limit[0]] = over.limit[1];
  return {
    info: { vendor: over.vendor ?? 'acme', architecture: 'rdna9', device: '0x1234', description: over.description ?? 'Acme GPU', isFallback: false },
    features: { shaderF16: over.shaderF16 ?? false, subgroups: true, timestampQuery: over.timestampQuery ?? true },
    limits,
  };
}

/** A measuring function that counts its calls and reports the given times. */
function counted<C extends string>(times: Record<C, number>) {
  const calls: (readonly C[])[] = [];
  const measure = (cands: readonly C[]): Promise<Record<C, number>> => {
    calls.push(cands);
    return Promise.resolve({ ...times });
  };
  return { calls, measure };
}

const GEMV = ['rows', 'coalesced'] as const;
type Gemv = (typeof GEMV)[number];

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'openelm-tuning-'));
}

test('tuning keys: equal for the same adapter, different when the adapter, a kernel feature, a limit, the shape or the engine version differs', () => {
  const base = keyString(gpuTuningKey(fakeAdapter(), 'gemv', 'q4:N=10:K=32'));
  assert.equal(keyString(gpuTuningKey(fakeAdapter(), 'gemv', 'q4:N=10:K=32')), base);
  // timestamp-query changes no kernel: the same adapter with it switched off keeps its choices.
  assert.equal(keyString(gpuTuningKey(fakeAdapter({ timestampQuery: false }), 'gemv', 'q4:N=10:K=32')), base);
  const others = [
    gpuTuningKey(fakeAdapter({ vendor: 'other' }), 'gemv', 'q4:N=10:K=32'),
    gpuTuningKey(fakeAdapter({ description: 'Acme GPU 2' }), 'gemv', 'q4:N=10:K=32'),
    gpuTuningKey(fakeAdapter({ shaderF16: true }), 'gemv', 'q4:N=10:K=32'),
    gpuTuningKey(fakeAdapter({ limit: ['maxStorageBufferBindingSize', 1 << 27] }), 'gemv', 'q4:N=10:K=32'),
    gpuTuningKey(fakeAdapter(), 'gemv', 'q4:N=10:K=64'),
    gpuTuningKey(fakeAdapter(), 'attention', 'q4:N=10:K=32'),
    tuningKey(adapterIdentity(fakeAdapter()), 'gemv', 'q4:N=10:K=32', TUNING_ENGINE_VERSION + 1),
  ].map(keyString);
  assert.equal(new Set([base, ...others]).size, others.length + 1, others.join('\n'));
});

test('tune: times once, then takes the remembered choice; another adapter, shape or engine version is timed again', async () => {
  const store = memoryTuningStore();
  const m = counted<Gemv>({ rows: 2, coalesced: 1 });
  const key = gpuTuningKey(fakeAdapter(), 'gemv', 'f16:N=20:K=8');
  const first = await tune(store, key, GEMV, m.measure);
  assert.deepEqual([first.choice, first.remembered, first.ms], ['coalesced', false, { rows: 2, coalesced: 1 }]);
  assert.equal(m.calls.length, 1);
  assert.deepEqual(m.calls[0], GEMV);
  const second = await tune(store, key, GEMV, m.measure);
  assert.deepEqual([second.choice, second.remembered, second.ms, second.at], ['coalesced', true, { rows: 2, coalesced: 1 }, first.at]);
  assert.equal(m.calls.length, 1, 'a remembered choice is not timed again');

  const changed = [
    gpuTuningKey(fakeAdapter({ vendor: 'other' }), 'gemv', 'f16:N=20:K=8'),
    gpuTuningKey(fakeAdapter(), 'gemv', 'f16:N=21:K=8'),
    tuningKey(adapterIdentity(fakeAdapter()), 'gemv', 'f16:N=20:K=8', TUNING_ENGINE_VERSION + 1),
  ];
  for (const [i, k] of changed.entries()) {
    const t = await tune(store, k, GEMV, m.measure);
    assert.equal(t.remembered, false, keyString(k));
    assert.equal(m.calls.length, 2 + i);
  }
  // Each key has its record; the original one still answers without timing.
  assert.equal((await store.entries()).length, 4);
  assert.equal((await tune(store, key, GEMV, m.measure)).remembered, true);
  assert.equal(m.calls.length, 4);
});

test('tune: a new candidate, a null store or a retuning store means timing again; ties go to the earlier candidate', async () => {
  const store = memoryTuningStore();
  const key = gpuTuningKey(fakeAdapter(), 'attention', 'kv=64:L=512');
  const a = counted({ one: 3, split: 3 });
  assert.equal((await tune(store, key, ['one', 'split'], a.measure)).choice, 'one', 'tie: the first candidate');
  const b = counted({ one: 3, split: 3, split8: 1 });
  const t = await tune(store, key, ['one', 'split', 'split8'], b.measure);
  assert.deepEqual([t.choice, t.remembered, b.calls.length], ['split8', false, 1]);

  const c = counted<Gemv>({ rows: 1, coalesced: 2 });
  await tune(null, key, GEMV, c.measure);
  await tune(null, key, GEMV, c.measure);
  assert.equal(c.calls.length, 2, 'without a store every call times');

  // Retuning ignores what is stored, times again and replaces the record for the next plain load.
  const gkey = gpuTuningKey(fakeAdapter(), 'gemv', 'q8:N=4:K=32');
  await tune(store, gkey, GEMV, counted<Gemv>({ rows: 1, coalesced: 2 }).measure);
  const d = counted<Gemv>({ rows: 5, coalesced: 2 });
  const re = await tune(retuningStore(store), gkey, GEMV, d.measure);
  assert.deepEqual([re.choice, re.remembered, d.calls.length], ['coalesced', false, 1]);
  const after = await tune(store, gkey, GEMV, d.measure);
  assert.deepEqual([after.choice, after.remembered, d.calls.length], ['coalesced', true, 1]);

  // One candidate needs no timing; a measurement that misses a candidate is a bug, said loudly.
  const e = counted<Gemv>({ rows: 1, coalesced: 1 });
  assert.deepEqual((await tune(store, gkey, ['rows'], e.measure)).choice, 'rows');
  assert.equal(e.calls.length, 0);
  await assert.rejects(tune(null, gkey, GEMV, () => Promise.resolve({ rows: 1 } as Record<Gemv, number>)), /no time measured for coalesced/);
});

test('tune: a store that fails to read or write costs the memory, not the load', async () => {
  const broken: TuningStore = {
    where: 'broken',
    get: () => Promise.reject(new Error('read failed')),
    set: () => Promise.reject(new Error('write failed')),
    entries: () => Promise.reject(new Error('list failed')),
  };
  const m = counted<Gemv>({ rows: 1, coalesced: 2 });
  const t = await tune(broken, gpuTuningKey(fakeAdapter(), 'gemv', 'f32:N=3:K=4'), GEMV, m.measure);
  assert.deepEqual([t.choice, t.remembered], ['rows', false]);
  assert.deepEqual(await rememberedFor(broken, adapterIdentity(fakeAdapter())), []);
});

test('rememberedFor: the records of this adapter at this engine version only', async () => {
  const store = memoryTuningStore();
  const m = counted<Gemv>({ rows: 1, coalesced: 2 });
  await tune(store, gpuTuningKey(fakeAdapter(), 'gemv', 'a'), GEMV, m.measure);
  await tune(store, gpuTuningKey(fakeAdapter(), 'attention', 'b'), GEMV, m.measure);
  await tune(store, gpuTuningKey(fakeAdapter({ vendor: 'other' }), 'gemv', 'a'), GEMV, m.measure);
  await tune(store, tuningKey(adapterIdentity(fakeAdapter()), 'gemv', 'a', TUNING_ENGINE_VERSION - 1), GEMV, m.measure);
  const mine = await rememberedFor(store, adapterIdentity(fakeAdapter()));
  assert.deepEqual(mine.map((r) => `${r.decision} ${r.shape} ${r.choice}`).sort(), ['attention b rows', 'gemv a rows']);
});

test('node store: records survive in the file for the next store (the next process), which then does not time', async () => {
  const dir = tempDir();
  try {
    const file = join(dir, 'sub', 'tuning.json'); // the folder is created on the first write
    const key = gpuTuningKey(fakeAdapter(), 'gemv', 'q4:N=64:K=32');
    const m = counted<Gemv>({ rows: 4, coalesced: 3 });
    const warnings: string[] = [];
    const first = await tune(nodeTuningStore({ file, warn: (l) => warnings.push(l) }), key, GEMV, m.measure);
    assert.equal(first.remembered, false);
    const again = await tune(nodeTuningStore({ file, warn: (l) => warnings.push(l) }), key, GEMV, m.measure);
    assert.deepEqual([again.choice, again.remembered, m.calls.length], ['coalesced', true, 1]);
    assert.deepEqual(warnings, [], 'a missing file is not worth a warning');
    const onDisk = parseTuningText(readFileSync(file, 'utf8'));
    assert.equal(onDisk.get(keyString(key))?.choice, 'coalesced');
    assert.deepEqual(readdirSync(join(dir, 'sub')), ['tuning.json'], 'no temporary file left behind');
    // The path goes into doctor reports users attach to bug reports: their home is ~ there.
    assert.equal(nodeTuningStore({ file: join(homedir(), 'c', 'tuning.json') }).where, join('~', 'c', 'tuning.json'));
    assert.equal(nodeTuningStore({ file }).where, file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('node store: a corrupt file is ignored with one warning line and rewritten; an unusable path warns once and never throws', async () => {
  const dir = tempDir();
  try {
    const file = join(dir, 'tuning.json');
    const key = gpuTuningKey(fakeAdapter(), 'gemv', 'f16:N=8:K=8');
    for (const garbage of ['{"format": 1, "entries": {"x": ', '[1, 2, 3]', '\u0000\u0001binary', '{"format": 99, "entries": {}}']) {
      writeFileSync(file, garbage);
      const warnings: string[] = [];
      const store = nodeTuningStore({ file, warn: (l) => warnings.push(l) });
      const m = counted<Gemv>({ rows: 1, coalesced: 2 });
      const t = await tune(store, key, GEMV, m.measure);
      assert.deepEqual([t.remembered, m.calls.length], [false, 1], garbage);
      await store.entries();
      assert.equal(warnings.length, 1, `one warning line for ${JSON.stringify(garbage)}: ${warnings.join(' | ')}`);
      assert.match(warnings[0], /tuning\.json/);
      // Rewritten whole: the next store reads it and remembers.
      assert.equal(parseTuningText(readFileSync(file, 'utf8')).get(keyString(key))?.choice, 'rows');
      assert.equal((await tune(nodeTuningStore({ file, warn: (l) => warnings.push(l) }), key, GEMV, m.measure)).remembered, true);
      assert.equal(warnings.length, 1);
    }
    // A record with a broken field is dropped (timed again), the rest of the file kept.
    const good: TuningRecord = { ...gpuTuningKey(fakeAdapter(), 'gemv', 'kept'), choice: 'rows', ms: { rows: 1, coalesced: 2 }, at: 't' };
    writeFileSync(file, JSON.stringify({ format: 1, entries: { [keyString(key)]: { ...good, ms: { rows: 'fast' } }, [keyString(good)]: good } }));
    const store = nodeTuningStore({ file, warn: () => assert.fail('a readable file with one bad record is no reason to warn') });
    assert.equal(await store.get(keyString(key)), undefined);
    assert.deepEqual(await store.get(keyString(good)), good);

    // A folder where the file should be: cannot read, cannot write; one line, and tune still answers.
    const blocked = join(dir, 'blocked.json');
    mkdirSync(blocked);
    const warnings: string[] = [];
    const bs = nodeTuningStore({ file: blocked, warn: (l) => warnings.push(l) });
    const m = counted<Gemv>({ rows: 2, coalesced: 1 });
    assert.equal((await tune(bs, key, GEMV, m.measure)).choice, 'coalesced');
    assert.equal((await tune(bs, key, GEMV, m.measure)).remembered, false);
    assert.equal(warnings.length, 1, warnings.join(' | '));
    assert.deepEqual(readdirSync(dir).sort(), ['blocked.json', 'tuning.json'], 'no temporary file left behind');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---- writers in parallel ----

const WRITER_ENV = 'OPENELM_TEST_TUNING_WRITER';
const RECORDS_PER_WRITER = 40;

/** In a child process (this file run again with WRITER_ENV set): write records as fast as possible. */
async function writer(file: string, id: string): Promise<void> {
  const store = nodeTuningStore({ file });
  for (let i = 0; i < RECORDS_PER_WRITER; i++) {
    await tune(store, gpuTuningKey(fakeAdapter({ vendor: `writer${id}` }), 'gemv', `shape${i}`), GEMV, () => Promise.resolve({ rows: i, coalesced: 1 }));
  }
}

function runWriter(file: string, id: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], { env: { ...process.env, [WRITER_ENV]: `${file}\n${id}` } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

const writerArgs = process.env[WRITER_ENV];
if (writerArgs !== undefined) {
  const [file, id] = writerArgs.split('\n');
  await writer(file, id);
} else {
  test('node store: writers in one process keep every record; writers in two processes never leave a torn file', async () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'tuning.json');
      // One process, two stores on one file, all writes at once: queued, nothing lost.
      const a = nodeTuningStore({ file });
      const b = nodeTuningStore({ file });
      await Promise.all(
        Array.from({ length: 30 }, (_, i) => tune(i % 2 ? a : b, gpuTuningKey(fakeAdapter(), 'gemv', `s${i}`), GEMV, () => Promise.resolve({ rows: 1, coalesced: 2 }))),
      );
      assert.equal(parseTuningText(readFileSync(file, 'utf8')).size, 30);

      // Two processes: each rewrite is atomic, so the file always parses; a record written by one
      // may be replaced by the other's rewrite (last writer wins), never half-written.
      const runs = await Promise.all([runWriter(file, '1'), runWriter(file, '2')]);
      for (const r of runs) assert.equal(r.code, 0, r.stderr);
      for (const r of runs) assert.doesNotMatch(r.stderr, /ignoring|cannot/, 'no writer ever saw a torn file');
      const entries = parseTuningText(readFileSync(file, 'utf8'));
      const last = (id: string) => entries.has(keyString(gpuTuningKey(fakeAdapter({ vendor: `writer${id}` }), 'gemv', `shape${RECORDS_PER_WRITER - 1}`)));
      assert.ok(last('1') || last('2'), 'the last write of one writer at least is in the file');
      assert.ok(entries.size >= 30 + RECORDS_PER_WRITER, `${entries.size} records`);
      assert.deepEqual(readdirSync(dir), ['tuning.json'], 'no temporary file left behind');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('browser store: localStorage holds the records; missing, throwing or garbage storage means no memory, silently', async () => {
    const items = new Map<string, string>();
    const storage = {
      getItem: (k: string) => items.get(k) ?? null,
      setItem: (k: string, v: string) => void items.set(k, v),
    } as Storage;
    const key = gpuTuningKey(fakeAdapter(), 'gemv', 'q8:N=4:K=32');
    const m = counted<Gemv>({ rows: 2, coalesced: 1 });
    assert.equal((await tune(browserTuningStore(storage), key, GEMV, m.measure)).remembered, false);
    assert.equal((await tune(browserTuningStore(storage), key, GEMV, m.measure)).remembered, true);
    assert.equal(m.calls.length, 1);
    assert.ok(items.get(TUNING_ITEM)?.includes('coalesced'));

    items.set(TUNING_ITEM, 'not json');
    assert.equal((await tune(browserTuningStore(storage), key, GEMV, m.measure)).remembered, false);
    assert.equal((await tune(browserTuningStore(storage), key, GEMV, m.measure)).remembered, true, 'garbage replaced');

    const throwing = {
      getItem: () => {
        throw new Error('SecurityError');
      },
      setItem: () => {
        throw new Error('QuotaExceededError');
      },
    } as unknown as Storage;
    for (const s of [browserTuningStore(throwing), browserTuningStore(undefined)]) {
      assert.equal((await tune(s, key, GEMV, m.measure)).remembered, false);
      assert.equal((await tune(s, key, GEMV, m.measure)).remembered, false);
      assert.deepEqual(await s.entries(), []);
    }
  });
}
