// Next-token choice with Hugging Face generation semantics, in one workgroup, so a decode step
// reads back a 4-byte id. Variants: greedy (SAMPLE off) and sampling (SAMPLE on); DIST (with
// SAMPLE) also writes the kept weights (e for kept tokens, 0 elsewhere: the distribution the draw
// used, unnormalised) to `dist` at params.distOffset, and leaves `seen` to the caller (speculative
// sampling compares these distributions; its rows must not see their own draws).
//
// Every step is defined down to the float32 rounding so that kernels/sample.ts `sampleRef` can
// reproduce the chosen id on the CPU:
//   x   = canon(logit); if seen[i] != 0 (and penalty != 1): x = canon(x < 0 ? x * p : x / p)
//   greedy: lowest index of the largest x, NaN never wins (all NaN: 0).
//   sampling: y = NaN ? -inf : canon(x / T); key(y) is its order-preserving u32 image.
//     m = max y; e = (y == m) ? 1 : expNeg(y - m) (our own exp from + and *, see below).
//     top-k: Kk = largest key K with count(key >= K) >= k (the k-th largest value; ties kept).
//     Z(K) = sum of e over key >= K, each thread summing its strided slice (i = li, li + WG, ...)
//            in increasing i, then a fixed tree over the WG partials (s = WG/2 .. 1).
//     top-p: Kp = largest K in [Kk, key(m)] with Z(K) >= fl(top_p * Z(Kk)); kept: key >= Kp.
//     draw: r = fl(u * total) where total folds WG contiguous chunk sums (chunk c holds ids
//           [c*C, c*C + C), C = ceil(n / WG), each summed in increasing id) in chunk order; the
//           chunk is the first with a positive sum whose running total passes r; inside it the id is
//           the first kept one with e > 0 whose running total (from the chunk's start total) passes
//           r, or else the chunk's last such id. (All of that is inverse CDF in increasing id order.)
// top-k is a radix select (four passes of 8-bit digits counted in workgroup atomics). top-p tests
// four candidate keys per pass (vec4 lanes) and snaps the range to keys that occur, so it takes
// about 2-8 passes; the answer does not depend on how the search proceeds, only on Z.
// `canon` maps -0 and subnormals to +0 (GPUs may flush subnormals; Hugging Face treats -0 == +0).
struct Params {
  n: u32,
  offset: u32,
  topK: u32,        // 0: off (the wrapper turns k >= n off)
  flags: u32,       // 1: repetition penalty, 2: top-k, 4: top-p
  temperature: f32,
  topP: f32,
  penalty: f32,
  distOffset: u32,  // DIST: element index of this row in `dist`
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> seen: array<u32>;
@group(0) @binding(3) var<storage, read_write> result: array<u32>;
#if SAMPLE
@group(0) @binding(4) var<storage, read> random: array<f32>;
// keys at [0, n), the bits of e at [n, 2n)
@group(0) @binding(5) var<storage, read_write> scratch: array<u32>;
#if DIST
@group(0) @binding(6) var<storage, read_write> dist: array<f32>;
#endif
#endif

// Fixed, not an override: the summation order (and so the exact result) depends on it.
const WG: u32 = 256u;
const NONE = 0xffffffffu;
const NEG_INF_KEY = 0x007fffffu;  // toKey(-inf): NaN logits are treated as -inf when sampling

#include is_nan

fn canon(v: f32) -> f32 {
  if ((bitcast<u32>(v) & 0x7f800000u) == 0u) {
    return 0.0;
  }
  return v;
}

fn penalised(i: u32) -> f32 {
  var x = canon(logits[params.offset + i]);
  if ((params.flags & 1u) != 0u && seen[i] != 0u) {
    let p = params.penalty;
    x = canon(select(x / p, x * p, x < 0.0));
  }
  return x;
}

#if SAMPLE
// Order-preserving image of a non-NaN float as a u32.
fn toKey(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn fromKey(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// exp(x) for x <= 0 from correctly rounded + and * only (Cephes expf), so that the CPU can repeat
// it bit for bit; 0 below -86 (the result would be within a factor 4 of the subnormals).
fn expNeg(x: f32) -> f32 {
  if (x < -86.0) {
    return 0.0;
  }
  let k = floor(x * 1.44269504088896341 + 0.5);
  var r = x - k * 0.693359375;
  r = r - k * -2.12194440e-4;
  var p = 1.9875691500e-4;
  p = p * r + 1.3981999507e-3;
  p = p * r + 8.3334519073e-3;
  p = p * r + 4.1665795894e-2;
  p = p * r + 1.6666665459e-1;
  p = p * r + 5.0000001201e-1;
  let y = p * (r * r) + r + 1.0;
  // 2^k for k in [-125, 0]: exact.
  return y * bitcast<f32>(u32(i32(k) + 127) << 23u);
}

var<workgroup> kmaxA: atomic<u32>;
var<workgroup> kminA: atomic<u32>;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> radix: vec2<u32>;  // (key prefix found so far, count of keys above that prefix)
var<workgroup> snapMin: array<atomic<u32>, 4>;
var<workgroup> snapMax: array<atomic<u32>, 4>;
var<workgroup> wgRange: vec2<u32>;
var<workgroup> redF: array<vec4<f32>, WG>;
var<workgroup> wgTarget: f32;    // top-p's target mass
// Tokens at or above this key are kept (top-k and top-p's cut); set once by every thread.
var<private> keepKey: u32;
#include draw_chunk

// Four rising candidates in (lo, hi]: evenly spaced values (logits are spread linearly, so this
// takes fewer rounds than splitting the key range), or keys when an end is infinite. Any rising
// candidates give the same answer; these only make the search short.
fn candidates(lo: u32, hi: u32) -> vec4<u32> {
  let a = fromKey(lo);
  let w = fromKey(hi) - a;
  if ((bitcast<u32>(w) & 0x7f800000u) != 0x7f800000u) {
    let v = vec4<f32>(a) + vec4<f32>(w) * vec4<f32>(0.2, 0.4, 0.6, 0.8);
    let c = vec4<u32>(toKey(v.x), toKey(v.y), toKey(v.z), toKey(v.w));
    return clamp(c, vec4<u32>(lo + 1u), vec4<u32>(hi));
  }
  let span = hi - lo;
  let q = span / 5u + 1u;
  return vec4<u32>(lo + min(q, span), lo + min(2u * q, span), lo + min(3u * q, span), lo + min(4u * q, span));
}

// A fixed tree over the per-thread partials (part of the defined summation order).
fn treeF(li: u32, v: vec4<f32>) -> vec4<f32> {
  redF[li] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) {
      redF[li] += redF[li + s];
    }
    workgroupBarrier();
  }
  return redF[0];
}

fn weight(i: u32) -> f32 {
  return bitcast<f32>(scratch[params.n + i]);
}

// The draw's weights: the kept tokens' (draw_chunk.wgsl).
fn drawWeight(i: u32) -> f32 {
  return select(0.0, weight(i), scratch[i] >= keepKey);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32) {
  let n = params.n;
  if (li == 0u) {
    atomicStore(&kmaxA, 0u);
    atomicStore(&kminA, NONE);
    radix = vec2<u32>(0u, 0u);
  }
  if (li < 4u) {
    atomicStore(&snapMin[li], NONE);
    atomicStore(&snapMax[li], 0u);
  }
  workgroupBarrier();
  // Penalty, temperature, keys; the range of keys.
  var kmaxT = 0u;
  var kminT = NONE;
  for (var i = li; i < n; i += WG) {
    let x = penalised(i);
    var k = NEG_INF_KEY;
    if (!isNan(x)) {
      k = toKey(canon(x / params.temperature));
    }
    scratch[i] = k;
    kmaxT = max(kmaxT, k);
    kminT = min(kminT, k);
  }
  atomicMax(&kmaxA, kmaxT);
  atomicMin(&kminA, kminT);
  workgroupBarrier();
  let kmax = atomicLoad(&kmaxA);
  let kmin = atomicLoad(&kminA);
  let m = fromKey(kmax);

  // top-k: the key of the k-th largest value, by radix select over 8-bit digits (integer counts,
  // so exact in any order).
  var kk = kmin;
  if ((params.flags & 2u) != 0u) {
    for (var d = 0u; d < 4u; d++) {
      let shift = 24u - 8u * d;
      let mask = ~(0xffffffffu >> (8u * d));  // the digits already chosen
      let sel = workgroupUniformLoad(&radix);
      atomicStore(&hist[li], 0u);
      workgroupBarrier();
      for (var i = li; i < n; i += WG) {
        let k = scratch[i];
        if ((k & mask) == sel.x) {
          atomicAdd(&hist[(k >> shift) & 0xffu], 1u);
        }
      }
      workgroupBarrier();
      if (li == 0u) {
        var above = sel.y;
        var digit = 0u;
        for (var b = 255u; b > 0u; b--) {
          let c = atomicLoad(&hist[b]);
          if (above + c >= params.topK) {
            digit = b;
            break;
          }
          above += c;
        }
        radix = vec2<u32>(sel.x | (digit << shift), above);
      }
    }
    kk = workgroupUniformLoad(&radix).x;
  }

  // Weights relative to the max over the top-k set, and their sum Z(kk).
  var z = 0.0;
  for (var i = li; i < n; i += WG) {
    let k = scratch[i];
    var e = 0.0;
    if (k >= kk) {
      e = select(expNeg(fromKey(k) - m), 1.0, k == kmax);
    }
    scratch[n + i] = bitcast<u32>(e);
    z += e;
  }

  // top-p: the largest K in [kk, kmax] with Z(K) >= fl(top_p * Z(kk)). Z(K) is monotone in K (float
  // addition is), so the K that pass form a prefix and the answer is a key some token has. Each
  // round tests four candidates and snaps the new range to the nearest keys that occur.
  var kp = kk;
  if ((params.flags & 4u) != 0u) {
    let zk = treeF(li, vec4<f32>(z, 0.0, 0.0, 0.0)).x;
    if (li == 0u) {
      wgTarget = params.topP * zk;
      wgRange = vec2<u32>(kk, kmax);
    }
    loop {
      let rg = workgroupUniformLoad(&wgRange);
      if (rg.x >= rg.y) {
        break;
      }
      let c = candidates(rg.x, rg.y);
      var acc = vec4<f32>(0.0);
      var lo = vec4<u32>(NONE);  // smallest key >= each candidate
      var hi = vec4<u32>(0u);    // largest key < each candidate
      for (var i = li; i < n; i += WG) {
        let k = vec4<u32>(scratch[i]);
        let ge = k >= c;
        acc += select(vec4<f32>(0.0), vec4<f32>(weight(i)), ge);
        lo = min(lo, select(vec4<u32>(NONE), k, ge));
        hi = max(hi, select(k, vec4<u32>(0u), ge));
      }
      for (var j = 0u; j < 4u; j++) {
        atomicMin(&snapMin[j], lo[j]);
        atomicMax(&snapMax[j], hi[j]);
      }
      let total = treeF(li, acc);
      if (li == 0u) {
        var j = 0u;
        while (j < 4u && total[j] >= wgTarget) {
          j++;
        }
        var l = rg.x;
        var h = rg.y;
        if (j > 0u) {
          l = atomicLoad(&snapMin[j - 1u]);
        }
        if (j < 4u) {
          h = atomicLoad(&snapMax[j]);
        }
        wgRange = vec2<u32>(l, h);
        for (var t = 0u; t < 4u; t++) {
          atomicStore(&snapMin[t], NONE);
          atomicStore(&snapMax[t], 0u);
        }
      }
    }
    kp = workgroupUniformLoad(&wgRange).x;
  }

  // Inverse CDF in increasing id order: contiguous chunks, one per thread. Keys and weights were
  // written by other threads (strided), hence the storage barrier.
  storageBarrier();
  let chunk = (n + WG - 1u) / WG;
  let start = min(li * chunk, n);
  let end = min(start + chunk, n);
  keepKey = kp;
  var cs = 0.0;
  for (var i = start; i < end; i++) {
    // Adding 0 for the tokens not kept leaves the sum as it was (every weight is >= +0).
    let e = drawWeight(i);
    cs += e;
#if DIST
    dist[params.distOffset + i] = e;
#endif
  }
  chunkSum[li] = cs;
  workgroupBarrier();
  if (li == 0u) {
    pickChunk(random[0]);
  }
  workgroupBarrier();
  if (li == pick) {
    let id = scanChunk(start, end);
    result[0] = id;
#if DIST
#else
    seen[id] = 1u;
#endif
  }
  if (pick == NONE && li == 0u) {
    // Unreachable (the max always has weight 1); keep the output defined anyway.
    result[0] = 0u;
#if DIST
#else
    seen[0] = 1u;
#endif
  }
}

#else
#include argmax_reduce

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32) {
  var bv = 0.0;
  var bi = NONE;
  for (var i = li; i < params.n; i += WG) {
    let v = penalised(i);
    // Indices rise within a thread, so a strict comparison keeps the lowest index on ties.
    if (!isNan(v) && (bi == NONE || v > bv)) {
      bv = v;
      bi = i;
    }
  }
  argmaxReduce(li, bv, bi);
  if (li == 0u) {
    let id = select(bestIdx[0], 0u, bestIdx[0] == NONE);
    result[0] = id;
    seen[id] = 1u;
  }
}
#endif
