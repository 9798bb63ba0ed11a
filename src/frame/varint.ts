import { FrameError } from '../errors.js';

/** Longest varint accepted in a frame header; aioesphomeapi's DoS guard (4 bytes = 28 bits). */
export const MAX_HEADER_VARINT_BYTES = 4;

/** Result of reading a varint: value and bytes consumed, or undefined when more input is needed. */
export interface VarintRead {
  value: number;
  length: number;
}

/**
 * Reads an unsigned varint of at most `maxBytes` bytes from `buf` at `offset`.
 * Returns -1 in `length` when the buffer ends before the varint does.
 */
export function readVarint(buf: Uint8Array, offset: number, maxBytes = MAX_HEADER_VARINT_BYTES): VarintRead {
  let value = 0;
  let shift = 0;
  for (let i = 0; i < maxBytes; i++) {
    const pos = offset + i;
    if (pos >= buf.length) return { value: 0, length: -1 };
    const byte = buf[pos]!;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return { value, length: i + 1 };
    shift += 7;
  }
  throw new FrameError(`Varint longer than ${maxBytes} bytes in frame header`);
}

/** Number of bytes the varint encoding of `value` takes. */
export function varintLength(value: number): number {
  let len = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    len++;
  }
  return len;
}

/** Writes `value` as a varint into `buf` at `offset`; returns the new offset. */
export function writeVarint(buf: Uint8Array, offset: number, value: number): number {
  while (value >= 0x80) {
    buf[offset++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  buf[offset++] = value;
  return offset;
}
