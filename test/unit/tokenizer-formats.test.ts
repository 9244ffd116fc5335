// Tokenizer files: SentencePiece tokenizer.model (a ModelProto, written here by a tiny protobuf
// encoder), Hugging Face tokenizer.json, and finding them in a model folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import llamaTokenizerJs from 'llama-tokenizer-js';
import { DEFAULT_TOKENIZER_SOURCE, defaultTokenizer } from '../../src/tokenizer/default.ts';
import { tokenizerFromJson, tokenizerFromModelProto } from '../../src/tokenizer/load.ts';
import { loadTokenizer } from '../../src/tokenizer/node-load.ts';
import { PieceType, StreamDecoder } from '../../src/tokenizer/tokenizer.ts';

// ---- a minimal protobuf writer ----
function varint(v: number | bigint): number[] {
  let x = BigInt.asUintN(64, BigInt(v));
  const out: number[] = [];
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x > 0n) b |= 0x80;
    out.push(b);
  } while (x > 0n);
  return out;
}
const key = (field: number, wire: number) => varint(field * 8 + wire);
const vField = (field: number, v: number | bigint) => [...key(field, 0), ...varint(v)];
const lenField = (field: number, payload: ArrayLike<number>) => [...key(field, 2), ...varint(payload.length), ...Array.from(payload)];
const strField = (field: number, s: string) => lenField(field, new TextEncoder().encode(s));
function f32Field(field: number, v: number): number[] {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, v, true);
  return [...key(field, 5), ...b];
}

type Piece = [piece: string, score: number, type?: number];
interface ProtoSpec {
  pieces: Piece[];
  trainer?: number[] | null;
  normalizer?: number[] | null;
}

function llamaTrainer(opts: { modelType?: number; byteFallback?: boolean } = {}): number[] {
  return [
    ...strField(1, 'corpus.txt'), // input (skipped)
    ...vField(3, opts.modelType ?? 2), // model_type BPE
    ...vField(4, 32000), // vocab_size
    ...f32Field(10, 0.99995), // character_coverage (a fixed32 to skip)
    ...vField(35, opts.byteFallback ?? true ? 1 : 0),
    ...vField(40, 0),
    ...vField(41, 1),
    ...vField(42, 2),
    ...vField(43, -1), // pad_id: a negative int32 is a 10-byte varint
  ];
}
function llamaNormalizer(opts: { dummyPrefix?: boolean; removeExtra?: boolean } = {}): number[] {
  return [
    ...strField(1, 'identity'),
    ...vField(3, opts.dummyPrefix ?? true ? 1 : 0),
    ...vField(4, opts.removeExtra ?? false ? 1 : 0),
    ...vField(5, 1),
  ];
}

function modelProto(spec: ProtoSpec): Uint8Array {
  const out: number[] = [];
  for (const [piece, score, type] of spec.pieces) {
    const msg = [...strField(1, piece), ...f32Field(2, score)];
    if (type !== undefined && type !== PieceType.NORMAL) msg.push(...vField(3, type));
    out.push(...lenField(1, msg));
  }
  if (spec.trainer !== null) out.push(...lenField(2, spec.trainer ?? llamaTrainer()));
  if (spec.normalizer !== null) out.push(...lenField(3, spec.normalizer ?? llamaNormalizer()));
  out.push(...lenField(4, [...lenField(1, [...strField(1, 'x'), ...strField(2, 'y')])])); // self_test_data (skipped)
  return Uint8Array.from(out);
}

const BYTE_PIECES = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
const byteId = (b: number) => 3 + b;

/** The special, byte and normal pieces of a small Llama-like SentencePiece model. */
function smallPieces(): Piece[] {
  return [
    ['<unk>', 0, PieceType.UNKNOWN],
    ['<s>', 0, PieceType.CONTROL],
    ['</s>', 0, PieceType.CONTROL],
    ...BYTE_PIECES.map((p): Piece => [p, 0, PieceType.BYTE]),
    ['\u2581', -100], // 259
    ['a', -101], // 260
    ['b', -102], // 261
    ['c', -103], // 262
    ['ab', -5], // 263
    ['bc', -3], // 264
    ['\u2581a', -4], // 265
    ['abc', -1], // 266
    ['aa', -2], // 267
    ['<tag>', 0, PieceType.USER_DEFINED], // 268
    ['x', -104], // 269
  ];
}

test('tokenizer.model: SentencePiece BPE by piece score, leftmost first on ties', () => {
  const tok = tokenizerFromModelProto(modelProto({ pieces: smallPieces() }), 'small/tokenizer.model');
  assert.equal(tok.vocabSize, 270);
  assert.deepEqual([tok.unkId, tok.bosId, tok.eosId], [0, 1, 2]);
  assert.equal(tok.source, 'small/tokenizer.model');
  assert.equal(tok.idToPiece(266), 'abc');
  assert.equal(tok.pieceType(268), PieceType.USER_DEFINED);
  // '▁abc': bc (-3) first, then a+bc = abc (-1); ▁abc is no piece.
  assert.deepEqual(tok.encode('abc'), [1, 259, 266]);
  // '▁aaa': both 'aa' pairs score -2; the leftmost merges.
  assert.deepEqual(tok.encode('aaa'), [1, 259, 267, 260]);
  // '▁ab': ▁a (-4) beats ab (-5).
  assert.deepEqual(tok.encode('ab'), [1, 265, 261]);
  // 'é' is no piece: its UTF-8 bytes C3 A9.
  assert.deepEqual(tok.encode('é'), [1, 259, byteId(0xc3), byteId(0xa9)]);
  // A user-defined piece is matched whole and never merged; its letters are unknown alone.
  assert.deepEqual(tok.encode('x<tag>x'), [1, 259, 269, 268, 269]);
  assert.deepEqual(tok.encode('x<t'), [1, 259, 269, byteId(0x3c), 0x74 + 3]);
  // The bytes may be a view into a larger buffer (as Node's Buffers often are).
  const bytes = modelProto({ pieces: smallPieces() });
  const padded = new Uint8Array(bytes.length + 11);
  padded.set(bytes, 7);
  assert.deepEqual(tokenizerFromModelProto(padded.subarray(7, 7 + bytes.length), 'm').encode('abc'), [1, 259, 266]);
  for (const s of ['abc', 'aaa', 'ab', 'é', 'x<tag>x', ' a  b ', 'cab\n']) {
    const ids = tok.encode(s);
    assert.equal(tok.decode(ids), s, JSON.stringify(s));
    const d = new StreamDecoder(tok);
    assert.equal(ids.map((id) => d.push(id)).join('') + d.flush(), s);
  }
});

test('tokenizer.model: trainer and normalizer options', () => {
  const noPrefix = tokenizerFromModelProto(modelProto({ pieces: smallPieces(), normalizer: llamaNormalizer({ dummyPrefix: false }) }), 'm');
  assert.equal(noPrefix.addsDummyPrefix, false);
  assert.deepEqual(noPrefix.encode('ab'), [1, 263]);
  assert.equal(noPrefix.decode([1, 263]), 'ab');
  assert.equal(noPrefix.decode([1, 265]), ' a', 'nothing to strip without a dummy prefix');

  const noFallback = tokenizerFromModelProto(modelProto({ pieces: smallPieces(), trainer: llamaTrainer({ byteFallback: false }) }), 'm');
  assert.equal(noFallback.byteFallback, false);
  assert.deepEqual(noFallback.encode('é'), [1, 259, 0]);

  const removeExtra = tokenizerFromModelProto(modelProto({ pieces: smallPieces(), normalizer: llamaNormalizer({ removeExtra: true }) }), 'm');
  assert.deepEqual(removeExtra.encode('  a   b '), removeExtra.encode('a b'));
  assert.deepEqual(removeExtra.encode('a b'), [1, 265, 259, 261]);

  // Without a normalizer spec the proto defaults apply (dummy prefix on, extra whitespace removed).
  const defaults = tokenizerFromModelProto(modelProto({ pieces: smallPieces(), normalizer: null, trainer: null }), 'm');
  assert.equal(defaults.addsDummyPrefix, true);
  assert.equal(defaults.byteFallback, true, 'inferred from the byte pieces when there is no trainer spec');
  assert.deepEqual(defaults.encode(' a '), [1, 265]);
});

test('tokenizer.model: malformed input gives one clear line naming the file', () => {
  const good = modelProto({ pieces: smallPieces() });
  const cases: [Uint8Array, RegExp][] = [
    [new Uint8Array(0), /^bad\.model: not a valid SentencePiece model \(.*empty/],
    [good.subarray(0, 100), /^bad\.model: not a valid SentencePiece model \(invalid protobuf in ModelProto at byte \d+: length \d+ runs past the end/],
    [good.subarray(0, good.length - 3), /^bad\.model: not a valid SentencePiece model/],
    [new TextEncoder().encode('{"model": {"type": "BPE"}}'), /^bad\.model: not a valid SentencePiece model/],
    [modelProto({ pieces: [] }), /^bad\.model: the SentencePiece model has no pieces/],
    [modelProto({ pieces: smallPieces(), trainer: llamaTrainer({ modelType: 1 }) }), /^bad\.model: a SentencePiece UNIGRAM model; only BPE/],
    [modelProto({ pieces: [['<unk>', 0, 2], ['a', 0, 9]] }), /^bad\.model: .*pieces\[1\] \("a"\) has unknown type 9/],
    [Uint8Array.from(lenField(1, [...vField(2, 5)])), /^bad\.model: .*field 2 \(score\) has wire type 0, expected 5/],
    [Uint8Array.from(lenField(1, f32Field(2, 1))), /^bad\.model: .*pieces\[0\] has no piece string/],
  ];
  for (const [bytes, re] of cases) {
    assert.throws(() => tokenizerFromModelProto(bytes, 'bad.model'), (e: Error) => {
      assert.match(e.message, re);
      assert.ok(!e.message.includes('\n'), 'one line');
      return true;
    });
  }
});

/** Llama-2's tokenizer as a ModelProto built from the built-in data: score = -(rank of the first merge making the piece). */
function llamaModelProto(): Uint8Array {
  const def = defaultTokenizer();
  const firstRank = new Map<string, number>();
  let rank = 0;
  for (const k of llamaTokenizerJs.merges.keys()) {
    const merged = k.replace(' ', '');
    if (!firstRank.has(merged)) firstRank.set(merged, rank);
    rank++;
  }
  const pieces: Piece[] = [];
  for (let id = 0; id < def.vocabSize; id++) {
    const p = def.idToPiece(id);
    pieces.push([p, firstRank.has(p) ? -firstRank.get(p)! : -1e6 - id, def.pieceType(id)]);
  }
  return modelProto({ pieces });
}

const CORPUS = [
  'Hello world',
  '  two leading spaces and\ttabs\t\t',
  'The llama (/ˈlɑːmə/; 🦙Spanish pronunciation: [ˈʎama]) is a domesticated South American camelid.',
  '日本語のテキスト、中文，한국어 Привет 😀👍🏽',
  'def f(x):\n        return x ** 2  # 2024\n\n',
  '           grabbed   and    many     spaces      ',
];

test('tokenizer.model: the full Llama-2 vocabulary as a ModelProto encodes like the built-in tokenizer', () => {
  const def = defaultTokenizer();
  const tok = tokenizerFromModelProto(llamaModelProto(), 'llama/tokenizer.model');
  assert.equal(tok.vocabSize, 32000);
  for (const s of CORPUS) assert.deepEqual(tok.encode(s), def.encode(s), JSON.stringify(s));
});

// ---- tokenizer.json ----
function smallJson(overrides: Record<string, unknown> = {}, modelOverrides: Record<string, unknown> = {}): Record<string, unknown> {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  BYTE_PIECES.forEach((p, b) => (vocab[p] = byteId(b)));
  ['\u2581', 'a', 'b', 'c', 'ab', '\u2581a', '\u2581ab', 'bc', '\u2581b'].forEach((p, i) => (vocab[p] = 259 + i));
  return {
    version: '1.0',
    added_tokens: [
      { id: 0, content: '<unk>', special: true },
      { id: 1, content: '<s>', special: true },
      { id: 2, content: '</s>', special: true },
    ],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '\u2581' },
        { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' },
      ],
    },
    pre_tokenizer: null,
    decoder: { type: 'Sequence', decoders: [] },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      vocab,
      merges: ['a b', '\u2581 a', '\u2581a b', 'b c', '\u2581 b'],
      ...modelOverrides,
    },
    ...overrides,
  };
}

test('tokenizer.json: BPE by merge rank, byte fallback, normalizer variants', () => {
  const tok = tokenizerFromJson(smallJson(), 'small/tokenizer.json');
  assert.equal(tok.vocabSize, 268);
  assert.deepEqual([tok.unkId, tok.bosId, tok.eosId], [0, 1, 2]);
  assert.equal(tok.pieceType(0), PieceType.UNKNOWN);
  assert.equal(tok.pieceType(1), PieceType.CONTROL);
  assert.equal(tok.pieceType(byteId(10)), PieceType.BYTE);
  // '▁abc': a+b is rank 0; then no listed pair joins ▁+ab or ab+c.
  assert.deepEqual(tok.encode('abc'), [1, 259, 263, 262]);
  assert.deepEqual(tok.encode('ba'), [1, 267, 260]);
  assert.deepEqual(tok.encode('é'), [1, 259, byteId(0xc3), byteId(0xa9)]);
  assert.deepEqual(tok.encode('<s>'), [1, 259, byteId(0x3c), byteId(0x73), byteId(0x3e)], 'special tokens are not matched in text');
  for (const s of ['abc', 'ba', 'é', ' a b  c\n']) assert.equal(tok.decode(tok.encode(s)), s);

  const pairs = tokenizerFromJson(smallJson({}, { merges: [['a', 'b'], ['\u2581', 'a'], ['\u2581a', 'b'], ['b', 'c'], ['\u2581', 'b']] }), 'j');
  const metaspace = tokenizerFromJson(
    smallJson({ normalizer: null, pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false } }),
    'j',
  );
  const asText = tokenizerFromJson(JSON.stringify(smallJson()), 'j');
  for (const s of ['abc', 'ba', 'a b', ' ab c']) {
    assert.deepEqual(pairs.encode(s), tok.encode(s));
    assert.deepEqual(metaspace.encode(s), tok.encode(s));
    assert.deepEqual(asText.encode(s), tok.encode(s));
  }
  // Neither normalizer nor pre-tokenizer: no dummy prefix, spaces are not '▁' (here: byte fallback).
  const raw = tokenizerFromJson(smallJson({ normalizer: null }), 'j');
  assert.equal(raw.addsDummyPrefix, false);
  assert.deepEqual(raw.encode('a b'), [1, 260, byteId(0x20), 261]);

  // A non-special added token is matched whole.
  const added = smallJson();
  (added.added_tokens as unknown[]).push({ id: 268, content: '<tag>', special: false });
  const withTag = tokenizerFromJson(added, 'j');
  assert.equal(withTag.pieceType(268), PieceType.USER_DEFINED);
  assert.deepEqual(withTag.encode('a<tag>'), [1, 264, 268]);
});

test('tokenizer.json: malformed input gives one clear line naming the file', () => {
  const vocabGap = smallJson();
  (vocabGap.model as Record<string, Record<string, number>>).vocab['zz'] = 300;
  const cases: [unknown, RegExp][] = [
    ['{"model": ', /^bad\.json: not valid JSON/],
    [[1, 2], /^bad\.json: expected a JSON object/],
    [{ version: '1.0' }, /^bad\.json: has no "model" object/],
    [smallJson({}, { type: 'WordPiece' }), /^bad\.json: model\.type is "WordPiece"; only "BPE"/],
    [smallJson({}, { vocab: [] }), /^bad\.json: model\.vocab must be an object/],
    [smallJson({}, { merges: 'a b' }), /^bad\.json: model\.merges must be an array/],
    [smallJson({}, { merges: ['a b', 'a z'] }), /^bad\.json: model\.merges\[1\] \("a z"\) names a piece that is not in model\.vocab/],
    [smallJson({}, { merges: ['a b c'] }), /^bad\.json: model\.merges\[0\] is "a b c", expected "left right"/],
    [smallJson({}, { merges: [42] }), /^bad\.json: model\.merges\[0\] must be/],
    [smallJson({}, { merges: ['a c'] }), /^bad\.json: merge 0 \("a" \+ "c"\) makes a piece that is not in the vocabulary/],
    [smallJson({}, { unk_token: '<missing>' }), /^bad\.json: model\.unk_token "<missing>" is not in the vocabulary/],
    [smallJson({}, { continuing_subword_prefix: '##' }), /^bad\.json: model\.continuing_subword_prefix is set/],
    [vocabGap, /^bad\.json: no piece has id 268/],
    [smallJson({ added_tokens: [{ id: 5, content: '<s>', special: true }] }), /^bad\.json: added_tokens\[0\]: id 5 is both "<0x02>" and "<s>"/],
    [smallJson({ pre_tokenizer: { type: 'ByteLevel' } }), /^bad\.json: pre_tokenizer: pre-tokenizer type "ByteLevel" is not supported/],
    [smallJson({ normalizer: { type: 'Lowercase' } }), /^bad\.json: normalizer: normalizer type "Lowercase" is not supported/],
  ];
  for (const [json, re] of cases) {
    assert.throws(() => tokenizerFromJson(json, 'bad.json'), (e: Error) => {
      assert.match(e.message, re);
      assert.ok(!e.message.includes('\n'), 'one line');
      return true;
    });
  }
});

/** Llama-2's tokenizer.json rebuilt from the built-in data, in the layout Hugging Face writes. */
function llamaJson(): Record<string, unknown> {
  const def = defaultTokenizer();
  const vocab: Record<string, number> = {};
  for (let id = 0; id < def.vocabSize; id++) vocab[def.idToPiece(id)] = id;
  return smallJson({}, { vocab, merges: [...llamaTokenizerJs.merges.keys()] });
}

test('tokenizer.json: the full Llama-2 vocabulary encodes like the built-in tokenizer', () => {
  const def = defaultTokenizer();
  const tok = tokenizerFromJson(llamaJson(), 'llama/tokenizer.json');
  assert.equal(tok.vocabSize, 32000);
  for (const s of CORPUS) assert.deepEqual(tok.encode(s), def.encode(s), JSON.stringify(s));
});

test('loadTokenizer: tokenizer.json, then tokenizer.model, else the built-in default', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'openelm-tok-'));
  try {
    const def = await loadTokenizer();
    assert.equal(def.source, DEFAULT_TOKENIZER_SOURCE);
    assert.equal(def.vocabSize, 32000);
    assert.deepEqual(def.encode('Hello world'), [1, 15043, 3186]);

    // An OpenELM folder has no tokenizer files: the default.
    await writeFile(join(dir, 'config.json'), '{}');
    assert.equal((await loadTokenizer(dir)).source, DEFAULT_TOKENIZER_SOURCE);

    await writeFile(join(dir, 'tokenizer.model'), modelProto({ pieces: smallPieces() }));
    let tok = await loadTokenizer(dir);
    assert.equal(tok.source, join(dir, 'tokenizer.model'));
    assert.deepEqual(tok.encode('abc'), [1, 259, 266]);

    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(smallJson()));
    tok = await loadTokenizer(dir);
    assert.equal(tok.source, join(dir, 'tokenizer.json'));
    assert.deepEqual(tok.encode('abc'), [1, 259, 263, 262]);

    // A file path is read by its name.
    assert.equal((await loadTokenizer(join(dir, 'tokenizer.model'))).vocabSize, 270);

    await assert.rejects(loadTokenizer(join(dir, 'missing')), /missing: no such file or folder/);
    await writeFile(join(dir, 'tokenizer.json'), '{"model": {"type": "Unigram"}}');
    await assert.rejects(loadTokenizer(dir), (e: Error) => e.message.startsWith(`${join(dir, 'tokenizer.json')}: model.type is "Unigram"`));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
