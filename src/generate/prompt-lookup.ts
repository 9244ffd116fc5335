// Prompt lookup (n-gram) drafting with Hugging Face's rules: the candidate source is the prompt
// plus everything generated so far; try the longest n-gram first (max_matching_ngram_size down to
// 1), take the earliest occurrence of the sequence's suffix whose continuation is not empty, and
// propose up to `maxTokens` tokens that followed it.

/**
 * Draft tokens that followed the earliest earlier occurrence of `seq`'s last n tokens (n from
 * `maxNgram` down to 1), at most `maxTokens` of them, cut after the first `eosId` (an accepted
 * eos ends generation in the same pass). Empty when nothing matches.
 */
export function promptLookupCandidates(seq: readonly number[], maxTokens: number, maxNgram: number, eosId?: number): number[] {
  const len = seq.length;
  for (let n = Math.min(maxNgram, len - 1); n >= 1; n--) {
    // Windows start at 0..len-n; the suffix's own window (start len-n) has nothing after it.
    for (let start = 0; start + n < len; start++) {
      let match = true;
      for (let i = 0; i < n; i++) {
        if (seq[start + i] !== seq[len - n + i]) {
          match = false;
          break;
        }
      }
      if (!match) continue;
      const from = start + n;
      const out = seq.slice(from, Math.min(from + maxTokens, len));
      const eos = eosId === undefined ? -1 : out.indexOf(eosId);
      return eos >= 0 ? out.slice(0, eos + 1) : out;
    }
  }
  return [];
}
