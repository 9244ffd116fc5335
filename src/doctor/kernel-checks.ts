// The doctor's kernel checks: each kernel the engine dispatches, in each variant it can pick on this
// adapter, on random odd shapes (sizes that divide no workgroup tile) against its CPU reference.
// Tolerances are those of the kernel's own tests (test/NAME.test.ts): exact where the kernel is
// specified bit for bit (gathers, choices), float32 rounding elsewhere.
import type { Gpu } from '../gpu/gpu.ts';
import { seededRandom } from '../util/random.ts';
import { argmaxDispatch, argmaxRef } from '../../kernels/argmax.ts';
import { embeddingDispatches, embeddingRef } from '../../kernels/embedding.ts';
import { GEMV_KERNELS, type GemvKernel } from '../runtime/linear.ts';
import { dequantize } from '../weights/quant.ts';
import { logprobDispatch, logprobRef } from '../../kernels/logprob.ts';
import { keptWeightsRef, sampleDispatch, sampleRef, type SamplingParams } from '../../kernels/sample.ts';
import { specAcceptDispatch, specAcceptRef } from '../../kernels/spec_accept.ts';
import type { KernelName } from '../gpu/kernel-variants.ts';
import { destroyWeight, uploadWeight, weightRowBytes, WEIGHT_FORMATS, type WeightFormat } from '../weights/gpu-weight.ts';
import { withErrorScope } from './error-scope.ts';
import { checkMatmulForm, MATMUL_FORMS, MATMUL_TOL, randomFill, type MatmulForm, type MatmulKernelChoice } from './matmul-check.ts';
import { attentionChecks, qkvChecks } from './attention-checks.ts';
import { affineChecks } from './affine-checks.ts';
import { compareClose, countMismatches, merge, runAndFree, type CheckSpec, type Measured } from './check-util.ts';

/** One line of the report. JSON-safe: a non-finite error is null. */
export interface CheckResult {
  name: string;
  variant: string;
  /** Weight format ('f32' | 'f16' | 'q8' | 'q4' | 'mlx4' | 'mlx8') or '-' for kernels without weights. */
  format: string;
  pass: boolean;
  /** Largest |GPU - reference| (null: NaN or infinite). Choices count mismatched ids. */
  max_error: number | null;
  /** Absolute tolerance; `rel_tolerance` adds rel * |reference| where given. */
  tolerance: number;
  rel_tolerance?: number;
  /** Wall time of the check (compilation included). */
  ms: number;
  /** The shader files this check runs. */
  kernels: KernelName[];
  /** Why it failed, when it threw (a variant that does not compile, a device error). */
  error?: string;
}

// ---- matmul ----

function matmulChecks(gpu: Gpu): CheckSpec[] {
  const out: CheckSpec[] = [];
  const add = (format: WeightFormat, variant: string, kernels: KernelName[], gemv: GemvKernel, form: MatmulForm, choice: MatmulKernelChoice) =>
    out.push({
      name: 'matmul',
      variant,
      format,
      tolerance: MATMUL_TOL,
      rel_tolerance: MATMUL_TOL,
      kernels,
      run: async (g) => {
        const r = await checkMatmulForm(g, format, gemv, form, choice);
        return { maxAbs: r.maxAbs, pass: r.ratio < 1 };
      },
    });
  // Where the device has shader-f16, f16 weights are read as f16 by default: the packed-u32 read
  // is checked too, as a variant.
  const f16Reads = gpu.features.shaderF16 ? [true, false] : [false];
  const readName = (format: WeightFormat, shaderF16: boolean) => (format !== 'f16' ? '' : shaderF16 ? ' shader-f16' : gpu.features.shaderF16 ? ' packed-u32' : '');
  for (const format of WEIGHT_FORMATS)
    for (const shaderF16 of format === 'f16' ? f16Reads : [false])
      for (const { name: formName, form } of MATMUL_FORMS) {
        for (const gemv of GEMV_KERNELS) {
          const kernel = gemv === 'coalesced' && gpu.features.subgroups ? 'coalesced+subgroups' : gemv;
          // T > 1 shapes run the register-tiled kernel of the format in both; T = 1 shapes run
          // matmul_gemv.wgsl when coalesced (which reads f16 packed on every device).
          if (gemv === 'coalesced' && format === 'f16' && !shaderF16 && gpu.features.shaderF16) continue;
          const kernels: KernelName[] = [format === 'q8' || format === 'q4' ? 'matmul_q' : 'matmul', ...(gemv === 'coalesced' ? (['matmul_gemv'] as const) : [])];
          add(format, `gemv=${kernel} ${formName}${readName(format, shaderF16)}`, kernels, gemv, form, { prefill: 'register', shaderF16 });
        }
        // The workgroup-memory tiled T > 1 kernel (f32/f16 weights), forced on.
        if (format === 'f32' || format === 'f16') add(format, `prefill=tiled ${formName}${readName(format, shaderF16)}`, ['matmul_tiled', 'matmul'], 'rows', form, { prefill: 'tiled', shaderF16 });
      }
  return out;
}

// ---- embedding ----

function embeddingChecks(): CheckSpec[] {
  const out: CheckSpec[] = [];
  for (const format of WEIGHT_FORMATS)
    for (const chunked of [false, true]) {
      out.push({
        name: 'embedding',
        // Chunked: the table split by rows as a weight over the binding limit is.
        variant: chunked ? 'table split in chunks' : 'one buffer',
        format,
        tolerance: 0,
        kernels: ['embedding'],
        run: async (gpu) => {
          const rows = 301;
          const cols = 70;
          const table = randomFill(rows * cols, 21, 1);
          const r = seededRandom(22);
          const ids = Uint32Array.from({ length: 9 }, (_, i) => (i === 0 ? 0 : i === 1 ? rows - 1 : Math.floor(r() * rows)));
          const w = uploadWeight(gpu, 'doctor.table', table, rows, cols, format, chunked ? weightRowBytes(cols, format) * 37 : undefined);
          const idb = gpu.upload('doctor.ids', ids);
          const ob = gpu.upload('doctor.out', new Float32Array(ids.length * cols).fill(NaN));
          const ds = embeddingDispatches(gpu, w, { tokens: ids.length, ids: idb, out: ob });
          try {
            const got = await runAndFree(gpu, ds, [idb, ob], () => gpu.readF32(ob, ids.length * cols));
            // Gathered rows are exactly the stored values: quantized ones as q * scale in f32.
            return compareClose(got, embeddingRef(dequantize(table, rows, cols, format), cols, ids), 0, 0);
          } finally {
            destroyWeight(gpu, w);
          }
        },
      });
    }
  return out;
}

// ---- argmax, sample, spec_accept ----

async function gpuArgmax(gpu: Gpu, logits: Float32Array, n: number, offset: number): Promise<number> {
  const lb = gpu.upload('doctor.logits', logits);
  const ob = gpu.upload('doctor.out', new Uint32Array([0xdeadbeef]));
  const d = argmaxDispatch(gpu, { n, offset, logits: lb, out: ob });
  return (await runAndFree(gpu, [d], [lb, ob], () => gpu.readU32(ob, 1)))[0];
}

function argmaxChecks(): CheckSpec[] {
  return [
    {
      name: 'argmax',
      variant: 'greedy id',
      format: '-',
      tolerance: 0,
      kernels: ['argmax'],
      run: async (gpu) => {
        const got: number[] = [];
        const want: number[] = [];
        for (const [i, [n, offset]] of [[257, 3], [32003, 5], [1001, 0]].entries()) {
          const logits = randomFill(offset + n + 2, 31 + i, 5);
          logits[offset + n] = 1e9; // outside the row: must be ignored
          if (i === 2) logits[700] = logits[500] = 100; // a tie goes to the lower index
          got.push(await gpuArgmax(gpu, logits, n, offset));
          want.push(argmaxRef(logits, n, offset));
        }
        return countMismatches(got, want);
      },
    },
  ];
}

/** One sampling dispatch per u (seen re-uploaded each time); returns the ids and the DIST output of the last. */
async function gpuSample(gpu: Gpu, logits: Float32Array, seen: Uint32Array, params: SamplingParams, us: readonly number[], dist: boolean): Promise<{ ids: number[]; weights?: Float32Array }> {
  const n = logits.length;
  const ids: number[] = [];
  let weights: Float32Array | undefined;
  for (const u of us) {
    const bufs = {
      logits: gpu.upload('doctor.logits', logits),
      seen: gpu.upload('doctor.seen', seen),
      random: gpu.upload('doctor.u', new Float32Array([u])),
      out: gpu.upload('doctor.out', new Uint32Array([0xdeadbeef])),
      dist: gpu.upload('doctor.dist', new Float32Array(n).fill(NaN)),
    };
    const d = sampleDispatch(gpu, { n, offset: 0, logits: bufs.logits, seen: bufs.seen, random: bufs.random, out: bufs.out, params, dist: dist ? { buffer: bufs.dist, offset: 0 } : undefined });
    const [id, w] = await runAndFree(gpu, [d], Object.values(bufs), () => Promise.all([gpu.readU32(bufs.out, 1), dist ? gpu.readF32(bufs.dist, n) : undefined]));
    ids.push(id[0]);
    weights = w;
  }
  return { ids, weights };
}

function sampleChecks(): CheckSpec[] {
  const cases: { variant: string; n: number; params: SamplingParams; dist?: boolean }[] = [
    { variant: 'greedy + repetition penalty', n: 1001, params: { doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1.3 } },
    { variant: 'sampling temperature + top-k + top-p', n: 4099, params: { doSample: true, temperature: 0.7, topK: 50, topP: 0.9, repetitionPenalty: 1.1 } },
    { variant: 'sampling top-p only', n: 777, params: { doSample: true, temperature: 1.3, topK: 0, topP: 0.8, repetitionPenalty: 1 } },
    { variant: 'sampling kept weights (speculative)', n: 515, params: { doSample: true, temperature: 0.9, topK: 40, topP: 0.95, repetitionPenalty: 1.2 }, dist: true },
  ];
  return cases.map((c, ci) => ({
    name: 'sample',
    variant: c.variant,
    format: '-',
    tolerance: 0,
    kernels: ['sample'],
    run: async (gpu: Gpu) => {
      const r = seededRandom(41 + ci);
      const logits = randomFill(c.n, 42 + ci, 4);
      const seen = Uint32Array.from({ length: c.n }, () => (r() < 0.2 ? 1 : 0));
      // Make the penalty matter: a few top logits, some of them seen.
      for (let j = 0; j < 5; j++) logits[Math.floor(r() * c.n)] = 6 + r();
      const us = c.params.doSample ? [0, Math.fround(1 - 2 ** -24), Math.fround(r()), Math.fround(r()), Math.fround(r())] : [0];
      const got = await gpuSample(gpu, logits, seen, c.params, us, !!c.dist);
      let m = countMismatches(got.ids, us.map((u) => sampleRef(logits, seen, u, c.params)));
      if (c.dist) m = merge(m, compareClose(got.weights ?? [], keptWeightsRef(logits, seen, c.params), 0, 0));
      return m;
    },
  }));
}

/** Random kept weights: 1 at one index, exp-like values elsewhere, some zeros (dropped by top-k/p). */
function keptWeights(r: () => number, n: number, zeros: number): Float32Array {
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = r() < zeros ? 0 : Math.fround(Math.exp(-4 * r()));
  w[Math.floor(r() * n)] = 1;
  return w;
}

function specAcceptChecks(): CheckSpec[] {
  return [
    {
      name: 'spec_accept',
      variant: 'accept/resample/bonus',
      format: '-',
      tolerance: 0,
      kernels: ['spec_accept'],
      run: async (gpu) => {
        const r = seededRandom(51);
        const got: number[] = [];
        const want: number[] = [];
        for (let c = 0; c < 6; c++) {
          const n = [517, 33, 1999][c % 3];
          const k = 1 + (c % 4);
          const p = new Float32Array((k + 1) * n);
          const q = new Float32Array(k * n);
          const drafts: number[] = [];
          for (let j = 0; j <= k; j++) p.set(keptWeights(r, n, r() * 0.6), j * n);
          for (let j = 0; j < k; j++) {
            // Some cases draft from P itself (every draft accepted), the rest from an unrelated Q.
            const row = c % 3 === 0 ? p.slice(j * n, (j + 1) * n) : keptWeights(r, n, r() * 0.6);
            q.set(row, j * n);
            let best = 0;
            for (let i = 0; i < n; i++) if (row[i] > row[best]) best = i;
            drafts.push(r() < 0.5 ? best : Math.floor(r() * n));
          }
          const random = Array.from({ length: k + 1 }, () => Math.fround(r()));
          const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
          const bufs = {
            p: gpu.upload('doctor.p', p),
            q: gpu.upload('doctor.q', q),
            drafts: gpu.upload('doctor.drafts', new Uint32Array(drafts)),
            random: gpu.upload('doctor.random', new Float32Array(random)),
            out: gpu.createBuffer('doctor.out', 8, usage),
            scratch: gpu.createBuffer('doctor.scratch', n * 4, usage),
          };
          const d = specAcceptDispatch(gpu, { n, k, ...bufs });
          const [accepted, id] = await runAndFree(gpu, [d], Object.values(bufs), () => gpu.readU32(bufs.out, 2));
          const ref = specAcceptRef(p, q, drafts, random, n);
          got.push(accepted, id);
          want.push(ref.accepted, ref.id);
        }
        return countMismatches(got, want);
      },
    },
  ];
}

// ---- logprob (scoring) ----

function logprobChecks(): CheckSpec[] {
  return [
    {
      name: 'logprob',
      variant: 'log-softmax at target + greedy flag',
      format: '-',
      tolerance: 2e-4,
      rel_tolerance: 2e-5,
      kernels: ['logprob'],
      run: async (gpu) => {
        let m: Measured = { maxAbs: 0, pass: true };
        for (const [i, [n, rows, offset]] of [[257, 3, 5], [32003, 2, 0], [1001, 7, 11]].entries()) {
          const r = seededRandom(71 + i);
          const logits = randomFill(offset + n * rows, 17 + i, 4);
          const targets = Uint32Array.from({ length: rows }, (_, j) => (j === 0 ? Math.floor(n / 2) : Math.floor(r() * n)));
          // Row 0's target is made the maximum, so the greedy flag is exercised both ways.
          logits[offset + Math.floor(n / 2)] = 50;
          const bufs = { logits: gpu.upload('doctor.logits', logits), targets: gpu.upload('doctor.targets', targets), out: gpu.upload('doctor.out', new Float32Array(rows * 2).fill(NaN)) };
          const d = logprobDispatch(gpu, { n, rows, offset, ...bufs });
          const got = await runAndFree(gpu, [d], Object.values(bufs), () => gpu.readF32(bufs.out, rows * 2));
          const want = logprobRef(logits, n, targets, offset);
          m = merge(m, compareClose(got.filter((_, k) => k % 2 === 0), want.logprob, 2e-4, 2e-5));
          const flags = countMismatches([...got.filter((_, k) => k % 2 === 1)], [...want.greedy]);
          m = { maxAbs: m.maxAbs, pass: m.pass && flags.pass };
        }
        return m;
      },
    },
  ];
}

/** Every kernel check for this adapter, in report order. */
export function kernelChecks(gpu: Gpu): CheckSpec[] {
  return [...matmulChecks(gpu), ...affineChecks(), ...attentionChecks(), ...qkvChecks(), ...embeddingChecks(), ...argmaxChecks(), ...sampleChecks(), ...specAcceptChecks(), ...logprobChecks()];
}

/** Runs one check: times it, turns a throw (a variant that does not compile, a lost device) into a failure. */
export async function runCheck(gpu: Gpu, spec: CheckSpec): Promise<CheckResult> {
  const t0 = performance.now();
  const { value: measured, error } = await withErrorScope(gpu, async () => {
    const m = await spec.run(gpu);
    gpu.checkErrors();
    return m;
  });
  const ms = performance.now() - t0;
  const maxAbs = measured?.maxAbs;
  return {
    name: spec.name,
    variant: spec.variant,
    format: spec.format,
    pass: !error && !!measured?.pass,
    max_error: maxAbs !== undefined && Number.isFinite(maxAbs) ? maxAbs : null,
    tolerance: spec.tolerance,
    ...(spec.rel_tolerance !== undefined ? { rel_tolerance: spec.rel_tolerance } : {}),
    ms: Math.round(ms * 10) / 10,
    kernels: spec.kernels,
    ...(error ? { error } : {}),
  };
}
