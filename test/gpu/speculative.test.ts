// Speculative decoding (prompt lookup, assistant model): output identical to plain decoding, on
// the GPU against the one-token path, with drafts fully accepted, rejected at once, cut by
// max_new_tokens, max_length and eos, with repetition penalty and sampling; KV rollback checked
// against a fresh run.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { argmaxRef } from '../../kernels/argmax.ts';
import { keptWeightsRef, type SamplingParams } from '../../kernels/sample.ts';
import { emptyStats, generateTokens, type Drafter, type GenerationStats } from '../../src/generate/generate.ts';
import { resolveGeneration } from '../../src/generate/options.ts';
import { promptLookupCandidates } from '../../src/generate/prompt-lookup.ts';
import { synthesizeCheckpoint } from '../../src/io/synth.ts';
import { loadModel, type GenerateOptions, type OpenElmModel } from '../../src/index.ts';
import { loadFixture, maxAbsDiff, randInt, rng, testGpu } from '../helpers.ts';

describe('prompt lookup candidates', () => {
  test('longest n-gram first, earliest occurrence, up to the limit', () => {
    // suffix [7, 8]: the bigram occurs at 1 and 5; the earliest wins.
    assert.deepEqual(promptLookupCandidates([1, 7, 8, 3, 4, 7, 8, 9, 7, 8], 3, 2), [3, 4, 7]);
    assert.deepEqual(promptLookupCandidates([1, 7, 8, 3, 4, 7, 8, 9, 7, 8], 10, 2), [3, 4, 7, 8, 9, 7, 8]);
    // No bigram match: the unigram [8] matches at 2.
    assert.deepEqual(promptLookupCandidates([5, 6, 8, 2, 9, 8], 2, 2), [2, 9]);
    // A longer n-gram is preferred over an earlier shorter one.
    assert.deepEqual(promptLookupCandidates([4, 9, 1, 2, 4, 5, 1, 2, 4], 2, 3), [5, 1]);
  });

  test('cut at the end of the sequence and after the first eos; nothing when nothing matches', () => {
    assert.deepEqual(promptLookupCandidates([3, 4, 5, 3], 10, 2), [4, 5, 3]);
    assert.deepEqual(promptLookupCandidates([3, 4, 2, 6, 3], 10, 2, 2), [4, 2]);
    assert.deepEqual(promptLookupCandidates([1, 2, 3, 4], 5, 2), []);
    assert.deepEqual(promptLookupCandidates([9], 5, 2), []);
    // The suffix's own occurrence has nothing after it and is not a match.
    assert.deepEqual(promptLookupCandidates([6, 6], 4, 1), [6]);
  });
});

const fx = loadFixture('tiny-elm');

/** Proposes fixed continuations: the true greedy tokens (all accepted) or wrong ones (all rejected). */
class ScriptedDrafter implements Drafter {
  readonly method = 'prompt_lookup';
  readonly passes = 0;
  feedbacks: number[] = [];
  constructor(
    private readonly truth: readonly number[],
    private readonly promptLength: number,
    private readonly wrong: boolean,
    private readonly k: number,
    private readonly vocab: number,
  ) {}
  async propose(seq: readonly number[], max: number): Promise<number[]> {
    const at = seq.length - this.promptLength;
    return this.truth.slice(at, at + Math.min(this.k, max)).map((t) => (this.wrong ? (t + 1) % this.vocab : t));
  }
  feedback(accepted: number): void {
    this.feedbacks.push(accepted);
  }
}

describe('speculative decoding on the GPU (tiny-elm)', () => {
  let model: OpenElmModel;
  let q4: OpenElmModel;
  let other: OpenElmModel;
  let dir: string;
  const r = rng(11);
  const V = () => model.plan.vocabSize;
  const prompts: number[][] = [];

  before(async () => {
    const gpu = await testGpu();
    // The single-pass attention kernel, whatever 'auto' picks on this adapter: the rollback check
    // below compares decode steps with a fresh prefill bit for bit, which split-K (decode and verify
    // only) keeps only while a row is one split. Split-K's own checks: attention-engine.test.ts.
    model = await loadModel(fx.dir, { dtype: 'f32', gemv: 'rows', attention: 'single', gpu });
    q4 = await loadModel(fx.dir, { dtype: 'q4', gemv: 'rows', gpu });
    // Another model of the same vocabulary: its drafts are mostly wrong.
    dir = mkdtempSync(join(tmpdir(), 'openelm-spec-'));
    const config = JSON.parse(readFileSync(join(fx.dir, 'config.json'), 'utf8'));
    await synthesizeCheckpoint(dir, config, { dtype: 'F32', seed: 5 });
    other = await loadModel(dir, { dtype: 'f16', gemv: 'rows', gpu });
    for (const p of fx.manifest.prompts) prompts.push(p.input_ids);
    // Prompts with repeats, so lookups find matches, and random ones.
    for (let i = 0; i < 4; i++) {
      const base = Array.from({ length: randInt(r, 2, 6) }, () => randInt(r, 3, V() - 1));
      prompts.push([1, ...base, ...base, ...base.slice(0, randInt(r, 1, base.length))]);
    }
  });
  after(() => {
    for (const m of [model, q4, other]) m?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  async function run(m: OpenElmModel, ids: readonly number[], opts: GenerateOptions): Promise<{ ids: number[]; stats: GenerationStats }> {
    const { ids: out, stats } = await m.generateText(ids, { stopAtEos: false, ...opts });
    return { ids: out, stats };
  }

  test('a verify pass chooses, row by row, what one-token decode steps choose', async () => {
    for (const prompt of prompts.slice(0, 5)) {
      const tokens = Array.from({ length: randInt(r, 1, 9) }, () => randInt(r, 0, V() - 1));
      const e = model.engine;
      e.reset();
      e.configureChooser(null);
      await e.prefill(prompt, 'none');
      const got = await e.verify(tokens);
      assert.equal(e.length, prompt.length + tokens.length);
      e.reset();
      await e.prefill(prompt, 'none');
      const want: number[] = [];
      for (const t of tokens) want.push(argmaxRef(await e.stepLogits(t), V()));
      assert.deepEqual(got, want, `prompt ${prompt.join(',')} + ${tokens.join(',')}`);
    }
  });

  test('prompt lookup: greedy output identical to plain greedy over prompts, draft lengths and n-gram sizes', async () => {
    let drafted = 0;
    for (const prompt of prompts) {
      for (const maxNewTokens of [2, 30]) {
        const plain = await run(model, prompt, { maxNewTokens });
        for (const [promptLookupNumTokens, maxMatchingNgramSize] of [[1, 2], [3, 1], [10, 2], [10, 3]]) {
          const spec = await run(model, prompt, { maxNewTokens, promptLookupNumTokens, maxMatchingNgramSize });
          assert.deepEqual(spec.ids, plain.ids, `prompt ${prompt.join(',')}, ${maxNewTokens} tokens, lookup ${promptLookupNumTokens}/${maxMatchingNgramSize}`);
          const s = spec.stats.speculative!;
          assert.equal(s.method, 'prompt_lookup');
          assert.ok(s.accepted <= s.drafted && s.main_passes >= 1 && s.draft_passes === 0);
          assert.ok(s.main_passes <= maxNewTokens, 'never more main passes than tokens');
          drafted += s.drafted;
        }
      }
    }
    assert.ok(drafted > 0, 'some drafts were proposed');
  });

  test('prompt lookup with repetition penalty, eos and max_length: identical to plain', async () => {
    for (const prompt of prompts) {
      const rp = { repetitionPenalty: 1.3, maxNewTokens: 24 };
      assert.deepEqual((await run(model, prompt, { ...rp, promptLookupNumTokens: 5 })).ids, (await run(model, prompt, rp)).ids, 'repetition penalty');
      // An eos that the output contains: both stop right after it.
      const free = (await run(model, prompt, { maxNewTokens: 12 })).ids;
      const eosTokenId = free[Math.min(5, free.length - 1)];
      const stop = { maxNewTokens: 12, stopAtEos: true, eosTokenId };
      const plain = await run(model, prompt, stop);
      assert.equal(plain.ids[plain.ids.length - 1], eosTokenId);
      assert.deepEqual((await run(model, prompt, { ...stop, promptLookupNumTokens: 10 })).ids, plain.ids, 'eos');
      const ml = { maxLength: prompt.length + 7 };
      const byLength = await run(model, prompt, { ...ml, promptLookupNumTokens: 10 });
      assert.equal(byLength.ids.length, 7);
      assert.deepEqual(byLength.ids, (await run(model, prompt, ml)).ids, 'max_length');
    }
  });

  test('drafts fully accepted and rejected at the first token give plain greedy; the rolled-back cache equals a fresh run', async () => {
    for (const prompt of prompts.slice(1, 5)) {
      const n = 14;
      const truth = (await run(model, prompt, { maxNewTokens: n })).ids;
      for (const wrong of [false, true]) {
        for (const k of [1, 13]) {
          const drafter = new ScriptedDrafter(truth, prompt.length, wrong, k, V());
          const stats: GenerationStats = emptyStats();
          const out: number[] = [];
          const cfg = resolveGeneration({ maxNewTokens: n, stopAtEos: false });
          for await (const t of generateTokens(model.engine, prompt, cfg, { eosTokenId: 2, drafter, stats })) out.push(t.id);
          assert.deepEqual(out, truth, `${wrong ? 'rejected' : 'accepted'} drafts of ${k}`);
          const s = stats.speculative!;
          if (wrong) assert.equal(s.accepted, 0);
          else assert.equal(s.accepted, s.drafted);
          assert.ok(drafter.feedbacks.every((a) => (wrong ? a === 0 : a > 0)));
          // Every emitted token but the last is in the cache; feed it and compare with a fresh run.
          assert.equal(model.engine.length, prompt.length + n - 1);
          const next = await model.engine.stepLogits(out[n - 1]);
          const [fresh] = await model.logits([...prompt, ...out]);
          assert.equal(maxAbsDiff(next, fresh), 0, 'logits after rollback equal a fresh run');
        }
      }
    }
  });

  test('sampling with prompt lookup samples exactly the tokens plain sampling does (same seed)', async () => {
    for (const prompt of prompts.slice(3, 7)) {
      for (const seed of [1, 2]) {
        const opts = { maxNewTokens: 20, doSample: true, temperature: 0.7, topK: 8, seed };
        const plain = await run(model, prompt, opts);
        assert.deepEqual((await run(model, prompt, { ...opts, promptLookupNumTokens: 4 })).ids, plain.ids, `seed ${seed}`);
        const rp = { ...opts, repetitionPenalty: 1.2, topP: 0.9 };
        assert.deepEqual((await run(model, prompt, { ...rp, promptLookupNumTokens: 4 })).ids, (await run(model, prompt, rp)).ids, `seed ${seed}, penalty`);
      }
    }
  });

  test('assistant model: greedy output identical with the same checkpoint in q4 and with another model', async () => {
    for (const prompt of prompts.slice(1, 5)) {
      for (const [assistant, schedule] of [[q4, 'heuristic'], [other, 'heuristic'], [q4, 'constant']] as const) {
        for (const numAssistantTokens of [1, 3]) {
          const opts = { maxNewTokens: 17, repetitionPenalty: numAssistantTokens === 3 ? 1.25 : 1 };
          const plain = await run(model, prompt, opts);
          const spec = await run(model, prompt, { ...opts, assistant, numAssistantTokens, numAssistantTokensSchedule: schedule });
          assert.deepEqual(spec.ids, plain.ids, `assistant ${assistant === q4 ? 'q4' : 'other'}, ${numAssistantTokens} tokens, ${schedule}`);
          const s = spec.stats.speculative!;
          assert.equal(s.method, 'assistant');
          assert.ok(s.draft_passes >= s.drafted - s.main_passes && s.accepted <= s.drafted);
        }
      }
    }
  });

  test('speculative sampling with an assistant keeps the main model\'s distribution (exact probabilities from the CPU)', async () => {
    const prompt = [1, 17, 42, 99];
    const params: SamplingParams = { doSample: true, temperature: 1.3, topK: 3, topP: 1, repetitionPenalty: 1 };
    // Exact marginal of the second new token (the first is sampled after the prefill, the second
    // is the first speculative one): sum over t0 of P(t0) P(t1 | t0), with the sampler's weights.
    const marginal = async (m: OpenElmModel) => {
      const dist = new Map<number, number>();
      const norm = (w: Float32Array) => {
        const z = w.reduce((a, b) => a + b, 0);
        return [...w].map((v) => v / z);
      };
      const none = new Uint32Array(V());
      const p0 = norm(keptWeightsRef((await m.logits(prompt))[0], none, params));
      for (let t0 = 0; t0 < V(); t0++) {
        if (p0[t0] === 0) continue;
        const p1 = norm(keptWeightsRef((await m.logits([...prompt, t0]))[0], none, params));
        p1.forEach((v, t1) => v > 0 && dist.set(t1, (dist.get(t1) ?? 0) + p0[t0] * v));
      }
      return dist;
    };
    const want = await marginal(model);
    const draft = await marginal(other);
    let tv = 0;
    for (const t of new Set([...want.keys(), ...draft.keys()])) tv += Math.abs((want.get(t) ?? 0) - (draft.get(t) ?? 0)) / 2;
    assert.ok(tv > 0.3, `the draft model's distribution differs from the main model's (total variation ${tv.toFixed(2)})`);
    const trials = 300;
    const counts = new Map<number, number>();
    let rejected = 0;
    for (let seed = 0; seed < trials; seed++) {
      const { ids, stats } = await run(model, prompt, { ...params, seed, maxNewTokens: 3, assistant: other, numAssistantTokens: 2 });
      counts.set(ids[1], (counts.get(ids[1]) ?? 0) + 1);
      rejected += stats.speculative!.drafted - stats.speculative!.accepted;
    }
    assert.ok(rejected > trials / 4, `drafts were rejected (${rejected}) and the residual drawn from`);
    // Pearson's chi-square over the tokens expected at least 5 times, the rest pooled.
    let x2 = 0;
    let df = -1;
    let restP = 0;
    let restC = 0;
    for (const [t, pr] of want) {
      const c = counts.get(t) ?? 0;
      if (pr * trials >= 5) {
        x2 += (c - pr * trials) ** 2 / (pr * trials);
        df++;
      } else {
        restP += pr;
        restC += c;
      }
    }
    for (const [t, c] of counts) if (!want.has(t)) assert.fail(`token ${t} (drawn ${c} times) has probability 0`);
    if (restP * trials >= 5) {
      x2 += (restC - restP * trials) ** 2 / (restP * trials);
      df++;
    }
    // The 0.999 quantile of chi-square is below 3.3 * df + 8 for df <= 30.
    assert.ok(df >= 2 && x2 < 3.3 * df + 8, `chi-square ${x2.toFixed(1)} with ${df} degrees of freedom`);
  });

  test('decode ahead (several steps a submission, one readback) gives plain decoding\'s tokens', async () => {
    for (const prompt of prompts.slice(1, 5)) {
      for (const opts of [{ maxNewTokens: 13 }, { maxNewTokens: 13, doSample: true, topK: 6, repetitionPenalty: 1.4, seed: 4 }]) {
        const plain = await run(model, prompt, opts);
        for (const decodeAhead of [2, 5, 40]) assert.deepEqual((await run(model, prompt, { ...opts, decodeAhead })).ids, plain.ids, `ahead ${decodeAhead}`);
      }
      const eosTokenId = (await run(model, prompt, { maxNewTokens: 6 })).ids[3];
      const stop = { maxNewTokens: 13, stopAtEos: true, eosTokenId };
      assert.deepEqual((await run(model, prompt, { ...stop, decodeAhead: 4 })).ids, (await run(model, prompt, stop)).ids, 'eos');
    }
    assert.throws(() => model.generate([1], { decodeAhead: 0 }), /decode_ahead must be an integer >= 1/);
  });

  test('bad combinations fail with one clear message', async () => {
    assert.throws(() => model.generate([1, 2], { promptLookupNumTokens: 0 }), /prompt_lookup_num_tokens must be an integer >= 1/);
    assert.throws(() => model.generate([1, 2], { promptLookupNumTokens: 3, assistant: q4 }), /not both/);
    assert.throws(() => model.generate([1, 2], { assistant: model }), /another model/);
    await assert.rejects(run(model, [1, 2, 3], { maxLength: 3 }), /max_length \(3\) must be greater than the prompt's length \(3 tokens\)/);
  });
});

describe('speculative decoding with the workgroup-tiled prefill matmul', () => {
  test('verify passes keep the register-tiled kernel: rows equal decode steps, prompt-lookup output equals plain greedy', async () => {
    const model = await loadModel(fx.dir, { dtype: 'f16', gemv: 'rows', prefillMatmul: 'tiled', gpu: await testGpu() });
    try {
      assert.equal(model.engine.prefillMatmul, 'tiled');
      const r = rng(12);
      const V = model.plan.vocabSize;
      for (const p of fx.manifest.prompts.slice(0, 3)) {
        const prompt = p.input_ids;
        const tokens = Array.from({ length: randInt(r, 2, 9) }, () => randInt(r, 0, V - 1));
        const e = model.engine;
        e.reset();
        e.configureChooser(null);
        await e.prefill(prompt, 'none');
        const got = await e.verify(tokens);
        e.reset();
        await e.prefill(prompt, 'none');
        const want: number[] = [];
        for (const t of tokens) want.push(argmaxRef(await e.stepLogits(t), V));
        assert.deepEqual(got, want, `prompt ${prompt.join(',')} + ${tokens.join(',')}`);
        const base = [1, ...prompt.slice(1, 4), ...prompt.slice(1, 4), ...prompt.slice(1, 3)];
        const plain = await model.generateText(base, { maxNewTokens: 12, stopAtEos: false });
        const spec = await model.generateText(base, { maxNewTokens: 12, stopAtEos: false, promptLookupNumTokens: 4 });
        assert.deepEqual(spec.ids, plain.ids);
      }
    } finally {
      model.dispose();
    }
  });
});

describe('coalesced GEMV against the multi-token kernel', () => {
  test('logits within 5e-5, so a verify pass can only disagree with decode where the top-2 margin is below 1e-4', async () => {
    const model = await loadModel(fx.dir, { dtype: 'f16', gemv: 'coalesced', gpu: await testGpu() });
    try {
      const ids = fx.manifest.prompts[2].input_ids;
      const all = await model.logits(ids, { allPositions: true });
      model.engine.reset();
      await model.engine.prefill(ids.slice(0, 1), 'none');
      let worst = 0;
      for (let t = 1; t < ids.length; t++) worst = Math.max(worst, maxAbsDiff(await model.engine.stepLogits(ids[t]), all[t]));
      assert.ok(worst < 5e-5, `max |multi-token - one-token| = ${worst}`);
    } finally {
      model.dispose();
    }
  });
});
