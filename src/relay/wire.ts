import { FrameError } from '../errors.js';

// The relay routes the proxy's Bluetooth replies by address without decoding whole messages: every routed
// message carries the peripheral address as varint field 1. Requests from clients are never read here: they are
// decoded whole (request-guard.ts), so what is authorised is what the proxy decodes.

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

/**
 * The value of varint field `field` in a protobuf payload as every protobuf decoder reads it: its last
 * occurrence (0 when absent, as proto3 omits defaults). A reply goes to whoever its recipient's decoder will
 * take it for, even from a proxy that wrote the field twice.
 */
export function varintField(payload: Uint8Array, field: number): number {
  at = 0;
  const end = payload.length;
  let found = 0;
  while (at < end) {
    const tag = readUnsigned(payload, end);
    const wireType = tag % 8;
    if (wireType === 0) {
      const value = readUnsigned(payload, end);
      if (Math.floor(tag / 8) === field) found = value;
      continue;
    }
    if (wireType === 2) {
      // The length first: `at += read()` would add it to the cursor as it was before the length was read.
      const length = readUnsigned(payload, end);
      at += length;
    } else if (wireType === 1) at += 8;
    else if (wireType === 5) at += 4;
    else throw new FrameError(`Unsupported protobuf wire type ${wireType}`, { code: 'ESPAPI_ERR_DECODE' });
    if (at > end) throw truncated();
  }
  return found;
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
