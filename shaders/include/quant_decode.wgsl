// Decoding of q8/q4 weight words (layout in src/weights/quant.ts) with the unpack builtins, by far
// the cheapest decode on SwiftShader (its variable vector shifts, unpack4xI8 included, cost ~2x).
// q / 255 of the low (lo) or high (hi) nibbles of the 4 bytes of a q4 word.
fn q4lo(u: u32) -> vec4f {
  return unpack4x8unorm(u & 0x0F0F0F0Fu);
}
fn q4hi(u: u32) -> vec4f {
  return unpack4x8unorm((u >> 4u) & 0x0F0F0F0Fu);
}
// q / 127 of the 4 int8 of a q8 word, byte 0 first.
fn q8(u: u32) -> vec4f {
  return unpack4x8snorm(u);
}
