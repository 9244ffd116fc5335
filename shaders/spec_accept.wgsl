// Speculative sampling's acceptance rule, in one workgroup, so a verification reads back 8 bytes.
// p: the main model's kept weights at the k + 1 verified positions ([k + 1, n], unnormalised, as
// the sampler's DIST output); q: the draft model's at the k drafted positions ([k, n]); draft j
// was drawn from q row j. For j = 0.. accept draft j with probability min(1, P(d) / Q(d)) (P, Q
// normalised), i.e. while r_j * q[d] * Zp < p[d] * Zq (no division, so the CPU repeats it bit for
// bit). At the first rejection draw the next token from max(P - Q, 0) (scaled by Zp * Zq:
// max(p * Zq - q * Zp, 0)); after k acceptances from p row k. r_j = random[j], the draw's u = random[k].
// Row sums: strided per thread then a fixed tree; the draw: inverse CDF over contiguous chunks, as
// the sampler's (kernels/sample.ts drawRef).
struct Params {
  n: u32,
  k: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> p: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> drafts: array<u32>;
@group(0) @binding(4) var<storage, read> random: array<f32>;
// [0]: drafts accepted, [1]: the token after them
@group(0) @binding(5) var<storage, read_write> result: array<u32>;
// [n]: the weights of the final draw
@group(0) @binding(6) var<storage, read_write> resid: array<f32>;

// Fixed: the summation order (and so the exact result) depends on it.
const WG: u32 = 256u;
const NONE = 0xffffffffu;

var<workgroup> part: array<f32, WG>;
var<workgroup> verdict: u32;
var<workgroup> chosenId: u32;
#include draw_chunk

// The draw's weights (draw_chunk.wgsl).
fn drawWeight(i: u32) -> f32 {
  return resid[i];
}

fn tree(li: u32, v: f32) -> f32 {
  part[li] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) {
      part[li] = part[li] + part[li + s];
    }
    workgroupBarrier();
  }
  let total = part[0];
  workgroupBarrier();
  return total;
}

fn sumP(li: u32, base: u32) -> f32 {
  var acc = 0.0;
  for (var i = li; i < params.n; i += WG) {
    acc += p[base + i];
  }
  return tree(li, acc);
}

fn sumQ(li: u32, base: u32) -> f32 {
  var acc = 0.0;
  for (var i = li; i < params.n; i += WG) {
    acc += q[base + i];
  }
  return tree(li, acc);
}

// Inverse CDF of resid at u over this thread's chunk [start, end); NONE when every weight is 0.
fn draw(li: u32, start: u32, end: u32, u: f32) -> u32 {
  var cs = 0.0;
  for (var i = start; i < end; i++) {
    cs += resid[i];
  }
  chunkSum[li] = cs;
  workgroupBarrier();
  if (li == 0u) {
    pickChunk(u);
    chosenId = NONE;
  }
  workgroupBarrier();
  if (li == pick) {
    chosenId = scanChunk(start, end);
  }
  return workgroupUniformLoad(&chosenId);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32) {
  let n = params.n;
  let k = params.k;
  let chunk = (n + WG - 1u) / WG;
  let start = min(li * chunk, n);
  let end = min(start + chunk, n);
  var row = k;
  var rejected = false;
  var zp = 0.0;
  var zq = 0.0;
  for (var j = 0u; j < k; j++) {
    zp = sumP(li, j * n);
    zq = sumQ(li, j * n);
    if (li == 0u) {
      let d = drafts[j];
      verdict = select(0u, 1u, random[j] * q[j * n + d] * zp < p[j * n + d] * zq);
    }
    if (workgroupUniformLoad(&verdict) == 0u) {
      row = j;
      rejected = true;
      break;
    }
  }
  if (rejected) {
    for (var i = start; i < end; i++) {
      resid[i] = max(p[row * n + i] * zq - q[row * n + i] * zp, 0.0);
    }
  } else {
    for (var i = start; i < end; i++) {
      resid[i] = p[row * n + i];
    }
  }
  var id = draw(li, start, end, random[k]);
  if (id == NONE) {
    // P and Q agree to rounding: the residual vanished (its mass was ~0); draw from P.
    for (var i = start; i < end; i++) {
      resid[i] = p[row * n + i];
    }
    id = draw(li, start, end, random[k]);
  }
  if (li == 0u) {
    result[0] = row;
    result[1] = id;
  }
}
