// Compact checkpoints (openelm convert): a converted folder gives the same logits, bit for bit, as
// loading the float source with on-load quantization in the same format; and the upload of stored
// quants builds the same GPU buffers as uploadWeight from floats, chunk for chunk.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { convertCheckpoint } from '../../src/convert/compact.ts';
import { loadModel } from '../../src/index.ts';
import { synthesizeCheckpoint } from '../../src/io/synth.ts';
import { memorySource, parseSafetensors } from '../../src/io/safetensors.ts';
import { interleaveGateUp } from '../../src/runtime/linear.ts';
import { uploadCompactMatrix } from '../../src/runtime/compact-weights.ts';
import { scalesName } from '../../src/weights/compact-layout.ts';
import { uploadWeight, destroyWeight, type GpuWeight } from '../../src/weights/gpu-weight.ts';
import { packQuantRows, quantGroups, quantRowWords, quantScaleRowWords, type QuantFormat } from '../../src/weights/quant.ts';
import { buildHeader } from '../../src/io/safetensors.ts';
import { randn, rng, testGpu } from '../helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'openelm-convert-'));
after(() => rmSync(root, { recursive: true, force: true }));

// model_dim 80: rows of 2.5 groups of 32 (a zero-padded last group) and 3 scales a row (padded to
// a vec4 of 8 on the GPU), so the layout's padding paths all run.
const config = (tied: boolean) => ({
  model_type: 'openelm', num_transformer_layers: 2, model_dim: 80, head_dim: 16, num_gqa_groups: 2,
  qkv_multipliers: [0.5, 1.0], ffn_multipliers: [0.5, 1.0], ffn_dim_divisor: 16, vocab_size: 300,
  max_context_length: 64, rope_freq_constant: 10000, rope_max_length: 256, share_input_output_layers: tied,
  normalize_qk_projections: true, ffn_with_glu: true, bos_token_id: 1, eos_token_id: 2,
});

const IDS = [1, 17, 250, 3, 99, 42, 7];

const cases: { name: string; format: QuantFormat; tied: boolean; dtype: 'F32' | 'F16'; shardBytes?: number; foldNorms?: boolean }[] = [
  { name: 'q8, tied, f32 source', format: 'q8', tied: true, dtype: 'F32' },
  { name: 'q4, tied, f32 source', format: 'q4', tied: true, dtype: 'F32' },
  { name: 'q4, untied, sharded f16 source', format: 'q4', tied: false, dtype: 'F16', shardBytes: 40_000 },
  { name: 'q8, untied, sharded f16 source', format: 'q8', tied: false, dtype: 'F16', shardBytes: 40_000 },
  { name: 'q4, folded norms', format: 'q4', tied: true, dtype: 'F32', foldNorms: true },
];

for (const c of cases) {
  test(`converted ${c.name}: the same logits as on-load quantization, bit for bit`, async () => {
    const src = join(root, `${c.name.replace(/\W+/g, '-')}-src`);
    const out = join(root, `${c.name.replace(/\W+/g, '-')}-out`);
    await synthesizeCheckpoint(src, config(c.tied), { dtype: c.dtype, seed: 7, shardBytes: c.shardBytes });
    const r = await convertCheckpoint(src, out, { format: c.format, foldNorms: c.foldNorms });
    assert.ok(r.weight_bytes < r.source_weight_bytes / (c.format === 'q4' ? 2.5 : 1.5), `${r.weight_bytes} of ${r.source_weight_bytes}`);
    const gpu = await testGpu();
    const a = await loadModel(src, { gpu, dtype: c.format, foldNorms: c.foldNorms, tuningStore: null, gemv: 'rows', prefillMatmul: 'register' });
    const b = await loadModel(out, { gpu, tuningStore: null, gemv: 'rows', prefillMatmul: 'register' });
    try {
      assert.equal(b.dtype, c.format);
      const ra = await a.logits(IDS, { allPositions: true });
      const rb = await b.logits(IDS, { allPositions: true });
      assert.equal(rb.length, IDS.length);
      for (let i = 0; i < ra.length; i++) assert.deepEqual(rb[i], ra[i], `position ${i}`);
      // Decode reads the same weights through the other kernels.
      const ga = await a.generateText(IDS, { maxNewTokens: 6 });
      const gb = await b.generateText(IDS, { maxNewTokens: 6 });
      assert.deepEqual(gb.ids, ga.ids);
    } finally {
      a.dispose();
      b.dispose();
    }
  });
}

async function readWeight(gpu: Awaited<ReturnType<typeof testGpu>>, w: GpuWeight): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const ch of w.chunks) out.push(new Uint8Array(await gpu.read(ch.buffer, ch.buffer.size)));
  return out;
}

for (const format of ['q8', 'q4'] as const) {
  test(`${format}: uploadCompactMatrix builds uploadWeight's buffers, chunked and gate/up interleaved`, async () => {
    const gpu = await testGpu();
    const r = rng(11);
    for (const [rows, cols, gateUp, maxChunk] of [
      [38, 80, true, 1024],
      [37, 100, false, 600],
      [64, 256, true, 1 << 20],
    ] as [number, number, boolean, number][]) {
      const data = randn(r, rows * cols);
      // The stored tensors, as convert writes them: quants [rows, rowWords * 4] bytes, scales [rows, groups] f16.
      const rowWords = quantRowWords(cols, format);
      const sWords = quantScaleRowWords(cols);
      const groups = quantGroups(cols);
      const q = new Uint32Array(rows * rowWords);
      const sc = new Uint32Array(rows * sWords);
      packQuantRows(data, rows, cols, format, q, sc);
      const halves = new Uint16Array(sc.buffer);
      const scales = new Uint16Array(rows * groups);
      for (let i = 0; i < rows; i++) scales.set(halves.subarray(i * sWords * 2, i * sWords * 2 + groups), i * groups);
      const name = 'm.weight';
      const tensors = [
        { name, dtype: 'U8', shape: [rows, rowWords * 4], bytes: () => [] },
        { name: scalesName(name), dtype: 'F16', shape: [rows, groups], bytes: () => [] },
      ];
      const { bytes: header } = buildHeader(tensors);
      const file = new Uint8Array(header.length + q.byteLength + scales.byteLength);
      file.set(header);
      file.set(new Uint8Array(q.buffer), header.length);
      file.set(new Uint8Array(scales.buffer), header.length + q.byteLength);
      const entries = await parseSafetensors(memorySource('m.safetensors', file));
      const want = gateUp ? uploadWeight(gpu, name, interleaveGateUp(data, rows, cols), rows, cols, format, maxChunk, 2) : uploadWeight(gpu, name, data, rows, cols, format, maxChunk);
      const got = await uploadCompactMatrix(gpu, entries, name, [rows, cols], format, gateUp, maxChunk);
      try {
        assert.ok(want.chunks.length > 1 || maxChunk > 4096, 'small budgets split the matrix');
        assert.deepEqual(
          got.chunks.map((c) => [c.rowStart, c.rows, c.scaleOffset]),
          want.chunks.map((c) => [c.rowStart, c.rows, c.scaleOffset]),
        );
        assert.deepEqual({ ...got, chunks: [] }, { ...want, chunks: [] });
        assert.deepEqual(await readWeight(gpu, got), await readWeight(gpu, want), `[${rows}, ${cols}] gateUp=${gateUp}`);
      } finally {
        destroyWeight(gpu, want);
        destroyWeight(gpu, got);
      }
    }
  });
}
