// The doctor's checks of the MLX affine kernels (mlx4/mlx8: matmul_affine and the embedding's
// AFFINE variant) on odd shapes against their CPU references over the dequantized weights; the
// tolerances are those of matmul-check.ts and, for the gather, one f32 rounding of s q + b.
import type { Gpu } from '../gpu/gpu.ts';
import { matmulRef } from '../../kernels/matmul.ts';
import { affineWeightsRef } from '../../kernels/matmul_affine.ts';
import { embeddingDispatches, embeddingRef } from '../../kernels/embedding.ts';
import { gateUpSourceRow, matmulDispatches, type MatmulOptions } from '../runtime/linear.ts';
import { quantizeAffine, type AffineBits, type ScaleDtype } from '../weights/affine.ts';
import { uploadAffineWeight } from '../weights/affine-upload.ts';
import { destroyWeight } from '../weights/gpu-weight.ts';
import { compareClose, merge, runAndFree, type CheckSpec, type Measured } from './check-util.ts';
import { MATMUL_TOL, randomFill } from './matmul-check.ts';

// [T, N, K] with N odd (no tile divides it) or, for the gated form, even; K a multiple of the group.
const SHAPES: readonly [number, number, number][] = [
  [1, 39, 128],
  [5, 66, 256],
  [17, 131, 128],
];

async function checkAffineMatmul(gpu: Gpu, bits: AffineBits, groupSize: number, sd: ScaleDtype, gate: boolean): Promise<Measured> {
  let m: Measured = { maxAbs: 0, pass: true };
  for (const [i, [T, N0, K]] of SHAPES.entries()) {
    const N = gate ? N0 + (N0 % 2) : N0;
    const t = quantizeAffine(randomFill(N * K, 31 + i, 0.5), N, K, bits, groupSize, sd);
    const x = randomFill(T * K, 41 + i, 1);
    const g = randomFill(K, 51 + i, 0.5).map((v) => v + 1);
    const srcRow = gate ? gateUpSourceRow(N) : (r: number) => r;
    const w = uploadAffineWeight(gpu, 'doctor.w', t, { srcRow, rowMultiple: gate ? 2 : 1 });
    const outN = gate ? N / 2 : N;
    const xb = gpu.upload('doctor.x', x);
    const gb = gpu.upload('doctor.g', g);
    const yb = gpu.createBuffer('doctor.y', T * outN * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    const o: MatmulOptions = gate ? { tokens: T, x: xb, y: yb, norm: { weight: gb, eps: 1e-6 }, activation: 'silu-gate' } : { tokens: T, x: xb, y: yb };
    try {
      const got = await runAndFree(gpu, matmulDispatches(gpu, w, o), [xb, gb, yb], () => gpu.readF32(yb, T * outN));
      const want = matmulRef(x, affineWeightsRef(t, srcRow), T, N, K, gate ? { norm: { weight: g, eps: 1e-6 }, activation: 'silu-gate' } : {});
      m = merge(m, compareClose(got, want, MATMUL_TOL, MATMUL_TOL));
    } finally {
      destroyWeight(gpu, w);
    }
  }
  return m;
}

async function checkAffineEmbedding(gpu: Gpu, bits: AffineBits, groupSize: number, sd: ScaleDtype): Promise<Measured> {
  const rows = 301;
  const cols = 2 * groupSize;
  const t = quantizeAffine(randomFill(rows * cols, 61, 1), rows, cols, bits, groupSize, sd);
  const ids = Uint32Array.from([0, rows - 1, 7, 150, rows + 3, 42]);
  const w = uploadAffineWeight(gpu, 'doctor.table', t);
  const idb = gpu.upload('doctor.ids', ids);
  const ob = gpu.upload('doctor.out', new Float32Array(ids.length * cols).fill(NaN));
  try {
    const got = await runAndFree(gpu, embeddingDispatches(gpu, w, { tokens: ids.length, ids: idb, out: ob }), [idb, ob], () => gpu.readF32(ob, ids.length * cols));
    return compareClose(got, embeddingRef(affineWeightsRef(t), cols, ids), 1e-6, 2 ** -22);
  } finally {
    destroyWeight(gpu, w);
  }
}

/** mlx4 and mlx8, each with one group size and scale dtype (together: all three of each). */
export function affineChecks(): CheckSpec[] {
  const out: CheckSpec[] = [];
  for (const [bits, G, sd] of [
    [4, 64, 'F16'],
    [8, 32, 'BF16'],
    [4, 128, 'F32'],
  ] as [AffineBits, number, ScaleDtype][]) {
    const format = bits === 4 ? 'mlx4' : 'mlx8';
    for (const gate of [false, true]) {
      out.push({
        name: 'matmul',
        variant: `affine G=${G} ${sd} scales ${gate ? 'norm+silu-gate' : 'plain'}`,
        format,
        tolerance: MATMUL_TOL,
        rel_tolerance: MATMUL_TOL,
        kernels: ['matmul_affine'],
        run: (gpu) => checkAffineMatmul(gpu, bits, G, sd, gate),
      });
    }
    out.push({ name: 'embedding', variant: `affine G=${G} ${sd} scales`, format, tolerance: 1e-6, rel_tolerance: 2 ** -22, kernels: ['embedding'], run: (gpu) => checkAffineEmbedding(gpu, bits, G, sd) });
  }
  return out;
}
