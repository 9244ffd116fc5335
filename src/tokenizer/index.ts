// The tokenizer's browser-safe API (Node file loading: node-load.ts).
export {
  PieceType,
  SentencePieceBpeTokenizer,
  StreamDecoder,
  type BpeModel,
  type DecodeOptions,
  type EncodeOptions,
  type Tokenizer,
} from './tokenizer.ts';
export { tokenizerFromJson, tokenizerFromModelProto } from './load.ts';
export { defaultTokenizer, DEFAULT_TOKENIZER_SOURCE } from './default.ts';
