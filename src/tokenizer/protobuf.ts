// A minimal protobuf wire-format reader: enough to walk a SentencePiece ModelProto.

export const WireType = { VARINT: 0, I64: 1, LEN: 2, SGROUP: 3, EGROUP: 4, I32: 5 } as const;

export class ProtoError extends Error {}

export class ProtoReader {
  pos: number;
  private readonly view: DataView;

  /** Reads bytes[start, end). `what` names the message in error messages. */
  constructor(
    private readonly bytes: Uint8Array,
    start = 0,
    readonly end = bytes.length,
    private readonly what = 'message',
  ) {
    this.pos = start;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  private fail(msg: string, at = this.pos): never {
    throw new ProtoError(`invalid protobuf in ${this.what} at byte ${at}: ${msg}`);
  }

  /** A varint as [low 32 bits (unsigned), the value as a number (exact below 2^53)]. */
  private varintParts(): [number, number] {
    const start = this.pos;
    let lo = 0;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail('truncated varint', start);
      const b = this.bytes[this.pos++];
      if (i < 5) lo = (lo | ((b & 0x7f) << (7 * i))) >>> 0;
      value += (b & 0x7f) * scale;
      scale *= 128;
      if ((b & 0x80) === 0) return [lo, value];
    }
    this.fail('varint longer than 10 bytes', start);
  }

  /** An unsigned varint (uint32/uint64/bool/enum). */
  varint(): number {
    return this.varintParts()[1];
  }

  /** An int32 field (negative values are sign-extended 10-byte varints). */
  int32(): number {
    return this.varintParts()[0] | 0;
  }

  /** The next field's tag as [field number, wire type]. */
  tag(): [number, number] {
    const at = this.pos;
    const t = this.varint();
    const field = Math.floor(t / 8);
    const wire = t % 8;
    if (field === 0) this.fail('field number 0', at);
    if (wire === WireType.SGROUP || wire === WireType.EGROUP || wire > 5) this.fail(`unsupported wire type ${wire} (field ${field})`, at);
    return [field, wire];
  }

  float32(): number {
    if (this.pos + 4 > this.end) this.fail('truncated 32-bit value');
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** A length-delimited field's bytes (a view, not a copy). */
  bytesField(): Uint8Array {
    const at = this.pos;
    const len = this.varint();
    if (len > this.end - this.pos) this.fail(`length ${len} runs past the end (${this.end - this.pos} bytes left)`, at);
    const out = this.bytes.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  /** A sub-message reader over a length-delimited field. */
  message(what: string): ProtoReader {
    const b = this.bytesField();
    return new ProtoReader(this.bytes, b.byteOffset - this.bytes.byteOffset, b.byteOffset - this.bytes.byteOffset + b.length, what);
  }

  string(): string {
    try {
      return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(this.bytesField());
    } catch (e) {
      if (e instanceof ProtoError) throw e;
      this.fail('string is not valid UTF-8');
    }
  }

  skip(wire: number): void {
    switch (wire) {
      case WireType.VARINT:
        this.varint();
        return;
      case WireType.I64:
        if (this.pos + 8 > this.end) this.fail('truncated 64-bit value');
        this.pos += 8;
        return;
      case WireType.LEN:
        this.bytesField();
        return;
      case WireType.I32:
        if (this.pos + 4 > this.end) this.fail('truncated 32-bit value');
        this.pos += 4;
        return;
      default:
        this.fail(`unsupported wire type ${wire}`);
    }
  }

  /** Fails unless the field has the expected wire type. */
  expect(field: number, wire: number, want: number, name: string): void {
    if (wire !== want) this.fail(`field ${field} (${name}) has wire type ${wire}, expected ${want}`);
  }
}
