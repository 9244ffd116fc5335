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

#if TILE
const TT: u32 = 4u;
#else
const TT: u32 = 1u;
#endif
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

// x (times the norm weights with NORMW) at vec4 m of token row xr; adds x^2 to q with NORM.
fn xin(xr: u32, m: u32, q: ptr<function, vec4f>) -> vec4f {
  let u = x[xr + m];
#if NORM
  *q += u * u;
#endif
#if NORMW
  return u * nw[m];
#else
  return u;
#endif
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
#else
  let t0 = tile;
#endif
  // Tokens past T repeat the last token (computed, never stored).
  var xr: array<u32, TT>;
  for (var t = 0u; t < TT; t++) {
    xr[t] = min(t0 + t, T - 1u) * xs;
  }
  var acc: array<vec4f, TT>;
  var sq: array<vec4f, TT>;
  let gv = params.groupVecs;
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
    // Explicitly zeroed: a bare `var` in the loop body kept the last group's sums on SwiftShader.
    var s = array<vec4f, TT>();
    var sx = array<vec4f, TT>();
    for (var v = 0u; v < gv; v++) {
      let qi = g * gv + v;
      let a0 = w[o.x + qi];
      let a1 = w[o.y + qi];
      let a2 = w[o.z + qi];
      let a3 = w[o.w + qi];
      for (var c = 0u; c < 4u; c++) {
#if BITS8
        let m = mat4x4f(unpack4x8unorm(a0[c]), unpack4x8unorm(a1[c]), unpack4x8unorm(a2[c]), unpack4x8unorm(a3[c]));
        let i = qi * XV + c;
        for (var t = 0u; t < TT; t++) {
          let u = xin(xr[t], i, &sq[t]);
          s[t] += u * m;
          sx[t] += u;
        }
#else
        let lo = mat4x4f(unpack4x8unorm(a0[c] & 0x0F0F0F0Fu), unpack4x8unorm(a1[c] & 0x0F0F0F0Fu), unpack4x8unorm(a2[c] & 0x0F0F0F0Fu), unpack4x8unorm(a3[c] & 0x0F0F0F0Fu));
        let hi = mat4x4f(unpack4x8unorm((a0[c] >> 4u) & 0x0F0F0F0Fu), unpack4x8unorm((a1[c] >> 4u) & 0x0F0F0F0Fu), unpack4x8unorm((a2[c] >> 4u) & 0x0F0F0F0Fu), unpack4x8unorm((a3[c] >> 4u) & 0x0F0F0F0Fu));
        let i = qi * XV + 2u * c;
        for (var t = 0u; t < TT; t++) {
          let u0 = xin(xr[t], i, &sq[t]);
          let u1 = xin(xr[t], i + 1u, &sq[t]);
          s[t] += vec4f(u0.x, u0.z, u1.x, u1.z) * lo + vec4f(u0.y, u0.w, u1.y, u1.w) * hi;
          sx[t] += u0 + u1;
        }
#endif
      }
    }
    let sc = vec4f(sb0.x, sb1.x, sb2.x, sb3.x) * 255.0;
    let bi = vec4f(sb0.y, sb1.y, sb2.y, sb3.y);
    for (var t = 0u; t < TT; t++) {
      acc[t] += s[t] * sc + bi * dot(sx[t], vec4f(1.0));
    }
  }
  for (var t = 0u; t < TT; t++) {
    if (t0 + t < T) {
      store4(t0 + t, n0, acc[t] * rnorm(sq[t]));
    }
  }
}
