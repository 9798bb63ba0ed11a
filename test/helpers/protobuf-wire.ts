/**
 * Protobuf wire bytes by hand, for encodings protobuf-ts does not produce itself (repeated scalars, non-minimal
 * tags, fields of the wrong wire type): the tests' one writer.
 */

/** A varint; negative values as their 64-bit two's complement, as protobuf writes an int64. */
export function varint(value: number | bigint): number[] {
  let v = BigInt(value);
  if (v < 0n) v &= (1n << 64n) - 1n;
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

/** A field tag. */
export const tag = (field: number, wireType: number): number[] => varint(field * 8 + wireType);

/** A varint field. */
export const varintField = (field: number, value: number | bigint): number[] => [...tag(field, 0), ...varint(value)];

/** A length-delimited field. */
export const lengthDelimited = (field: number, body: readonly number[]): number[] => [...tag(field, 2), ...varint(body.length), ...body];
