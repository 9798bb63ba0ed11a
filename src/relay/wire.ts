import { FrameError } from '../errors.js';

// The relay routes Bluetooth replies by address without decoding whole messages: every routed message
// carries the peripheral address as varint field 1 (and the handle, where there is one, as varint field 2).

// Read cursor shared by the helpers below (one number instead of a result object on the routing path).
let at = 0;

/** An unsigned varint at the cursor, by multiplication so 48-bit addresses stay exact. */
function readUnsigned(payload: Uint8Array, end: number): number {
  let value = 0;
  let mul = 1;
  let byte: number;
  do {
    if (at >= end) throw truncated();
    byte = payload[at++]!;
    value += (byte & 0x7f) * mul;
    mul *= 128;
  } while (byte & 0x80);
  return value;
}

/** The value of varint field `field` in a protobuf payload (0 when absent, as proto3 omits defaults). */
export function varintField(payload: Uint8Array, field: number): number {
  at = 0;
  const end = payload.length;
  while (at < end) {
    const tag = readUnsigned(payload, end);
    const wireType = tag % 8;
    if (wireType === 0) {
      const value = readUnsigned(payload, end);
      if (Math.floor(tag / 8) === field) return value;
      continue;
    }
    if (wireType === 2) at += readUnsigned(payload, end);
    else if (wireType === 1) at += 8;
    else if (wireType === 5) at += 4;
    else throw new FrameError(`Unsupported protobuf wire type ${wireType}`, { code: 'ESPAPI_ERR_DECODE' });
    if (at > end) throw truncated();
  }
  return 0;
}

/** Number of reports in a BluetoothLERawAdvertisementsResponse payload (one length-delimited field 1 each). */
export function countReports(payload: Uint8Array): number {
  at = 0;
  let count = 0;
  const end = payload.length;
  try {
    while (at < end) {
      const tag = payload[at++]!;
      if ((tag & 7) !== 2) return count;
      const length = readUnsigned(payload, end);
      if (tag === 0x0a) count++;
      at += length;
    }
  } catch {
    // A truncated tail: count what was whole (the clients' decoders judge the batch themselves).
  }
  return count;
}

function truncated(): FrameError {
  return new FrameError('Truncated protobuf payload', { code: 'ESPAPI_ERR_DECODE' });
}
