// Index of the largest of n floats starting at element `offset` (relative to offset); ties go to
// the lowest index and NaN never wins (all NaN: 0). One workgroup: each thread scans a strided
// slice, then a tree reduction in workgroup memory.
struct Params { n: u32, offset: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> result: array<u32>;

override WG: u32 = 256;  // a power of two
const NONE = 0xffffffffu;

var<workgroup> bestVal: array<f32, WG>;
var<workgroup> bestIdx: array<u32, WG>;

fn isNan(v: f32) -> bool {
  // A bit test, so fast-math compilers cannot fold it away as `v != v` may be.
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Whether candidate (v, i) beats (bv, bi); a NONE index is an empty slot.
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  if (i == NONE) {
    return false;
  }
  return bi == NONE || v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32) {
  var bv = 0.0;
  var bi = NONE;
  for (var i = li; i < params.n; i += WG) {
    let v = logits[params.offset + i];
    // Indices rise within a thread, so a strict comparison keeps the lowest index on ties.
    if (!isNan(v) && (bi == NONE || v > bv)) {
      bv = v;
      bi = i;
    }
  }
  bestVal[li] = bv;
  bestIdx[li] = bi;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (li < stride) {
      let ov = bestVal[li + stride];
      let oi = bestIdx[li + stride];
      if (better(ov, oi, bestVal[li], bestIdx[li])) {
        bestVal[li] = ov;
        bestIdx[li] = oi;
      }
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    result[0] = select(bestIdx[0], 0u, bestIdx[0] == NONE);
  }
}
