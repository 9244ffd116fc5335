// The doctor's attention checks: the single-pass and split-K attention kernels and qkv_prepare, with
// an f32 and an f16 KV cache, on random odd shapes against their CPU references. Split-K runs with
// small splits so several are active, and over more rows than its scratch holds (row blocks).
import type { Gpu } from '../gpu/gpu.ts';
import { attentionDispatch, attentionRef, type KvDtype } from '../../kernels/attention.ts';
import { attentionSplitDispatches, attentionSplitRef, splitScratchBytes } from '../../kernels/attention_split.ts';
import { qkvPrepareDispatch, qkvPrepareRef, ropeTable } from '../../kernels/qkv_prepare.ts';
import type { Dispatch } from '../gpu/dispatch.ts';
import { f16BitsToF32, packF16Rows, roundF16 } from '../util/half.ts';
import { compareClose, merge, runAndFree, type CheckSpec, type Measured } from './check-util.ts';
import { randomFill } from './matmul-check.ts';

interface AttnShape {
  T: number;
  nq: number;
  nkv: number;
  hd: number;
  ctx: number;
  pos0: number;
}

/** Split-K's cut: most splits, fewest keys a split, rows of partials the scratch holds. */
interface SplitParams {
  splits: number;
  minKeys: number;
  rows: number;
}

/** Random cache rows below pos0 + T (as stored: f16-rounded for an f16 cache); NaN beyond, so overreads show. */
function attnCache(seed: number, s: AttnShape, kv: KvDtype): Float32Array {
  const c = randomFill(s.nkv * s.ctx * s.hd, seed, 1.7);
  if (kv === 'f16') for (let i = 0; i < c.length; i++) c[i] = roundF16(c[i]);
  for (let h = 0; h < s.nkv; h++) c.fill(NaN, (h * s.ctx + s.pos0 + s.T) * s.hd, (h + 1) * s.ctx * s.hd);
  return c;
}

function uploadCache(gpu: Gpu, label: string, c: Float32Array, kv: KvDtype): GPUBuffer {
  return gpu.upload(label, kv === 'f16' ? packF16Rows(c, 1, c.length) : c);
}

async function checkAttention(gpu: Gpu, shapes: AttnShape[], kv: KvDtype, split?: SplitParams): Promise<Measured> {
  let m: Measured = { maxAbs: 0, pass: true };
  for (const [i, s] of shapes.entries()) {
    const q = randomFill(s.T * s.nq * s.hd, 101 + i, 1.7);
    const k = attnCache(202 + i, s, kv);
    const v = attnCache(303 + i, s, kv);
    const dims = { tokens: s.T, numQ: s.nq, numKv: s.nkv, headDim: s.hd, maxContext: s.ctx };
    const bufs = {
      q: gpu.upload('doctor.q', q),
      kCache: uploadCache(gpu, 'doctor.k', k, kv),
      vCache: uploadCache(gpu, 'doctor.v', v, kv),
      position: gpu.uniform('doctor.pos', [s.pos0]),
      out: gpu.upload('doctor.out', new Float32Array(s.T * s.nq * s.hd).fill(NaN)),
    };
    let ds: Dispatch[];
    let want: Float32Array;
    const extra: GPUBuffer[] = [];
    if (split) {
      const scratch = gpu.createBuffer('doctor.scratch', splitScratchBytes({ rows: split.rows, numQ: s.nq, headDim: s.hd, splits: split.splits }), GPUBufferUsage.STORAGE);
      extra.push(scratch);
      ds = attentionSplitDispatches(gpu, { ...dims, ...bufs, kvDtype: kv, scratch, scratchRows: split.rows, splits: split.splits, minKeys: split.minKeys });
      want = attentionSplitRef(q, k, v, { ...dims, position: s.pos0, splits: split.splits, minKeys: split.minKeys });
    } else {
      ds = [attentionDispatch(gpu, { ...dims, ...bufs, kvDtype: kv })];
      want = attentionRef(q, k, v, { ...dims, position: s.pos0 });
    }
    const got = await runAndFree(gpu, ds, [...Object.values(bufs), ...extra], () => gpu.readF32(bufs.out, s.T * s.nq * s.hd));
    m = merge(m, compareClose(got, want, 2e-5, 2e-4));
  }
  return m;
}

export function attentionChecks(): CheckSpec[] {
  // head_dim % 4 picks the kernels' vec4 or vec2 form; GQA groups of 1, 3 and 4.
  const single: { variant: string; shapes: AttnShape[] }[] = [
    { variant: 'decode T=1 vec2 (head_dim 34)', shapes: [{ T: 1, nq: 6, nkv: 2, hd: 34, ctx: 45, pos0: 40 }, { T: 1, nq: 3, nkv: 3, hd: 6, ctx: 9, pos0: 0 }] },
    { variant: 'decode T=1 vec4 (head_dim 68)', shapes: [{ T: 1, nq: 8, nkv: 2, hd: 68, ctx: 37, pos0: 29 }] },
    { variant: 'prefill T>1 vec2 (head_dim 34)', shapes: [{ T: 7, nq: 6, nkv: 2, hd: 34, ctx: 19, pos0: 0 }, { T: 5, nq: 3, nkv: 1, hd: 10, ctx: 23, pos0: 11 }] },
    { variant: 'prefill T>1 vec4 (head_dim 68)', shapes: [{ T: 13, nq: 4, nkv: 1, hd: 68, ctx: 29, pos0: 5 }] },
  ];
  // Decode deep into a cache, and verify rows (T > 1) in blocks of 2 rows of scratch.
  const split: { variant: string; shapes: AttnShape[] }[] = [
    { variant: 'split-K decode T=1 vec2 (head_dim 34)', shapes: [{ T: 1, nq: 6, nkv: 2, hd: 34, ctx: 151, pos0: 149 }, { T: 1, nq: 3, nkv: 3, hd: 6, ctx: 9, pos0: 0 }] },
    { variant: 'split-K decode T=1 vec4 (head_dim 68)', shapes: [{ T: 1, nq: 8, nkv: 2, hd: 68, ctx: 97, pos0: 96 }] },
    { variant: 'split-K verify T>1 vec2 (head_dim 10)', shapes: [{ T: 5, nq: 4, nkv: 1, hd: 10, ctx: 83, pos0: 71 }] },
    { variant: 'split-K verify T>1 vec4 (head_dim 64)', shapes: [{ T: 3, nq: 4, nkv: 2, hd: 64, ctx: 61, pos0: 50 }] },
  ];
  const cut: SplitParams = { splits: 7, minKeys: 5, rows: 2 };
  const out: CheckSpec[] = [];
  for (const kv of ['f32', 'f16'] as const) {
    const cache = kv === 'f16' ? ', f16 KV cache' : '';
    for (const c of single) out.push({ name: 'attention', variant: c.variant + cache, format: '-', tolerance: 2e-5, rel_tolerance: 2e-4, kernels: ['attention'], run: (g: Gpu) => checkAttention(g, c.shapes, kv) });
    for (const c of split)
      out.push({ name: 'attention_split', variant: c.variant + cache, format: '-', tolerance: 2e-5, rel_tolerance: 2e-4, kernels: ['attention_split'], run: (g: Gpu) => checkAttention(g, c.shapes, kv, cut) });
  }
  return out;
}

/** An f16 cache (two per u32, low half first) read back as f32. */
async function readCache(gpu: Gpu, buf: GPUBuffer, n: number, kv: KvDtype): Promise<Float32Array> {
  if (kv === 'f32') return gpu.readF32(buf, n);
  const words = await gpu.readU32(buf, n / 2);
  return Float32Array.from({ length: n }, (_, i) => f16BitsToF32((words[i >> 1] >>> ((i & 1) * 16)) & 0xffff));
}

async function checkQkvPrepare(gpu: Gpu, normalize: boolean, kv: KvDtype): Promise<Measured> {
  let m: Measured = { maxAbs: 0, pass: true };
  const cases = [
    { T: 5, nq: 6, nkv: 2, hd: 34, ctx: 23, pos0: 11 },
    { T: 1, nq: 4, nkv: 1, hd: 10, ctx: 9, pos0: 8 },
  ];
  for (const [i, c] of cases.entries()) {
    const width = (c.nq + 2 * c.nkv) * c.hd;
    const rope = ropeTable(c.hd, c.ctx, 10000);
    const qkv = randomFill(c.T * width, 11 + i, 2);
    const qNorm = randomFill(c.hd, 12 + i, 0.5).map((v) => 1 + v);
    const kNorm = randomFill(c.hd, 13 + i, 0.5).map((v) => 1 + v);
    const n = c.nkv * c.ctx * c.hd;
    const stored = (x: Float32Array) => (kv === 'f16' ? x.map(roundF16) : x);
    const kInit = stored(randomFill(n, 14 + i, 1));
    const vInit = stored(randomFill(n, 15 + i, 1));
    const bufs = {
      qkv: gpu.upload('doctor.qkv', qkv),
      qNorm: gpu.upload('doctor.qn', qNorm),
      kNorm: gpu.upload('doctor.kn', kNorm),
      rope: gpu.upload('doctor.rope', rope),
      position: gpu.uniform('doctor.pos', [c.pos0]),
      q: gpu.upload('doctor.q', new Float32Array(c.T * c.nq * c.hd).fill(NaN)),
      kCache: uploadCache(gpu, 'doctor.kc', kInit, kv),
      vCache: uploadCache(gpu, 'doctor.vc', vInit, kv),
    };
    const o = { tokens: c.T, numQ: c.nq, numKv: c.nkv, headDim: c.hd, maxContext: c.ctx, eps: 1e-6, normalize, kvDtype: kv };
    const d = qkvPrepareDispatch(gpu, { ...o, ...bufs });
    const [q, k, v] = await runAndFree(gpu, [d], Object.values(bufs), () => Promise.all([gpu.readF32(bufs.q, c.T * c.nq * c.hd), readCache(gpu, bufs.kCache, n, kv), readCache(gpu, bufs.vCache, n, kv)]));
    const ref = qkvPrepareRef(qkv, qNorm, kNorm, rope, { ...o, position: c.pos0 });
    // The caches as they should be: the new rows at pos0.., everything else untouched.
    const withRows = (init: Float32Array, rows: Float32Array): Float32Array => {
      const out = init.slice();
      for (let h = 0; h < c.nkv; h++)
        for (let t = 0; t < c.T; t++) out.set(rows.subarray((h * c.T + t) * c.hd, (h * c.T + t + 1) * c.hd), (h * c.ctx + c.pos0 + t) * c.hd);
      return out;
    };
    // f16: WGSL may round a value that is not exact either way, so one f16 step (2^-10 relative) is allowed.
    const rel = kv === 'f16' ? 2 ** -10 : 0;
    m = merge(m, compareClose(q, ref.q, 2e-5, 2e-5));
    m = merge(m, compareClose(k, withRows(kInit, ref.k), 2e-5, 2e-5 + rel));
    m = merge(m, compareClose(v, withRows(vInit, ref.v), kv === 'f16' ? 2 ** -24 : 0, rel));
  }
  return m;
}

export function qkvChecks(): CheckSpec[] {
  const out: CheckSpec[] = [];
  for (const kv of ['f32', 'f16'] as const)
    for (const normalize of [true, false])
      out.push({
        name: 'qkv_prepare',
        variant: (normalize ? 'q/k norm + RoPE' : 'RoPE only') + (kv === 'f16' ? ', f16 KV cache' : ''),
        format: '-',
        tolerance: 2e-5,
        rel_tolerance: kv === 'f16' ? 2e-5 + 2 ** -10 : 2e-5,
        kernels: ['qkv_prepare'],
        run: (g: Gpu) => checkQkvPrepare(g, normalize, kv),
      });
  return out;
}
