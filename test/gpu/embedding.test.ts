import assert from 'node:assert/strict';
import { test } from 'node:test';
import { embeddingDispatches, embeddingRef } from '../../kernels/embedding.ts';
import { releaseDispatches, runDispatches } from '../../src/gpu/dispatch.ts';
import { dequantize } from '../../src/weights/quant.ts';
import { destroyWeight, uploadWeight, weightRowBytes, type WeightFormat } from '../../src/weights/gpu-weight.ts';
import type { Gpu } from '../../src/gpu/gpu.ts';
import { assertClose, randInt, randn, rng, testGpu } from '../helpers.ts';

async function runCase(gpu: Gpu, r: () => number, rows: number, cols: number, ids: Uint32Array, format: WeightFormat, maxChunkBytes?: number): Promise<{ chunks: number; folded: boolean }> {
  const what = `table [${rows}, ${cols}] ${format} T=${ids.length}${maxChunkBytes ? ` chunk<=${maxChunkBytes}B` : ''}`;
  const table = randn(r, rows * cols);
  const w = uploadWeight(gpu, 'table', table, rows, cols, format, maxChunkBytes);
  const idb = gpu.upload('ids', ids);
  // Pre-fill the output with garbage: every element must be overwritten.
  const out = gpu.upload('out', new Float32Array(ids.length * cols).fill(NaN));
  const ds = embeddingDispatches(gpu, w, { tokens: ids.length, ids: idb, out });
  assert.equal(ds.length, w.chunks.length);
  runDispatches(gpu, ds);
  // Gathered rows are exactly the stored values: quantized ones as q * d in f32.
  const ref = embeddingRef(dequantize(table, rows, cols, format), cols, ids);
  assertClose(await gpu.readF32(out, ids.length * cols), ref, 0, 0, what);
  releaseDispatches(gpu, ds);
  const chunks = w.chunks.length;
  const folded = ds.some((d) => d.workgroups[1] > 1);
  destroyWeight(gpu, w);
  gpu.destroyBuffer(idb);
  gpu.destroyBuffer(out);
  return { chunks, folded };
}

function randomIds(r: () => number, T: number, rows: number): Uint32Array {
  return Uint32Array.from({ length: T }, () => randInt(r, 0, rows - 1));
}

test('embedding gathers rows exactly (f32 and f16, odd and even widths)', async () => {
  const gpu = await testGpu();
  const r = rng(21);
  for (const format of ['f32', 'f16'] as WeightFormat[])
    for (const [rows, cols, T] of [
      [1, 1, 1],
      [5, 3, 4],
      [100, 64, 17],
      [37, 33, 9],
      [1000, 130, 65],
    ]) {
      await runCase(gpu, r, rows, cols, randomIds(r, T, rows), format);
    }
});

test('embedding over a table split into unaligned chunks', async () => {
  const gpu = await testGpu();
  const r = rng(22);
  for (const [rows, cols, T, format, max] of [
    [100, 33, 40, 'f16', 17 * 4 * 7], // 7 rows a chunk
    [100, 33, 40, 'f32', 33 * 4 * 9 + 5], // 9 rows a chunk
    [50, 8, 200, 'f16', 16], // 1 row a chunk
    [300, 64, 33, 'f32', 256 * 41], // 41 rows a chunk
  ] as [number, number, number, WeightFormat, number][]) {
    // Include the first and last row of the table and repeated ids.
    const ids = randomIds(r, T, rows);
    ids[0] = 0;
    ids[1] = rows - 1;
    ids[2] = ids[3];
    const { chunks } = await runCase(gpu, r, rows, cols, ids, format, max);
    assert.ok(chunks > 1, `expected a split for [${rows}, ${cols}]`);
  }
});

test('embedding ids past the table give zero rows, with no GPU error', async () => {
  const gpu = await testGpu();
  const r = rng(23);
  gpu.device.pushErrorScope('validation');
  for (const [format, max] of [['f32', undefined], ['f16', 40]] as [WeightFormat, number | undefined][]) {
    await runCase(gpu, r, 10, 5, Uint32Array.from([3, 10, 9, 0xffffffff, 0, 11]), format, max);
  }
  const err = await gpu.device.popErrorScope();
  assert.equal(err, null, err?.message);
});

test('embedding over many tokens (folded grid)', async () => {
  const gpu = await testGpu();
  const r = rng(24);
  // T x 64 words in workgroups of 64: more workgroups than one grid dimension allows.
  const T = gpu.limits.maxComputeWorkgroupsPerDimension + 100;
  const { folded } = await runCase(gpu, r, 50, 128, randomIds(r, T, 50), 'f16');
  assert.ok(folded, 'expected the grid to fold into y');
});

test('embedding from q8/q4 tables: exact dequantized rows, padded and unpadded widths', async () => {
  const gpu = await testGpu();
  const r = rng(25);
  for (const format of ['q8', 'q4'] as WeightFormat[])
    for (const [rows, cols, T] of [
      [1, 1, 1],
      [5, 3, 4],
      [100, 64, 17],
      [37, 33, 9],
      [1000, 130, 65],
      [50, 1280, 7],
      [20, 520, 5],
    ]) {
      await runCase(gpu, r, rows, cols, randomIds(r, T, rows), format);
    }
});

test('embedding from q8/q4 tables split into chunks, ids past the table', async () => {
  const gpu = await testGpu();
  const r = rng(26);
  gpu.device.pushErrorScope('validation');
  for (const [rows, cols, T, format, rowsPerChunk] of [
    [100, 33, 40, 'q8', 7],
    [100, 33, 40, 'q4', 9],
    [50, 8, 200, 'q4', 1],
    [300, 64, 33, 'q8', 41],
  ] as [number, number, number, WeightFormat, number][]) {
    const ids = randomIds(r, T, rows);
    ids[0] = 0;
    ids[1] = rows - 1;
    ids[2] = ids[3];
    ids[4] = rows; // past the table: zeros
    ids[5] = 0xffffffff;
    const { chunks } = await runCase(gpu, r, rows, cols, ids, format, weightRowBytes(cols, format) * rowsPerChunk);
    assert.equal(chunks, Math.ceil(rows / rowsPerChunk));
  }
  const err = await gpu.device.popErrorScope();
  assert.equal(err, null, err?.message);
});
