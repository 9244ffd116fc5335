// Decode matrix-vector product (one token), coalesced: y[yOffset + n] (= or +=) sum_k W[n, k] x[k]
// for one row chunk. A workgroup owns 4 consecutive weight rows; its threads stride over K in
// 16-byte units (thread i reads unit i, i + WG, ...), so neighbouring threads read neighbouring
// bytes of the same row, the access pattern a GPU's memory system serves at full width. Each
// thread keeps 4 partial sums (one a row) and the workgroup adds them up at the end: with
// SUBGROUPS by subgroupAdd, then one partial a subgroup through workgroup memory; without, by a
// tree in workgroup memory (WG a power of two). matmul.wgsl / matmul_q.wgsl, a thread a row, stay the kernels for
// T > 1 and for shapes this one does not take (K not a whole number of units).
//
// Units: f32 4 weights (one vec4u of bits), F16 8 (one vec4u of packed halves), QUANT one group of
// 32 (q8: 2 vec4u of int8, q4: 1 vec4u of nibbles, plus the group's f16 scale; layout in
// src/weights/quant.ts, decoding as in matmul_q.wgsl).
// Fusions as in include/matmul_out.wgsl: NORM (RMSNorm in front; NORMW: g at binding 4, else folded into W), SILU, GLU (row pairs 2p,
// 2p + 1 are gate and up; the workgroup's 4 rows are 2 pairs and it writes 2 outputs), ACC.
#if SUBGROUPS
enable subgroups;
#endif

#include half
#include quant_decode
#include silu

struct Params {
  N: u32,
  K: u32,
  // vec4u a row (quantized: of quants only).
  rowVecs: u32,
  yOffset: u32,
  // Quantized: first vec4u of the scales, and vec4u of scales a row.
  scaleBase: u32,
  scaleRowVecs: u32,
#if NORM
  eps: f32,
#endif
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4f>;
@group(0) @binding(2) var<storage, read> w: array<vec4u>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
#if NORMW
@group(0) @binding(4) var<storage, read> nw: array<vec4f>;
#endif

override WG: u32 = 64;

#if QUANT
// x vec4s a unit (a group of 32).
const XU: u32 = 8u;
#elif F16
const XU: u32 = 2u;
#else
const XU: u32 = 1u;
#endif

// Partial sums (one a row) and, with NORM, of x^2 in the last lane's place: xs holds the unit's
// input vec4s after the norm weights; sq the sum of squares of x.
var<private> xs: array<vec4f, 8>;

// Loads unit u's x (times g with NORM) into xs; returns its sum of squares of x (NORM) or 0.
fn loadx(u: u32) -> f32 {
  var sq = 0.0;
  for (var j = 0u; j < XU; j++) {
    let v = x[u * XU + j];
#if NORM
    sq += dot(v, v);
#if NORMW
    xs[j] = v * nw[u * XU + j];
#else
    xs[j] = v;
#endif
#else
    xs[j] = v;
#endif
  }
  return sq;
}

// Weight row r's unit u against xs.
fn unitDot(r: u32, u: u32) -> f32 {
#if QUANT
  let sc = w[params.scaleBase + r * params.scaleRowVecs + (u >> 3u)];
  let d = half(sc, u & 7u);
#if Q4
  let b = w[r * params.rowVecs + u];
  var s = 0.0;
  var sx = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) {
    // Word j: low nibbles are weights 4j.., high nibbles 16 + 4j.. of the group.
    s += dot(q4lo(b[j]), xs[j]) + dot(q4hi(b[j]), xs[4u + j]);
    sx += xs[j] + xs[4u + j];
  }
  return d * (255.0 * s - 8.0 * dot(sx, vec4f(1.0)));
#else
  let a = w[r * params.rowVecs + 2u * u];
  let e = w[r * params.rowVecs + 2u * u + 1u];
  var s = 0.0;
  for (var j = 0u; j < 4u; j++) {
    s += dot(q8(a[j]), xs[j]) + dot(q8(e[j]), xs[4u + j]);
  }
  return s * d * 127.0;
#endif
#elif F16
  let p = w[r * params.rowVecs + u];
  return dot(vec4f(unpack2x16float(p.x), unpack2x16float(p.y)), xs[0]) + dot(vec4f(unpack2x16float(p.z), unpack2x16float(p.w)), xs[1]);
#else
  return dot(bitcast<vec4f>(w[r * params.rowVecs + u]), xs[0]);
#endif
}

#if SUBGROUPS
var<workgroup> parts: array<vec4f, WG>;
var<workgroup> sqs: array<f32, WG>;
var<workgroup> count: atomic<u32>;
#else
var<workgroup> parts: array<vec4f, WG>;
var<workgroup> sqs: array<f32, WG>;
#endif

fn store(n: u32, v: f32) {
  let i = params.yOffset + n;
#if ACC
  y[i] = y[i] + v;
#else
  y[i] = v;
#endif
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let blk = wg.x + wg.y * nwg.x;
  let N = params.N;
  // Rows past N repeat the last row (computed, never stored). Every thread runs to the end:
  // barriers need the whole workgroup.
  let r0 = min(4u * blk, N - 1u);
  let r1 = min(4u * blk + 1u, N - 1u);
  let r2 = min(4u * blk + 2u, N - 1u);
  let r3 = min(4u * blk + 3u, N - 1u);
  let units = params.K / (4u * XU);
  var p = vec4f(0.0);
  var q = 0.0;
  for (var u = li; u < units; u += WG) {
    q += loadx(u);
    p += vec4f(unitDot(r0, u), unitDot(r1, u), unitDot(r2, u), unitDot(r3, u));
  }
#if SUBGROUPS
  let ps = subgroupAdd(p);
  let qs = subgroupAdd(q);
  if (subgroupElect()) {
    let s = atomicAdd(&count, 1u);
    parts[s] = ps;
    sqs[s] = qs;
  }
  workgroupBarrier();
  if (li != 0u) {
    return;
  }
  let m = atomicLoad(&count);
  var tot = parts[0];
  var tq = sqs[0];
  for (var i = 1u; i < m; i++) {
    tot += parts[i];
    tq += sqs[i];
  }
#else
  parts[li] = p;
  sqs[li] = q;
  for (var h = WG / 2u; h > 0u; h >>= 1u) {
    workgroupBarrier();
    if (li < h) {
      parts[li] += parts[li + h];
      sqs[li] += sqs[li + h];
    }
  }
  if (li != 0u) {
    return;
  }
  let tot = parts[0];
  let tq = sqs[0];
#endif
#if NORM
  let v = tot * inverseSqrt(tq / f32(params.K) + params.eps);
#else
  let v = tot;
#endif
#if GLU
  // Pairs 2 blk and 2 blk + 1.
  let P = N / 2u;
  let a = silu(vec4f(v.x, v.z, 0.0, 0.0));
  store(2u * blk, a.x * v.y);
  if (2u * blk + 1u < P) { store(2u * blk + 1u, a.y * v.w); }
#else
#if SILU
  let o = silu(v);
#else
  let o = v;
#endif
  store(4u * blk, o.x);
  if (4u * blk + 1u < N) { store(4u * blk + 1u, o.y); }
  if (4u * blk + 2u < N) { store(4u * blk + 2u, o.z); }
  if (4u * blk + 3u < N) { store(4u * blk + 3u, o.w); }
#endif
}
