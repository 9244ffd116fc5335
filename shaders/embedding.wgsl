// out[t, :] = table[ids[t], :] for the tokens whose id falls in this chunk's rows
// [rowStart, rowStart + rows). Ids at or past the end of the table get zeros, written by the last
// chunk. The table is f32, or (F16) f16 packed two per u32, low half first, rowWords words a row.
// One thread copies one word of one token's row.
struct Params {
  T: u32,
  cols: u32,
  rowWords: u32,
  rowStart: u32,
  rows: u32,
  // 1 for the table's last chunk: it also zeroes tokens whose id is past the table.
  last: u32,
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override WG: u32 = 64;

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
}
