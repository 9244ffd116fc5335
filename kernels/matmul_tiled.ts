// The T > 1 product with f32 / f16 weights tiled through workgroup memory (shaders/matmul_tiled.wgsl):
// a workgroup a block of 4 TT tokens by 4 WG weight rows, K walked in steps of 4 KS values staged
// in workgroup memory with vec4 loads. Every fused form of kernels/matmul.ts. The block sizes are
// override constants picked here from the adapter's limits (tiledSizes), so a GPU with more
// workgroup memory takes longer K steps. Where the device has shader-f16, f16 weights are read as
// f16 values (SHADER_F16) instead of unpacked from u32 words; sums are f32 either way. The CPU
// reference of every form is matmulRef (kernels/matmul.ts) over the weights as stored.
import type { Gpu } from '../src/gpu/gpu.ts';
import { preprocess } from '../src/gpu/shader.ts';
import builtIn from '../shaders/matmul_tiled.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { grid, type Dispatch } from '../src/gpu/dispatch.ts';
import type { GpuWeight } from '../src/weights/gpu-weight.ts';
import { checkMatmulInputs, chunkDispatch, fusionDefines, matmulBindings, variantName, yOffset, type MatmulOptions, type TiledSizes } from './matmul.ts';

export type { TiledSizes } from './matmul.ts';


/** The limits the sizing reads (a device's GPUSupportedLimits has them all). */
export type TiledLimits = Pick<GPUSupportedLimits, 'maxComputeWorkgroupStorageSize' | 'maxComputeInvocationsPerWorkgroup' | 'maxComputeWorkgroupSizeX' | 'maxComputeWorkgroupSizeY'>;

const ROW_THREADS = 16;
const MAX_TOKEN_THREADS = 16;
const MAX_K_SLOTS = 16;

/** Workgroup memory the kernel declares for these sizes: x and W blocks, rows padded by one slot. */
export function tiledWorkgroupBytes(s: TiledSizes): number {
  return 16 * (s.KS + 1) * 4 * (s.TT + s.WG);
}

/**
 * Block sizes for T tokens and K inputs under `limits`: 64 rows a block (16 threads); as many
 * token threads as T needs up to 16 (a power of two, within the invocation and size-Y limits);
 * then the longest K step (up to 64 values, no longer than K) the workgroup memory holds.
 */
export function tiledSizes(limits: TiledLimits, T: number, K: number): TiledSizes {
  const WG = Math.min(ROW_THREADS, limits.maxComputeWorkgroupSizeX, limits.maxComputeInvocationsPerWorkgroup);
  let TT = 1;
  while (TT < MAX_TOKEN_THREADS && 4 * TT < T && 2 * TT * WG <= limits.maxComputeInvocationsPerWorkgroup && 2 * TT <= limits.maxComputeWorkgroupSizeY) TT *= 2;
  const fits = Math.floor(limits.maxComputeWorkgroupStorageSize / (64 * (TT + WG))) - 1;
  const KS = Math.max(1, Math.min(MAX_K_SLOTS, fits, Math.ceil(K / 4)));
  return { WG, TT, KS };
}

/** Whether the kernel takes this weight format. */
export function tiledTakes(w: GpuWeight): boolean {
  return w.format === 'f32' || w.format === 'f16';
}

/** The tiled product of x with `w` (one dispatch per weight chunk); o.tiles must fit the device's limits. */
export function matmulTiledDispatches(gpu: Gpu, w: GpuWeight, o: MatmulOptions): Dispatch[] {
  const label = o.label ?? `matmul ${w.label}`;
  if (!tiledTakes(w)) throw new Error(`${label}: the tiled matmul takes f32 or f16 weights, got ${w.format}`);
  const { gate, outCols } = checkMatmulInputs(w, o, label);
  const T = o.tokens;
  const K = w.cols;
  const s = o.tiles ?? tiledSizes(gpu.limits, T, K);
  const lim = gpu.limits;
  if (s.WG * s.TT > lim.maxComputeInvocationsPerWorkgroup || tiledWorkgroupBytes(s) > lim.maxComputeWorkgroupStorageSize) {
    throw new Error(`${label}: tiled block sizes ${JSON.stringify(s)} pass this device's limits (${lim.maxComputeInvocationsPerWorkgroup} invocations, ${lim.maxComputeWorkgroupStorageSize} bytes of workgroup memory)`);
  }
  const f16 = w.format === 'f16';
  const defines = { F16: f16, SHADER_F16: f16 && (o.shaderF16 ?? true) && gpu.features.shaderF16, VEC4: K % 4 === 0, ...fusionDefines(o) };
  const code = preprocess(shaderSource('matmul_tiled', builtIn), defines);
  const p = gpu.pipeline({ label: `matmul ${variantName(w.format, defines)} tiled`, code, bindings: matmulBindings(o), constants: { WG: s.WG, TT: s.TT, KS: s.KS } });
  const tokenBlocks = Math.ceil(T / (4 * s.TT));
  return w.chunks.map((c, i) => {
    const rowBlocks = Math.ceil(c.rows / (4 * s.WG));
    const params = [T, c.rows, K, w.rowWords, outCols, yOffset(c, gate), rowBlocks];
    return chunkDispatch(gpu, p, w, i, label, params, o, grid(gpu, rowBlocks * tokenBlocks));
  });
}
