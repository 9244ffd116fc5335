fn isNan(v: f32) -> bool {
  // A bit test, so fast-math compilers cannot fold it away as `v != v` may be.
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}
