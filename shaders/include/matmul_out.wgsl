// The output side of the thread-a-row matmuls (matmul.wgsl, matmul_q.wgsl): which 4 weight rows a
// thread owns, the fused RMSNorm's scale, and the stores with the fused activation and residual
// add. The includer defines params (N, K, yStride, yOffset; eps with NORM), WG and y.
//
// Fusions, so a layer needs fewer dispatches:
//   NORM: RMSNorm in front. The product's input is x[t, k] * g[k] (NORMW: g at binding 4, f32 [K];
//     without, g was folded into W's columns when it was stored) and
//     each token's sums are scaled at the end by r_t = 1 / sqrt(mean_k x[t, k]^2 + eps). Every
//     thread reads its token's whole row of x anyway, so it sums the squares on the way: no
//     barrier, no second pass over x.
//   SILU: y = silu(product). GLU: gated SiLU over row pairs: weight rows 2p and 2p + 1 are a gate
//     row and its up row, and y[t, p] = silu(gate . x) * (up . x), N / 2 outputs. A thread then
//     owns pairs p and p + WG (4 rows, as usual), so the gate and its up meet in one thread.
// Both kernels end in store4 (below).
#include silu

const NONE: u32 = 0xffffffffu;
#if GLU
// Output columns a workgroup covers, per thread: 2 (pairs p, p + WG; 4 weight rows).
const OWN: u32 = 2u;
// The 4 weight rows of the thread owning output n0: gate/up of pair n0 and of pair n0 + WG
// (the last pair again past the end: computed, never stored). NONE when n0 is past the end.
fn rows4(n0: u32) -> vec4u {
  let P = params.N / 2u;
  if (n0 >= P) {
    return vec4u(NONE);
  }
  let p1 = min(n0 + WG, P - 1u);
  return vec4u(2u * n0, 2u * n0 + 1u, 2u * p1, 2u * p1 + 1u);
}
#else
const OWN: u32 = 4u;
// The thread's 4 weight rows n0, n0 + WG, n0 + 2 WG, n0 + 3 WG (rows past N repeat the last:
// computed, never stored). NONE when n0 is past the end.
fn rows4(n0: u32) -> vec4u {
  let N = params.N;
  if (n0 >= N) {
    return vec4u(NONE);
  }
  return vec4u(n0, min(n0 + WG, N - 1u), min(n0 + 2u * WG, N - 1u), min(n0 + 3u * WG, N - 1u));
}
#endif

#if NORM
// 1 / rms of a token from its sum of squares (4 lanes summed).
fn rnorm(q: vec4f) -> f32 {
  return rnorm1(q.x + q.y + q.z + q.w);
}
fn rnorm1(ss: f32) -> f32 {
  return inverseSqrt(ss / f32(params.K) + params.eps);
}
#else
fn rnorm(q: vec4f) -> f32 {
  return 1.0;
}
#endif

fn store(t: u32, n: u32, v: f32) {
  let i = t * params.yStride + params.yOffset + n;
#if ACC
  y[i] = y[i] + v;
#else
  y[i] = v;
#endif
}

// Stores the thread's 4 sums of token t (its rows as rows4 gives them) as outputs.
fn store4(t: u32, n0: u32, v: vec4f) {
#if GLU
  let a = silu(vec4f(v.x, v.z, 0.0, 0.0));
  store(t, n0, a.x * v.y);
  if (n0 + WG < params.N / 2u) { store(t, n0 + WG, a.y * v.w); }
#else
#if SILU
  let o = silu(v);
#else
  let o = v;
#endif
  let N = params.N;
  store(t, n0, o.x);
  if (n0 + WG < N) { store(t, n0 + WG, o.y); }
  if (n0 + 2u * WG < N) { store(t, n0 + 2u * WG, o.z); }
  if (n0 + 3u * WG < N) { store(t, n0 + 3u * WG, o.w); }
#endif
}
