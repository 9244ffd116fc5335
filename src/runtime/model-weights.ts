// Moves a checkpoint onto the GPU in the chosen weight format, one tensor at a time, after checking
// that the checkpoint holds exactly the tensors the plan expects, with the expected shapes.
import type { ModelPlan } from '../config/plan.ts';
import { checkTensorShape, readFiniteTensorF32, type TensorEntry } from '../io/safetensors.ts';
import type { Gpu } from '../gpu/gpu.ts';
import { foldColumnScale, gateUpSourceRow, interleaveGateUp } from './linear.ts';
import { isQuantFormat } from '../weights/quant.ts';
import { destroyWeight, uploadWeight, type GpuWeight, type GpuWeightFormat } from '../weights/gpu-weight.ts';
import { checkCompactCheckpoint, uploadCompactMatrix } from './compact-weights.ts';
import { isAffineFormat } from '../weights/affine.ts';
import { uploadAffineWeight } from '../weights/affine-upload.ts';
import { checkMlxCheckpoint, readMlxMatrix } from './mlx-weights.ts';
import { resolveWeightFormat } from './weight-format.ts';

export interface LayerWeights {
  attnNorm?: GPUBuffer; // [model_dim]; absent when folded into qkv's columns (q8/q4)
  qkv: GpuWeight; // [(q + 2 kv) * head_dim, model_dim]
  qNorm: GPUBuffer; // [head_dim] (a placeholder when q/k norms are off)
  kNorm: GPUBuffer; // [head_dim]
  outProj: GpuWeight; // [model_dim, q * head_dim]
  ffnNorm?: GPUBuffer; // [model_dim]; absent when folded into proj_1's columns (q8/q4)
  proj1: GpuWeight; // [(glu ? 2 : 1) * ffn_dim, model_dim]; with glu, rows interleaved gate 0, up 0, gate 1, ...
  proj2: GpuWeight; // [model_dim, ffn_dim]
}

export interface ModelWeights {
  format: GpuWeightFormat;
  embedding: GpuWeight; // [vocab, model_dim]
  lmHead: GpuWeight; // the embedding itself when tied, else [vocab, model_dim]
  finalNorm: GPUBuffer; // [model_dim]
  layers: LayerWeights[];
}

/** The dtypes weights are read from (converted to the chosen format while loading). */
const FLOAT_DTYPES: readonly string[] = ['F32', 'F16', 'BF16'];

export type LoadProgress = (done: number, total: number, tensor: string) => void;

/** Checks names and shapes of every tensor before any is read, so a bad checkpoint fails fast. */
export function checkCheckpoint(plan: ModelPlan, tensors: Map<string, TensorEntry>): void {
  if (plan.stored) return checkCompactCheckpoint(plan, tensors);
  // MLX's layout: codes, scales and biases for every matrix (mlx-weights.ts).
  if (plan.quantization) return checkMlxCheckpoint(plan, tensors);
  const expected = new Set(plan.tensors.map((t) => t.name));
  const anyFile = tensors.values().next().value?.source.name ?? 'checkpoint';
  for (const spec of plan.tensors) {
    const e = tensors.get(spec.name);
    if (!e) throw new Error(`${anyFile}: missing tensor "${spec.name}" (expected shape [${spec.shape.join(', ')}])`);
    checkTensorShape(e, spec.shape, e.source.name);
    if (!FLOAT_DTYPES.includes(e.dtype)) throw new Error(`${e.source.name}: tensor "${e.name}" has dtype ${e.dtype}, expected one of ${FLOAT_DTYPES.join(', ')}`);
  }
  const extra = [...tensors.keys()].filter((n) => !expected.has(n));
  if (extra.length > 0) {
    const first = tensors.get(extra[0])!;
    throw new Error(
      `${first.source.name}: unexpected tensor "${extra[0]}"${extra.length > 1 ? ` (and ${extra.length - 1} more)` : ''}; the config does not call for it`,
    );
  }
}

export async function loadWeights(
  gpu: Gpu,
  plan: ModelPlan,
  tensors: Map<string, TensorEntry>,
  format: GpuWeightFormat,
  onProgress?: LoadProgress,
  opts: { foldNorms?: boolean } = {},
): Promise<ModelWeights> {
  // A checkpoint stored quantized loads only in its own format (throws otherwise).
  resolveWeightFormat(plan, format);
  // MLX checkpoints (config.json's quantization) load as their own codes, mlx4/mlx8 (mlx-weights.ts).
  const mlx = isAffineFormat(format);
  checkCheckpoint(plan, tensors);
  // A compact checkpoint (openelm convert) is uploaded as stored, in its own format.
  const stored = plan.stored;
  const shapes = new Map(plan.tensors.map((t) => [t.name, t.shape]));
  const total = plan.tensors.length;
  let done = 0;
  const uploaded: { buffers: GPUBuffer[]; weights: GpuWeight[] } = { buffers: [], weights: [] };
  const step = (name: string) => onProgress?.(++done, total, name);

  const vector = async (name: string): Promise<GPUBuffer> => {
    const data = await readFiniteTensorF32(tensors.get(name)!);
    const b = gpu.upload(name, data);
    uploaded.buffers.push(b);
    step(name);
    return b;
  };
  // gateUp: the rows are [gate; up] and are stored as interleaved pairs for the fused gated SiLU.
  // fold: a norm's weights to multiply into the columns before storing (see below).
  const matrix = async (name: string, o: { gateUp?: boolean; fold?: Float32Array } = {}): Promise<GpuWeight> => {
    if (stored) {
      const w = await uploadCompactMatrix(gpu, tensors, name, shapes.get(name)!, stored.format, !!o.gateUp);
      uploaded.weights.push(w);
      step(name);
      return w;
    }
    if (mlx) {
      // The codes as stored; the gate/up interleave only reorders rows.
      const t = await readMlxMatrix(plan, tensors, name);
      const srcRow = o.gateUp ? gateUpSourceRow(t.rows) : undefined;
      const w = uploadAffineWeight(gpu, name, t, { srcRow, rowMultiple: o.gateUp ? 2 : 1 });
      uploaded.weights.push(w);
      step(name);
      return w;
    }
    const e = tensors.get(name)!;
    const [rows, cols] = e.shape;
    let data = await readFiniteTensorF32(e);
    if (o.fold) data = foldColumnScale(data, rows, cols, o.fold);
    const w = o.gateUp
      ? uploadWeight(gpu, name, interleaveGateUp(data, rows, cols), rows, cols, format, undefined, 2)
      : uploadWeight(gpu, name, data, rows, cols, format);
    uploaded.weights.push(w);
    step(name);
    return w;
  };
  // On request, q8/q4 fold a layer's norm weights into the columns of the product after it
  // (W[n, k] * g[k], then quantized): the fused kernel then skips a load a weight group (~2x on
  // SwiftShader), but outlier gains widen a group's range and cost accuracy (see ModelOptions).
  // By default every format keeps the checkpoint's weights and applies g in the kernel, so q8/q4
  // hold exactly llama.cpp's Q8_0/Q4_0 of the checkpoint's matrices.
  // A compact checkpoint says itself whether its gains were folded in when it was written.
  const foldNorms = stored ? stored.fold_norms : !!opts.foldNorms && isQuantFormat(format);
  const norm = async (name: string): Promise<{ buffer?: GPUBuffer; fold?: Float32Array }> => {
    if (!foldNorms) return { buffer: await vector(name) };
    if (stored) {
      step(name);
      return {};
    }
    const fold = await readFiniteTensorF32(tensors.get(name)!);
    step(name);
    return { fold };
  };

  try {
    const embedding = await matrix('transformer.token_embeddings.weight');
    const layers: LayerWeights[] = [];
    for (let i = 0; i < plan.numLayers; i++) {
      const p = `transformer.layers.${i}`;
      const placeholder = () => {
        const b = gpu.upload(`${p}.qk_norm_unused`, new Float32Array(plan.headDim).fill(1));
        uploaded.buffers.push(b);
        return b;
      };
      const attnNorm = await norm(`${p}.attn_norm.weight`);
      const qkv = await matrix(`${p}.attn.qkv_proj.weight`, { fold: attnNorm.fold });
      const qNorm = plan.normalizeQk ? await vector(`${p}.attn.q_norm.weight`) : placeholder();
      const kNorm = plan.normalizeQk ? await vector(`${p}.attn.k_norm.weight`) : placeholder();
      const outProj = await matrix(`${p}.attn.out_proj.weight`);
      const ffnNorm = await norm(`${p}.ffn_norm.weight`);
      const proj1 = await matrix(`${p}.ffn.proj_1.weight`, { gateUp: plan.ffnWithGlu, fold: ffnNorm.fold });
      const proj2 = await matrix(`${p}.ffn.proj_2.weight`);
      layers.push({ attnNorm: attnNorm.buffer, qkv, qNorm, kNorm, outProj, ffnNorm: ffnNorm.buffer, proj1, proj2 });
    }
    const finalNorm = await vector('transformer.norm.weight');
    const lmHead = plan.tiedEmbeddings ? embedding : await matrix('lm_head.weight');
    return { format, embedding, lmHead, finalNorm, layers };
  } catch (e) {
    for (const b of uploaded.buffers) gpu.destroyBuffer(b);
    for (const w of uploaded.weights) destroyWeight(gpu, w);
    throw e;
  }
}

export function destroyWeights(gpu: Gpu, w: ModelWeights): void {
  const seen = new Set<GpuWeight>();
  const dropW = (x: GpuWeight) => {
    if (!seen.has(x)) destroyWeight(gpu, x);
    seen.add(x);
  };
  dropW(w.embedding);
  dropW(w.lmHead);
  gpu.destroyBuffer(w.finalNorm);
  for (const l of w.layers) {
    for (const b of [l.attnNorm, l.qNorm, l.kNorm, l.ffnNorm]) if (b) gpu.destroyBuffer(b);
    for (const x of [l.qkv, l.outProj, l.proj1, l.proj2]) dropW(x);
  }
}
