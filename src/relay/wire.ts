import { FrameError } from '../errors.js';

// The relay routes Bluetooth replies by address without decoding whole messages: every routed message
// carries the peripheral address as varint field 1 (and the handle, where there is one, as varint field 2).

/**
 * The value of varint field `field` in a protobuf payload (0 when absent, as proto3 omits defaults).
 * 48-bit addresses stay exact (multiplication, not bit shifts); other fields are skipped by wire type.
 */
export function varintField(payload: Uint8Array, field: number): number {
  let at = 0;
  const end = payload.length;
  while (at < end) {
    let tag = 0;
    let mul = 1;
    let byte: number;
    do {
      if (at >= end) throw truncated();
      byte = payload[at++]!;
      tag += (byte & 0x7f) * mul;
      mul *= 128;
    } while (byte & 0x80);
    const wireType = tag % 8;
    const number = Math.floor(tag / 8);
    if (wireType === 0) {
      let value = 0;
      mul = 1;
      do {
        if (at >= end) throw truncated();
        byte = payload[at++]!;
        value += (byte & 0x7f) * mul;
        mul *= 128;
      } while (byte & 0x80);
      if (number === field) return value;
      continue;
    }
    if (wireType === 2) {
      let length = 0;
      mul = 1;
      do {
        if (at >= end) throw truncated();
        byte = payload[at++]!;
        length += (byte & 0x7f) * mul;
        mul *= 128;
      } while (byte & 0x80);
      at += length;
    } else if (wireType === 1) at += 8;
    else if (wireType === 5) at += 4;
    else throw new FrameError(`Unsupported protobuf wire type ${wireType}`, { code: 'ESPAPI_ERR_DECODE' });
    if (at > end) throw truncated();
  }
  return 0;
}

/** Number of reports in a BluetoothLERawAdvertisementsResponse payload (one length-delimited field 1 each). */
export function countReports(payload: Uint8Array): number {
  let at = 0;
  let count = 0;
  const end = payload.length;
  while (at < end) {
    const tag = payload[at++]!;
    let length = 0;
    let mul = 1;
    let byte: number;
    do {
      if (at >= end) return count;
      byte = payload[at++]!;
      length += (byte & 0x7f) * mul;
      mul *= 128;
    } while (byte & 0x80);
    if (tag === 0x0a) count++;
    else if ((tag & 7) !== 2) return count;
    at += length;
  }
  return count;
}

function truncated(): FrameError {
  return new FrameError('Truncated protobuf payload', { code: 'ESPAPI_ERR_DECODE' });
}
