// a * sigmoid(a), with exp never overflowing: exp(-|a|) is in (0, 1].
fn silu(a: vec4f) -> vec4f {
  let e = exp(-abs(a));
  return a * select(e / (1.0 + e), 1.0 / (1.0 + e), a >= vec4f(0.0));
}
