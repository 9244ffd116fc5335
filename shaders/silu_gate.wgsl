// SiLU activation, optionally gated (GLU): with GLU, y is [T, 2 * dim] and
// out[t, i] = silu(y[t, i]) * y[t, dim + i] (the first half is the gate); without, y is [T, dim]
// and out[t, i] = silu(y[t, i]). One thread per output element.
struct Params { count: u32, dim: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

override WG: u32 = 64;

// a * sigmoid(a), with sigmoid written so that exp never overflows: exp(-|a|) is in (0, 1].
fn silu(a: f32) -> f32 {
  let e = exp(-abs(a));
  let sig = select(e / (1.0 + e), 1.0 / (1.0 + e), a >= 0.0);
  return a * sig;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wg.x + wg.y * nwg.x) * WG + li;
  if (i >= params.count) {
    return;
  }
#if GLU
  let t = i / params.dim;
  let src = i + t * params.dim;  // t * 2 * dim + (i - t * dim)
  out[i] = silu(y[src]) * y[src + params.dim];
#else
  out[i] = silu(y[i]);
#endif
}
