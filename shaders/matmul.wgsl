// y[t, yOffset + n] (= or +=) sum_k x[t, k] * W[n, k] for one row chunk of a weight matrix.
// x: f32 [T, K], row stride K. W: N rows of rowWords u32 words, f32 or (F16) two halves per word,
// low half first. y: f32 [T, yStride]; this chunk writes columns yOffset .. yOffset + N.
//
// Each thread owns 4 weight rows (n, n + WG, n + 2 WG, n + 3 WG) and, with TILE, 4 tokens, so every
// weight load serves 4 tokens and every activation load serves 4 rows; without TILE (decode, T = 1)
// it owns 4 rows of one token. Accumulators are scalars in registers, written out by hand: on
// SwiftShader (CPU) per-lane memory loads dominate, and private arrays and workgroup memory are
// slower than this. Tokens past T repeat the last token (computed, never stored); rows past N
// repeat the last row.
//
// Variants: F16 (packed f16 weights; with SHADER_F16, on devices with shader-f16, the same words
// read as f16 values instead of unpacked from u32), VEC4 (K a multiple of 4 for f32, of 8 for f16: vector loads;
// otherwise scalar loads), TILE (4 tokens a thread), ACC (y += instead of y =).
// The q8/q4 twin is matmul_q.wgsl, the one-token coalesced kernel matmul_gemv.wgsl.
//
// Fusions NORM, NORMW, SILU, GLU (one description for both thread-a-row kernels): see
// include/matmul_out.wgsl.

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
  // Token tiles: ceil(T / 4) with TILE, else T (one token each).
  tiles: u32,
#if NORM
  eps: f32,
#endif
}
@group(0) @binding(0) var<uniform> params: Params;
#if VEC4
@group(0) @binding(1) var<storage, read> x: array<vec4f>;
#if SHADER_F16
@group(0) @binding(2) var<storage, read> w: array<vec4<f16>>;
#else
@group(0) @binding(2) var<storage, read> w: array<vec4u>;
#endif
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#if SHADER_F16
@group(0) @binding(2) var<storage, read> w: array<vec2<f16>>;
#else
@group(0) @binding(2) var<storage, read> w: array<u32>;
#endif
#endif
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
#if NORMW
#if VEC4
@group(0) @binding(4) var<storage, read> nw: array<vec4f>;
#else
@group(0) @binding(4) var<storage, read> nw: array<f32>;
#endif
#endif

override WG: u32 = 64;

// One step of the K loop: WT/XT hold a step's weights/activations, dp multiplies them out.
#if VEC4
#if F16
// 8 values a step: one vec4u of packed halves against two vec4f of x.
const KSTEP: u32 = 8;
fn wl(i: u32) -> mat2x4f {
#if SHADER_F16
  // The same 16 bytes as 8 f16 values: converting is exact, so sums match the packed path's.
  return mat2x4f(vec4f(w[2u * i]), vec4f(w[2u * i + 1u]));
#else
  let p = w[i];
  return mat2x4f(vec4f(unpack2x16float(p.x), unpack2x16float(p.y)), vec4f(unpack2x16float(p.z), unpack2x16float(p.w)));
#endif
}
fn xl(row: u32, i: u32) -> mat2x4f {
  return mat2x4f(x[row + 2u * i], x[row + 2u * i + 1u]);
}
fn dp(a: mat2x4f, b: mat2x4f) -> f32 {
  return dot(a[0], b[0]) + dot(a[1], b[1]);
}
#if NORM
fn gl(i: u32) -> mat2x4f {
#if NORMW
  return mat2x4f(nw[2u * i], nw[2u * i + 1u]);
#else
  return mat2x4f(vec4f(1.0), vec4f(1.0));
#endif
}
fn mul(a: mat2x4f, b: mat2x4f) -> mat2x4f {
  return mat2x4f(a[0] * b[0], a[1] * b[1]);
}
#endif
#else
const KSTEP: u32 = 4;
fn wl(i: u32) -> vec4f {
  return bitcast<vec4f>(w[i]);
}
fn xl(row: u32, i: u32) -> vec4f {
  return x[row + i];
}
fn dp(a: vec4f, b: vec4f) -> f32 {
  return dot(a, b);
}
#if NORM
fn gl(i: u32) -> vec4f {
#if NORMW
  return nw[i];
#else
  return vec4f(1.0);
#endif
}
fn mul(a: vec4f, b: vec4f) -> vec4f {
  return a * b;
}
#endif
#endif
#else
#if F16
// 2 values a step: one packed word; an odd K leaves a last half handled after the loop.
const KSTEP: u32 = 2;
fn wl(i: u32) -> vec2f {
#if SHADER_F16
  return vec2f(w[i]);
#else
  return unpack2x16float(w[i]);
#endif
}
fn xl(row: u32, i: u32) -> vec2f {
  return vec2f(x[row + 2u * i], x[row + 2u * i + 1u]);
}
fn dp(a: vec2f, b: vec2f) -> f32 {
  return dot(a, b);
}
#if NORM
fn gl(i: u32) -> vec2f {
#if NORMW
  return vec2f(nw[2u * i], nw[2u * i + 1u]);
#else
  return vec2f(1.0);
#endif
}
fn mul(a: vec2f, b: vec2f) -> vec2f {
  return a * b;
}
#endif
#else
const KSTEP: u32 = 1;
fn wl(i: u32) -> f32 {
  return bitcast<f32>(w[i]);
}
fn xl(row: u32, i: u32) -> f32 {
  return x[row + i];
}
fn dp(a: f32, b: f32) -> f32 {
  return a * b;
}
#if NORM
fn gl(i: u32) -> f32 {
#if NORMW
  return nw[i];
#else
  return 1.0;
#endif
}
fn mul(a: f32, b: f32) -> f32 {
  return a * b;
}
#endif
#endif
#endif

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let lin = wg.x + wg.y * nwg.x;
  // Token tiles vary fastest, so neighbouring workgroups read the same weight rows.
  let tile = lin % params.tiles;
  let n0 = (lin / params.tiles) * (OWN * WG) + li;
  let T = params.T;
  let rs = rows4(n0);
  if (rs.x == NONE) {
    return;
  }
  let steps = params.K / KSTEP;
#if VEC4
  let ws = params.rowWords / 4u;
  let xs = params.K / 4u;
#else
  let ws = params.rowWords;
  let xs = params.K;
#endif
  // Offsets of the 4 rows, in elements of w.
  let o0 = rs.x * ws;
  let o1 = rs.y * ws;
  let o2 = rs.z * ws;
  let o3 = rs.w * ws;
#if TILE
  let t0 = tile * 4u;
#else
  let t0 = tile;
#endif
  let x0 = t0 * xs;
#if TILE
  let x1 = min(t0 + 1u, T - 1u) * xs;
  let x2 = min(t0 + 2u, T - 1u) * xs;
  let x3 = min(t0 + 3u, T - 1u) * xs;
#endif
  var a00 = 0.0; var a10 = 0.0; var a20 = 0.0; var a30 = 0.0;
#if TILE
  var a01 = 0.0; var a11 = 0.0; var a21 = 0.0; var a31 = 0.0;
  var a02 = 0.0; var a12 = 0.0; var a22 = 0.0; var a32 = 0.0;
  var a03 = 0.0; var a13 = 0.0; var a23 = 0.0; var a33 = 0.0;
#endif
  // NORM: each token's sum of x^2.
  var q = vec4f(0.0);
  for (var i = 0u; i < steps; i++) {
    let w0 = wl(o0 + i);
    let w1 = wl(o1 + i);
    let w2 = wl(o2 + i);
    let w3 = wl(o3 + i);
#if NORM
    let g = gl(i);
    let u0 = xl(x0, i);
    q.x += dp(u0, u0);
    let v0 = mul(u0, g);
#else
    let v0 = xl(x0, i);
#endif
    a00 += dp(w0, v0); a10 += dp(w1, v0); a20 += dp(w2, v0); a30 += dp(w3, v0);
#if TILE
#if NORM
    let u1 = xl(x1, i);
    q.y += dp(u1, u1);
    let v1 = mul(u1, g);
    let u2 = xl(x2, i);
    q.z += dp(u2, u2);
    let v2 = mul(u2, g);
    let u3 = xl(x3, i);
    q.w += dp(u3, u3);
    let v3 = mul(u3, g);
#else
    let v1 = xl(x1, i);
    let v2 = xl(x2, i);
    let v3 = xl(x3, i);
#endif
    a01 += dp(w0, v1); a11 += dp(w1, v1); a21 += dp(w2, v1); a31 += dp(w3, v1);
    a02 += dp(w0, v2); a12 += dp(w1, v2); a22 += dp(w2, v2); a32 += dp(w3, v2);
    a03 += dp(w0, v3); a13 += dp(w1, v3); a23 += dp(w2, v3); a33 += dp(w3, v3);
#endif
  }
#if F16
#if VEC4
#else
  if ((params.K & 1u) != 0u) {
    // The last word of each row holds one half (the high half is padding).
    let k = params.K - 1u;
    let h0 = wl(o0 + steps).x;
    let h1 = wl(o1 + steps).x;
    let h2 = wl(o2 + steps).x;
    let h3 = wl(o3 + steps).x;
#if NORM
#if NORMW
    let g = nw[k];
#else
    let g = 1.0;
#endif
    let e0 = x[x0 + k];
    q.x += e0 * e0;
    let u0 = e0 * g;
#else
    let u0 = x[x0 + k];
#endif
    a00 += h0 * u0; a10 += h1 * u0; a20 += h2 * u0; a30 += h3 * u0;
#if TILE
#if NORM
    let e1 = x[x1 + k];
    let e2 = x[x2 + k];
    let e3 = x[x3 + k];
    q += vec4f(0.0, e1 * e1, e2 * e2, e3 * e3);
    let u1 = e1 * g;
    let u2 = e2 * g;
    let u3 = e3 * g;
#else
    let u1 = x[x1 + k];
    let u2 = x[x2 + k];
    let u3 = x[x3 + k];
#endif
    a01 += h0 * u1; a11 += h1 * u1; a21 += h2 * u1; a31 += h3 * u1;
    a02 += h0 * u2; a12 += h1 * u2; a22 += h2 * u2; a32 += h3 * u2;
    a03 += h0 * u3; a13 += h1 * u3; a23 += h2 * u3; a33 += h3 * u3;
#endif
  }
#endif
#endif
#if NORM
  let r = vec4f(rnorm1(q.x), rnorm1(q.y), rnorm1(q.z), rnorm1(q.w));
#else
  let r = vec4f(1.0);
#endif
  store4(t0, n0, vec4f(a00, a10, a20, a30) * r.x);
#if TILE
  if (t0 + 1u < T) { store4(t0 + 1u, n0, vec4f(a01, a11, a21, a31) * r.y); }
  if (t0 + 2u < T) { store4(t0 + 2u, n0, vec4f(a02, a12, a22, a32) * r.z); }
  if (t0 + 3u < T) { store4(t0 + 3u, n0, vec4f(a03, a13, a23, a33) * r.w); }
#endif
}
