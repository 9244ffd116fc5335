// The workgroup's best (largest value, lowest index on ties) of each thread's best (v, i), by a tree
// in workgroup memory; a NONE index is an empty slot. The includer defines WG (a power of two) and
// NONE. After argmaxReduce every thread may read bestVal[0] / bestIdx[0] (NONE: all slots empty).
var<workgroup> bestVal: array<f32, WG>;
var<workgroup> bestIdx: array<u32, WG>;

// Whether candidate (v, i) beats (bv, bi).
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  if (i == NONE) {
    return false;
  }
  return bi == NONE || v > bv || (v == bv && i < bi);
}

fn argmaxReduce(li: u32, bv: f32, bi: u32) {
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
}
