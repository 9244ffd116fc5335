// Loading a compact checkpoint (`openelm convert`, layout in weights/compact-layout.ts): its
// matrices are already in the engine's q8/q4 layout, so each row block is read and copied into the
// GPU buffer as it is (proj_1's gate/up rows interleaved, scales padded to whole vec4s when a row's
// group count needs it). No float copy of a matrix is ever made.
import type { ModelPlan } from '../config/plan.ts';
import { STORED_FORMAT_KEY } from '../config/stored-format.ts';
import { shapeString, type TensorEntry } from '../io/safetensors.ts';
import type { Gpu } from '../gpu/gpu.ts';
import { compactRowBytes, compactTensors, scalesName } from '../weights/compact-layout.ts';
import { maxWeightChunkBytes, planChunks, type GpuWeight, type WeightChunk, type WeightFormat } from '../weights/gpu-weight.ts';
import { quantGroups, quantRowWords, quantScaleRowWords, type QuantFormat } from '../weights/quant.ts';

const FLOAT_DTYPES: readonly string[] = ['F32', 'F16', 'BF16'];

/** Checks names, dtypes and shapes of every tensor of a compact checkpoint before any is read. */
export function checkCompactCheckpoint(plan: ModelPlan, tensors: Map<string, TensorEntry>): void {
  const stored = plan.stored!;
  const anyFile = tensors.values().next().value?.source.name ?? 'checkpoint';
  const specs = compactTensors(plan, stored);
  const claim = `config.json says ${STORED_FORMAT_KEY}.format ${stored.format}${stored.fold_norms ? ' with fold_norms' : ''}`;
  for (const spec of specs) {
    const e = tensors.get(spec.name);
    const want = `${spec.dtype === 'float' ? 'F32, F16 or BF16' : spec.dtype} ${shapeString(spec.shape)}`;
    if (!e) throw new Error(`${anyFile}: missing tensor "${spec.name}" (expected ${want}; ${claim})`);
    const dtypeOk = spec.dtype === 'float' ? FLOAT_DTYPES.includes(e.dtype) : e.dtype === spec.dtype;
    const shapeOk = e.shape.length === spec.shape.length && e.shape.every((d, i) => d === spec.shape[i]);
    if (!dtypeOk || !shapeOk) {
      let hint = '';
      if (spec.dtype === 'U8' && e.shape.length === 2 && e.shape[0] === spec.shape[0]) {
        const cols = spec.of.shape[1];
        const other: QuantFormat = stored.format === 'q4' ? 'q8' : 'q4';
        if (e.shape[1] === compactRowBytes(cols, other)) hint = `: that is the size of ${other} quants`;
      }
      throw new Error(`${e.source.name}: tensor "${e.name}" is ${e.dtype} ${shapeString(e.shape)}, expected ${want} (${claim})${hint}`);
    }
  }
  const expected = new Set(specs.map((s) => s.name));
  const extra = [...tensors.keys()].filter((n) => !expected.has(n));
  if (extra.length > 0) {
    const first = tensors.get(extra[0])!;
    throw new Error(`${first.source.name}: unexpected tensor "${extra[0]}"${extra.length > 1 ? ` (and ${extra.length - 1} more)` : ''}; ${claim}, which does not call for it`);
  }
}

// Rows are copied in blocks of about this many bytes (the only CPU copy: one block).
const STAGE_BYTES = 4 << 20;

/**
 * `n` rows of a [rows, rowBytes] tensor from row `row0` of the GPU order: the file's own order, or
 * with `gateUp` the interleaved pairs gate p, up p (GPU row 2p is file row p, 2p + 1 is F + p).
 */
async function readRows(e: TensorEntry, rowBytes: number, row0: number, n: number, gateUp: boolean): Promise<Uint8Array> {
  const read = (r: number, k: number) => e.source.read(e.offset + r * rowBytes, k * rowBytes);
  if (!gateUp) return read(row0, n);
  const F = e.shape[0] / 2;
  const half = n / 2;
  const p0 = row0 / 2;
  const [gate, up] = [await read(p0, half), await read(F + p0, half)];
  const out = new Uint8Array(n * rowBytes);
  for (let p = 0; p < half; p++) {
    out.set(gate.subarray(p * rowBytes, (p + 1) * rowBytes), 2 * p * rowBytes);
    out.set(up.subarray(p * rowBytes, (p + 1) * rowBytes), (2 * p + 1) * rowBytes);
  }
  return out;
}

/** `n` rows of f16 scales ([n, groups] bytes) as the GPU's rows of scaleRowWords words, each checked finite. */
function padScales(bytes: Uint8Array, e: TensorEntry, row0: number, n: number, groups: number, scaleRowWords: number, fileRow: (r: number) => number): Uint8Array {
  const halves = new Uint16Array(n * scaleRowWords * 2);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let r = 0; r < n; r++) {
    for (let g = 0; g < groups; g++) {
      const h = view.getUint16((r * groups + g) * 2, true);
      if ((h & 0x7c00) === 0x7c00) {
        throw new Error(`${e.source.name}: tensor "${e.name}" has a non-finite scale at row ${fileRow(row0 + r)}, group ${g} (is the file damaged?)`);
      }
      halves[r * scaleRowWords * 2 + g] = h;
    }
  }
  return new Uint8Array(halves.buffer);
}

/**
 * Uploads one matrix of a compact checkpoint ([rows, cols] in the plan) into the chunked GPU
 * layout uploadWeight builds from floats, with the same chunk plan; the bytes are those
 * packQuantRows makes, so the result is the same weight bit for bit.
 */
export async function uploadCompactMatrix(
  gpu: Gpu,
  tensors: Map<string, TensorEntry>,
  name: string,
  shape: readonly number[],
  format: QuantFormat,
  gateUp: boolean,
  maxChunkBytes: number = maxWeightChunkBytes(gpu),
): Promise<GpuWeight> {
  const [rows, cols] = shape;
  const qEntry = tensors.get(name)!;
  const sEntry = tensors.get(scalesName(name))!;
  const rowWords = quantRowWords(cols, format);
  const groups = quantGroups(cols);
  const scaleRowWords = quantScaleRowWords(cols);
  const rowBytes = (rowWords + scaleRowWords) * 4;
  const rowMultiple = gateUp ? 2 : 1;
  const F = rows / 2;
  const fileRow = (r: number) => (gateUp ? (r % 2 === 0 ? r / 2 : F + (r - 1) / 2) : r);
  const chunks: WeightChunk[] = [];
  const plan = planChunks(rows, rowBytes, Math.min(maxChunkBytes, maxWeightChunkBytes(gpu)), name, rowMultiple);
  const blockRows = Math.max(rowMultiple, Math.floor(STAGE_BYTES / rowBytes / rowMultiple) * rowMultiple);
  try {
    for (const [rowStart, n] of plan) {
      const label = plan.length > 1 ? `${name}[${chunks.length}]` : name;
      const buffer = gpu.createBuffer(label, n * rowBytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC);
      const scaleOffset = n * rowWords;
      chunks.push({ buffer, rowStart, rows: n, scaleOffset });
      for (let r = 0; r < n; r += blockRows) {
        const m = Math.min(blockRows, n - r);
        gpu.write(buffer, await readRows(qEntry, rowWords * 4, rowStart + r, m, gateUp), r * rowWords * 4);
        const scales = await readRows(sEntry, groups * 2, rowStart + r, m, gateUp);
        gpu.write(buffer, padScales(scales, sEntry, rowStart + r, m, groups, scaleRowWords, fileRow), (scaleOffset + r * scaleRowWords) * 4);
      }
    }
  } catch (e) {
    for (const c of chunks) gpu.destroyBuffer(c.buffer);
    throw e;
  }
  return { label: name, format, rows, cols, rowWords, groups, scaleRowWords, chunks };
}
