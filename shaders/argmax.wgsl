// Index of the largest of n floats starting at element `offset` (relative to offset); ties go to
// the lowest index and NaN never wins (all NaN: 0). One workgroup: each thread scans a strided
// slice, then a tree reduction in workgroup memory.
struct Params { n: u32, offset: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> result: array<u32>;

override WG: u32 = 256;  // a power of two
const NONE = 0xffffffffu;

#include is_nan
#include argmax_reduce

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
  argmaxReduce(li, bv, bi);
  if (li == 0u) {
    result[0] = select(bestIdx[0], 0u, bestIdx[0] == NONE);
  }
}
