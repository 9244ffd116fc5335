// Attention-input preparation, fused: splits a fused projection [T, (nq + 2 nkv) * hd] into query,
// key and value heads; optionally RMS-normalises query and key heads over hd (one weight vector
// for all query heads, one for all key heads); applies rotate-half RoPE to queries and keys from a
// cos/sin table [positions, hd/2, 2]; writes queries to q [T, nq, hd] and keys / values into the
// caches [nkv, maxContext, hd] at row position + t.
// One thread per (token, head): the rows are short (hd <= 256) and per-thread loops are cheap.
// KV_F16: the caches hold f16, two per u32 (low half first); a key's pair of elements 2i, 2i + 1
// may straddle the rotate-half boundary (hd / 2 odd), so each element is computed on its own by
// ropedKey, with the f32 path's arithmetic, then the pair is packed.
struct Params {
  tokens: u32,
  numQ: u32,
  numKv: u32,
  headDim: u32,
  maxContext: u32,
  normalize: u32,
  eps: f32,
}
struct Position { first: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> qNorm: array<f32>;
@group(0) @binding(3) var<storage, read> kNorm: array<f32>;
@group(0) @binding(4) var<storage, read> rope: array<f32>;
@group(0) @binding(5) var<uniform> position: Position;
@group(0) @binding(6) var<storage, read_write> q: array<f32>;
#if KV_F16
@group(0) @binding(7) var<storage, read_write> kCache: array<u32>;
@group(0) @binding(8) var<storage, read_write> vCache: array<u32>;
#else
@group(0) @binding(7) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(8) var<storage, read_write> vCache: array<f32>;
#endif

override WG: u32 = 64;

#if KV_F16
// Element i of a key head after the norm (scale inv, weights kNorm when norm) and RoPE at table.
fn ropedKey(src: u32, i: u32, inv: f32, norm: bool, table: u32) -> f32 {
  let half = params.headDim / 2u;
  let j = i % half;
  var a = qkv[src + j] * inv;
  var b = qkv[src + j + half] * inv;
  if (norm) {
    a *= kNorm[j];
    b *= kNorm[j + half];
  }
  let c = rope[table + 2u * j];
  let s = rope[table + 2u * j + 1u];
  return select(a * c - b * s, b * c + a * s, i >= half);
}
#endif

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let id = (wg.x + wg.y * nwg.x) * WG + li;
  let heads = params.numQ + 2u * params.numKv;
  if (id >= params.tokens * heads) {
    return;
  }
  let t = id / heads;
  let h = id % heads;
  let p = position.first + t;
  // Rows past the cache have nowhere to go; the caller checks positions before dispatching.
  if (p >= params.maxContext) {
    return;
  }
  let hd = params.headDim;
  let src = id * hd;

  if (h >= params.numQ + params.numKv) {
    let dst = ((h - params.numQ - params.numKv) * params.maxContext + p) * hd;
#if KV_F16
    for (var i = 0u; i < hd; i += 2u) {
      vCache[(dst + i) / 2u] = pack2x16float(vec2f(qkv[src + i], qkv[src + i + 1u]));
    }
#else
    for (var i = 0u; i < hd; i++) {
      vCache[dst + i] = qkv[src + i];
    }
#endif
    return;
  }

  let isQ = h < params.numQ;
  let norm = params.normalize != 0u;
  var inv = 1.0;
  if (norm) {
    var ss = 0.0;
    for (var i = 0u; i < hd; i++) {
      let v = qkv[src + i];
      ss += v * v;
    }
    inv = inverseSqrt(ss / f32(hd) + params.eps);
  }
  let half = hd / 2u;
  let table = p * hd;  // p * half * 2
  let dst = select((h - params.numQ) * params.maxContext + p, t * params.numQ + h, isQ) * hd;
#if KV_F16
  if (!isQ) {
    for (var i = 0u; i < hd; i += 2u) {
      kCache[(dst + i) / 2u] = pack2x16float(vec2f(ropedKey(src, i, inv, norm, table), ropedKey(src, i + 1u, inv, norm, table)));
    }
    return;
  }
#endif
  for (var i = 0u; i < half; i++) {
    var a = qkv[src + i] * inv;
    var b = qkv[src + i + half] * inv;
    if (norm) {
      a *= select(kNorm[i], qNorm[i], isQ);
      b *= select(kNorm[i + half], qNorm[i + half], isQ);
    }
    let c = rope[table + 2u * i];
    let s = rope[table + 2u * i + 1u];
    let lo = a * c - b * s;
    let hi = b * c + a * s;
    if (isQ) {
      q[dst + i] = lo;
      q[dst + i + half] = hi;
    } else {
#if KV_F16
      // Keys were written above.
#else
      kCache[dst + i] = lo;
      kCache[dst + i + half] = hi;
#endif
    }
  }
}
