// Inverse-CDF draw in increasing id order over WG contiguous chunks, one a thread (the sampler's and
// speculative acceptance's; kernels/sample.ts drawRef repeats it). The includer defines WG, NONE
// and drawWeight(i) (>= 0; 0 for ids that cannot be drawn). Each thread stores its chunk's sum of
// drawWeight in chunkSum[li] (summed in increasing id); after a barrier thread 0 runs
// pickChunk(u); after another the thread li == pick runs scanChunk over its chunk.
var<workgroup> chunkSum: array<f32, WG>;
var<workgroup> pick: u32;        // chosen chunk, NONE if every sum is 0
var<workgroup> pickBase: f32;    // running total before that chunk
var<workgroup> pickGoal: f32;    // r = fl(u * total)

// The first chunk with a positive sum whose running total passes r = u * total, or else the last
// chunk with a positive sum.
fn pickChunk(u: f32) {
  var total = 0.0;
  for (var t = 0u; t < WG; t++) {
    total += chunkSum[t];
  }
  let r = u * total;
  var run = 0.0;
  var chosen = NONE;
  var base = 0.0;
  for (var t = 0u; t < WG; t++) {
    let s = chunkSum[t];
    let after = run + s;
    if (s > 0.0) {
      chosen = t;
      base = run;
      if (after > r) {
        break;
      }
    }
    run = after;
  }
  pick = chosen;
  pickBase = base;
  pickGoal = r;
}

// In the picked chunk [start, end): the first id with positive weight whose running total passes
// r, or else the chunk's last such id (NONE if none).
fn scanChunk(start: u32, end: u32) -> u32 {
  var run = pickBase;
  var id = NONE;
  for (var i = start; i < end; i++) {
    let e = drawWeight(i);
    if (e > 0.0) {
      run += e;
      id = i;
      if (run > pickGoal) {
        break;
      }
    }
  }
  return id;
}
