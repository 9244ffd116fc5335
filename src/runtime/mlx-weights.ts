// MLX-quantized checkpoints (config.json's `quantization`, see config/mlx-quant.ts): which tensors
// hold codes, checking their shapes and dtypes before anything is read, and reading one matrix's
// codes, scales and biases as they are stored. mlx-lm names OpenELM's tensors as Hugging Face does
// (transformer.layers.N.attn.qkv_proj...); every Linear and the embedding are quantized (NAME.weight
// uint32 codes, NAME.scales, NAME.biases), the RMSNorm weights stay floats, and a tied head is the
// embedding itself (no lm_head).
import type { ModelPlan, TensorSpec } from '../config/plan.ts';
import { checkTensorShape, readTensorBytes, type TensorEntry } from '../io/safetensors.ts';
import { affineFormat, affineRowWords, SCALE_DTYPES, scaleValue, type AffineTensor, type ScaleDtype } from '../weights/affine.ts';
import { WEIGHT_FORMATS, type GpuWeightFormat } from '../weights/gpu-weight.ts';

const FLOAT_DTYPES: readonly string[] = ['F32', 'F16', 'BF16'];

/** Whether a plan tensor is a matrix MLX stores quantized (every 2-D tensor of OpenELM). */
export function isQuantizedMatrix(spec: TensorSpec): boolean {
  return spec.shape.length === 2;
}

const base = (name: string) => name.replace(/\.weight$/, '');

/** Checks every tensor of an MLX checkpoint (names, shapes, dtypes) before any is read. */
export function checkMlxCheckpoint(plan: ModelPlan, tensors: Map<string, TensorEntry>): void {
  const q = plan.quantization!;
  const anyFile = tensors.values().next().value?.source.name ?? 'checkpoint';
  const expected = new Set<string>();
  const get = (name: string, shape: number[]): TensorEntry => {
    expected.add(name);
    const e = tensors.get(name);
    if (!e) throw new Error(`${anyFile}: missing tensor "${name}" (expected shape [${shape.join(', ')}] in MLX's ${q.bits}-bit layout)`);
    checkTensorShape(e, shape, e.source.name);
    return e;
  };
  for (const spec of plan.tensors) {
    if (!isQuantizedMatrix(spec)) {
      const e = get(spec.name, spec.shape);
      if (!FLOAT_DTYPES.includes(e.dtype)) throw new Error(`${e.source.name}: tensor "${e.name}" has dtype ${e.dtype}, expected one of ${FLOAT_DTYPES.join(', ')}`);
      continue;
    }
    const [rows, cols] = spec.shape;
    if (cols % q.groupSize !== 0) throw new Error(`${anyFile}: tensor "${spec.name}" has ${cols} columns, not a multiple of the group size ${q.groupSize} in config.json's quantization`);
    const w = get(spec.name, [rows, affineRowWords(cols, q.bits)]);
    if (w.dtype !== 'U32') throw new Error(`${w.source.name}: tensor "${w.name}" has dtype ${w.dtype}, expected U32 (MLX's packed ${q.bits}-bit codes)`);
    const s = get(`${base(spec.name)}.scales`, [rows, cols / q.groupSize]);
    const b = get(`${base(spec.name)}.biases`, [rows, cols / q.groupSize]);
    for (const e of [s, b]) {
      if (!(SCALE_DTYPES as readonly string[]).includes(e.dtype)) throw new Error(`${e.source.name}: tensor "${e.name}" has dtype ${e.dtype}, expected one of ${SCALE_DTYPES.join(', ')}`);
    }
    if (s.dtype !== b.dtype) throw new Error(`${b.source.name}: tensor "${b.name}" has dtype ${b.dtype}, expected ${s.dtype} like "${s.name}"`);
  }
  const extra = [...tensors.keys()].filter((n) => !expected.has(n));
  if (extra.length > 0) {
    const first = tensors.get(extra[0])!;
    throw new Error(`${first.source.name}: unexpected tensor "${extra[0]}"${extra.length > 1 ? ` (and ${extra.length - 1} more)` : ''}; the config does not call for it`);
  }
}

function view(bytes: Uint8Array, width: 2 | 4): Uint16Array | Uint32Array {
  const b = bytes.byteOffset % width === 0 ? bytes : bytes.slice();
  return width === 2 ? new Uint16Array(b.buffer, b.byteOffset, b.byteLength >> 1) : new Uint32Array(b.buffer, b.byteOffset, b.byteLength >> 2);
}

/** Reads one quantized matrix (already checked by checkMlxCheckpoint) as stored: no float copy. */
export async function readMlxMatrix(plan: ModelPlan, tensors: Map<string, TensorEntry>, name: string): Promise<AffineTensor> {
  const q = plan.quantization!;
  const w = tensors.get(name)!;
  const s = tensors.get(`${base(name)}.scales`)!;
  const b = tensors.get(`${base(name)}.biases`)!;
  const rows = w.shape[0];
  const cols = (w.shape[1] * 32) / q.bits;
  const scaleDtype = s.dtype as ScaleDtype;
  const width = scaleDtype === 'F32' ? 4 : 2;
  const scales = view(await readTensorBytes(s), width);
  const biases = view(await readTensorBytes(b), width);
  // A NaN or infinity would spread through every later position (as readFiniteTensorF32 says).
  for (const [e, v] of [[s, scales], [b, biases]] as const)
    for (let i = 0; i < v.length; i++) {
      const x = scaleValue(v[i], scaleDtype);
      if (x - x !== 0) throw new Error(`${e.source.name}: tensor "${e.name}" has a non-finite value (${x}) at index ${i}`);
    }
  return { rows, cols, bits: q.bits, groupSize: q.groupSize, scaleDtype, codes: view(await readTensorBytes(w), 4) as Uint32Array, scales, biases };
}
