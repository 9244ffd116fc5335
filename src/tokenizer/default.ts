// The built-in Llama-2 tokenizer, needing no download: the vocabulary and merges carried by the
// npm package llama-tokenizer-js (the same data as Llama-2's tokenizer.json), run by our own
// SentencePieceBpeTokenizer. Only the package's data is used, not its encoder.
import llamaTokenizerData from 'llama-tokenizer-js';
import { SentencePieceBpeTokenizer } from './tokenizer.ts';

export const DEFAULT_TOKENIZER_SOURCE = 'built-in Llama-2 tokenizer (llama-tokenizer-js)';

let cached: SentencePieceBpeTokenizer | undefined;

/** Llama-2's 32000-piece tokenizer (unk 0, bos 1, eos 2). Built once, then shared. */
export function defaultTokenizer(): SentencePieceBpeTokenizer {
  cached ??= buildDefault();
  return cached;
}

function buildDefault(): SentencePieceBpeTokenizer {
  const src = DEFAULT_TOKENIZER_SOURCE;
  const pieces = llamaTokenizerData.vocabById;
  // Checks that the package still carries Llama-2's vocabulary.
  const expect: [number, string][] = [
    [0, '<unk>'],
    [1, '<s>'],
    [2, '</s>'],
    [3, '<0x00>'],
    [13, '<0x0A>'],
    [258, '<0xFF>'],
    [450, '\u2581The'],
    [15043, '\u2581Hello'],
    [29871, '\u2581'],
  ];
  if (!Array.isArray(pieces) || pieces.length !== 32000) throw new Error(`${src}: expected 32000 pieces, found ${Array.isArray(pieces) ? pieces.length : 'none'}`);
  for (const [id, piece] of expect) {
    if (pieces[id] !== piece) throw new Error(`${src}: piece ${id} is ${JSON.stringify(pieces[id])}, expected ${JSON.stringify(piece)} (not Llama-2's vocabulary)`);
  }
  // The package keeps merges as a Map "left right" -> priority (lower first), built in rank order.
  const ids = llamaTokenizerData.vocabByString;
  const merges: (readonly [number, number])[] = [];
  let last = -Infinity;
  for (const [key, prio] of llamaTokenizerData.merges) {
    const sp = key.indexOf(' ');
    const a = ids.get(key.slice(0, sp));
    const b = ids.get(key.slice(sp + 1));
    if (sp < 0 || a === undefined || b === undefined || !(prio > last)) throw new Error(`${src}: cannot read merge ${JSON.stringify(key)}`);
    last = prio;
    merges.push([a, b]);
  }
  return new SentencePieceBpeTokenizer({
    pieces,
    merges,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    byteFallback: true,
    addDummyPrefix: true,
    escapeWhitespace: true,
    source: src,
  });
}
