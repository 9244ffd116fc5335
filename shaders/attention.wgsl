// Grouped-query causal attention over a key/value cache, for prefill and decode alike.
// q and out are [T, numQ, hd]; kCache and vCache are [numKv, maxContext, hd]. Query t sits at
// absolute position first + t and attends keys 0 ..= first + t; query head h reads KV head
// h / group. Scores are scaled by params.scale (1/sqrt(hd) times log2(e), so exp2 is exp).
//
// One workgroup per (query token, head). Its threads split the keys (thread i takes keys i,
// i + WG, ...) and each runs an online softmax over its keys: a running max m, sum l and weighted
// value accumulator acc. The partials are then merged in workgroup memory: the maximum M over the
// threads, each thread rescales by exp(m - M), the sums add up, and the accumulators are summed
// CH vectors at a time (so workgroup memory stays at WG * CH vectors whatever hd is).
// No [T, T] or [T, keys] score matrix is ever stored.
//
// HV, the number of vectors per head row (hd / 4 with VEC4, else hd / 2), is a const that
// kernels/attention.ts puts in front of this source, so private arrays fit the head exactly. The
// wrapper also unrolls every `for (var d = 0u; d < HV; d++)` loop (their bodies must not use
// braces): with constant indices the private arrays live in registers, about twice as fast on
// SwiftShader, and real GPU compilers would unroll these fixed-count loops anyway.
//
// KV_F16: the caches hold f16, two per u32 (low half first), as qkv_prepare writes them with
// KV_F16; loadK/loadV unpack one V at the same index an f32 cache would use. Arithmetic stays f32.
struct Params {
  tokens: u32,
  numQ: u32,
  group: u32,
  maxContext: u32,
  scale: f32,
}
struct Position { first: u32 }

#if VEC4
alias V = vec4f;
#else
alias V = vec2f;
#endif

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<V>;
#if KV_F16
#if VEC4
@group(0) @binding(2) var<storage, read> kCache: array<vec2u>;
@group(0) @binding(3) var<storage, read> vCache: array<vec2u>;
fn unpackV(w: vec2u) -> V { return V(unpack2x16float(w.x), unpack2x16float(w.y)); }
#else
@group(0) @binding(2) var<storage, read> kCache: array<u32>;
@group(0) @binding(3) var<storage, read> vCache: array<u32>;
fn unpackV(w: u32) -> V { return unpack2x16float(w); }
#endif
fn loadK(i: u32) -> V { return unpackV(kCache[i]); }
fn loadV(i: u32) -> V { return unpackV(vCache[i]); }
#else
@group(0) @binding(2) var<storage, read> kCache: array<V>;
@group(0) @binding(3) var<storage, read> vCache: array<V>;
fn loadK(i: u32) -> V { return kCache[i]; }
fn loadV(i: u32) -> V { return vCache[i]; }
#endif
@group(0) @binding(4) var<uniform> position: Position;
@group(0) @binding(5) var<storage, read_write> out: array<V>;

override WG: u32 = 64;
override CH: u32 = 4;
const LOWEST = -3.4028234e38;

var<workgroup> partMax: array<f32, WG>;
var<workgroup> partSum: array<f32, WG>;
var<workgroup> partAcc: array<V, WG * CH>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let wid = wg.x + wg.y * nwg.x;
  // Uniform across the workgroup, so returning here keeps the barriers below uniform.
  if (wid >= params.tokens * params.numQ) {
    return;
  }
  let t = wid / params.numQ;
  let h = wid % params.numQ;
  let keys = min(position.first + t + 1u, params.maxContext);
  let kvBase = (h / params.group) * params.maxContext * HV;

  var qv: array<V, HV>;
  for (var d = 0u; d < HV; d++) {
    qv[d] = q[wid * HV + d] * params.scale;
  }
  var acc: array<V, HV>;
  var m = LOWEST;
  var l = 0.0;
  for (var j = li; j < keys; j += WG) {
    let row = kvBase + j * HV;
    var s = 0.0;
    for (var d = 0u; d < HV; d++) {
      s += dot(qv[d], loadK(row + d));
    }
    // Branch-free update (threads of a SIMD group take different branches otherwise).
    let mNew = max(m, s);
    let c = exp2(m - mNew);
    let p = exp2(s - mNew);
    l = l * c + p;
    for (var d = 0u; d < HV; d++) {
      acc[d] = acc[d] * c + p * loadV(row + d);
    }
    m = mNew;
  }

  // Merge the per-thread partials. Threads without keys (l == 0) contribute nothing.
  partMax[li] = m;
  workgroupBarrier();
  var mMax = LOWEST;
  for (var i = 0u; i < WG; i++) {
    mMax = max(mMax, partMax[i]);
  }
  let f = select(0.0, exp2(m - mMax), l > 0.0);
  partSum[li] = l * f;
  workgroupBarrier();
  var total = 0.0;
  for (var i = 0u; i < WG; i++) {
    total += partSum[i];
  }
  let inv = 1.0 / total;
  let dst = wid * HV;
  for (var r = 0u; r < HV; r += CH) {
    for (var c = 0u; c < CH; c++) {
      if (r + c < HV) {
        partAcc[li * CH + c] = acc[r + c] * f;
      }
    }
    workgroupBarrier();
    if (li < CH && r + li < HV) {
      var sum = V(0.0);
      for (var i = 0u; i < WG; i++) {
        sum += partAcc[i * CH + li];
      }
      out[dst + r + li] = sum * inv;
    }
    workgroupBarrier();
  }
}
