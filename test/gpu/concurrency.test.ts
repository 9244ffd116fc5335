// Concurrent calls on one model are serialised in call order (a FIFO lock per model): the results
// equal the same calls made one after the other, and they complete in the order they were made.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/index.ts';
import { FifoLock } from '../../src/api/fifo-lock.ts';
import { loadFixture, testGpu } from '../helpers.ts';

const fx = loadFixture('tiny-elm');
const [, p7, p33] = fx.manifest.prompts;
const model = testGpu().then((gpu) => loadModel(fx.dir, { gpu, dtype: 'f32', gemv: 'rows' }));
after(async () => (await model).dispose());

const collect = async (it: AsyncIterable<{ id: number }>): Promise<number[]> => {
  const out: number[] = [];
  for await (const t of it) out.push(t.id);
  return out;
};

test('two concurrent generate() equal the same calls one after the other, and finish in call order', { timeout: 60_000 }, async () => {
  const m = await model;
  const opts = { maxNewTokens: 16, stopAtEos: false };
  const a = await collect(m.generate(p7.input_ids, opts));
  const b = await collect(m.generate(p33.input_ids, opts));
  assert.deepEqual(a, p7.greedy.tokens);
  assert.deepEqual(b, p33.greedy.tokens);
  const done: string[] = [];
  const [ca, cb] = await Promise.all([
    collect(m.generate(p7.input_ids, opts)).then((r) => (done.push('a'), r)),
    collect(m.generate(p33.input_ids, opts)).then((r) => (done.push('b'), r)),
  ]);
  assert.deepEqual(ca, a);
  assert.deepEqual(cb, b);
  assert.deepEqual(done, ['a', 'b']);
});

test('two concurrent logits(allPositions) (and a generate between them) equal sequential calls, in call order', { timeout: 60_000 }, async () => {
  const m = await model;
  const la = (await m.logits(p33.input_ids, { allPositions: true })).map((r) => Array.from(r));
  const lb = (await m.logits(p7.input_ids, { allPositions: true })).map((r) => Array.from(r));
  const done: string[] = [];
  const [ca, g, cb] = await Promise.all([
    m.logits(p33.input_ids, { allPositions: true }).then((r) => (done.push('a'), r.map((x) => Array.from(x)))),
    collect(m.generate(p7.input_ids, { maxNewTokens: 8, stopAtEos: false })).then((r) => (done.push('g'), r)),
    m.logits(p7.input_ids, { allPositions: true }).then((r) => (done.push('b'), r.map((x) => Array.from(x)))),
  ]);
  assert.deepEqual(ca, la);
  assert.deepEqual(cb, lb);
  assert.deepEqual(g, p7.greedy.tokens.slice(0, 8));
  assert.deepEqual(done, ['a', 'g', 'b']);
});

test('a generator left early (break) releases the model; a throwing holder does too', { timeout: 60_000 }, async () => {
  const m = await model;
  for await (const _ of m.generate(p7.input_ids, { maxNewTokens: 16, stopAtEos: false })) break;
  const lock = new FifoLock();
  await assert.rejects(lock.run(async () => Promise.reject(new Error('boom'))), /boom/);
  assert.equal(await lock.run(async () => 7), 7);
  const rows = await m.logits(p7.input_ids);
  assert.equal(rows.length, 1);
});
