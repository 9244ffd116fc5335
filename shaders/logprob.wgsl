// Log-softmax gathered at one target per row, plus a greedy flag. One workgroup per row: each
// thread scans a strided slice for the max (and its lowest index), a tree reduction combines
// them, then a second strided pass sums exp(v - max) and a second reduction adds the sums.
// out[2r] = logit[t] - max - log(sum), out[2r + 1] = 1.0 when t is the argmax (ties: lowest index).
struct Params { n: u32, offset: u32, rows: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> result: array<f32>;

override WG: u32 = 256;  // a power of two
const NONE = 0xffffffffu;

#include argmax_reduce
var<workgroup> sums: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wg.x + wg.y * nwg.x;
  // Uniform control flow: every thread of a workgroup shares `row`, so the early return is uniform.
  if (row >= params.rows) {
    return;
  }
  let base = params.offset + row * params.n;
  var bv = 0.0;
  var bi = NONE;
  for (var i = li; i < params.n; i += WG) {
    let v = logits[base + i];
    // Indices rise within a thread, so a strict comparison keeps the lowest index on ties.
    if (bi == NONE || v > bv) {
      bv = v;
      bi = i;
    }
  }
  argmaxReduce(li, bv, bi);
  let m = bestVal[0];
  var s = 0.0;
  for (var i = li; i < params.n; i += WG) {
    s += exp(logits[base + i] - m);
  }
  sums[li] = s;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (li < stride) {
      sums[li] += sums[li + stride];
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    let t = targets[row];
    result[2u * row] = logits[base + t] - m - log(sums[0]);
    result[2u * row + 1u] = select(0.0, 1.0, t == bestIdx[0]);
  }
}
