// The workgroup-memory tiled T > 1 kernel (kernels/matmul_tiled.ts, shaders/matmul_tiled.wgsl),
// forced on whatever the tuner would pick, in every fused form and both weight formats it takes,
// on random odd shapes and forced block sizes, against matmulRef over the stored weights; its block
// sizing from the adapter's limits; the chooser and the tuner; and the shader-f16 weight reads of
// matmul.wgsl and matmul_tiled.wgsl where the device has the feature.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matmulKernel, tunePrefillMatmul } from '../../src/runtime/linear.ts';
import { tiledSizes, tiledWorkgroupBytes, type TiledLimits } from '../../kernels/matmul_tiled.ts';
import { destroyWeight, uploadWeight, weightRowBytes, type WeightFormat } from '../../src/weights/gpu-weight.ts';
import { randInt, rng, testGpu } from '../helpers.ts';
import { FUSIONS, runCase, type Case } from './matmul-cases.ts';

const FORMS: Pick<Case, 'norm' | 'activation' | 'folded' | 'accumulate'>[] = [
  { norm: false, accumulate: false },
  { norm: false, accumulate: true },
  ...FUSIONS.map((f) => ({ ...f, accumulate: false })),
  { norm: true, activation: 'silu-gate', accumulate: true },
];

/** A random T in 2..70 that is not a multiple of 4, and an N (even for the gate) and K, K odd half the time. */
function oddShape(r: () => number, gate: boolean): { T: number; N: number; K: number } {
  let T = randInt(r, 2, 70);
  if (T % 4 === 0) T += 1;
  const N = gate ? 2 * randInt(r, 1, 90) : 2 * randInt(r, 1, 90) - 1;
  const K = [randInt(r, 1, 40) * 2 + 1, randInt(r, 1, 40) * 4, randInt(r, 1, 40) * 4 + 2, 1][randInt(r, 0, 3)];
  return { T, N, K };
}

test('tiled matmul matches the CPU reference in every fused form, f32 and f16, on odd shapes and block sizes', async () => {
  const gpu = await testGpu();
  const r = rng(71);
  // The device's own sizes (undefined) and forced small ones: several K steps, one-thread rows.
  const tiles = [undefined, { WG: 4, TT: 2, KS: 1 }, { WG: 8, TT: 4, KS: 3 }, { WG: 1, TT: 1, KS: 2 }, { WG: 16, TT: 16, KS: 7 }];
  let i = 0;
  for (const format of ['f32', 'f16'] as WeightFormat[])
    for (const f of FORMS) {
      const { T, N, K } = oddShape(r, f.activation === 'silu-gate');
      const t = tiles[i % tiles.length];
      await runCase(gpu, r, { T, N, K, format, ...f, prefill: 'tiled', tiles: t, shaderF16: false });
      i++;
    }
});

test('tiled matmul with weights split into chunks, a grid folded into y, and minimal sizes', async () => {
  const gpu = await testGpu();
  const r = rng(72);
  for (const [T, N, K, format, rowsPerChunk] of [
    [5, 130, 33, 'f16', 7],
    [19, 64, 40, 'f32', 13],
    [3, 10, 1, 'f16', 4],
  ] as [number, number, number, WeightFormat, number][]) {
    const { chunks } = await runCase(gpu, r, { T, N, K, format, norm: true, activation: 'silu-gate', accumulate: false, prefill: 'tiled', maxChunkBytes: weightRowBytes(K, format) * rowsPerChunk - (rowsPerChunk % 2) * weightRowBytes(K, format) });
    assert.ok(chunks > 1);
    await runCase(gpu, r, { T, N: N - 1, K, format, norm: false, accumulate: true, prefill: 'tiled', maxChunkBytes: weightRowBytes(K, format) * rowsPerChunk });
  }
  // One-thread blocks of 4 rows by 4 tokens: more workgroups than one grid dimension holds.
  const T = Math.ceil(gpu.limits.maxComputeWorkgroupsPerDimension / 75) * 4 + 5;
  await runCase(gpu, r, { T, N: 300, K: 3, format: 'f32', norm: true, accumulate: false, prefill: 'tiled', tiles: { WG: 1, TT: 1, KS: 1 } });
  await runCase(gpu, r, { T: 2, N: 1, K: 1, format: 'f16', norm: false, accumulate: false, prefill: 'tiled' });
});

test('tiled block sizes fit the limits they are sized from and use the memory there is', () => {
  const base: TiledLimits = { maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256, maxComputeWorkgroupSizeY: 256 };
  for (const limits of [
    base,
    { ...base, maxComputeWorkgroupStorageSize: 32768 },
    { ...base, maxComputeInvocationsPerWorkgroup: 64, maxComputeWorkgroupSizeY: 64 },
    { ...base, maxComputeWorkgroupStorageSize: 4096, maxComputeInvocationsPerWorkgroup: 32, maxComputeWorkgroupSizeX: 8 },
  ])
    for (const T of [2, 5, 17, 64, 128, 511])
      for (const K of [1, 9, 1280]) {
        const s = tiledSizes(limits, T, K);
        const what = `${JSON.stringify(limits)} T=${T} K=${K} -> ${JSON.stringify(s)}`;
        assert.ok(s.WG * s.TT <= limits.maxComputeInvocationsPerWorkgroup && s.WG <= limits.maxComputeWorkgroupSizeX && s.TT <= limits.maxComputeWorkgroupSizeY, what);
        assert.ok(tiledWorkgroupBytes(s) <= limits.maxComputeWorkgroupStorageSize, what);
        assert.ok(s.KS >= 1 && 4 * s.KS < K + 4, `${what}: a K step no longer than K`);
        // No more token threads than T needs (4 tokens each).
        assert.ok(s.TT === 1 || 4 * (s.TT / 2) < T, what);
      }
  // More workgroup memory, longer K steps.
  assert.ok(tiledSizes({ ...base, maxComputeWorkgroupStorageSize: 32768 }, 128, 1280).KS > tiledSizes(base, 128, 1280).KS);
});

test('the chooser runs the tiled kernel only for T > 1 with f32/f16 weights when asked', async () => {
  const gpu = await testGpu();
  for (const [format, T, prefill, kernel] of [
    ['f16', 7, 'tiled', 'matmul_tiled'],
    ['f32', 2, 'tiled', 'matmul_tiled'],
    ['f16', 1, 'tiled', 'matmul'],
    ['f16', 7, 'register', 'matmul'],
    ['q8', 7, 'tiled', 'matmul_q'],
    ['q4', 7, 'tiled', 'matmul_q'],
  ] as const) {
    const w = uploadWeight(gpu, 'w', new Float32Array(4 * 64), 4, 64, format);
    assert.equal(matmulKernel(w, T, 'rows', prefill), kernel, `${format} T=${T} ${prefill}`);
    destroyWeight(gpu, w);
  }
});

test('tunePrefillMatmul times both T > 1 kernels and keeps the faster; q8/q4 stay register-tiled', async () => {
  const gpu = await testGpu();
  const r = rng(73);
  const data = new Float32Array(256 * 96).map(() => r() - 0.5);
  const w = uploadWeight(gpu, 'w', data, 256, 96, 'f16');
  const t = await tunePrefillMatmul(gpu, w, 33, 2);
  assert.ok(t.ms.register > 0 && t.ms.tiled > 0, JSON.stringify(t));
  assert.equal(t.choice, t.ms.tiled < t.ms.register ? 'tiled' : 'register');
  console.log(`prefill matmul [256, 96] f16, T=33: register ${t.ms.register.toFixed(2)} ms, tiled ${t.ms.tiled.toFixed(2)} ms`);
  destroyWeight(gpu, w);
  const q = uploadWeight(gpu, 'q', data, 256, 96, 'q8');
  assert.equal((await tunePrefillMatmul(gpu, q, 33, 1)).choice, 'register');
  destroyWeight(gpu, q);
});

test('shader-f16 weight reads (matmul one-token, register-tiled and tiled) match the CPU reference', async (t) => {
  const gpu = await testGpu();
  if (!gpu.features.shaderF16) {
    t.skip(`this adapter (${gpu.info.description || gpu.info.vendor}) has no shader-f16: the SHADER_F16 variants cannot compile here; f16 weights take the packed-u32 path`);
    return;
  }
  const r = rng(74);
  let i = 0;
  for (const f of FORMS)
    for (const prefill of ['register', 'tiled'] as const) {
      const { T, N, K } = oddShape(r, f.activation === 'silu-gate');
      // Both VEC4 forms of each kernel (K % 8 == 0 and not) and one-token products.
      const k = i % 2 === 0 ? 8 * Math.ceil(K / 8) : K;
      await runCase(gpu, r, { T: i % 3 === 0 ? 1 : T, N, K: k, format: 'f16', ...f, prefill, shaderF16: true });
      i++;
    }
});
