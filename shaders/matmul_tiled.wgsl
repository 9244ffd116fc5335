// y[t, yOffset + n] (= or +=) sum_k x[t, k] * W[n, k] for T > 1 tokens, tiled through workgroup
// memory: a workgroup computes a block of 4 TT tokens by 4 WG weight rows. It walks K in steps of
// 4 KS values: its threads copy that step's x block and W block into workgroup memory (vec4 loads,
// each value read once from global memory per workgroup), then each thread multiplies its 4 tokens
// by its 4 rows out of workgroup memory. Sizes WG, TT and KS are overrides the wrapper picks from
// the adapter's limits (kernels/matmul_tiled.ts). Values past T, N or K are loaded as 0 and never
// stored.
//
// The sums run in another order than matmul.wgsl's (by K step, then within it), so results differ
// from the one-token kernel in the last bits: verify passes, whose rows must equal decode steps,
// keep the register-tiled kernel (src/runtime/forward.ts).
//
// Variants: F16 (f16 weights, packed two per u32, low half first), SHADER_F16 (with F16 on devices
// with shader-f16: the same words read as f16 values, converted to f32), VEC4 (K a multiple of 4:
// x and W read a vec4 of values at a time; otherwise value by value with bounds checks), ACC, and
// the fusions NORM, NORMW, SILU, GLU of include/matmul_out.wgsl (its rows4 is not used: a thread's
// rows are picked below, in the same pattern).
#if SHADER_F16
enable f16;
#endif

#include matmul_out

struct Params {
  T: u32,
  N: u32,
  K: u32,
  rowWords: u32,
  yStride: u32,
  yOffset: u32,
  // Row blocks of this chunk (workgroups along N); token blocks fill the rest of the grid.
  rowBlocks: u32,
#if NORM
  eps: f32,
#endif
}
@group(0) @binding(0) var<uniform> params: Params;
#if VEC4
@group(0) @binding(1) var<storage, read> x: array<vec4f>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
#if F16
#if SHADER_F16
#if VEC4
@group(0) @binding(2) var<storage, read> w: array<vec4<f16>>;
#else
@group(0) @binding(2) var<storage, read> w: array<f16>;
#endif
#else
#if VEC4
@group(0) @binding(2) var<storage, read> w: array<vec2u>;
#else
@group(0) @binding(2) var<storage, read> w: array<u32>;
#endif
#endif
#else
#if VEC4
@group(0) @binding(2) var<storage, read> w: array<vec4f>;
#else
@group(0) @binding(2) var<storage, read> w: array<f32>;
#endif
#endif
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
#if NORMW
@group(0) @binding(4) var<storage, read> nw: array<f32>;
#endif

// Threads along N (each 4 rows), threads along T (each 4 tokens), vec4 slots of K a step.
override WG: u32 = 16;
override TT: u32 = 8;
override KS: u32 = 8;
// A row of a block in workgroup memory is KS + 1 slots: the pad spreads rows over banks.
override XS_LEN: u32 = 4u * TT * (KS + 1u);
override WS_LEN: u32 = 4u * WG * (KS + 1u);
var<workgroup> xs: array<vec4f, XS_LEN>;
var<workgroup> ws: array<vec4f, WS_LEN>;

// x[t, k .. k + 4), 0 past K (t < T is the caller's check).
fn xLoad(t: u32, k: u32) -> vec4f {
#if VEC4
  return x[(t * params.K + k) / 4u];
#else
  let K = params.K;
  let b = t * K + k;
  var v = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) {
    if (k + j < K) {
      v[j] = x[b + j];
    }
  }
  return v;
#endif
}

// W[n, k .. k + 4) as stored (rounded to f16 with F16), 0 past K.
fn wLoad(n: u32, k: u32) -> vec4f {
  let K = params.K;
#if F16
#if SHADER_F16
#if VEC4
  return vec4f(w[(n * params.rowWords * 2u + k) / 4u]);
#else
  let b = n * params.rowWords * 2u + k;
  var v = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) {
    if (k + j < K) {
      v[j] = f32(w[b + j]);
    }
  }
  return v;
#endif
#else
#if VEC4
  let p = w[(n * params.rowWords + k / 2u) / 2u];
  return vec4f(unpack2x16float(p.x), unpack2x16float(p.y));
#else
  // k is even: the words at k / 2 and k / 2 + 1; the high half of a row's odd last word is 0.
  let b = n * params.rowWords + k / 2u;
  let lo = unpack2x16float(w[b]);
  var hi = vec2f(0.0);
  if (k + 2u < K) {
    hi = unpack2x16float(w[b + 1u]);
  }
  return vec4f(lo, hi);
#endif
#endif
#else
#if VEC4
  return w[(n * params.rowWords + k) / 4u];
#else
  let b = n * params.rowWords + k;
  var v = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) {
    if (k + j < K) {
      v[j] = w[b + j];
    }
  }
  return v;
#endif
#endif
}

#if NORMW
// The norm weights g[k .. k + 4), 0 past K: the product's input is x * g, applied to W's block.
fn gLoad(k: u32) -> vec4f {
  var v = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) {
    if (k + j < params.K) {
      v[j] = nw[k + j];
    }
  }
  return v;
}
#endif

// Workgroup-memory row of the thread's j-th weight row: rows tx, tx + WG, tx + 2 WG, tx + 3 WG;
// with GLU the (gate, up) pairs tx and tx + WG, as rows4 of include/matmul_out.wgsl takes them.
fn localRow(tx: u32, j: u32) -> u32 {
#if GLU
  return 2u * (tx + (j / 2u) * WG) + (j & 1u);
#else
  return tx + j * WG;
#endif
}

@compute @workgroup_size(WG, TT)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  let lin = wg.x + wg.y * nwg.x;
  // Row blocks vary fastest, so neighbouring workgroups share a block of x.
  let rb = lin % params.rowBlocks;
  let tb = lin / params.rowBlocks;
  let T = params.T;
  let N = params.N;
  let K = params.K;
  let BT = 4u * TT;
  let BN = 4u * WG;
  let stride = KS + 1u;
  let t0 = tb * BT;
  let r0 = rb * BN;
  let tx = lid.x;
  let ty = lid.y;
  let threads = WG * TT;
  // Past the last token block (the grid may be folded into y): no work, but no early return
  // before the barriers either, so such a workgroup only skips its stores.
  let live = t0 < T;
  let l0 = localRow(tx, 0u) * stride;
  let l1 = localRow(tx, 1u) * stride;
  let l2 = localRow(tx, 2u) * stride;
  let l3 = localRow(tx, 3u) * stride;
  let m0 = ty * stride;
  let m1 = (ty + TT) * stride;
  let m2 = (ty + 2u * TT) * stride;
  let m3 = (ty + 3u * TT) * stride;
  // a<row><token>
  var a00 = 0.0; var a10 = 0.0; var a20 = 0.0; var a30 = 0.0;
  var a01 = 0.0; var a11 = 0.0; var a21 = 0.0; var a31 = 0.0;
  var a02 = 0.0; var a12 = 0.0; var a22 = 0.0; var a32 = 0.0;
  var a03 = 0.0; var a13 = 0.0; var a23 = 0.0; var a33 = 0.0;
  // NORM: each of the thread's tokens' sum of x^2, from the blocks it reads anyway.
  var q = vec4f(0.0);
  for (var k0 = 0u; k0 < K; k0 += 4u * KS) {
    for (var s = li; s < BT * KS; s += threads) {
      let t = s / KS;
      let kk = s % KS;
      var v = vec4f(0.0);
      if (live && t0 + t < T && k0 + 4u * kk < K) {
        v = xLoad(t0 + t, k0 + 4u * kk);
      }
      xs[t * stride + kk] = v;
    }
    for (var s = li; s < BN * KS; s += threads) {
      let n = s / KS;
      let kk = s % KS;
      var v = vec4f(0.0);
      if (live && r0 + n < N && k0 + 4u * kk < K) {
        v = wLoad(r0 + n, k0 + 4u * kk);
#if NORMW
        v *= gLoad(k0 + 4u * kk);
#endif
      }
      ws[n * stride + kk] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < KS; kk++) {
      let x0 = xs[m0 + kk];
      let x1 = xs[m1 + kk];
      let x2 = xs[m2 + kk];
      let x3 = xs[m3 + kk];
      let w0 = ws[l0 + kk];
      let w1 = ws[l1 + kk];
      let w2 = ws[l2 + kk];
      let w3 = ws[l3 + kk];
      a00 += dot(w0, x0); a10 += dot(w1, x0); a20 += dot(w2, x0); a30 += dot(w3, x0);
      a01 += dot(w0, x1); a11 += dot(w1, x1); a21 += dot(w2, x1); a31 += dot(w3, x1);
      a02 += dot(w0, x2); a12 += dot(w1, x2); a22 += dot(w2, x2); a32 += dot(w3, x2);
      a03 += dot(w0, x3); a13 += dot(w1, x3); a23 += dot(w2, x3); a33 += dot(w3, x3);
#if NORM
      q += vec4f(dot(x0, x0), dot(x1, x1), dot(x2, x2), dot(x3, x3));
#endif
    }
    workgroupBarrier();
  }
  if (!live) {
    return;
  }
#if NORM
  let r = vec4f(rnorm1(q.x), rnorm1(q.y), rnorm1(q.z), rnorm1(q.w));
#else
  let r = vec4f(1.0);
#endif
  // The thread's first output column: a row with WG threads a block of OWN WG columns (rows, or
  // gate/up pairs); store4 writes n0, n0 + WG, ... that exist.
  let n0 = rb * OWN * WG + tx;
#if GLU
  let cols = N / 2u;
#else
  let cols = N;
#endif
  if (n0 >= cols) {
    return;
  }
  let t = t0 + ty;
  if (t < T) { store4(t, n0, vec4f(a00, a10, a20, a30) * r.x); }
  if (t + TT < T) { store4(t + TT, n0, vec4f(a01, a11, a21, a31) * r.y); }
  if (t + 2u * TT < T) { store4(t + 2u * TT, n0, vec4f(a02, a12, a22, a32) * r.z); }
  if (t + 3u * TT < T) { store4(t + 3u * TT, n0, vec4f(a03, a13, a23, a33) * r.w); }
}
