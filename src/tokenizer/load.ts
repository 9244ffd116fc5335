// Builds tokenizers from Hugging Face tokenizer.json and SentencePiece tokenizer.model contents.
// No file system access: callers pass the parsed JSON / the file's bytes plus its name for errors.
import { ProtoError, ProtoReader, WireType } from './protobuf.ts';
import { PieceType, SentencePieceBpeTokenizer } from './tokenizer.ts';
import { isObject, parseJson } from '../util/json.ts';

const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;

/**
 * A tokenizer from a Hugging Face `tokenizer.json` (already parsed, or its text) whose model is
 * BPE, as written for Llama-2: merges give the priority, byte_fallback, a normalizer (Prepend '▁'
 * + Replace ' ' -> '▁') or a Metaspace pre-tokenizer. Special added tokens are not matched in
 * text (as SentencePiece does); non-special added tokens are matched whole.
 */
export function tokenizerFromJson(json: unknown, source: string): SentencePieceBpeTokenizer {
  if (typeof json === 'string') json = parseJson(json, source);
  const bad = (msg: string): never => {
    throw new Error(`${source}: ${msg}`);
  };
  if (!isObject(json)) bad('expected a JSON object (a Hugging Face tokenizer.json)');
  const root = json as Record<string, unknown>;
  const model = root.model;
  if (!isObject(model)) bad('has no "model" object (is this a Hugging Face tokenizer.json?)');
  const m = model as Record<string, unknown>;
  if (m.type !== undefined && m.type !== 'BPE') bad(`model.type is ${JSON.stringify(m.type)}; only "BPE" (Llama-2's tokenizer) is supported`);
  for (const k of ['continuing_subword_prefix', 'end_of_word_suffix'] as const) {
    if (m[k] !== undefined && m[k] !== null && m[k] !== '') bad(`model.${k} is set; only SentencePiece-style BPE (Llama-2) is supported`);
  }
  if (!isObject(m.vocab)) bad('model.vocab must be an object mapping pieces to ids');
  if (!Array.isArray(m.merges)) bad('model.merges must be an array');

  // Pieces by id: model.vocab plus added_tokens.
  const byId: (string | undefined)[] = [];
  const put = (piece: string, id: unknown, where: string): void => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 10_000_000) bad(`${where}: id of ${JSON.stringify(piece)} is ${JSON.stringify(id)}, expected a non-negative integer`);
    const i = id as number;
    if (byId[i] !== undefined && byId[i] !== piece) bad(`${where}: id ${i} is both ${JSON.stringify(byId[i])} and ${JSON.stringify(piece)}`);
    byId[i] = piece;
  };
  for (const [piece, id] of Object.entries(m.vocab as Record<string, unknown>)) put(piece, id, 'model.vocab');

  const special = new Set<number>();
  const userDefined = new Set<number>();
  if (root.added_tokens !== undefined && root.added_tokens !== null) {
    if (!Array.isArray(root.added_tokens)) bad('added_tokens must be an array');
    (root.added_tokens as unknown[]).forEach((t, k) => {
      if (!isObject(t) || typeof t.content !== 'string') bad(`added_tokens[${k}] must be an object with a string "content"`);
      const tok = t as Record<string, unknown>;
      put(tok.content as string, tok.id, `added_tokens[${k}]`);
      (tok.special === true ? special : userDefined).add(tok.id as number);
    });
  }
  if (byId.length === 0) bad('model.vocab is empty');
  const pieces: string[] = [];
  for (let i = 0; i < byId.length; i++) {
    const p = byId[i];
    if (p === undefined) bad(`no piece has id ${i} (ids must run from 0 to ${byId.length - 1} without gaps)`);
    pieces.push(p as string);
  }

  const ids = new Map<string, number>();
  pieces.forEach((p, i) => ids.set(p, i));
  const byteFallback = m.byte_fallback === true;
  const unkToken = typeof m.unk_token === 'string' ? m.unk_token : undefined;
  if (unkToken !== undefined && !ids.has(unkToken)) bad(`model.unk_token ${JSON.stringify(unkToken)} is not in the vocabulary`);
  const unkId = unkToken !== undefined ? ids.get(unkToken)! : -1;
  const types = pieces.map((p, i) => {
    if (i === unkId) return PieceType.UNKNOWN;
    if (special.has(i)) return PieceType.CONTROL;
    if (userDefined.has(i)) return PieceType.USER_DEFINED;
    if (byteFallback && BYTE_PIECE.test(p)) return PieceType.BYTE;
    return PieceType.NORMAL;
  });

  const merges: [number, number][] = [];
  (m.merges as unknown[]).forEach((entry, r) => {
    let a: unknown;
    let b: unknown;
    if (typeof entry === 'string') {
      const parts = entry.split(' ');
      if (parts.length !== 2) bad(`model.merges[${r}] is ${JSON.stringify(entry)}, expected "left right"`);
      [a, b] = parts;
    } else if (Array.isArray(entry) && entry.length === 2) {
      [a, b] = entry;
    } else {
      bad(`model.merges[${r}] must be "left right" or ["left", "right"]`);
    }
    const ia = typeof a === 'string' ? ids.get(a) : undefined;
    const ib = typeof b === 'string' ? ids.get(b) : undefined;
    if (ia === undefined || ib === undefined) bad(`model.merges[${r}] (${JSON.stringify(entry)}) names a piece that is not in model.vocab`);
    merges.push([ia as number, ib as number]);
  });

  // Whitespace handling, from the normalizer and pre-tokenizer.
  let addDummyPrefix = false;
  let escapeWhitespace = false;
  let nfkc = false;
  const walkNormalizer = (n: unknown, where: string): void => {
    if (n === null || n === undefined) return;
    if (!isObject(n)) bad(`${where} must be an object`);
    const o = n as Record<string, unknown>;
    switch (o.type) {
      case 'Sequence':
        if (!Array.isArray(o.normalizers)) bad(`${where}.normalizers must be an array`);
        (o.normalizers as unknown[]).forEach((x, i) => walkNormalizer(x, `${where}.normalizers[${i}]`));
        return;
      case 'Prepend':
        if (o.prepend !== '\u2581') bad(`${where}: Prepend ${JSON.stringify(o.prepend)} is not supported (expected "\u2581")`);
        addDummyPrefix = true;
        return;
      case 'Replace': {
        const pat = isObject(o.pattern) ? o.pattern.String : undefined;
        if (pat !== ' ' || o.content !== '\u2581') bad(`${where}: only Replace " " -> "\u2581" is supported`);
        escapeWhitespace = true;
        return;
      }
      case 'NFKC':
        nfkc = true;
        return;
      default:
        bad(`${where}: normalizer type ${JSON.stringify(o.type)} is not supported`);
    }
  };
  const walkPreTokenizer = (p: unknown, where: string): void => {
    if (p === null || p === undefined) return;
    if (!isObject(p)) bad(`${where} must be an object`);
    const o = p as Record<string, unknown>;
    if (o.type === 'Sequence') {
      if (!Array.isArray(o.pretokenizers)) bad(`${where}.pretokenizers must be an array`);
      (o.pretokenizers as unknown[]).forEach((x, i) => walkPreTokenizer(x, `${where}.pretokenizers[${i}]`));
    } else if (o.type === 'Metaspace') {
      if (o.replacement !== undefined && o.replacement !== '\u2581') bad(`${where}: Metaspace replacement must be "\u2581"`);
      escapeWhitespace = true;
      const scheme = o.prepend_scheme;
      if (scheme === 'always' || scheme === 'first' || (scheme === undefined && o.add_prefix_space !== false)) addDummyPrefix = true;
    } else {
      bad(`${where}: pre-tokenizer type ${JSON.stringify(o.type)} is not supported (not a SentencePiece-style tokenizer)`);
    }
  };
  walkNormalizer(root.normalizer, 'normalizer');
  walkPreTokenizer(root.pre_tokenizer, 'pre_tokenizer');

  const idOf = (p: string): number => ids.get(p) ?? -1;
  return new SentencePieceBpeTokenizer({
    pieces,
    types,
    merges,
    unkId,
    bosId: idOf('<s>'),
    eosId: idOf('</s>'),
    byteFallback,
    addDummyPrefix,
    escapeWhitespace,
    nfkc,
    source,
  });
}

const MODEL_TYPES: Record<number, string> = { 1: 'UNIGRAM', 2: 'BPE', 3: 'WORD', 4: 'CHAR' };

/**
 * A tokenizer from the bytes of a SentencePiece `tokenizer.model` (a ModelProto). Reads the
 * pieces (piece, score, type), the trainer spec (model type, byte_fallback, unk/bos/eos ids) and
 * the normalizer spec (add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces).
 */
export function tokenizerFromModelProto(bytes: Uint8Array, source: string): SentencePieceBpeTokenizer {
  const pieces: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  let hasTrainer = false;
  let modelType = 1; // proto default: UNIGRAM
  let byteFallback = false;
  let unkId = 0;
  let bosId = 1;
  let eosId = 2;
  let normName = '';
  let addDummyPrefix = true;
  let removeExtraWhitespace = true;
  let escapeWhitespace = true;
  try {
    if (bytes.length === 0) throw new ProtoError('the file is empty');
    const r = new ProtoReader(bytes, 0, bytes.length, 'ModelProto');
    while (!r.done()) {
      const [field, wire] = r.tag();
      if (field === 1) {
        r.expect(field, wire, WireType.LEN, 'pieces');
        const p = r.message(`pieces[${pieces.length}]`);
        let piece: string | undefined;
        let score = 0;
        let type: number = PieceType.NORMAL;
        while (!p.done()) {
          const [f, w] = p.tag();
          if (f === 1) {
            p.expect(f, w, WireType.LEN, 'piece');
            piece = p.string();
          } else if (f === 2) {
            p.expect(f, w, WireType.I32, 'score');
            score = p.float32();
          } else if (f === 3) {
            p.expect(f, w, WireType.VARINT, 'type');
            type = p.int32();
          } else {
            p.skip(w);
          }
        }
        if (piece === undefined) throw new ProtoError(`pieces[${pieces.length}] has no piece string`);
        if (!(type >= 1 && type <= 6)) throw new ProtoError(`pieces[${pieces.length}] (${JSON.stringify(piece)}) has unknown type ${type}`);
        pieces.push(piece);
        scores.push(score);
        types.push(type);
      } else if (field === 2) {
        r.expect(field, wire, WireType.LEN, 'trainer_spec');
        hasTrainer = true;
        const t = r.message('trainer_spec');
        while (!t.done()) {
          const [f, w] = t.tag();
          if (w !== WireType.VARINT) {
            t.skip(w);
            continue;
          }
          const v = t.int32();
          if (f === 3) modelType = v;
          else if (f === 35) byteFallback = v !== 0;
          else if (f === 40) unkId = v;
          else if (f === 41) bosId = v;
          else if (f === 42) eosId = v;
        }
      } else if (field === 3) {
        r.expect(field, wire, WireType.LEN, 'normalizer_spec');
        const n = r.message('normalizer_spec');
        while (!n.done()) {
          const [f, w] = n.tag();
          if (f === 1 && w === WireType.LEN) normName = n.string();
          else if (f === 3 && w === WireType.VARINT) addDummyPrefix = n.varint() !== 0;
          else if (f === 4 && w === WireType.VARINT) removeExtraWhitespace = n.varint() !== 0;
          else if (f === 5 && w === WireType.VARINT) escapeWhitespace = n.varint() !== 0;
          else n.skip(w);
        }
      } else {
        r.skip(wire);
      }
    }
  } catch (e) {
    if (e instanceof ProtoError) throw new Error(`${source}: not a valid SentencePiece model (${e.message})`);
    throw e;
  }
  if (pieces.length === 0) throw new Error(`${source}: the SentencePiece model has no pieces`);
  if (hasTrainer && modelType !== 2) {
    throw new Error(`${source}: a SentencePiece ${MODEL_TYPES[modelType] ?? `type-${modelType}`} model; only BPE models (Llama-2's tokenizer.model) are supported`);
  }
  if (!hasTrainer) byteFallback = types.includes(PieceType.BYTE);
  const inRange = (id: number) => (id >= 0 && id < pieces.length ? id : -1);
  return new SentencePieceBpeTokenizer({
    pieces,
    scores,
    types,
    unkId: inRange(unkId),
    bosId: inRange(bosId),
    eosId: inRange(eosId),
    byteFallback,
    addDummyPrefix,
    escapeWhitespace,
    removeExtraWhitespace,
    nfkc: /nfkc/i.test(normName),
    source,
  });
}
