// The benchmark harness on the tiny fixture with tiny settings: the JSON has the documented shape
// and every figure is a positive number. No timing is asserted (the machine is shared and noisy).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runBench } from '../../bench/run.ts';
import type { BenchResult } from '../../bench/result.ts';
import { CHOOSER_CASES } from '../../bench/chooser.ts';
import { renderTable } from '../../bench/table.ts';
import type { Stat } from '../../bench/stats.ts';
import { benchLlama, LLAMA_INSTALL_HINT } from '../../bench/llama.ts';
import { fixtureDir, repoRoot } from '../helpers.ts';
import { loadPlan } from '../../src/index.ts';

const dir = fixtureDir('tiny-elm');
const tmp = mkdtempSync(join(tmpdir(), 'openelm-bench-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const positive = (x: unknown, what: string) => assert.ok(typeof x === 'number' && Number.isFinite(x) && x > 0, `${what} = ${x}`);
function stat(s: Stat | undefined, what: string, n?: number): void {
  assert.ok(s, `${what} missing`);
  for (const k of ['median', 'min', 'max', 'p25', 'p75', 'mean'] as const) positive(s[k], `${what}.${k}`);
  assert.ok(s.min <= s.median && s.median <= s.max, `${what}: min <= median <= max`);
  assert.ok(s.rel_spread >= 0, `${what}.rel_spread`);
  if (n !== undefined) assert.equal(s.n, n, `${what}.n`);
}

let result: BenchResult;

test('runBench on tiny-elm: machine facts, formats, kernels, files', async () => {
  result = await runBench({
    modelDir: dir,
    dtypes: ['f32', 'f16', 'q8'],
    promptLengths: [6, 10],
    decodeTokens: 3,
    runs: 2,
    peers: ['tfjs'],
    outDir: join(tmp, 'out'),
    copyBytes: 1 << 20,
    cacheDir: join(tmp, 'gguf'),
    decodeContexts: [], // the next test covers them
  });
  const r = result;
  assert.equal(r.schema, 'openelm-webgpu/bench@1');
  positive(r.duration_s, 'duration_s');
  // Machine.
  assert.equal(typeof r.machine.cpu_model, 'string');
  positive(r.machine.cores, 'cores');
  assert.ok(Array.isArray(r.machine.features));
  positive(r.machine.limits.maxStorageBufferBindingSize, 'limits.maxStorageBufferBindingSize');
  assert.equal(typeof r.machine.adapter.vendor, 'string');
  assert.ok(Array.isArray(r.machine.loadavg_start) && Array.isArray(r.machine.loadavg_end));
  assert.equal(r.model.params > 0 && r.model.layers, 4);

  assert.deepEqual(r.formats.map((f) => f.dtype), ['f32', 'f16', 'q8']);
  // Formats other than f16 are compared with it; f32 holds the same (f16) weights here.
  const f32 = r.formats[0].agreement!;
  assert.equal(f32.reference, 'f16');
  assert.equal(f32.top1, 1);
  assert.ok(f32.mean_kl < 1e-6, `f32 vs f16 KL ${f32.mean_kl}`);
  const q8 = r.formats[2].agreement!;
  assert.ok(q8.positions > 0 && q8.top1 > 0.5 && q8.mean_kl < 0.01, JSON.stringify(q8));
  assert.equal(r.formats[1].agreement, undefined);
  for (const f of r.formats) {
    assert.ok(f.ok, `${f.dtype}: ${f.error}`);
    positive(f.load_ms, 'load_ms');
    positive(f.dispatches_per_token, 'dispatches_per_token');
    positive(f.peak_gpu_bytes, 'peak_gpu_bytes');
    assert.ok(f.peak_gpu_bytes! >= f.gpu_bytes_after_load!);
    assert.deepEqual(f.prefill!.map((p) => p.prompt_tokens), [6, 10]);
    for (const p of f.prefill!) {
      stat(p.tokens_per_s, 'prefill tokens_per_s', 2);
      stat(p.ttft_ms, 'ttft_ms', 2);
      positive(p.first_run_ms, 'first_run_ms');
      positive(p.dispatches, 'prefill dispatches');
      assert.ok(p.load.loadavg_before.length === 3 && p.load.other_cpu_pct >= 0);
    }
    const d = f.decode!;
    stat(d.step_ms, 'step_ms', 6);
    stat(d.tokens_per_s, 'decode tokens_per_s', 6);
    stat(d.js_encode_submit_ms, 'js_encode_submit_ms', 6);
    assert.ok(d.js_encode_ms.median >= 0 && d.submit_ms.median >= 0);
    assert.equal(d.dispatches_counted, f.dispatches_per_token, 'dispatches counted at the API = Engine.dispatchesPerToken');
    assert.equal(d.ids.length, 1 + d.warmup_steps + 6);
  }

  // Kernels: copy bandwidth, matmul per dtype and shape, checked against the CPU.
  const k = r.kernels!;
  assert.equal(k.error, undefined);
  positive(k.copy!.gb_s, 'copy gb_s');
  stat(k.copy!.ms, 'copy ms');
  assert.deepEqual(k.shapes.map((s) => s.name), ['proj_1 GEMV', 'proj_2 GEMV', 'lm_head GEMV', 'proj_1 GEMM T=10', 'proj_2 GEMM T=10']);
  // 3 formats x (3 GEMV shapes in both one-token kernels + 2 GEMM shapes).
  assert.equal(k.matmul.length, 3 * (3 * 2 + 2));
  assert.deepEqual(k.matmul.filter((m) => m.kind === 'gemv').map((m) => m.gemv).sort(), [...Array(9).fill('coalesced'), ...Array(9).fill('rows')]);
  for (const m of k.matmul) {
    stat(m.ms, `${m.name} ms`);
    for (const key of ['gb_s', 'gflop_s', 'fraction_of_copy', 'weight_bytes', 'flops'] as const) positive(m[key], `${m.name}.${key}`);
    assert.ok(m.check < 1, `${m.dtype} ${m.name} check ${m.check}`);
  }

  // Attention in decode at each head configuration of tiny-elm's layers (2/1 and 4/2 heads) and
  // context length (128, 512 and 2048 capped at its 256), checked against the CPU.
  assert.deepEqual(
    k.attention.map((a) => [a.numQ, a.numKv, a.context]),
    [[2, 1, 128], [2, 1, 256], [4, 2, 128], [4, 2, 256]],
  );
  assert.deepEqual(k.attention.map((a) => a.layers), [[0], [0], [1, 2, 3], [1, 2, 3]]);
  for (const a of k.attention) {
    stat(a.ms, `${a.name} ms`);
    stat(a.wall_ms, `${a.name} wall_ms`);
    positive(a.gb_s, `${a.name} gb_s`);
    assert.equal(a.kv_bytes, 2 * a.numKv * a.context * 32 * 4);
    assert.ok(a.check < 1, `${a.name} check ${a.check}`);
    assert.ok(a.load.loadavg_before.length === 3 && a.load.other_cpu_pct >= 0);
  }
  // The chooser over tiny-elm's 512 logits: argmax and every sampler path, each agreeing with the CPU.
  assert.deepEqual(k.chooser.map((c) => c.name), CHOOSER_CASES.map((c) => c.name));
  for (const c of k.chooser) {
    assert.equal(c.n, 512);
    stat(c.ms, `${c.name} ms`);
    assert.ok(c.agrees, c.name);
  }
  positive(r.summary['kernels.attention.4_2_heads.ctx256.ms'], 'summary attention');
  positive(r.summary['kernels.chooser.argmax.ms'], 'summary argmax');
  const text = renderTable(r);
  assert.match(text, /attention \(decode\)\s+layers\s+context/);
  assert.match(text, /sample temperature=0\.7 top_p=0\.9\s+512\s+\S/);

  // tfjs on the same adapter, and the ratios against it.
  const tf = r.peers.tfjs!;
  assert.ok(tf.ok, tf.error);
  assert.equal(tf.matmul.length, 5);
  for (const m of tf.matmul) {
    positive(m.gb_s, `tfjs ${m.name} gb_s`);
    assert.ok(m.check < 1, `tfjs ${m.name} check ${m.check}`);
  }
  // f32 and f16 against tfjs f32: 3 GEMV shapes in both one-token kernels, 2 GEMM shapes.
  assert.equal(r.comparisons.length, 2 * (3 * 2 + 2));
  for (const c of r.comparisons) positive(c.speedup, `speedup ${c.what}`);

  positive(r.summary['ours.f16.decode_tok_s'], 'summary decode');
  positive(r.summary['ours.f32.prefill10_tok_s'], 'summary prefill');

  // Files: the JSON as returned, and an SVG chart.
  assert.ok(r.files && existsSync(r.files.json) && existsSync(r.files.svg));
  assert.deepEqual(JSON.parse(readFileSync(r.files.json, 'utf8')), JSON.parse(JSON.stringify(r)));
  const svg = readFileSync(r.files.svg, 'utf8');
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\s*$/);
  assert.ok((svg.match(/<rect /g) ?? []).length > 10, 'the chart has bars');
});

const KINDS = ['embedding', 'qkv_proj', 'qkv_prepare', 'attention', 'out_proj', 'proj_1', 'proj_2', 'lm_head', 'argmax'];
const MIB = 2 ** 20;
/** Equal up to the result's rounding to 5 significant digits. */
const near = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-3 * Math.abs(b), `${what}: ${a} vs ${b}`);

test('decode at growing contexts with the per-kernel breakdown of a step, under the default (browser) limits', async () => {
  const r = await runBench({
    modelDir: dir,
    dtypes: ['f16', 'q4'],
    promptLengths: [4],
    decodeTokens: 2,
    runs: 2,
    peers: [],
    qualityTokens: 0,
    copyBytes: 1 << 20,
    attentionContexts: [16],
    kernelBudgetMs: 500,
    cacheDir: join(tmp, 'gguf'),
    decodeContexts: [5, 40, 1000],
    deviceLimits: 'default',
  });
  // WebGPU's defaults, what a page gets that asks for nothing: reported for the run and each format.
  assert.equal(r.machine.limits.maxStorageBufferBindingSize, 128 * MIB);
  assert.equal(r.machine.limits.maxBufferSize, 256 * MIB);
  assert.equal(r.options.device_limits, 'default');
  const copyGbs = r.kernels!.copy!.gb_s;
  positive(copyGbs, 'copy gb_s');
  const plan = await loadPlan(dir);
  for (const f of r.formats) {
    assert.ok(f.ok, `${f.dtype}: ${f.error}`);
    assert.deepEqual(f.limits, { maxStorageBufferBindingSize: 128 * MIB, maxBufferSize: 256 * MIB });
    const cs = f.contexts!;
    assert.deepEqual(cs.map((c) => c.requested), [5, 40, 1000]);
    // Capped so that warm-up, 2 timed steps and the breakdown's step fit tiny-elm's 256 tokens;
    // the timed steps start after the one warm-up step.
    assert.deepEqual(cs.map((c) => c.context_tokens), [6, 41, 253]);
    for (const c of cs) {
      assert.equal(c.fill, 'prefill');
      positive(c.prefill_ms, 'prefill_ms');
      stat(c.tokens_per_s, `ctx ${c.requested} tokens_per_s`, 2);
      const b = c.breakdown!;
      assert.equal(b.context_tokens, c.context_tokens + 3, 'the breakdown times the step after the timed ones');
      assert.equal(b.method, r.kernels!.copy!.method);
      assert.deepEqual(b.kinds.map((k) => k.kind), KINDS);
      assert.equal(b.kinds.reduce((s, k) => s + k.dispatches, 0), f.dispatches_per_token, 'every dispatch of the step is timed');
      for (const k of b.kinds) {
        positive(k.bytes, `${f.dtype} ctx ${c.requested} ${k.kind}.bytes`);
        // A tiny dispatch can measure 0 ms: Dawn quantizes timestamps (65.5 us here). Then gb_s is 0.
        for (const key of ['ms', 'gb_s', 'share'] as const) assert.ok(Number.isFinite(k[key]) && k[key] >= 0, `${f.dtype} ctx ${c.requested} ${k.kind}.${key} = ${k[key]}`);
        if (k.ms > 0) near(k.gb_s, k.bytes / (k.ms * 1e6), `${k.kind} gb_s`);
        else assert.equal(k.gb_s, 0, `${k.kind} gb_s with 0 ms`);
      }
      positive(b.sum_ms, 'sum_ms');
      near(b.kinds.reduce((s, k) => s + k.share, 0), 1, 'shares sum to 1');
      near(b.kinds.reduce((s, k) => s + k.ms, 0), b.sum_ms, 'sum_ms');
      assert.equal(b.bytes, b.kinds.reduce((s, k) => s + k.bytes, 0));
      // Attention reads the query and every cached key and value (f32) of each layer.
      const hd = plan.headDim;
      const att = plan.layers.reduce((s, l) => s + l.numQueryHeads * hd * 4 + 2 * l.numKvHeads * b.context_tokens * hd * 4, 0);
      assert.equal(b.kinds.find((k) => k.kind === 'attention')!.bytes, att);
      // The argmax reads the logits row.
      assert.equal(b.kinds.find((k) => k.kind === 'argmax')!.bytes, plan.vocabSize * 4);
      positive(b.step_ms, 'step_ms');
      positive(b.gb_s, 'step gb_s');
      assert.equal(b.copy_gb_s, copyGbs);
      positive(b.roofline_fraction, 'roofline_fraction');
      near(b.roofline_fraction!, b.bytes / (b.step_ms * 1e6) / copyGbs, 'roofline_fraction');
    }
    // Weights are the same at every context; only attention reads more.
    const w = (i: number, kind: string) => cs[i].breakdown!.kinds.find((k) => k.kind === kind)!.bytes;
    assert.equal(w(0, 'proj_1'), w(2, 'proj_1'));
    assert.ok(w(2, 'attention') > w(0, 'attention'));
    positive(r.summary[`ours.${f.dtype}.ctx1000.decode_tok_s`], 'summary ctx1000');
    positive(r.summary[`ours.${f.dtype}.ctx40.roofline_fraction`], 'summary roofline');
  }
  // q4 weights are smaller than f16's.
  const p1 = (d: string) => r.formats.find((f) => f.dtype === d)!.contexts![0].breakdown!.kinds.find((k) => k.kind === 'proj_1')!.bytes;
  assert.ok(p1('q4') < p1('f16') / 2);
  const text = renderTable(r);
  assert.match(text, /decode at context\s+cached\s+tok\/s/);
  assert.match(text, /one decode step, q4, 256 keys \((timestamp-query|wall-clock), 2 runs\)/);
  assert.match(text, /\nattention\s+4\s+\S/);
});

test('openelm bench --json prints one JSON object; bad options fail with one line', () => {
  const cli = join(repoRoot, 'bin/openelm.js');
  const out = join(tmp, 'cli');
  const r = spawnSync(process.execPath, [cli, 'bench', '--model', dir, '--prompt-lengths', '4', '--decode-tokens', '2', '--runs', '1', '--no-kernels', '--out', out, '--json'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.schema, 'openelm-webgpu/bench@1');
  assert.equal(j.formats[0].dtype, 'f16');
  assert.ok(j.formats[0].decode.tokens_per_s.median > 0);
  assert.equal(j.kernels, null);
  assert.ok(existsSync(j.files.json) && existsSync(j.files.svg));
  assert.match(r.stderr, /decode tok\/s/); // the table goes to stderr with --json

  const bad = spawnSync(process.execPath, [cli, 'bench', '--model', dir, '--peers', 'pytorch'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
  assert.match(bad.stderr, /--peers: "pytorch" is not one of tfjs, llama-cpu, llama-vulkan/);

  // --browser-limits and contexts filled by position, on the command line.
  const lim = spawnSync(
    process.execPath,
    [cli, 'bench', '--model', dir, '--prompt-lengths', '4', '--decode-tokens', '1', '--runs', '1', '--no-kernels', '--quality-tokens', '0', '--browser-limits', '--decode-contexts', '100', '--context-fill', 'positions', '--out', out, '--json'],
    { encoding: 'utf8', timeout: 120_000 },
  );
  assert.equal(lim.status, 0, lim.stderr);
  const jl = JSON.parse(lim.stdout);
  assert.equal(jl.machine.limits.maxStorageBufferBindingSize, 128 * MIB);
  assert.equal(jl.formats[0].limits.maxStorageBufferBindingSize, 128 * MIB);
  const c = jl.formats[0].contexts[0];
  assert.equal(c.fill, 'positions');
  assert.equal(c.context_tokens, 101);
  assert.equal(c.prefill_ms, undefined);
  assert.equal(c.breakdown.roofline_fraction, undefined, 'no copy bandwidth without kernels');
  for (const args of [['--sizes', '7B'], ['--sizes', '270M', '--model', dir], ['--context-fill', 'zeros']]) {
    const e = spawnSync(process.execPath, [cli, 'bench', ...args], { encoding: 'utf8' });
    assert.equal(e.status, 2, `${args.join(' ')}: ${e.stderr}`);
    assert.equal(e.stderr.trim().split('\n').length, 1, e.stderr);
  }
});

test('the llama.cpp peer runs when node-llama-cpp is installed, else says how to install it', async () => {
  const r = await benchLlama({ modelDir: dir, cacheDir: join(tmp, 'gguf'), formats: ['F32'], promptLengths: [5], decodeTokens: 3, runs: 1, backend: 'cpu' });
  if (!r.ok) {
    assert.ok(r.error?.includes(LLAMA_INSTALL_HINT), r.error);
    return;
  }
  const f = r.formats[0];
  assert.ok(f.ok, f.error);
  positive(f.prefill![0].tokens_per_s.median, 'llama prefill');
  positive(f.decode!.tokens_per_s.median, 'llama decode');
  assert.equal(f.decode!.ids.length, 1 + 2 + 3);
});
