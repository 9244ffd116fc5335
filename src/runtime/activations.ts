// The engine's run state, allocated once for the largest pass (llama2.c's RunState): the
// activations a forward pass reads and writes, the KV cache, and the buffers that carry token ids,
// positions and random numbers between passes and back to the CPU.
import type { ModelPlan } from '../config/plan.ts';
import { fmtBytes, type Gpu } from '../gpu/gpu.ts';
import { ropeTable } from '../../kernels/qkv_prepare.ts';
import { kvCacheBytes, type KvDtype } from '../../kernels/attention.ts';
import { splitCount, splitScratchBytes } from '../../kernels/attention_split.ts';

export interface Activations {
  ids: GPUBuffer; // u32 [chunk]
  x: GPUBuffer; // [chunk, model_dim] residual stream
  qkv: GPUBuffer; // [chunk, max qkv_out]
  q: GPUBuffer; // [chunk, max q heads * head_dim]
  attn: GPUBuffer; // [chunk, max q heads * head_dim]
  ffnAct: GPUBuffer; // [chunk, max ffn_dim]
  lastX: GPUBuffer; // [model_dim]: the last position's residual, for last-position logits
  logits: GPUBuffer; // [chunk, vocab]
  nextId: GPUBuffer; // u32: the token chosen after the last position
  seen: GPUBuffer; // u32 [vocab]: 1 where a token occurred (repetition penalty)
  random: GPUBuffer; // f32: this step's uniform random number (sampling)
  residuals: GPUBuffer; // [layers + 1, model_dim]: last-position residual stream, for bisecting
  position: GPUBuffer; // uniform u32: absolute position of the first token of a pass
  rope: GPUBuffer; // [context, head_dim / 2, 2] cos/sin
  staging: GPUBuffer[]; // MAP_READ, 4 bytes each, reused for token readback
  // Multi-token steps (verify passes, several decode steps in one submission):
  stepIds: GPUBuffer; // u32 [steps]: known input tokens, copied into ids[0] step by step
  stepPositions: GPUBuffer; // u32 [steps, 4]: each step's position uniform, copied into `position`
  stepRandoms: GPUBuffer; // f32 [steps]: each choice's uniform random number, copied into `random`
  choices: GPUBuffer; // u32 [steps]: the id chosen at each step or row
  stepStaging: GPUBuffer; // MAP_READ [steps] u32: one readback of every choice
  attnSplit: GPUBuffer; // split attention's partials for SPLIT_ROWS rows (16 bytes when unused)
}

/** Rows of partials split attention's scratch holds: a verify pass of more runs in blocks. */
export const SPLIT_ROWS = 16;

/** Per layer: keys and values of every cached position, [kv heads, context, head_dim] of f32 or packed f16. */
export interface KvCache {
  k: GPUBuffer[];
  v: GPUBuffer[];
}

// A function, not a constant: in Node the GPUBufferUsage global exists only once a GPU is set up.
const storage = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/**
 * Activations for passes of up to `chunk` tokens over a context of `contextLength` tokens; `split`:
 * room for split attention's partials (sized for the whole context, the layer needing most).
 */
export function allocateActivations(gpu: Gpu, plan: ModelPlan, chunk: number, contextLength: number, split = false): Activations {
  const { modelDim: D, headDim: hd, vocabSize: V } = plan;
  const T = chunk;
  const maxQkv = Math.max(...plan.layers.map((l) => l.qkvOut));
  const maxQ = Math.max(...plan.layers.map((l) => l.numQueryHeads)) * hd;
  const maxFfn = Math.max(...plan.layers.map((l) => l.ffnDim));
  const f32 = (label: string, n: number) => gpu.createBuffer(label, n * 4, storage());
  const mapRead = (label: string, bytes: number) => gpu.createBuffer(label, bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
  return {
    ids: f32('ids', T),
    x: f32('x', T * D),
    qkv: f32('qkv', T * maxQkv),
    q: f32('q', T * maxQ),
    attn: f32('attn', T * maxQ),
    ffnAct: f32('ffn_act', T * maxFfn),
    lastX: f32('last_x', D),
    logits: f32('logits', T * V),
    nextId: f32('next_id', 1),
    seen: f32('seen', V),
    random: f32('random', 4),
    residuals: f32('residuals', (plan.numLayers + 1) * D),
    position: gpu.createBuffer('position', 16, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST),
    rope: gpu.upload('rope', ropeTable(hd, contextLength, plan.ropeTheta)),
    staging: [0, 1].map((i) => mapRead(`staging${i}`, 16)),
    stepIds: f32('step_ids', T),
    stepPositions: f32('step_positions', T * 4),
    stepRandoms: f32('step_randoms', T),
    choices: f32('choices', T),
    stepStaging: mapRead('step_staging', T * 4),
    attnSplit: gpu.createBuffer('attn_split', split ? splitScratchSize(gpu, plan, contextLength) : 16, storage()),
  };
}

function splitScratchSize(gpu: Gpu, plan: ModelPlan, contextLength: number): number {
  const per = plan.layers.map((l) =>
    splitScratchBytes({ rows: SPLIT_ROWS, numQ: l.numQueryHeads, headDim: plan.headDim, splits: splitCount(gpu, l.numQueryHeads, contextLength) }),
  );
  return Math.max(...per);
}

/** The KV cache of every layer, each layer's keys (and values) in one binding the device allows. */
export function allocateKvCache(gpu: Gpu, plan: ModelPlan, contextLength: number, dtype: KvDtype = 'f32'): KvCache {
  const bindLimit = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
  const cache: KvCache = { k: [], v: [] };
  for (const l of plan.layers) {
    const bytes = kvCacheBytes(l.numKvHeads, contextLength, plan.headDim, dtype);
    if (bytes > bindLimit) {
      for (const b of [...cache.k, ...cache.v]) gpu.destroyBuffer(b);
      throw new Error(`layer ${l.index}'s KV cache needs ${fmtBytes(bytes)} but this GPU binds at most ${fmtBytes(bindLimit)}; use a shorter context length`);
    }
    cache.k.push(gpu.createBuffer(`layer${l.index}.k_cache`, bytes, storage()));
    cache.v.push(gpu.createBuffer(`layer${l.index}.v_cache`, bytes, storage()));
  }
  return cache;
}
