// Peer: tfjs-backend-webgpu on the same Dawn adapter (SwiftShader here), timing the same matmul
// shapes as ours in f32 (tfjs has no f16-weight matmul on this adapter). Weights are [N, K] as
// ours and multiplied with transposeB (faster than a [K, N] layout on SwiftShader; tfjs's
// matmul program choice is left on auto). Timing: tf.time's kernelMs, which tfjs takes from
// timestamp queries around the program's compute pass (our method too), and the wall clock of
// the same run.
import { nodeGpu } from '../src/gpu/node-gpu.ts';
import type { GpuTime } from './gpu-timer.ts';
import { randomFill } from '../src/doctor/matmul-check.ts';
import type { MatmulResult } from './kernels.ts';
import { checkMatmul, matmulFigures, type KernelShape } from './matmul.ts';
import { withLoad } from './machine.ts';
import { summarize } from './stats.ts';
import { repeat } from '../src/util/stats.ts';

type Tf = typeof import('@tensorflow/tfjs-core');

export interface TfjsPeerResult {
  ok: boolean;
  error?: string;
  version?: string;
  adapter?: { vendor: string; architecture: string; device: string; description: string };
  matmul: MatmulResult[];
}

interface WebGpuBackendLike {
  device: GPUDevice;
  supportTimestampQuery?: boolean;
  adapterInfo?: { vendor?: string; architecture?: string; device?: string; description?: string };
}

// Specifiers kept in variables: esbuild leaves these imports to Node at run time, so the
// packages are neither bundled nor required when the peer is not asked for.
const TFJS_CORE = '@tensorflow/tfjs-core';
const TFJS_WEBGPU = '@tensorflow/tfjs-backend-webgpu';

let loaded: Promise<{ tf: Tf; backend: WebGpuBackendLike }> | undefined;

async function loadTfjs(): Promise<{ tf: Tf; backend: WebGpuBackendLike }> {
  const gpu = await nodeGpu();
  const g = globalThis as unknown as { navigator?: { gpu?: GPU } };
  if (!g.navigator?.gpu) Object.defineProperty(globalThis, 'navigator', { value: { ...(g.navigator ?? {}), gpu }, configurable: true, writable: true });
  let tf: Tf;
  try {
    tf = (await import(TFJS_CORE)) as Tf;
    await import(TFJS_WEBGPU);
  } catch (e) {
    throw new Error(
      `tfjs is not installed (${(e as Error).message.split('\n')[0]}); it is a devDependency: run npm install (or npm i -D @tensorflow/tfjs-core@4.22.0 @tensorflow/tfjs-backend-webgpu@4.22.0)`,
    );
  }
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs could not initialise its webgpu backend on this adapter');
  await tf.ready();
  return { tf, backend: tf.backend() as unknown as WebGpuBackendLike };
}

export async function benchTfjs(
  shapes: readonly KernelShape[],
  o: { runs: number; budgetMs: number; copyGbs?: number; log?: (s: string) => void },
): Promise<TfjsPeerResult> {
  const out: TfjsPeerResult = { ok: false, matmul: [] };
  try {
    loaded ??= loadTfjs();
    const { tf, backend } = await loaded;
    out.version = tf.version_core;
    const ai = backend.adapterInfo ?? {};
    out.adapter = { vendor: ai.vendor ?? '', architecture: ai.architecture ?? '', device: ai.device ?? '', description: ai.description ?? '' };
    for (const shape of shapes) {
      const { T, N, K } = shape;
      const wData = randomFill(N * K, 0x9e3779b9 ^ (N * 31 + K), 1 / Math.sqrt(K));
      const xData = randomFill(T * K, 12345 + T, 1);
      const w = tf.tensor2d(wData, [N, K]);
      const x = tf.tensor2d(xData, [T, K]);
      try {
        const samples: GpuTime[] = [];
        const { value: r, load } = await withLoad(() =>
          repeat(
            async () => {
              const s = performance.now();
              const info = await tf.time(() => {
                tf.matMul(x, w, false, true).dispose();
              });
              const t: GpuTime = { wallMs: performance.now() - s };
              if (backend.supportTimestampQuery && info.kernelMs && typeof info.kernelMs === 'number' && info.kernelMs > 0) t.gpuMs = info.kernelMs;
              samples.push(t);
              return t.gpuMs ?? t.wallMs;
            },
            { warmup: 1, runs: o.runs, budgetMs: o.budgetMs },
          ),
        );
        const measured = samples.slice(samples.length - r.samples.length);
        const y = tf.matMul(x, w, false, true);
        const yData = (await y.data()) as Float32Array;
        y.dispose();
        const check = checkMatmul(yData, xData, wData, shape, 1e-4);
        const ms = summarize(r.samples);
        const res: MatmulResult = {
          engine: 'tfjs',
          name: shape.name,
          kind: shape.kind,
          dtype: 'f32',
          layout: 'NK (transposeB)',
          T,
          N,
          K,
          dispatches: 1,
          ...matmulFigures(shape, N * K * 4, ms, o.copyGbs),
          method: measured.some((s) => s.gpuMs !== undefined) ? 'timestamp-query' : 'wall-clock',
          ms,
          wall_ms: summarize(measured.map((s) => s.wallMs)),
          warmup_used: r.warmupUsed,
          check,
          load,
        };
        out.matmul.push(res);
        o.log?.(`  tfjs ${shape.name}: ${ms.median.toFixed(2)} ms (${res.gb_s.toFixed(2)} GB/s, ${res.gflop_s.toFixed(2)} GFLOP/s)${check < 1 ? '' : ' WRONG RESULTS'}`);
      } finally {
        w.dispose();
        x.dispose();
      }
    }
    out.ok = true;
  } catch (e) {
    out.error = (e as Error).message.split('\n')[0];
    o.log?.(`  tfjs: ${out.error}`);
  }
  return out;
}
