// out[t, :] = table[ids[t], :] for the tokens whose id falls in this chunk's rows
// [rowStart, rowStart + rows). Ids at or past the end of the table get zeros, written by the last
// chunk. The table is f32, or (F16) f16 packed two per u32, low half first, rowWords words a row,
// or (QUANT) q8 / (Q4) q4 quants, rowWords words a row, with the f16 group scales from word
// scaleOffset, scaleRowWords words a row (layout in kernels/quant.ts).
// Or (AFFINE) MLX's affine codes, 4-bit or (BITS8) 8-bit, first code in the low bits, with a
// scale and bias a group of groupSize from word scaleOffset (layout in src/weights/affine.ts):
// value = s * q + b.
// One thread copies one word of one token's row (q8: 4 values, q4: 8 values).
struct Params {
  T: u32,
  cols: u32,
  rowWords: u32,
  rowStart: u32,
  rows: u32,
  // 1 for the table's last chunk: it also zeroes tokens whose id is past the table.
  last: u32,
  scaleOffset: u32,
  scaleRowWords: u32,
#if AFFINE
  groupSize: u32,
#endif
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override WG: u32 = 64;

// Writes v to out[t, k .. k + 3], dropping values past cols (the zero padding of the last group).
fn put4(t: u32, k: u32, v: vec4f) {
  let cols = params.cols;
  let o = t * cols + k;
  if (k < cols) { out[o] = v.x; }
  if (k + 1u < cols) { out[o + 1u] = v.y; }
  if (k + 2u < cols) { out[o + 2u] = v.z; }
  if (k + 3u < cols) { out[o + 3u] = v.w; }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let g = (wg.x + wg.y * nwg.x) * WG + li;
  let t = g / params.rowWords;
  if (t >= params.T) {
    return;
  }
  let j = g % params.rowWords;
  let id = ids[t];
  let inChunk = id >= params.rowStart && id - params.rowStart < params.rows;
  let past = params.last != 0u && id >= params.rowStart + params.rows;
  if (!inChunk && !past) {
    return;
  }
#if AFFINE
#if BITS8
  let k0 = 4u * j;
#else
  let k0 = 8u * j;
#endif
  var word = 0u;
  // Scale and bias; zeros for ids past the table give zero rows.
  var sb = vec2f(0.0);
  if (inChunk) {
    let r = id - params.rowStart;
    word = table[r * params.rowWords + j];
#if SB_F32
    let si = params.scaleOffset + r * params.scaleRowWords + 2u * (k0 / params.groupSize);
    sb = vec2f(bitcast<f32>(table[si]), bitcast<f32>(table[si + 1u]));
#else
    let u = table[params.scaleOffset + r * params.scaleRowWords + k0 / params.groupSize];
#if SB_BF16
    sb = vec2f(bitcast<f32>(u << 16u), bitcast<f32>(u & 0xffff0000u));
#else
    sb = unpack2x16float(u);
#endif
#endif
  }
  let b4 = vec4u(word, word >> 8u, word >> 16u, word >> 24u);
#if BITS8
  put4(t, k0, vec4f(b4 & vec4u(255u)) * sb.x + sb.y);
#else
  // Byte i holds codes 2i (low nibble) and 2i + 1 (high nibble).
  let lo = vec4f(b4 & vec4u(15u)) * sb.x + sb.y;
  let hi = vec4f((b4 >> vec4u(4u)) & vec4u(15u)) * sb.x + sb.y;
  put4(t, k0, vec4f(lo.x, hi.x, lo.y, hi.y));
  put4(t, k0 + 4u, vec4f(lo.z, hi.z, lo.w, hi.w));
#endif
#elif QUANT
#if Q4
  let grp = j >> 2u;
  // Nibbles q XOR 8 = q - 8 as 4-bit two's complement; this default decodes to zeros.
  var word = 0x88888888u;
#else
  let grp = j >> 3u;
  var word = 0u;
#endif
  var d = 0.0;
  if (inChunk) {
    let r = id - params.rowStart;
    word = table[r * params.rowWords + j];
    let sw = table[params.scaleOffset + r * params.scaleRowWords + (grp >> 1u)];
    d = unpack2x16float(sw >> ((grp & 1u) << 4u)).x;
  }
#if Q4
  // Word j & 3 of its group: low nibbles are weights 4 (j & 3) .. of the group, high nibbles 16 more.
  let s = vec4i(bitcast<i32>(word ^ 0x88888888u));
  let k0 = 32u * grp + 4u * (j & 3u);
  put4(t, k0, vec4f((s << vec4u(28u, 20u, 12u, 4u)) >> vec4u(28u)) * d);
  put4(t, k0 + 16u, vec4f((s << vec4u(24u, 16u, 8u, 0u)) >> vec4u(28u)) * d);
#else
  put4(t, 4u * j, vec4f((vec4i(bitcast<i32>(word)) << vec4u(24u, 16u, 8u, 0u)) >> vec4u(24u)) * d);
#endif
#else
  var word = 0u;
  if (inChunk) {
    word = table[(id - params.rowStart) * params.rowWords + j];
  }
#if F16
  let v = unpack2x16float(word);
  let o = t * params.cols + 2u * j;
  out[o] = v.x;
  if (2u * j + 1u < params.cols) {
    out[o + 1u] = v.y;
  }
#else
  out[t * params.cols + j] = bitcast<f32>(word);
#endif
#endif
}
