// The benchmark's prompt, shared by the Node harness, the llama.cpp peer and the demo's benchmark
// page so that every figure is taken on the same ids. Browser-safe (no node: imports).

/** Deterministic prompt ids: bos, then pseudo-random ids from the ordinary vocabulary. */
export function promptIds(length: number, vocab: number, bos = 1): number[] {
  const ids = [bos];
  let s = 0x1234567;
  // Ids 0-2 are the special tokens (unk, bos, eos) of OpenELM's Llama-2 vocabulary.
  const lo = Math.min(3, vocab - 1);
  const hi = Math.min(vocab, 32000);
  while (ids.length < length) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    ids.push(lo + ((s >>> 8) % (hi - lo)));
  }
  return ids.slice(0, length);
}
