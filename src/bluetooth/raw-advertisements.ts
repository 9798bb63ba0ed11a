import { FrameError } from '../errors.js';
import { messageId } from '../frame/message-types.js';
import { BluetoothLERawAdvertisementsResponse } from '../gen/api_pb.js';

/** Wire id of BluetoothLERawAdvertisementsResponse (decoded by hand below: the hot path). */
export const RAW_ADVERTISEMENTS_MESSAGE_ID = messageId(BluetoothLERawAdvertisementsResponse);

/**
 * Receives one report of a raw batch; its AD bytes are `batch[start, end)`. Passing offsets instead of a view
 * saves a subarray per report (about as costly as decoding the report); `batch` is the buffer being decoded.
 */
export type RawReportHandler = (address: number, rssi: number, addressType: number, batch: Uint8Array, start: number, end: number) => void;

// Read cursor shared by the varint helpers below: returning one number keeps the hot loop allocation-free.
let at = 0;

/** Tags are 32-bit varints (field number << 3 | wire type). */
const MAX_TAG = 2 ** 32;
/** Protobuf varints are at most 10 bytes; a longer one would grow the multiplier to Infinity and the value to NaN. */
const MAX_VARINT_BYTES = 10;

/** Unsigned varint by multiplication: exact for 48-bit addresses, and a corrupt length cannot wrap to a small number. */
function readUnsigned(buf: Uint8Array, end: number): number {
  let value = 0;
  let mul = 1;
  let byte: number;
  const limit = at + MAX_VARINT_BYTES;
  do {
    if (at >= end) throw truncated();
    if (at >= limit) throw new FrameError('Varint longer than 10 bytes in advertisement batch', { code: 'ESPAPI_ERR_DECODE' });
    byte = buf[at++]!;
    value += (byte & 0x7f) * mul;
    mul *= 128;
  } while (byte & 0x80);
  return value;
}

/** The low 32 bits of a varint (protobuf's int32/uint32/sint32 semantics). */
function readLow32(buf: Uint8Array, end: number): number {
  let value = 0;
  let shift = 0;
  let byte: number;
  do {
    if (at >= end) throw truncated();
    byte = buf[at++]!;
    if (shift < 32) value |= (byte & 0x7f) << shift;
    shift += 7;
  } while (byte & 0x80);
  return value;
}

/**
 * Decodes a BluetoothLERawAdvertisementsResponse payload without building protobuf objects.
 * This is the proxy's hottest message (hundreds of reports per second), so it is hand-decoded;
 * a conformance test checks it against the generated protobuf-ts codec.
 */
export function decodeRawAdvertisements(buf: Uint8Array, onReport: RawReportHandler): number {
  at = 0;
  let count = 0;
  const end = buf.length;
  while (at < end) {
    const tag = readTag(buf, end);
    if (tag !== 0x0a) {
      skipField(buf, tag, end);
      continue;
    }
    const length = readUnsigned(buf, end);
    const stop = at + length;
    if (stop > end) throw truncated();
    let address = 0;
    let rssi = 0;
    let addressType = 0;
    let dataStart = 0;
    let dataEnd = 0;
    while (at < stop) {
      const t = readTag(buf, stop);
      switch (t) {
        case 0x08:
          address = readUnsigned(buf, stop);
          // protobuf-ts rejects a uint64 beyond 2^53 for a number field too; a rounded address would name another device.
          if (address > Number.MAX_SAFE_INTEGER)
            throw new FrameError('Advertisement address beyond 2^53 in advertisement batch', { code: 'ESPAPI_ERR_DECODE' });
          break;
        case 0x10: {
          const zigzag = readLow32(buf, stop);
          rssi = (zigzag >>> 1) ^ -(zigzag & 1);
          break;
        }
        case 0x18:
          addressType = readLow32(buf, stop) >>> 0;
          break;
        case 0x22: {
          const dataLength = readUnsigned(buf, stop);
          dataStart = at;
          dataEnd = at + dataLength;
          if (dataEnd > stop) throw truncated();
          at = dataEnd;
          break;
        }
        default:
          skipField(buf, t, stop);
      }
    }
    onReport(address, rssi, addressType, buf, dataStart, dataEnd);
    count++;
  }
  return count;
}

/**
 * Reads a field tag. Ours are one byte; longer ones are tags above 15 or a known tag written in more bytes
 * than needed (valid protobuf, e.g. `8a 00` for field 1), which must not be mistaken for an unknown field.
 */
function readTag(buf: Uint8Array, end: number): number {
  const first = buf[at++]!;
  if (!(first & 0x80)) return first;
  const tag = (first & 0x7f) + readUnsigned(buf, end) * 128;
  // Field numbers end at 2^29 - 1: a longer tag is corrupt, and beyond 2^53 its wire-type bits would be rounded away.
  if (tag >= MAX_TAG) throw new FrameError('Field tag beyond 32 bits in advertisement batch', { code: 'ESPAPI_ERR_DECODE' });
  return tag;
}

/** Skips an unknown field whose tag was read; every part of it must lie before `end` (the enclosing entry or the buffer). */
function skipField(buf: Uint8Array, tag: number, end: number): void {
  if (Math.floor(tag / 8) === 0)
    throw new FrameError('Invalid protobuf field number 0 in advertisement batch', { code: 'ESPAPI_ERR_DECODE' });
  switch (tag & 7) {
    case 0:
      readUnsigned(buf, end);
      return;
    case 1:
      at += 8;
      break;
    case 2: {
      // Read the length before adding: `at += readUnsigned()` would add to the cursor as it was before the read.
      const length = readUnsigned(buf, end);
      at += length;
      break;
    }
    case 5:
      at += 4;
      break;
    default:
      throw new FrameError(`Unsupported protobuf wire type ${tag & 7} in advertisement batch`, { code: 'ESPAPI_ERR_DECODE' });
  }
  if (at > end) throw truncated();
}

function truncated(): FrameError {
  return new FrameError('Truncated BluetoothLERawAdvertisementsResponse', { code: 'ESPAPI_ERR_DECODE' });
}
