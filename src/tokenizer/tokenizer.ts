// Llama-2 style SentencePiece BPE tokenizer: text -> ids by merging adjacent symbols in priority
// order with UTF-8 byte fallback, ids -> text (whole or streamed). No file system access here, so
// the browser bundle can use it; loaders for tokenizer.json / tokenizer.model are in load.ts.

/** SentencePiece piece types (the values of ModelProto.SentencePiece.Type). */
export const PieceType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

export interface EncodeOptions {
  /** Prepend the bos token (default true). */
  addBos?: boolean;
  /** Append the eos token (default false). */
  addEos?: boolean;
}

export interface DecodeOptions {
  /** Leave out control and unknown tokens (bos, eos, unk). Default true; false prints their piece text ("<s>"). */
  skipSpecial?: boolean;
  /**
   * Drop the one leading space of the first text token (the dummy prefix encode() adds).
   * Default: only when the ids start with bos, i.e. they are a whole encoded text; a continuation
   * (newly generated ids) keeps its leading space.
   */
  stripLeadingSpace?: boolean;
}

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  /** Where the vocabulary came from (a file path, or the built-in default). */
  readonly source: string;
  /** Whether encode() adds a dummy-prefix space (Llama-2: yes). */
  readonly addsDummyPrefix: boolean;
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  idToPiece(id: number): string;
  /** The id of a piece string ('▁The' -> 450), or undefined. */
  pieceToId(piece: string): number | undefined;
  /** True for control and unknown tokens (bos, eos, unk, ...). */
  isSpecial(id: number): boolean;
  /** The UTF-8 bytes token `id` contributes to decoded text ('▁' as a space, a byte token as its byte). */
  tokenBytes(id: number): Uint8Array;
}

/** A vocabulary and how to merge it; what the loaders produce. */
export interface BpeModel {
  /** Piece strings by id. Spaces are '▁' (U+2581); byte pieces are '<0x0A>' etc. */
  pieces: readonly string[];
  /** Piece types by id (PieceType values). Default: inferred (<unk>, <s>, </s>, <0xHH>, else NORMAL). */
  types?: ArrayLike<number>;
  /**
   * SentencePiece scores by id: adjacent symbols whose concatenation is a NORMAL piece merge in
   * order of that piece's score, highest first (ties: leftmost). Required unless `merges` is given.
   */
  scores?: ArrayLike<number>;
  /**
   * Hugging Face style ranked merges [leftId, rightId], best first: when given, a pair merges
   * only if listed, in list order (ties: leftmost), into the piece left+right. Overrides scores.
   */
  merges?: readonly (readonly [number, number])[];
  unkId?: number;
  bosId?: number;
  eosId?: number;
  /** Characters missing from the vocabulary become their UTF-8 byte pieces (default: true when byte pieces exist). */
  byteFallback?: boolean;
  /** Prepend '▁' to non-empty text (default true). */
  addDummyPrefix?: boolean;
  /** Replace ' ' with '▁' (default true). */
  escapeWhitespace?: boolean;
  /** Drop leading/trailing spaces and collapse runs of spaces (SentencePiece option; default false). */
  removeExtraWhitespace?: boolean;
  /** Apply Unicode NFKC before tokenizing (approximates SentencePiece's nmt_nfkc normalizers; default false). */
  nfkc?: boolean;
  /** Named in error messages and exposed as `source`. */
  source?: string;
}

const SPACE_MARK = '\u2581';
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

function inferType(piece: string): number {
  if (piece === '<unk>') return PieceType.UNKNOWN;
  if (piece === '<s>' || piece === '</s>') return PieceType.CONTROL;
  if (BYTE_PIECE.test(piece)) return PieceType.BYTE;
  return PieceType.NORMAL;
}

/** Open-addressing hash map from a pair of non-negative ids to a non-negative int (-1: absent). */
class IdPairMap {
  private readonly keysA: Int32Array;
  private readonly keysB: Int32Array;
  private readonly values: Int32Array;
  private readonly mask: number;

  constructor(expected: number) {
    let cap = 16;
    while (cap < expected * 2) cap *= 2;
    this.keysA = new Int32Array(cap).fill(-1);
    this.keysB = new Int32Array(cap);
    this.values = new Int32Array(cap);
    this.mask = cap - 1;
  }

  private slot(a: number, b: number): number {
    let h = Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77);
    h ^= h >>> 15;
    let i = h & this.mask;
    while (this.keysA[i] !== -1 && (this.keysA[i] !== a || this.keysB[i] !== b)) i = (i + 1) & this.mask;
    return i;
  }

  get(a: number, b: number): number {
    const i = this.slot(a, b);
    return this.keysA[i] === -1 ? -1 : this.values[i];
  }

  setIfAbsent(a: number, b: number, v: number): void {
    const i = this.slot(a, b);
    if (this.keysA[i] !== -1) return;
    this.keysA[i] = a;
    this.keysB[i] = b;
    this.values[i] = v;
  }
}

/** A candidate merge of the adjacent symbols left and right (symbol indexes in the working list). */
interface Candidate {
  score: number;
  left: number;
  right: number;
  leftVersion: number;
  rightVersion: number;
  merged: number;
}

/** Binary max-heap on (score, then smaller left index). */
class CandidateHeap {
  private items: Candidate[] = [];

  get size(): number {
    return this.items.length;
  }

  private static before(a: Candidate, b: Candidate): boolean {
    return a.score > b.score || (a.score === b.score && a.left < b.left);
  }

  push(c: Candidate): void {
    const h = this.items;
    let i = h.length;
    h.push(c);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!CandidateHeap.before(c, h[p])) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = c;
  }

  pop(): Candidate {
    const h = this.items;
    const top = h[0];
    const last = h.pop()!;
    const n = h.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && CandidateHeap.before(h[r], h[l]) ? r : l;
        if (!CandidateHeap.before(h[c], last)) break;
        h[i] = h[c];
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

/**
 * SentencePiece BPE encoding (the algorithm of Llama-2's tokenizer.model) and decoding.
 * Construct it from a BpeModel; see load.ts for reading tokenizer.json / tokenizer.model.
 */
export class SentencePieceBpeTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  readonly source: string;
  readonly addsDummyPrefix: boolean;
  readonly byteFallback: boolean;

  private readonly pieces: readonly string[];
  private readonly types: Uint8Array;
  private readonly scores: Float64Array | undefined;
  /** Every piece string -> its (first) id. */
  private readonly pieceIds = new Map<string, number>();
  /** Merge mode: (left, right) -> rank, and the piece each rank produces. */
  private readonly pairRank: IdPairMap | undefined;
  private readonly rankMerged: Int32Array | undefined;
  private readonly byteIds = new Int32Array(256).fill(-1);
  /** USER_DEFINED pieces, matched whole (longest first) before merging and never merged further. */
  private readonly userDefined: string[] = [];
  private readonly escapeWhitespace: boolean;
  private readonly removeExtraWhitespace: boolean;
  private readonly nfkc: boolean;
  private readonly bytesCache: (Uint8Array | undefined)[];
  private static readonly encoder = new TextEncoder();

  constructor(model: BpeModel) {
    const source = model.source ?? 'tokenizer';
    this.source = source;
    const n = model.pieces.length;
    if (n === 0) throw new Error(`${source}: the vocabulary is empty`);
    this.vocabSize = n;
    this.pieces = model.pieces;
    this.types = new Uint8Array(n);
    if (model.types && model.types.length !== n) throw new Error(`${source}: ${model.types.length} piece types for ${n} pieces`);
    for (let i = 0; i < n; i++) {
      const t = model.types ? model.types[i] : inferType(model.pieces[i]);
      if (!(t >= 1 && t <= 6)) throw new Error(`${source}: piece ${i} (${JSON.stringify(model.pieces[i])}) has unknown type ${t}`);
      this.types[i] = t;
    }

    const findType = (t: number, piece: string, fallback: number): number => {
      for (let i = 0; i < n; i++) if (this.types[i] === t && this.pieces[i] === piece) return i;
      return fallback < n ? fallback : -1;
    };
    this.unkId = model.unkId ?? findType(PieceType.UNKNOWN, '<unk>', 0);
    this.bosId = model.bosId ?? findType(PieceType.CONTROL, '<s>', 1);
    this.eosId = model.eosId ?? findType(PieceType.CONTROL, '</s>', 2);
    for (const [name, id] of [['unk', this.unkId], ['bos', this.bosId], ['eos', this.eosId]] as const) {
      if (!Number.isInteger(id) || id < -1 || id >= n) throw new Error(`${source}: ${name} id ${id} is outside the vocabulary of ${n} pieces`);
    }

    let hasBytes = false;
    for (let i = 0; i < n; i++) {
      const piece = this.pieces[i];
      const t = this.types[i];
      if (!this.pieceIds.has(piece)) this.pieceIds.set(piece, i);
      if (t === PieceType.NORMAL || t === PieceType.USER_DEFINED) {
        if (piece.length === 0) throw new Error(`${source}: piece ${i} is empty`);
        if (t === PieceType.USER_DEFINED) this.userDefined.push(piece);
      } else if (t === PieceType.BYTE) {
        const m = BYTE_PIECE.exec(piece);
        if (!m) throw new Error(`${source}: byte piece ${i} is ${JSON.stringify(piece)}, expected <0xHH>`);
        this.byteIds[parseInt(m[1], 16)] = i;
        hasBytes = true;
      }
    }
    this.userDefined.sort((a, b) => b.length - a.length);
    this.byteFallback = model.byteFallback ?? hasBytes;
    this.addsDummyPrefix = model.addDummyPrefix ?? true;
    this.escapeWhitespace = model.escapeWhitespace ?? true;
    this.removeExtraWhitespace = model.removeExtraWhitespace ?? false;
    this.nfkc = model.nfkc ?? false;
    this.bytesCache = new Array(n);

    if (model.merges) {
      this.pairRank = new IdPairMap(model.merges.length);
      this.rankMerged = new Int32Array(model.merges.length);
      for (let r = 0; r < model.merges.length; r++) {
        const [a, b] = model.merges[r];
        if (!(a >= 0 && a < n && b >= 0 && b < n)) throw new Error(`${source}: merge ${r} refers to ids ${a}, ${b} outside the vocabulary`);
        const merged = this.symbolId(this.pieces[a] + this.pieces[b]);
        if (merged < 0) {
          throw new Error(`${source}: merge ${r} (${JSON.stringify(this.pieces[a])} + ${JSON.stringify(this.pieces[b])}) makes a piece that is not in the vocabulary`);
        }
        this.pairRank.setIfAbsent(a, b, r);
        this.rankMerged[r] = merged;
      }
    } else {
      if (!model.scores) throw new Error(`${source}: the vocabulary has neither scores nor merges`);
      if (model.scores.length !== n) throw new Error(`${source}: ${model.scores.length} scores for ${n} pieces`);
      this.scores = Float64Array.from(model.scores);
    }
  }

  idToPiece(id: number): string {
    this.checkId(id);
    return this.pieces[id];
  }

  /** The id a symbol maps to directly (a NORMAL or USER_DEFINED piece), else -1. */
  private symbolId(s: string): number {
    const id = this.pieceIds.get(s);
    if (id === undefined) return -1;
    const t = this.types[id];
    return t === PieceType.NORMAL || t === PieceType.USER_DEFINED ? id : -1;
  }

  pieceToId(piece: string): number | undefined {
    return this.pieceIds.get(piece);
  }

  pieceType(id: number): number {
    this.checkId(id);
    return this.types[id];
  }

  isSpecial(id: number): boolean {
    this.checkId(id);
    const t = this.types[id];
    return t === PieceType.CONTROL || t === PieceType.UNKNOWN;
  }

  tokenBytes(id: number): Uint8Array {
    this.checkId(id);
    let b = this.bytesCache[id];
    if (b === undefined) {
      const piece = this.pieces[id];
      if (this.types[id] === PieceType.BYTE) b = Uint8Array.of(parseInt(piece.slice(3, 5), 16));
      else if (this.types[id] === PieceType.CONTROL || this.types[id] === PieceType.UNKNOWN) b = SentencePieceBpeTokenizer.encoder.encode(piece);
      else b = SentencePieceBpeTokenizer.encoder.encode(piece.replaceAll(SPACE_MARK, ' '));
      this.bytesCache[id] = b;
    }
    return b;
  }

  /** The text as the vocabulary spells it: spaces as '▁', with the dummy prefix ('' for empty text). */
  normalize(text: string): string {
    let t = this.nfkc ? text.normalize('NFKC') : text;
    if (this.removeExtraWhitespace) t = t.replace(/ {2,}/g, ' ').replace(/^ | $/g, '');
    if (t.length === 0) return '';
    if (this.addsDummyPrefix) t = ' ' + t;
    if (this.escapeWhitespace) t = t.replaceAll(' ', SPACE_MARK);
    return t;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TypeError(`${this.source}: encode() takes a string, got ${typeof text}`);
    const out: number[] = [];
    if ((opts.addBos ?? true) && this.bosId >= 0) out.push(this.bosId);
    const normalized = this.normalize(text);
    if (normalized.length > 0) this.encodeNormalized(normalized, out);
    if (opts.addEos && this.eosId >= 0) out.push(this.eosId);
    return out;
  }

  private encodeNormalized(text: string, out: number[]): void {
    // Initial symbols: one per code point, or a whole user-defined piece (frozen: never merged).
    const sym: string[] = [];
    const frozen: boolean[] = [];
    for (let i = 0; i < text.length; ) {
      let match = '';
      for (const u of this.userDefined) {
        if (text.startsWith(u, i)) {
          match = u;
          break;
        }
      }
      if (match) {
        sym.push(match);
        frozen.push(true);
        i += match.length;
      } else {
        const cp = text.codePointAt(i)!;
        const len = cp > 0xffff ? 2 : 1;
        sym.push(text.slice(i, i + len));
        frozen.push(false);
        i += len;
      }
    }
    const n = sym.length;
    const ids = new Int32Array(n);
    for (let i = 0; i < n; i++) ids[i] = this.symbolId(sym[i]);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // A symbol's version changes whenever it changes (or dies: -1), which invalidates queued candidates.
    const version = new Int32Array(n);
    const heap = new CandidateHeap();
    const pairRank = this.pairRank;
    const rankMerged = this.rankMerged;
    const scores = this.scores;
    const types = this.types;

    const consider = (l: number, r: number): void => {
      if (l < 0 || r < 0 || frozen[l] || frozen[r]) return;
      let score: number;
      let merged: number;
      if (pairRank) {
        if (ids[l] < 0 || ids[r] < 0) return;
        const rank = pairRank.get(ids[l], ids[r]);
        if (rank < 0) return;
        score = -rank;
        merged = rankMerged![rank];
      } else {
        const m = this.pieceIds.get(sym[l] + sym[r]);
        if (m === undefined || types[m] !== PieceType.NORMAL) return;
        score = scores![m];
        merged = m;
      }
      heap.push({ score, left: l, right: r, leftVersion: version[l], rightVersion: version[r], merged });
    };

    for (let i = 0; i + 1 < n; i++) consider(i, i + 1);
    while (heap.size > 0) {
      const c = heap.pop();
      const l = c.left;
      const r = c.right;
      if (version[l] !== c.leftVersion || version[r] !== c.rightVersion) continue;
      // Merge r into l.
      sym[l] += sym[r];
      ids[l] = c.merged;
      version[l]++;
      version[r] = -1;
      const rn = next[r];
      next[l] = rn;
      if (rn >= 0) prev[rn] = l;
      consider(prev[l], l);
      consider(l, rn);
    }

    for (let i = 0; i >= 0; i = next[i]) {
      if (ids[i] >= 0) {
        out.push(ids[i]);
      } else if (this.byteFallback) {
        for (const b of SentencePieceBpeTokenizer.encoder.encode(sym[i])) {
          const id = this.byteIds[b];
          out.push(id >= 0 ? id : this.unkId);
        }
      } else {
        out.push(this.unkId);
      }
    }
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const skipSpecial = opts.skipSpecial ?? true;
    let strip = opts.stripLeadingSpace ?? (this.addsDummyPrefix && ids.length > 0 && ids[0] === this.bosId);
    const parts: Uint8Array[] = [];
    let total = 0;
    for (const id of ids) {
      let b: Uint8Array;
      if (this.isSpecial(id)) {
        if (skipSpecial) continue;
        b = this.tokenBytes(id);
      } else {
        b = this.tokenBytes(id);
        if (strip) {
          strip = false;
          if (this.pieces[id].startsWith(SPACE_MARK)) b = b.subarray(1);
        }
      }
      parts.push(b);
      total += b.length;
    }
    const all = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(all);
  }

  private checkId(id: number): void {
    if (!(Number.isInteger(id) && id >= 0 && id < this.vocabSize)) {
      throw new RangeError(`${this.source}: token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
  }
}

/**
 * Decodes ids one at a time, returning only text that is complete: an emoji spelled as four byte
 * tokens yields '' three times, then the emoji. The concatenation of all push() results and the
 * final flush() equals tok.decode(allIds, opts).
 */
export class StreamDecoder {
  private readonly tok: Tokenizer;
  private readonly skipSpecial: boolean;
  private readonly stripOption: boolean | undefined;
  private utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
  private started = false;
  private stripPending = false;

  constructor(tok: Tokenizer, opts: DecodeOptions = {}) {
    this.tok = tok;
    this.skipSpecial = opts.skipSpecial ?? true;
    this.stripOption = opts.stripLeadingSpace;
  }

  /** Feeds one id; returns the text that became complete (possibly ''). */
  push(id: number): string {
    const tok = this.tok;
    if (!this.started) {
      this.started = true;
      this.stripPending = this.stripOption ?? (tok.addsDummyPrefix && id === tok.bosId);
    }
    let b: Uint8Array;
    if (tok.isSpecial(id)) {
      if (this.skipSpecial) return '';
      b = tok.tokenBytes(id);
    } else {
      b = tok.tokenBytes(id);
      if (this.stripPending) {
        this.stripPending = false;
        if (tok.idToPiece(id).startsWith(SPACE_MARK)) b = b.subarray(1);
      }
    }
    return this.utf8.decode(b, { stream: true });
  }

  /** Ends the stream: returns what was held back (an incomplete UTF-8 sequence becomes U+FFFD) and resets. */
  flush(): string {
    const rest = this.utf8.decode();
    this.utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
    this.started = false;
    this.stripPending = false;
    return rest;
  }
}
