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
// Variants: F16 (packed f16 weights), VEC4 (K a multiple of 4 for f32, of 8 for f16: vector loads;
// otherwise scalar loads), TILE (4 tokens a thread), ACC (y += instead of y =). QUANT selects the
// q8/q4 kernel, the first half of this file; the f32/f16 kernel is the second.
//
// Fusions, so a layer needs fewer dispatches (both halves):
//   NORM: RMSNorm in front. The product's input is x[t, k] * g[k] (NORMW: g at binding 4, f32 [K];
//     without, g was folded into W's columns when it was stored) and
//     each token's sums are scaled at the end by r_t = 1 / sqrt(mean_k x[t, k]^2 + eps). Every
//     thread reads its token's whole row of x anyway, so it sums the squares on the way: no
//     barrier, no second pass over x.
//   SILU: y = silu(product). GLU: gated SiLU over row pairs: weight rows 2p and 2p + 1 are a gate
//     row and its up row, and y[t, p] = silu(gate . x) * (up . x), N / 2 outputs. A thread then
//     owns pairs p and p + WG (4 rows, as usual), so the gate and its up meet in one thread.
// Both end in store4 (shared, at the end of this file).
#if QUANT
// Quantized weights (q8 / q4, groups of 32 along K with one f16 scale each; layout in
// kernels/quant.ts). w is the chunk's buffer as vec4<u32>: rowVecs vec4s of quants a row (q8: 2 a
// group, 4 int8 a word; q4: 1 a group, llama.cpp's nibble order), then from scaleBase the scales,
// scaleRowVecs vec4s (8 halves) a row. Each thread owns 4 rows and 1 or (TILE) 4 tokens as above.
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

// Scale of group i (0..7) from a vec4 of 8 halves, low half first.
fn half(v: vec4u, i: u32) -> f32 {
  return unpack2x16float(v[i >> 1u] >> ((i & 1u) << 4u)).x;
}

#if Q4
// q / 255 of the low (lo) or high (hi) nibbles of the 4 bytes of a word.
fn q4lo(u: u32) -> vec4f {
  return unpack4x8unorm(u & 0x0F0F0F0Fu);
}
fn q4hi(u: u32) -> vec4f {
  return unpack4x8unorm((u >> 4u) & 0x0F0F0F0Fu);
}
// Group scale factors: acc += s * (255 d) - (8 d) * sum(x).
const QSCALE: f32 = 255.0;
#else
// q / 127 of the 4 int8 of a word, byte 0 first.
fn q8(u: u32) -> vec4f {
  return unpack4x8snorm(u);
}
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
#else
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
@group(0) @binding(2) var<storage, read> w: array<vec4u>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
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
  let p = w[i];
  return mat2x4f(vec4f(unpack2x16float(p.x), unpack2x16float(p.y)), vec4f(unpack2x16float(p.z), unpack2x16float(p.w)));
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
  return unpack2x16float(w[i]);
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
    let h0 = unpack2x16float(w[o0 + steps]).x;
    let h1 = unpack2x16float(w[o1 + steps]).x;
    let h2 = unpack2x16float(w[o2 + steps]).x;
    let h3 = unpack2x16float(w[o3 + steps]).x;
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
#endif

// Shared by both kernels.

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

// a * sigmoid(a), with exp never overflowing: exp(-|a|) is in (0, 1] (as in silu_gate.wgsl).
fn silu(a: vec4f) -> vec4f {
  let e = exp(-abs(a));
  return a * select(e / (1.0 + e), 1.0 / (1.0 + e), a >= vec4f(0.0));
}

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
