// The built-in Llama-2 tokenizer: known encodings, decoding, streaming, long inputs, and agreement with
// llama-tokenizer-js (the package that carries the vocabulary) on random text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import llamaTokenizerJs from 'llama-tokenizer-js';
import { defaultTokenizer } from '../../src/tokenizer/default.ts';
import { StreamDecoder, type Tokenizer } from '../../src/tokenizer/tokenizer.ts';
import { rng } from '../helpers.ts';

const tok = defaultTokenizer();

const ALPHABET = [...'abcdefghijklmnopqrstuvwxyzABCXYZ      \n\t0123456789.,;:\'"!?-()[]{}<>#@&*/\\éüñçßà日本語中文한국어Привет🦙😀👍🏽Ꙋ\u0301\u200d'];
const WORDS = ['the', ' the', 'Hello', ' world', '  ', '   ', '        ', 'token', 'izer', 'ing', 'tion', '\n\n', 'def ', 'return', 'http://', '.com', '2024', ' über', '<s>', '</s>'];

function randomText(r: () => number, maxLen: number): string {
  let s = '';
  const n = Math.floor(r() * maxLen);
  for (let i = 0; i < n; i++) s += r() < 0.35 ? WORDS[Math.floor(r() * WORDS.length)] : ALPHABET[Math.floor(r() * ALPHABET.length)];
  return s;
}

/** Text decoded by a StreamDecoder fed one id at a time, and each push's output. */
function streamed(t: Tokenizer, ids: readonly number[], opts = {}): { text: string; pieces: string[] } {
  const d = new StreamDecoder(t, opts);
  const pieces = ids.map((id) => d.push(id));
  pieces.push(d.flush());
  return { text: pieces.join(''), pieces };
}

test('the data is Llama-2 vocabulary', () => {
  assert.equal(tok.vocabSize, 32000);
  assert.deepEqual([tok.unkId, tok.bosId, tok.eosId], [0, 1, 2]);
  assert.equal(tok.idToPiece(0), '<unk>');
  assert.equal(tok.idToPiece(1), '<s>');
  assert.equal(tok.idToPiece(2), '</s>');
  assert.equal(tok.idToPiece(3), '<0x00>');
  assert.equal(tok.idToPiece(13), '<0x0A>');
  assert.equal(tok.idToPiece(258), '<0xFF>');
  assert.equal(tok.idToPiece(259), '\u2581\u2581');
  assert.equal(tok.idToPiece(450), '\u2581The');
  assert.equal(tok.idToPiece(29871), '\u2581');
  assert.equal(tok.pieceToId('\u2581Hello'), 15043);
  assert.equal(tok.pieceToId('no such piece'), undefined);
  assert.ok(tok.isSpecial(0) && tok.isSpecial(1) && tok.isSpecial(2) && !tok.isSpecial(3) && !tok.isSpecial(450));
  assert.throws(() => tok.idToPiece(32000), /token id 32000 is outside the vocabulary/);
  assert.throws(() => tok.idToPiece(-1), /outside the vocabulary/);
  assert.equal(defaultTokenizer(), tok, 'built once, then shared');
});

test('known Llama-2 encodings', () => {
  const cases: [string, number[]][] = [
    ['Hello world', [1, 15043, 3186]],
    [' Hello', [1, 29871, 15043]],
    ['\n', [1, 29871, 13]],
    [' \n', [1, 259, 13]],
    ['Hello\n\nworld', [1, 15043, 13, 13, 11526]],
    ['2024', [1, 29871, 29906, 29900, 29906, 29946]],
    ['The year 2024', [1, 450, 1629, 29871, 29906, 29900, 29906, 29946]],
    ['é', [1, 904]],
    ['日本語', [1, 29871, 30325, 30346, 30968]],
    ['😀', [1, 29871, 243, 162, 155, 131]],
    ['镇', [1, 29871, 30411]],
    ['🦙Ꙋ', [1, 29871, 243, 162, 169, 156, 237, 156, 141]],
    ['Ꙋ🦙', [1, 29871, 237, 156, 141, 243, 162, 169, 156]],
    ['grabbed', [1, 2646, 1327, 287]],
    [' grabbed', [1, 29871, 2646, 1327, 287]],
    ['           grabbed', [1, 9651, 2646, 1327, 287]],
    ['\ttabs\t\t\t\tout here', [1, 29871, 12, 21175, 12, 12, 12, 12, 449, 1244]],
    ['ax\n####\nboo', [1, 4853, 13, 4136, 13, 833, 29877]],
    ['a  b', [1, 263, 29871, 289]],
    ['   ', [1, 268]],
    ['<s>', [1, 529, 29879, 29958]],
    ['', [1]],
  ];
  for (const [text, ids] of cases) assert.deepEqual(tok.encode(text), ids, JSON.stringify(text));
  assert.deepEqual(tok.encode('Hello world', { addBos: false }), [15043, 3186]);
  assert.deepEqual(tok.encode('Hello world', { addEos: true }), [1, 15043, 3186, 2]);
  assert.deepEqual(tok.encode('', { addBos: false }), []);
});

test('a long mixed text matches llama-tokenizer-js', () => {
  const text =
    'The llama (/ˈlɑːmə/; 🦙Spanish pronunciation: [ˈʎama]) (Lama glama) is a domesticated South American camelid, ' +
    'widely used as a meat and pack animal by Andean cultures since the Pre-Columbian era. Llamas can learn simple tasks ' +
    'after a few repetitions. When using a pack, they can carry about 25 to 30% of their body weight for 8 to 13 km (5–8 miles).';
  const ids = tok.encode(text);
  assert.deepEqual(ids, llamaTokenizerJs.encode(text));
  assert.deepEqual(ids.slice(0, 20), [1, 450, 11148, 3304, 20374, 30176, 29880, 30426, 30215, 29885, 30184, 29914, 29936, 29871, 243, 162, 169, 156, 15495, 728]);
  assert.equal(tok.decode(ids), text);
});

test('agrees with llama-tokenizer-js on random text', () => {
  const r = rng(1234);
  for (let k = 0; k < 3000; k++) {
    const s = randomText(r, 30);
    if (s.length === 0) continue; // the package returns [] for '' (Llama-2 gives [1])
    assert.deepEqual(tok.encode(s), llamaTokenizerJs.encode(s), JSON.stringify(s));
  }
});

const TRICKY = [
  '',
  ' ',
  '  ',
  'Hello world',
  ' Hello world ',
  '   leading and trailing   ',
  'a\n\nb\r\nc\td',
  '\n',
  'é café naïve über Øresund',
  'e\u0301 (combining accent)',
  '日本語のテキスト、中文，한국어',
  'Привет, мир!',
  '😀👍🏽👨‍👩‍👧 flags 🇯🇵',
  '🦙Ꙋ🦙',
  '<s> </s> <unk> <0x0A> [INST] not special',
  '\uFEFFstarts with a byte order mark',
  '2024-01-02 12:34:56.789 1e-10 0x1F',
  'def f(x):\n    return x ** 2  # comment\n',
  '\u0000\u0001\u007f control chars',
  '\u{10FFFF}\u{1F9FF} high planes',
];

test('decode(encode(text)) round-trips', () => {
  for (const s of TRICKY) {
    const ids = tok.encode(s);
    assert.equal(tok.decode(ids), s, JSON.stringify(s));
    // Without bos nothing marks the dummy prefix: ask for it to be stripped.
    assert.equal(tok.decode(tok.encode(s, { addBos: false }), { stripLeadingSpace: true }), s, JSON.stringify(s));
  }
  const r = rng(99);
  for (let k = 0; k < 2000; k++) {
    const s = randomText(r, 40);
    assert.equal(tok.decode(tok.encode(s)), s, JSON.stringify(s));
  }
  // A lone surrogate has no UTF-8 form: it is encoded (and decodes) as U+FFFD.
  assert.equal(tok.decode(tok.encode('a\uD800b')), 'a\uFFFDb');
  // '▁' in the text is the vocabulary's space mark, as in SentencePiece: it decodes as a space.
  assert.equal(tok.decode(tok.encode('a\u2581b')), 'a b');
});

test('decode rules: leading space, special tokens, broken bytes', () => {
  const ids = tok.encode('Hello world'); // [1, 15043, 3186]
  assert.equal(tok.decode(ids), 'Hello world');
  // A continuation (no bos) keeps its leading space: it follows earlier text.
  assert.equal(tok.decode([15043, 3186]), ' Hello world');
  assert.equal(tok.decode([3186]), ' world');
  assert.equal(tok.decode([3186], { stripLeadingSpace: true }), 'world');
  assert.equal(tok.decode(ids, { stripLeadingSpace: false }), ' Hello world');
  assert.equal(tok.decode([1, 29871, 15043]), ' Hello', 'only one space is the dummy prefix');
  // Special tokens are skipped by default, printed on request.
  assert.equal(tok.decode([1, 15043, 3186, 2]), 'Hello world');
  assert.equal(tok.decode([1, 15043, 3186, 2], { skipSpecial: false }), '<s>Hello world</s>');
  assert.equal(tok.decode([0, 3186]), ' world');
  assert.equal(tok.decode([]), '');
  assert.equal(tok.decode([1]), '');
  // Byte tokens gather into UTF-8; an incomplete sequence becomes U+FFFD.
  assert.equal(tok.decode([1, 29871, 243, 162, 155, 131]), '😀');
  assert.equal(tok.decode([243, 162, 155]), '\uFFFD');
  assert.equal(tok.decode([243, 162, 155, 3186]), '\uFFFD world');
  assert.equal(tok.decode([13, 13]), '\n\n');
  assert.throws(() => tok.decode([1, 40000]), /token id 40000 is outside the vocabulary/);
});

test('StreamDecoder emits exactly what decode() does, never a broken character', () => {
  const texts = [...TRICKY];
  const r = rng(5);
  for (let k = 0; k < 300; k++) texts.push(randomText(r, 40));
  for (const s of texts) {
    for (const ids of [tok.encode(s), tok.encode(s, { addBos: false }), tok.encode(s, { addEos: true })]) {
      for (const opts of [{}, { skipSpecial: false }, { stripLeadingSpace: true }]) {
        const { text, pieces } = streamed(tok, ids, opts);
        assert.equal(text, tok.decode(ids, opts), `${JSON.stringify(s)} ${JSON.stringify(opts)}`);
        for (const p of pieces) {
          assert.ok(!/[\uD800-\uDBFF]$/.test(p), `a push returned half a surrogate pair for ${JSON.stringify(s)}`);
          if (!s.includes('\uD800')) assert.ok(!p.includes('\uFFFD'), `a push returned U+FFFD for ${JSON.stringify(s)}`);
        }
      }
    }
  }
});

test('StreamDecoder holds an emoji split over byte tokens until it is complete', () => {
  const ids = tok.encode('Hi 😀!'); // ▁Hi ▁ <F0> <9F> <98> <80> !
  assert.deepEqual(ids, [1, 6324, 29871, 243, 162, 155, 131, 29991]);
  const d = new StreamDecoder(tok);
  assert.deepEqual(ids.map((id) => d.push(id)), ['', 'Hi', ' ', '', '', '', '😀', '!']);
  assert.equal(d.flush(), '');
  // Reused after flush; a continuation (first id not bos) keeps its leading space.
  assert.deepEqual([15043, 3186].map((id) => d.push(id)), [' Hello', ' world']);
  // A stream cut inside a character: flush() gives what decode() gives.
  assert.equal(d.flush(), '');
  assert.deepEqual([243, 162].map((id) => d.push(id)), ['', '']);
  assert.equal(d.flush(), '\uFFFD');
  // A byte sequence interrupted by a normal token.
  const e = new StreamDecoder(tok);
  const out = [243, 162, 3186].map((id) => e.push(id)).join('') + e.flush();
  assert.equal(out, tok.decode([243, 162, 3186]));
});

// No clock here (the machine is shared): tokenizer speed belongs to the bench harness.
test('long text (2000 and 100k characters) encodes deterministically and round-trips', () => {
  let text = '';
  const r = rng(77);
  while (text.length < 2000) text += randomText(r, 60) + ' The quick brown fox jumps over the lazy dog. ';
  text = text.slice(0, 2000);
  const ids = tok.encode(text);
  assert.ok(ids.length > 300, `${ids.length} tokens for 2000 characters`);
  assert.deepEqual(tok.encode(text), ids);
  assert.equal(tok.decode(ids), text);
  assert.equal(tok.decode(tok.encode(text.repeat(50))), text.repeat(50));
});
