// RMSNorm over the rows of x: y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w.
// One workgroup per row; each thread sums the squares of a strided slice, the partial sums meet
// in workgroup memory (every thread adds them up itself: one barrier, no tree), then each thread
// scales its own slice. VEC4 (dim % 4 == 0) moves four floats per load; otherwise scalars.
struct Params { rows: u32, dim: u32, eps: f32 }
@group(0) @binding(0) var<uniform> params: Params;

#if VEC4
alias V = vec4f;
const LANES = 4u;
fn sq(v: V) -> f32 { return dot(v, v); }
#else
alias V = f32;
const LANES = 1u;
fn sq(v: V) -> f32 { return v * v; }
#endif

@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read> w: array<V>;
@group(0) @binding(3) var<storage, read_write> y: array<V>;

override WG: u32 = 64;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = wg.x + wg.y * nwg.x;
  // `row` is uniform across the workgroup, so this early return keeps barriers uniform.
  if (row >= params.rows) {
    return;
  }
  let n = params.dim / LANES;
  let base = row * n;
  var ss = 0.0;
  for (var i = li; i < n; i += WG) {
    ss += sq(x[base + i]);
  }
  partial[li] = ss;
  workgroupBarrier();
  var total = 0.0;
  for (var j = 0u; j < WG; j++) {
    total += partial[j];
  }
  let inv = inverseSqrt(total / f32(params.dim) + params.eps);
  for (var i = li; i < n; i += WG) {
    y[base + i] = x[base + i] * inv * w[i];
  }
}
