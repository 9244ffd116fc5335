// y[t, yOffset + n] (= or +=) sum_k x[t, k] * W[n, k] for one row chunk of an MLX affine-quantized
// weight matrix: W[n, k] = s * q + b per group of G weights along K (layout in
// src/weights/affine.ts). x: f32 [T, K] (K a multiple of G, so of 32). The thread layout and
// fusions are those of matmul_q.wgsl (a thread 4 weight rows and 1 or, TILE, 4 tokens; NORM, NORMW,
// SILU, GLU, ACC from include/matmul_out.wgsl); this kernel serves decode (T = 1) and prefill.
//
// Per group each thread sums, for its 4 rows, sum_k (q_k / 255) x_k through unpack4x8unorm (the
// cheapest decode on SwiftShader, as in matmul_q.wgsl) and, once for all 4 rows, sum_k x_k; then
//   acc += s * 255 * sum(q x / 255) + b * sum(x).
// Each weight is thus s q + b up to f32 roundings, not bit-exact; the sums are f32.
// BITS8: one word holds 4 codes (bytes, weight order), matching one vec4 of x. Else 4 bits: one
// word holds 8 codes, code i in bits 4i..: its low nibbles are weights 0, 2, 4, 6 and its high
// nibbles 1, 3, 5, 7 of the 8, so the two vec4s of x are split into even and odd lanes.
// Scales and biases: SB_F32 two words (scale, bias) a group; else one word, scale in the low half
// and bias in the high half, f16 or (SB_BF16) bf16.

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
  // Word offset of the scales, and words of scales a row.
  scaleBase: u32,
  scaleRowWords: u32,
  // vec4u of codes a group (4-bit: G / 32, 8-bit: G / 16).
  groupVecs: u32,
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

#if BITS8
// vec4s of x a vec4u of codes covers (16 weights).
const XV: u32 = 4u;
#else
const XV: u32 = 8u;
#endif

fn word(i: u32) -> u32 {
  return w[i >> 2u][i & 3u];
}

// (scale, bias) of the group whose scale word is i.
fn scaleBias(i: u32) -> vec2f {
#if SB_F32
  return vec2f(bitcast<f32>(word(i)), bitcast<f32>(word(i + 1u)));
#elif SB_BF16
  let u = word(i);
  return vec2f(bitcast<f32>(u << 16u), bitcast<f32>(u & 0xffff0000u));
#else
  return unpack2x16float(word(i));
#endif
}

// Norm weights at vec4 m (ones without NORMW).
fn gv(m: u32) -> vec4f {
#if NORMW
  return nw[m];
#else
  return vec4f(1.0);
#endif
}

// One vec4 of codes per row (the columns of cm) against x vec4 i of the thread's tokens (rows xr
// of x): s += x * cm, sx += x (after the norm weights), q += x^2 with NORM. 4-bit codes come as
// two matrices (low and high nibbles) against x vec4s i and i + 1, split into even and odd lanes.
#if TILE
fn xin(r: u32, i: u32, q: ptr<function, vec4f>) -> vec4f {
  let u = x[r + i];
#if NORM
  *q += u * u;
#endif
  return u * gv(i);
}
#if BITS8
fn mac(cm: mat4x4f, i: u32, xr: vec4u, s: ptr<function, mat4x4f>, sx: ptr<function, mat4x4f>, q: ptr<function, array<vec4f, 4>>) {
  let v0 = xin(xr.x, i, &(*q)[0]);
  let v1 = xin(xr.y, i, &(*q)[1]);
  let v2 = xin(xr.z, i, &(*q)[2]);
  let v3 = xin(xr.w, i, &(*q)[3]);
  (*s)[0] += v0 * cm;
  (*s)[1] += v1 * cm;
  (*s)[2] += v2 * cm;
  (*s)[3] += v3 * cm;
  (*sx)[0] += v0;
  (*sx)[1] += v1;
  (*sx)[2] += v2;
  (*sx)[3] += v3;
}
#else
fn mac(lo: mat4x4f, hi: mat4x4f, i: u32, xr: vec4u, s: ptr<function, mat4x4f>, sx: ptr<function, mat4x4f>, q: ptr<function, array<vec4f, 4>>) {
  let a0 = xin(xr.x, i, &(*q)[0]);
  let b0 = xin(xr.x, i + 1u, &(*q)[0]);
  let a1 = xin(xr.y, i, &(*q)[1]);
  let b1 = xin(xr.y, i + 1u, &(*q)[1]);
  let a2 = xin(xr.z, i, &(*q)[2]);
  let b2 = xin(xr.z, i + 1u, &(*q)[2]);
  let a3 = xin(xr.w, i, &(*q)[3]);
  let b3 = xin(xr.w, i + 1u, &(*q)[3]);
  (*s)[0] += vec4f(a0.x, a0.z, b0.x, b0.z) * lo + vec4f(a0.y, a0.w, b0.y, b0.w) * hi;
  (*s)[1] += vec4f(a1.x, a1.z, b1.x, b1.z) * lo + vec4f(a1.y, a1.w, b1.y, b1.w) * hi;
  (*s)[2] += vec4f(a2.x, a2.z, b2.x, b2.z) * lo + vec4f(a2.y, a2.w, b2.y, b2.w) * hi;
  (*s)[3] += vec4f(a3.x, a3.z, b3.x, b3.z) * lo + vec4f(a3.y, a3.w, b3.y, b3.w) * hi;
  (*sx)[0] += a0 + b0;
  (*sx)[1] += a1 + b1;
  (*sx)[2] += a2 + b2;
  (*sx)[3] += a3 + b3;
}
#endif
#else
#if BITS8
fn mac(cm: mat4x4f, i: u32, xr: u32, s: ptr<function, vec4f>, sx: ptr<function, vec4f>, q: ptr<function, vec4f>) {
  let u = x[xr + i];
#if NORM
  *q += u * u;
#endif
  let v = u * gv(i);
  *s += v * cm;
  *sx += v;
}
#else
fn mac(lo: mat4x4f, hi: mat4x4f, i: u32, xr: u32, s: ptr<function, vec4f>, sx: ptr<function, vec4f>, q: ptr<function, vec4f>) {
  let ua = x[xr + i];
  let ub = x[xr + i + 1u];
#if NORM
  *q += ua * ua + ub * ub;
#endif
  let a = ua * gv(i);
  let b = ub * gv(i + 1u);
  *s += vec4f(a.x, a.z, b.x, b.z) * lo + vec4f(a.y, a.w, b.y, b.w) * hi;
  *sx += a + b;
}
#endif
#endif

fn q8m(a0: u32, a1: u32, a2: u32, a3: u32) -> mat4x4f {
  return mat4x4f(unpack4x8unorm(a0), unpack4x8unorm(a1), unpack4x8unorm(a2), unpack4x8unorm(a3));
}
fn q4lo(a0: u32, a1: u32, a2: u32, a3: u32) -> mat4x4f {
  let k = 0x0F0F0F0Fu;
  return mat4x4f(unpack4x8unorm(a0 & k), unpack4x8unorm(a1 & k), unpack4x8unorm(a2 & k), unpack4x8unorm(a3 & k));
}
fn q4hi(a0: u32, a1: u32, a2: u32, a3: u32) -> mat4x4f {
  let k = 0x0F0F0F0Fu;
  return mat4x4f(unpack4x8unorm((a0 >> 4u) & k), unpack4x8unorm((a1 >> 4u) & k), unpack4x8unorm((a2 >> 4u) & k), unpack4x8unorm((a3 >> 4u) & k));
}

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
  let o = rs * params.rowVecs;
  let sb = params.scaleBase + rs * params.scaleRowWords;
  let xs = params.K / 4u;
#if TILE
  let t0 = tile * 4u;
  // Tokens past T repeat the last token (computed, never stored).
  let xr = vec4u(t0, min(t0 + 1u, T - 1u), min(t0 + 2u, T - 1u), min(t0 + 3u, T - 1u)) * xs;
  var acc = mat4x4f();
  // NORM: each token's running sums of x^2 (4 lanes, added up at the end).
  var sq = array<vec4f, 4>();
#else
  let t0 = tile;
  let xr = t0 * xs;
  var acc = vec4f(0.0);
  var sq = vec4f(0.0);
#endif
  let gv4 = params.groupVecs;
#if SB_F32
  let gw = 2u;
#else
  let gw = 1u;
#endif
  for (var g = 0u; g < params.groups; g++) {
    let sb0 = scaleBias(sb.x + g * gw);
    let sb1 = scaleBias(sb.y + g * gw);
    let sb2 = scaleBias(sb.z + g * gw);
    let sb3 = scaleBias(sb.w + g * gw);
#if TILE
    var s = mat4x4f();
    var sx = mat4x4f();
#else
    var s = vec4f(0.0);
    var sx = vec4f(0.0);
#endif
    for (var v = 0u; v < gv4; v++) {
      let qi = g * gv4 + v;
      let a0 = w[o.x + qi];
      let a1 = w[o.y + qi];
      let a2 = w[o.z + qi];
      let a3 = w[o.w + qi];
      let i = qi * XV;
#if BITS8
      mac(q8m(a0.x, a1.x, a2.x, a3.x), i, xr, &s, &sx, &sq);
      mac(q8m(a0.y, a1.y, a2.y, a3.y), i + 1u, xr, &s, &sx, &sq);
      mac(q8m(a0.z, a1.z, a2.z, a3.z), i + 2u, xr, &s, &sx, &sq);
      mac(q8m(a0.w, a1.w, a2.w, a3.w), i + 3u, xr, &s, &sx, &sq);
#else
      mac(q4lo(a0.x, a1.x, a2.x, a3.x), q4hi(a0.x, a1.x, a2.x, a3.x), i, xr, &s, &sx, &sq);
      mac(q4lo(a0.y, a1.y, a2.y, a3.y), q4hi(a0.y, a1.y, a2.y, a3.y), i + 2u, xr, &s, &sx, &sq);
      mac(q4lo(a0.z, a1.z, a2.z, a3.z), q4hi(a0.z, a1.z, a2.z, a3.z), i + 4u, xr, &s, &sx, &sq);
      mac(q4lo(a0.w, a1.w, a2.w, a3.w), q4hi(a0.w, a1.w, a2.w, a3.w), i + 6u, xr, &s, &sx, &sq);
#endif
    }
    let sc = vec4f(sb0.x, sb1.x, sb2.x, sb3.x) * 255.0;
    let bi = vec4f(sb0.y, sb1.y, sb2.y, sb3.y);
    let one = vec4f(1.0);
#if TILE
    acc[0] += s[0] * sc + bi * dot(sx[0], one);
    acc[1] += s[1] * sc + bi * dot(sx[1], one);
    acc[2] += s[2] * sc + bi * dot(sx[2], one);
    acc[3] += s[3] * sc + bi * dot(sx[3], one);
#else
    acc += s * sc + bi * dot(sx, one);
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
