// y[t, yOffset + n] (= or +=) sum_k x[t, k] * W[n, k] for one row chunk of a q8/q4 weight matrix.
// x: f32 [T, K], row stride K. y: f32 [T, yStride]; this chunk writes columns yOffset .. yOffset + N.
// The f32/f16 twin is matmul.wgsl (same thread layout, same fusions), the one-token coalesced
// kernel matmul_gemv.wgsl.
//
// Quantized weights (q8 / q4, groups of 32 along K with one f16 scale each; layout in
// src/weights/quant.ts). w is the chunk's buffer as vec4<u32>: rowVecs vec4s of quants a row (q8: 2 a
// group, 4 int8 a word; q4: 1 a group, llama.cpp's nibble order), then from scaleBase the scales,
// scaleRowVecs vec4s (8 halves) a row. Each thread owns 4 rows (n, n + WG, n + 2 WG, n + 3 WG)
// and 1 or (TILE) 4 tokens, so every weight load serves up to 4 tokens.
//
// Per group, each word of 4 quants of the 4 rows becomes one matrix (a column a row) and
// s[t] += x4 * mat4x4f(...) sums the group for 4 rows at once; acc[t] += s[t] * d then applies the
// 4 rows' scales once a group. Decoding uses the unpack4x8snorm / unpack4x8unorm builtins, by far
// the cheapest decode on SwiftShader (its variable vector shifts, unpack4xI8 included, cost ~2x):
//   q8: unpack4x8snorm(word) = q / 127 per byte (q in [-127, 127], never the clamped -128), and
//       the group's scale is taken as d * 127 (exact in f32).
//   q4: unpack4x8unorm(word & 0x0F0F0F0F) = q / 255 for the low nibbles, and of
//       (word >> 4) & 0x0F0F0F0F for the high ones; sum (q - 8) x = 255 sum (q / 255) x - 8 sum x,
//       so the thread also sums each token's x over the group (xs), shared by its 4 rows.
// Each weight is thus q d up to one f32 rounding (relative 2^-23), not bit-exact; the sums are f32.
//
// Variants: Q4 (else q8), VEC4 (K a multiple of 4: vec4 loads of x; else scalar loads), TAIL (K
// not a multiple of 32: loads of x past K give zeros; the padded weights are zero too), TILE,
// ACC.
//
// Fusions NORM, NORMW, SILU, GLU (one description for both thread-a-row kernels): see
// include/matmul_out.wgsl.

#include half
#include quant_decode
#include matmul_out

struct Params {
  T: u32,
  N: u32,
  K: u32,
  rowVecs: u32,
  yStride: u32,
  yOffset: u32,
  tiles: u32,
  groups: u32,
  scaleBase: u32,
  scaleRowVecs: u32,
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
@group(0) @binding(2) var<storage, read> w: array<vec4u>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
#if NORMW
#if VEC4
@group(0) @binding(4) var<storage, read> nw: array<vec4f>;
#else
@group(0) @binding(4) var<storage, read> nw: array<f32>;
#endif
#endif

override WG: u32 = 64;

// Activations 4m .. 4m + 3 of the token whose row starts at element `row` of x.
fn xv(row: u32, m: u32) -> vec4f {
#if VEC4
#if TAIL
  if (4u * m >= params.K) {
    return vec4f(0.0);
  }
#endif
  return x[row + m];
#else
  let k = 4u * m;
  let K = params.K;
  var v = vec4f(0.0);
  if (k < K) { v.x = x[row + k]; }
  if (k + 1u < K) { v.y = x[row + k + 1u]; }
  if (k + 2u < K) { v.z = x[row + k + 2u]; }
  if (k + 3u < K) { v.w = x[row + k + 3u]; }
  return v;
#endif
}

#if NORM
// Norm weights 4m .. 4m + 3 (zeros past K, like xv).
fn gv(m: u32) -> vec4f {
#if NORMW
#if VEC4
#if TAIL
  if (4u * m >= params.K) {
    return vec4f(0.0);
  }
#endif
  return nw[m];
#else
  let k = 4u * m;
  let K = params.K;
  var v = vec4f(0.0);
  if (k < K) { v.x = nw[k]; }
  if (k + 1u < K) { v.y = nw[k + 1u]; }
  if (k + 2u < K) { v.z = nw[k + 2u]; }
  if (k + 3u < K) { v.w = nw[k + 3u]; }
  return v;
#endif
#else
  // The norm weights were folded into W.
  return vec4f(1.0);
#endif
}
#endif

#if Q4
// Group scale factors: acc += s * (255 d) - (8 d) * sum(x).
const QSCALE: f32 = 255.0;
#else
const QSCALE: f32 = 127.0;
#endif

// One vec4 of K for 4 rows (the columns of m) and the thread's tokens (x rows xr); with Q4 also
// the running x sums (xs), with NORM the running sums of x^2 (q).
#if TILE
fn mac(m: mat4x4f, i: u32, xr: vec4u, s: ptr<function, mat4x4f>, xs: ptr<function, mat4x4f>, q: ptr<function, mat4x4f>) {
  let u0 = xv(xr.x, i);
  let u1 = xv(xr.y, i);
  let u2 = xv(xr.z, i);
  let u3 = xv(xr.w, i);
#if NORM
  (*q)[0] += u0 * u0;
  (*q)[1] += u1 * u1;
  (*q)[2] += u2 * u2;
  (*q)[3] += u3 * u3;
  let g = gv(i);
  let v0 = u0 * g;
  let v1 = u1 * g;
  let v2 = u2 * g;
  let v3 = u3 * g;
#else
  let v0 = u0;
  let v1 = u1;
  let v2 = u2;
  let v3 = u3;
#endif
  (*s)[0] += v0 * m;
  (*s)[1] += v1 * m;
  (*s)[2] += v2 * m;
  (*s)[3] += v3 * m;
#if Q4
  (*xs)[0] += v0;
  (*xs)[1] += v1;
  (*xs)[2] += v2;
  (*xs)[3] += v3;
#endif
}
#else
fn mac(m: mat4x4f, i: u32, xr: u32, s: ptr<function, vec4f>, xs: ptr<function, vec4f>, q: ptr<function, vec4f>) {
  let u = xv(xr, i);
#if NORM
  *q += u * u;
  let v = u * gv(i);
#else
  let v = u;
#endif
  *s += v * m;
#if Q4
  *xs += v;
#endif
}
#endif

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let lin = wg.x + wg.y * nwg.x;
  let tile = lin % params.tiles;
  let n0 = (lin / params.tiles) * (OWN * WG) + li;
  let T = params.T;
  let rs = rows4(n0);
  if (rs.x == NONE) {
    return;
  }
  let r1 = rs.y;
  let r2 = rs.z;
  let r3 = rs.w;
  let rv = params.rowVecs;
  let o0 = rs.x * rv;
  let o1 = r1 * rv;
  let o2 = r2 * rv;
  let o3 = r3 * rv;
  let sv = params.scaleRowVecs;
  let p0 = params.scaleBase + rs.x * sv;
  let p1 = params.scaleBase + r1 * sv;
  let p2 = params.scaleBase + r2 * sv;
  let p3 = params.scaleBase + r3 * sv;
#if VEC4
  let xs = params.K / 4u;
#else
  let xs = params.K;
#endif
#if TILE
  let t0 = tile * 4u;
  // Tokens past T repeat the last token (computed, never stored).
  let xr = vec4u(t0, min(t0 + 1u, T - 1u), min(t0 + 2u, T - 1u), min(t0 + 3u, T - 1u)) * xs;
  var acc = mat4x4f();
  // NORM: each token's running sums of x^2 (4 lanes, added up at the end).
  var sq = mat4x4f();
#else
  let t0 = tile;
  let xr = t0 * xs;
  var acc = vec4f(0.0);
  var sq = vec4f(0.0);
#endif
  var c0 = vec4u(0u);
  var c1 = vec4u(0u);
  var c2 = vec4u(0u);
  var c3 = vec4u(0u);
  for (var g = 0u; g < params.groups; g++) {
    let gi = g & 7u;
    if (gi == 0u) {
      // The next 8 scales of each row.
      let j = g >> 3u;
      c0 = w[p0 + j];
      c1 = w[p1 + j];
      c2 = w[p2 + j];
      c3 = w[p3 + j];
    }
    let d = vec4f(half(c0, gi), half(c1, gi), half(c2, gi), half(c3, gi));
#if TILE
    var s = mat4x4f();
    var sx = mat4x4f();
#else
    var s = vec4f(0.0);
    var sx = vec4f(0.0);
#endif
    let m = 8u * g;
#if Q4
    let b0 = w[o0 + g];
    let b1 = w[o1 + g];
    let b2 = w[o2 + g];
    let b3 = w[o3 + g];
    // Word j: low nibbles are weights 4j.., high nibbles 16 + 4j.. of the group.
    mac(mat4x4f(q4lo(b0.x), q4lo(b1.x), q4lo(b2.x), q4lo(b3.x)), m, xr, &s, &sx, &sq);
    mac(mat4x4f(q4hi(b0.x), q4hi(b1.x), q4hi(b2.x), q4hi(b3.x)), m + 4u, xr, &s, &sx, &sq);
    mac(mat4x4f(q4lo(b0.y), q4lo(b1.y), q4lo(b2.y), q4lo(b3.y)), m + 1u, xr, &s, &sx, &sq);
    mac(mat4x4f(q4hi(b0.y), q4hi(b1.y), q4hi(b2.y), q4hi(b3.y)), m + 5u, xr, &s, &sx, &sq);
    mac(mat4x4f(q4lo(b0.z), q4lo(b1.z), q4lo(b2.z), q4lo(b3.z)), m + 2u, xr, &s, &sx, &sq);
    mac(mat4x4f(q4hi(b0.z), q4hi(b1.z), q4hi(b2.z), q4hi(b3.z)), m + 6u, xr, &s, &sx, &sq);
    mac(mat4x4f(q4lo(b0.w), q4lo(b1.w), q4lo(b2.w), q4lo(b3.w)), m + 3u, xr, &s, &sx, &sq);
    mac(mat4x4f(q4hi(b0.w), q4hi(b1.w), q4hi(b2.w), q4hi(b3.w)), m + 7u, xr, &s, &sx, &sq);
    let ds = d * QSCALE;
    let d8 = d * 8.0;
    let one = vec4f(1.0);
#if TILE
    acc[0] += s[0] * ds - d8 * dot(sx[0], one);
    acc[1] += s[1] * ds - d8 * dot(sx[1], one);
    acc[2] += s[2] * ds - d8 * dot(sx[2], one);
    acc[3] += s[3] * ds - d8 * dot(sx[3], one);
#else
    acc += s * ds - d8 * dot(sx, one);
#endif
#else
    let a0 = w[o0 + 2u * g];
    let a1 = w[o1 + 2u * g];
    let a2 = w[o2 + 2u * g];
    let a3 = w[o3 + 2u * g];
    mac(mat4x4f(q8(a0.x), q8(a1.x), q8(a2.x), q8(a3.x)), m, xr, &s, &sx, &sq);
    mac(mat4x4f(q8(a0.y), q8(a1.y), q8(a2.y), q8(a3.y)), m + 1u, xr, &s, &sx, &sq);
    mac(mat4x4f(q8(a0.z), q8(a1.z), q8(a2.z), q8(a3.z)), m + 2u, xr, &s, &sx, &sq);
    mac(mat4x4f(q8(a0.w), q8(a1.w), q8(a2.w), q8(a3.w)), m + 3u, xr, &s, &sx, &sq);
    let e0 = w[o0 + 2u * g + 1u];
    let e1 = w[o1 + 2u * g + 1u];
    let e2 = w[o2 + 2u * g + 1u];
    let e3 = w[o3 + 2u * g + 1u];
    mac(mat4x4f(q8(e0.x), q8(e1.x), q8(e2.x), q8(e3.x)), m + 4u, xr, &s, &sx, &sq);
    mac(mat4x4f(q8(e0.y), q8(e1.y), q8(e2.y), q8(e3.y)), m + 5u, xr, &s, &sx, &sq);
    mac(mat4x4f(q8(e0.z), q8(e1.z), q8(e2.z), q8(e3.z)), m + 6u, xr, &s, &sx, &sq);
    mac(mat4x4f(q8(e0.w), q8(e1.w), q8(e2.w), q8(e3.w)), m + 7u, xr, &s, &sx, &sq);
    let ds = d * QSCALE;
#if TILE
    acc[0] += s[0] * ds;
    acc[1] += s[1] * ds;
    acc[2] += s[2] * ds;
    acc[3] += s[3] * ds;
#else
    acc += s * ds;
#endif
#endif
  }
#if TILE
  store4(t0, n0, acc[0] * rnorm(sq[0]));
  if (t0 + 1u < T) { store4(t0 + 1u, n0, acc[1] * rnorm(sq[1])); }
  if (t0 + 2u < T) { store4(t0 + 2u, n0, acc[2] * rnorm(sq[2])); }
  if (t0 + 3u < T) { store4(t0 + 3u, n0, acc[3] * rnorm(sq[3])); }
#else
  store4(t0, n0, acc * rnorm(sq));
#endif
}
