// Half i (0..7) of a vec4u of 8 packed f16 values, low half of each word first (q8/q4 scales).
fn half(v: vec4u, i: u32) -> f32 {
  return unpack2x16float(v[i >> 1u] >> ((i & 1u) << 4u)).x;
}
