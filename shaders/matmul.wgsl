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
}
@group(0) @binding(0) var<uniform> params: Params;
#if VEC4
@group(0) @binding(1) var<storage, read> x: array<vec4f>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(2) var<storage, read> w: array<vec4u>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

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
// the running x sums.
#if TILE
#if Q4
fn mac(m: mat4x4f, i: u32, xr: vec4u, s: ptr<function, mat4x4f>, xs: ptr<function, mat4x4f>) {
  let v0 = xv(xr.x, i);
  let v1 = xv(xr.y, i);
  let v2 = xv(xr.z, i);
  let v3 = xv(xr.w, i);
  (*s)[0] += v0 * m;
  (*s)[1] += v1 * m;
  (*s)[2] += v2 * m;
  (*s)[3] += v3 * m;
  (*xs)[0] += v0;
  (*xs)[1] += v1;
  (*xs)[2] += v2;
  (*xs)[3] += v3;
}
#else
fn mac(m: mat4x4f, i: u32, xr: vec4u, s: ptr<function, mat4x4f>) {
  (*s)[0] += xv(xr.x, i) * m;
  (*s)[1] += xv(xr.y, i) * m;
  (*s)[2] += xv(xr.z, i) * m;
  (*s)[3] += xv(xr.w, i) * m;
}
#endif
#else
#if Q4
fn mac(m: mat4x4f, i: u32, xr: u32, s: ptr<function, vec4f>, xs: ptr<function, vec4f>) {
  let v = xv(xr, i);
  *s += v * m;
  *xs += v;
}
#else
fn mac(m: mat4x4f, i: u32, xr: u32, s: ptr<function, vec4f>) {
  *s += xv(xr, i) * m;
}
#endif
#endif

fn store(t: u32, n: u32, v: f32) {
  let i = t * params.yStride + params.yOffset + n;
#if ACC
  y[i] = y[i] + v;
#else
  y[i] = v;
#endif
}

fn store4(t: u32, n0: u32, v: vec4f) {
  let N = params.N;
  store(t, n0, v.x);
  if (n0 + WG < N) { store(t, n0 + WG, v.y); }
  if (n0 + 2u * WG < N) { store(t, n0 + 2u * WG, v.z); }
  if (n0 + 3u * WG < N) { store(t, n0 + 3u * WG, v.w); }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let lin = wg.x + wg.y * nwg.x;
  let tile = lin % params.tiles;
  let n0 = (lin / params.tiles) * (4u * WG) + li;
  let N = params.N;
  let T = params.T;
  if (n0 >= N) {
    return;
  }
  // Rows past N repeat the last row (computed, never stored).
  let r1 = min(n0 + WG, N - 1u);
  let r2 = min(n0 + 2u * WG, N - 1u);
  let r3 = min(n0 + 3u * WG, N - 1u);
  let rv = params.rowVecs;
  let o0 = n0 * rv;
  let o1 = r1 * rv;
  let o2 = r2 * rv;
  let o3 = r3 * rv;
  let sv = params.scaleRowVecs;
  let p0 = params.scaleBase + n0 * sv;
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
#else
  let t0 = tile;
  let xr = t0 * xs;
  var acc = vec4f(0.0);
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
#else
    var s = vec4f(0.0);
#endif
    let m = 8u * g;
#if Q4
#if TILE
    var sx = mat4x4f();
#else
    var sx = vec4f(0.0);
#endif
    let b0 = w[o0 + g];
    let b1 = w[o1 + g];
    let b2 = w[o2 + g];
    let b3 = w[o3 + g];
    // Word j: low nibbles are weights 4j.., high nibbles 16 + 4j.. of the group.
    mac(mat4x4f(q4lo(b0.x), q4lo(b1.x), q4lo(b2.x), q4lo(b3.x)), m, xr, &s, &sx);
    mac(mat4x4f(q4hi(b0.x), q4hi(b1.x), q4hi(b2.x), q4hi(b3.x)), m + 4u, xr, &s, &sx);
    mac(mat4x4f(q4lo(b0.y), q4lo(b1.y), q4lo(b2.y), q4lo(b3.y)), m + 1u, xr, &s, &sx);
    mac(mat4x4f(q4hi(b0.y), q4hi(b1.y), q4hi(b2.y), q4hi(b3.y)), m + 5u, xr, &s, &sx);
    mac(mat4x4f(q4lo(b0.z), q4lo(b1.z), q4lo(b2.z), q4lo(b3.z)), m + 2u, xr, &s, &sx);
    mac(mat4x4f(q4hi(b0.z), q4hi(b1.z), q4hi(b2.z), q4hi(b3.z)), m + 6u, xr, &s, &sx);
    mac(mat4x4f(q4lo(b0.w), q4lo(b1.w), q4lo(b2.w), q4lo(b3.w)), m + 3u, xr, &s, &sx);
    mac(mat4x4f(q4hi(b0.w), q4hi(b1.w), q4hi(b2.w), q4hi(b3.w)), m + 7u, xr, &s, &sx);
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
    mac(mat4x4f(q8(a0.x), q8(a1.x), q8(a2.x), q8(a3.x)), m, xr, &s);
    mac(mat4x4f(q8(a0.y), q8(a1.y), q8(a2.y), q8(a3.y)), m + 1u, xr, &s);
    mac(mat4x4f(q8(a0.z), q8(a1.z), q8(a2.z), q8(a3.z)), m + 2u, xr, &s);
    mac(mat4x4f(q8(a0.w), q8(a1.w), q8(a2.w), q8(a3.w)), m + 3u, xr, &s);
    let e0 = w[o0 + 2u * g + 1u];
    let e1 = w[o1 + 2u * g + 1u];
    let e2 = w[o2 + 2u * g + 1u];
    let e3 = w[o3 + 2u * g + 1u];
    mac(mat4x4f(q8(e0.x), q8(e1.x), q8(e2.x), q8(e3.x)), m + 4u, xr, &s);
    mac(mat4x4f(q8(e0.y), q8(e1.y), q8(e2.y), q8(e3.y)), m + 5u, xr, &s);
    mac(mat4x4f(q8(e0.z), q8(e1.z), q8(e2.z), q8(e3.z)), m + 6u, xr, &s);
    mac(mat4x4f(q8(e0.w), q8(e1.w), q8(e2.w), q8(e3.w)), m + 7u, xr, &s);
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
  store4(t0, n0, acc[0]);
  if (t0 + 1u < T) { store4(t0 + 1u, n0, acc[1]); }
  if (t0 + 2u < T) { store4(t0 + 2u, n0, acc[2]); }
  if (t0 + 3u < T) { store4(t0 + 3u, n0, acc[3]); }
#else
  store4(t0, n0, acc);
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
#endif
#endif

fn store(t: u32, n: u32, v: f32) {
  let i = t * params.yStride + params.yOffset + n;
#if ACC
  y[i] = y[i] + v;
#else
  y[i] = v;
#endif
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let lin = wg.x + wg.y * nwg.x;
  // Token tiles vary fastest, so neighbouring workgroups read the same weight rows.
  let tile = lin % params.tiles;
  let n0 = (lin / params.tiles) * (4u * WG) + li;
  let N = params.N;
  let T = params.T;
  if (n0 >= N) {
    return;
  }
  let n1 = n0 + WG;
  let n2 = n0 + 2u * WG;
  let n3 = n0 + 3u * WG;
  let steps = params.K / KSTEP;
#if VEC4
  let ws = params.rowWords / 4u;
  let xs = params.K / 4u;
#else
  let ws = params.rowWords;
  let xs = params.K;
#endif
  // Offsets of the 4 rows, in elements of w.
  let o0 = n0 * ws;
  let o1 = min(n1, N - 1u) * ws;
  let o2 = min(n2, N - 1u) * ws;
  let o3 = min(n3, N - 1u) * ws;
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
  for (var i = 0u; i < steps; i++) {
    let w0 = wl(o0 + i);
    let w1 = wl(o1 + i);
    let w2 = wl(o2 + i);
    let w3 = wl(o3 + i);
    let v0 = xl(x0, i);
    a00 += dp(w0, v0); a10 += dp(w1, v0); a20 += dp(w2, v0); a30 += dp(w3, v0);
#if TILE
    let v1 = xl(x1, i);
    a01 += dp(w0, v1); a11 += dp(w1, v1); a21 += dp(w2, v1); a31 += dp(w3, v1);
    let v2 = xl(x2, i);
    a02 += dp(w0, v2); a12 += dp(w1, v2); a22 += dp(w2, v2); a32 += dp(w3, v2);
    let v3 = xl(x3, i);
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
    let u0 = x[x0 + k];
    a00 += h0 * u0; a10 += h1 * u0; a20 += h2 * u0; a30 += h3 * u0;
#if TILE
    let u1 = x[x1 + k];
    a01 += h0 * u1; a11 += h1 * u1; a21 += h2 * u1; a31 += h3 * u1;
    let u2 = x[x2 + k];
    a02 += h0 * u2; a12 += h1 * u2; a22 += h2 * u2; a32 += h3 * u2;
    let u3 = x[x3 + k];
    a03 += h0 * u3; a13 += h1 * u3; a23 += h2 * u3; a33 += h3 * u3;
#endif
  }
#endif
#endif
  let in1 = n1 < N;
  let in2 = n2 < N;
  let in3 = n3 < N;
  store(t0, n0, a00);
  if (in1) { store(t0, n1, a10); }
  if (in2) { store(t0, n2, a20); }
  if (in3) { store(t0, n3, a30); }
#if TILE
  if (t0 + 1u < T) {
    store(t0 + 1u, n0, a01);
    if (in1) { store(t0 + 1u, n1, a11); }
    if (in2) { store(t0 + 1u, n2, a21); }
    if (in3) { store(t0 + 1u, n3, a31); }
  }
  if (t0 + 2u < T) {
    store(t0 + 2u, n0, a02);
    if (in1) { store(t0 + 2u, n1, a12); }
    if (in2) { store(t0 + 2u, n2, a22); }
    if (in3) { store(t0 + 2u, n3, a32); }
  }
  if (t0 + 3u < T) {
    store(t0 + 3u, n0, a03);
    if (in1) { store(t0 + 3u, n1, a13); }
    if (in2) { store(t0 + 3u, n2, a23); }
    if (in3) { store(t0 + 3u, n3, a33); }
  }
#endif
}
#endif
