// Remembered kernel choices on the command line: `openelm generate --json` says in its stats
// whether the GEMV kernel was timed now or remembered, `openelm doctor` reports what is remembered
// for this adapter, `--retune` times again, and two processes at once leave a whole file.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../cli-spawn.ts';
import { fixtureDir, testGpu } from '../helpers.ts';
import { memoryTuningStore, parseTuningText } from '../../src/io/tuning-store.ts';
import { runDoctor, type DoctorReport } from '../../src/doctor/doctor.ts';

const root = mkdtempSync(join(tmpdir(), 'openelm-tuning-cli-'));
after(() => rmSync(root, { recursive: true, force: true }));

interface GemvTuningStats {
  choice: string;
  remembered: boolean;
  ms: Record<string, number>;
  measured_at: string;
}

async function generate(cache: string, ...extra: string[]): Promise<GemvTuningStats> {
  const r = await runCli(['generate', '--model', fixtureDir('tiny-elm'), '--input-ids', '1,5,9', '--max-new-tokens', '2', '--json', ...extra], {
    env: { OPENELM_CACHE: cache, OPENELM_RETUNE: undefined, OPENELM_TUNING_FILE: undefined },
  });
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { stats: { gemv: string; gemv_tuning: GemvTuningStats } };
  assert.equal(j.stats.gemv, j.stats.gemv_tuning.choice);
  return j.stats.gemv_tuning;
}

test('generate --json: timed on the first run, remembered on the next, timed again with --retune; parallel runs leave a whole file', { timeout: 300_000 }, async () => {
  const cache = join(root, 'gen');
  const first = await generate(cache);
  assert.equal(first.remembered, false);
  assert.deepEqual(Object.keys(first.ms).sort(), ['coalesced', 'rows']);
  const second = await generate(cache);
  assert.deepEqual([second.remembered, second.choice, second.measured_at], [true, first.choice, first.measured_at]);
  const again = await generate(cache, '--retune');
  assert.equal(again.remembered, false);
  assert.notEqual(again.measured_at, first.measured_at);
  assert.equal((await generate(cache)).measured_at, again.measured_at, '--retune replaced the record');

  const fresh = join(root, 'parallel');
  const both = await Promise.all([generate(fresh, '--dtype', 'q8'), generate(fresh, '--dtype', 'q4')]);
  assert.deepEqual(both.map((t) => t.remembered), [false, false]);
  const file = parseTuningText(readFileSync(join(fresh, 'tuning.json'), 'utf8'));
  assert.ok(file.size >= 1, 'the file parses and holds at least the last writer\'s record');
  assert.deepEqual(readdirSync(fresh), ['tuning.json'], 'no temporary file left behind');
});

test('openelm doctor reports the choices remembered for this adapter and whether the GEMV choice came from the store', { timeout: 300_000 }, async () => {
  const cache = join(root, 'doctor');
  const doctor = async (...extra: string[]) => {
    const r = await runCli(['doctor', '--json', '--only', 'argmax', '--dtype', 'f32', ...extra], { env: { OPENELM_CACHE: cache, OPENELM_RETUNE: undefined, OPENELM_TUNING_FILE: undefined }, timeoutMs: 240_000 });
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as DoctorReport).choices;
  };
  const a = await doctor();
  assert.equal(a.gemv.remembered, false);
  assert.equal(a.tuning.value, join(cache, 'tuning.json'));
  assert.deepEqual(a.tuning.remembered.map((r) => [r.decision, r.choice]), [['gemv', a.gemv.value]]);
  assert.match(a.tuning.remembered[0].shape, /^f32:N=\d+:K=\d+$/);
  const b = await doctor();
  assert.deepEqual([b.gemv.remembered, b.gemv.value, b.gemv.measured_at], [true, a.gemv.value, a.gemv.measured_at]);
  assert.match(b.gemv.why, /remembered/);
  const c = await doctor('--retune');
  assert.equal(c.gemv.remembered, false);
  assert.match(String(c.tuning.value), /retune/);
});

test('runDoctor with a store: the second run takes the GEMV choice from it; without one nothing is remembered', { timeout: 300_000 }, async () => {
  const gpu = await testGpu();
  const store = memoryTuningStore();
  const first = await runDoctor(gpu, { only: ['argmax'], dtype: 'f32', tuningStore: store });
  const second = await runDoctor(gpu, { only: ['argmax'], dtype: 'f32', tuningStore: store });
  assert.deepEqual([first.choices.gemv.remembered, second.choices.gemv.remembered], [false, true]);
  assert.equal(second.choices.tuning.remembered.length, 1);
  const none = await runDoctor(gpu, { only: ['argmax'], dtype: 'f32' });
  assert.deepEqual([none.choices.gemv.remembered, none.choices.tuning.value, none.choices.tuning.remembered], [false, null, []]);
});
