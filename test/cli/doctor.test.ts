// `openelm doctor`: passes here with the built-in kernels and covers every kernel the engine
// dispatches; its JSON is one object of the documented shape; a kernel-lab variant that drops a
// row makes it fail (exit 1, the failing check named); bad options are one-line usage errors.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import source from '../../shaders/matmul.wgsl';
import tiledSource from '../../shaders/matmul_tiled.wgsl';
import { kernelChecks, runCheck } from '../../src/doctor/kernel-checks.ts';
import { runDoctor, reportJson, type DoctorReport } from '../../src/doctor/doctor.ts';
import { isKernelName, kernelOrigin, setKernelVariant } from '../../src/gpu/kernel-variants.ts';
import { SHADER_INCLUDES } from '../../src/gpu/shader.ts';
import { repoRoot, testGpu } from '../helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'doctor-test-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/**
 * The built-in f32/f16 matmul with the 4th of each thread's 4 rows never stored (plain, accumulate
 * and norm forms): its output snippet pasted in place of `#include matmul_out`, without that store.
 */
const DROP_ROW = 'if (n0 + 3u * WG < N) { store(t, n0 + 3u * WG, o.w); }';
const dropRow = source.replace('#include matmul_out', SHADER_INCLUDES.matmul_out.replace(DROP_ROW, ''));

function openelm(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(repoRoot, 'bin/openelm.js'), ...args]);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The kernels the engine dispatches: every kernel module a src/runtime file imports (forward.ts, engine.ts, linear.ts ...). */
function engineKernels(): string[] {
  const dir = join(repoRoot, 'src/runtime');
  const text = readdirSync(dir).map((f) => readFileSync(join(dir, f), 'utf8')).join('\n');
  return [...new Set([...text.matchAll(/from '\.\.\/\.\.\/kernels\/(\w+)\.ts'/g)].map((m) => m[1]))].filter(isKernelName);
}

test('runDoctor passes here with the built-in kernels, covers every kernel the engine dispatches', async () => {
  const gpu = await testGpu();
  const r = await runDoctor(gpu);
  const failed = r.checks.filter((c) => !c.pass).map((c) => `${c.name} ${c.variant} ${c.format}: ${c.max_error} ${c.error ?? ''}`);
  assert.deepEqual(failed, [], 'every check passes');
  assert.ok(r.model_check.pass, JSON.stringify(r.model_check.dtypes));
  assert.ok(r.pass);
  const kernels = engineKernels();
  assert.ok(kernels.length >= 7, `found the engine's kernels: ${kernels.join(', ')}`);
  const covered = new Set(r.checks.flatMap((c) => c.kernels));
  for (const k of kernels) assert.ok(covered.has(k as never), `a check runs ${k}`);
  // Every weight format and GEMV kernel of the matmul, in every fused form.
  for (const f of ['f32', 'f16', 'q8', 'q4'])
    for (const g of ['rows', 'coalesced'])
      for (const form of ['plain', 'accumulate', 'norm', 'norm+silu-gate', 'folded-norm+silu-gate'])
        assert.ok(r.checks.some((c) => c.name === 'matmul' && c.format === f && c.variant.startsWith(`gemv=${g}`) && c.variant.endsWith(` ${form}`)), `matmul ${f} ${g} ${form}`);
  // The workgroup-memory tiled T > 1 kernel, forced on, for the formats it takes.
  for (const f of ['f32', 'f16'])
    for (const form of ['plain', 'accumulate', 'norm', 'norm+silu-gate', 'folded-norm+silu-gate'])
      assert.ok(r.checks.some((c) => c.name === 'matmul' && c.format === f && c.variant.startsWith('prefill=tiled') && c.variant.includes(` ${form}`) && c.kernels.includes('matmul_tiled')), `matmul tiled ${f} ${form}`);
  // Where the device has shader-f16, both f16 reads are checked.
  assert.equal(r.checks.some((c) => c.variant.endsWith(' shader-f16')), gpu.features.shaderF16);
  assert.equal(r.choices.prefill_matmul.value, gpu.info.isFallback ? 'register' : r.choices.prefill_matmul.value);
  assert.ok(['register', 'tiled'].includes(String(r.choices.prefill_matmul.value)), r.choices.prefill_matmul.why);
  assert.deepEqual(r.model_check.dtypes.map((d) => d.dtype), ['f32', 'f16']);
  assert.ok(r.model_check.dtypes[0].max_abs !== null && r.model_check.dtypes[0].max_abs < 2e-4);
  assert.ok(['rows', 'coalesced'].includes(String(r.choices.gemv.value)));
  // JSON round trip keeps it all (no NaN or Infinity to lose).
  assert.deepEqual(JSON.parse(reportJson(r)), JSON.parse(JSON.stringify(r)));
});

test('a matmul variant that drops a row fails the matmul checks in the library and gives up its origin after', async () => {
  const gpu = await testGpu();
  const broken = dropRow;
  assert.ok(!broken.includes(DROP_ROW) && broken.includes('store(t, n0 + 2u * WG, o.z)'), 'the broken variant drops one store');
  setKernelVariant('matmul', broken, 'drop-row.wgsl');
  let r: DoctorReport;
  try {
    r = await runDoctor(gpu, { only: ['argmax'], dtype: 'f32' });
  } finally {
    setKernelVariant('matmul', null);
  }
  // argmax is right, the model (whose every layer runs the matmul) is not.
  assert.ok(r.checks.every((c) => c.pass));
  assert.equal(r.model_check.pass, false);
  assert.equal(r.pass, false);
  assert.equal(r.kernel_sources.matmul, 'drop-row.wgsl');
  assert.equal(kernelOrigin('matmul'), 'built-in');
});

test('an attention_split variant whose combine drops a split fails the split-K checks, and only those', async () => {
  const gpu = await testGpu();
  const builtIn = readFileSync(join(repoRoot, 'shaders/attention_split.wgsl'), 'utf8');
  const broken = builtIn.replace('for (var s = 0u; s < sp.count; s++) {\n    let at', 'for (var s = 1u; s < sp.count; s++) {\n    let at');
  assert.notEqual(broken, builtIn, 'the broken variant differs from the built-in');
  setKernelVariant('attention_split', broken, 'drop-split.wgsl');
  let r: DoctorReport;
  try {
    r = await runDoctor(gpu, { only: ['attention', 'attention_split'], dtype: 'f32' });
  } finally {
    setKernelVariant('attention_split', null);
  }
  const failed = r.checks.filter((c) => !c.pass);
  assert.ok(failed.length > 0 && failed.every((c) => c.name === 'attention_split'), failed.map((c) => c.variant).join('; '));
  assert.ok(r.checks.some((c) => c.name === 'attention' && c.pass));
  assert.equal(r.pass, false);
});

test('a tiled matmul variant that drops the first token of each thread fails the tiled checks', async () => {
  const gpu = await testGpu();
  const store = 'if (t < T) { store4(t, n0, vec4f(a00, a10, a20, a30) * r.x); }';
  assert.ok(tiledSource.includes(store));
  const specs = kernelChecks(gpu).filter((s) => s.variant.startsWith('prefill=tiled') && s.variant.includes(' plain'));
  assert.ok(specs.length >= 2);
  setKernelVariant('matmul_tiled', tiledSource.replace(store, ''), 'drop-token.wgsl');
  try {
    for (const s of specs) {
      const c = await runCheck(gpu, s);
      assert.equal(c.pass, false, `${c.variant} ${c.format} passes with a token dropped`);
      assert.ok(c.max_error === null || c.max_error > 1e-2, `${c.max_error}`);
    }
  } finally {
    setKernelVariant('matmul_tiled', null);
  }
  for (const s of specs) assert.ok((await runCheck(gpu, s)).pass, `${s.variant} ${s.format} built-in`);
});

test('openelm doctor --kernel-variant with a row dropped exits 1 naming the failing matmul check; --json stays one object', async () => {
  const file = join(tmp, 'drop-row.wgsl');
  writeFileSync(file, dropRow);
  const r = await openelm('doctor', '--json', '--only', 'matmul', '--kernel-variant', `matmul=${file}`);
  assert.equal(r.code, 1, r.stderr);
  const report = JSON.parse(r.stdout) as DoctorReport;
  assert.equal(report.pass, false);
  assert.equal(report.kernel_sources.matmul, file);
  const failing = report.checks.filter((c) => !c.pass);
  assert.ok(failing.some((c) => c.name === 'matmul' && c.variant.endsWith(' plain')), 'the plain matmul fails');
  assert.ok(failing.every((c) => c.name === 'matmul'));
  assert.ok(failing.every((c) => c.max_error !== null && c.max_error > 1e-2), 'a dropped row is a large error');
  assert.match(r.stderr.trim(), /^openelm: doctor: \d+ kernel check\(s\) failed.*first: matmul /);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
});

test('openelm doctor --json prints one object with adapter, checks, model_check, choices; exit 0', async () => {
  const r = await openelm('doctor', '--json', '--only', 'argmax,embedding', '--dtype', 'q8');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim().split('\n').length, 1);
  const j = JSON.parse(r.stdout) as Record<string, unknown> & DoctorReport;
  for (const k of ['adapter', 'checks', 'model_check', 'choices', 'pass']) assert.ok(k in j, k);
  for (const k of ['vendor', 'architecture', 'device', 'description', 'features', 'limits']) assert.ok(k in j.adapter, `adapter.${k}`);
  assert.ok(j.adapter.limits.maxStorageBufferBindingSize > 0);
  assert.deepEqual([...new Set(j.checks.map((c) => c.name))], ['embedding', 'argmax']);
  for (const c of j.checks) for (const k of ['name', 'variant', 'format', 'pass', 'max_error', 'tolerance', 'ms']) assert.ok(k in c, `check.${k}`);
  for (const k of ['pass', 'max_abs', 'positions']) assert.ok(k in j.model_check, `model_check.${k}`);
  assert.deepEqual(j.model_check.dtypes.map((d) => d.dtype), ['f32', 'q8']);
  for (const k of ['gemv', 'prefill_matmul', 'subgroups', 'shader_f16', 'weight_chunk_bytes']) assert.ok(typeof j.choices[k as keyof typeof j.choices].why === 'string', `choices.${k}.why`);
});

test('openelm doctor without --json prints a PASS/FAIL line per check and a summary', async () => {
  const r = await openelm('doctor', '--only', 'argmax');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^adapter: /);
  assert.match(r.stdout, /^PASS {2}argmax +greedy id +- +0 \(tol 0\) +\d+ ms$/m);
  assert.match(r.stdout, /^PASS {2}model f32 /m);
  assert.match(r.stdout, /^PASS: 1\/1 kernel checks passed, model check passed/m);
});

test('openelm doctor: bad options are one stderr line, exit 2', async () => {
  for (const [args, pattern] of [
    [['--dtype', 'f8'], /--dtype must be one of/],
    [['--only', 'matmul,bogus'], /--only: "bogus" is not one of/],
    [['--kernel-variant', 'nope=x.wgsl'], /--kernel-variant: "nope" is not one of/],
    // Kernels the engine no longer runs are not offered (their math is matmulRef's fused forms).
    [['--kernel-variant', 'rmsnorm=x.wgsl'], /--kernel-variant: "rmsnorm" is not one of argmax, .*matmul_q/],
    [['--kernel-variant', `matmul=${join(tmp, 'missing.wgsl')}`], /--kernel-variant: cannot read .*missing\.wgsl \(ENOENT\)/],
    [['--kernel-variant', 'matmul'], /--kernel-variant must be KERNEL=FILE/],
  ] as [string[], RegExp][]) {
    const r = await openelm('doctor', '--json', ...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, pattern);
  }
});

test('openelm doctor with a variant that does not compile: exit 1, still one JSON object, the WGSL error in the check', async () => {
  const file = join(tmp, 'garbage.wgsl');
  writeFileSync(file, 'this is not WGSL\n');
  const r = await openelm('doctor', '--json', '--only', 'argmax', '--kernel-variant', `argmax=${file}`);
  assert.equal(r.code, 1, r.stderr);
  const report = JSON.parse(r.stdout) as DoctorReport;
  assert.equal(report.checks.length, 1);
  assert.equal(report.checks[0].pass, false);
  assert.match(report.checks[0].error ?? '', /^GPU error: .*WGSL/);
  // Every engine pass ends by choosing the next token, so the whole model fails too, with the error.
  assert.equal(report.model_check.pass, false);
  for (const d of report.model_check.dtypes) assert.match(d.error ?? '', /^GPU error: /);
  assert.match(r.stderr, /first: argmax greedy id/);
});
