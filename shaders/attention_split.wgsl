// Split-K attention: the keys of each query row are cut into up to S splits, one workgroup per
// (row, head, split) computes a partial softmax over its split, and a second entry point combines
// the partials. For decode (one query row) the single-pass kernel runs only numQ workgroups and
// each walks the whole context; here numQ * S workgroups share it, so a long context fills the GPU.
//
// Layouts as attention.wgsl: q and out [rows, numQ, hd]; kCache and vCache [numKv, maxContext, hd]
// (KV_F16: f16 two per u32). Row r of this dispatch is query row rowBase + r, at absolute position
// first + rowBase + r; it attends keys 0 ..= that position. A dispatch covers `tokens` rows: the
// scratch holds partials for that many, so a longer pass is several dispatch pairs (rowBase).
//
// The partition depends only on the row's key count, never on how many rows the dispatch has, so a
// verify row gets bit for bit what a one-token step at its position gets:
//   chunk = max(minKeys, ceil(keys / S)), active splits = ceil(keys / chunk).
// Inside a split the work is attention.wgsl's, over keys start .. end instead of 0 .. keys: thread
// i takes keys start + i, start + i + WG, ... with an online softmax, and the threads merge in
// workgroup memory. A split stores its unnormalised accumulator (HV vectors), then (max, sum) in
// the first two lanes of one more vector. The combine rescales split s by exp2(max_s - M).
// With one active split (keys <= minKeys) the result is computed exactly as attention.wgsl does.
//
// HV is put in front of this source and `for (var d = 0u; d < HV; d++)` loops unrolled, as for
// attention.wgsl (kernels/attention.ts explains why).
struct Params {
  tokens: u32,
  rowBase: u32,
  numQ: u32,
  group: u32,
  maxContext: u32,
  splits: u32,
  minKeys: u32,
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
// [tokens, numQ, splits, HV + 1]: each split's accumulator, then (max, sum, ...).
@group(0) @binding(5) var<storage, read_write> scratch: array<V>;
@group(0) @binding(6) var<storage, read_write> out: array<V>;

override WG: u32 = 64;
override CH: u32 = 4;
const LOWEST = -3.4028234e38;

var<workgroup> partMax: array<f32, WG>;
var<workgroup> partSum: array<f32, WG>;
var<workgroup> partAcc: array<V, WG * CH>;

struct Split {
  keys: u32,
  chunk: u32,
  count: u32,
}

fn splitOf(row: u32) -> Split {
  let keys = min(position.first + row + 1u, params.maxContext);
  let chunk = max(params.minKeys, (keys + params.splits - 1u) / params.splits);
  return Split(keys, chunk, (keys + chunk - 1u) / chunk);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let wid = wg.x + wg.y * nwg.x;
  let rh = wid / params.splits;
  let s = wid % params.splits;
  // Both conditions are uniform across the workgroup, so returning keeps the barriers uniform.
  if (rh >= params.tokens * params.numQ) {
    return;
  }
  let t = rh / params.numQ;
  let h = rh % params.numQ;
  let sp = splitOf(params.rowBase + t);
  if (s >= sp.count) {
    return;
  }
  let start = s * sp.chunk;
  let end = min(start + sp.chunk, sp.keys);
  let kvBase = (h / params.group) * params.maxContext * HV;
  let qRow = (params.rowBase * params.numQ + rh) * HV;

  var qv: array<V, HV>;
  for (var d = 0u; d < HV; d++) {
    qv[d] = q[qRow + d] * params.scale;
  }
  var acc: array<V, HV>;
  var m = LOWEST;
  var l = 0.0;
  for (var j = start + li; j < end; j += WG) {
    let row = kvBase + j * HV;
    var sc = 0.0;
    for (var d = 0u; d < HV; d++) {
      sc += dot(qv[d], loadK(row + d));
    }
    let mNew = max(m, sc);
    let c = exp2(m - mNew);
    let p = exp2(sc - mNew);
    l = l * c + p;
    for (var d = 0u; d < HV; d++) {
      acc[d] = acc[d] * c + p * loadV(row + d);
    }
    m = mNew;
  }

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
  let dst = (rh * params.splits + s) * (HV + 1u);
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
      scratch[dst + r + li] = sum;
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    var stats = V(0.0);
    stats.x = mMax;
    stats.y = total;
    scratch[dst + HV] = stats;
  }
}

// One thread per (row, head, vector of the head): merges the row's active splits.
@compute @workgroup_size(WG)
fn combine(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let id = (wg.x + wg.y * nwg.x) * WG + li;
  if (id >= params.tokens * params.numQ * HV) {
    return;
  }
  let rh = id / HV;
  let d = id % HV;
  let sp = splitOf(params.rowBase + rh / params.numQ);
  let base = rh * params.splits * (HV + 1u);
  var mMax = LOWEST;
  for (var s = 0u; s < sp.count; s++) {
    mMax = max(mMax, scratch[base + s * (HV + 1u) + HV].x);
  }
  var total = 0.0;
  var sum = V(0.0);
  for (var s = 0u; s < sp.count; s++) {
    let at = base + s * (HV + 1u);
    let w = exp2(scratch[at + HV].x - mMax);
    total += scratch[at + HV].y * w;
    sum += scratch[at + d] * w;
  }
  out[(params.rowBase * params.numQ + rh) * HV + d] = sum * (1.0 / total);
}
