import { FrameError } from '../errors.js';

/** Wire id of BluetoothLERawAdvertisementsResponse. */
export const RAW_ADVERTISEMENTS_MESSAGE_ID = 93;

/** Receives one report of a raw batch; `data` is a view into the frame (copy it to keep it past the call). */
export type RawReportHandler = (address: number, rssi: number, addressType: number, data: Uint8Array) => void;

/**
 * Decodes a BluetoothLERawAdvertisementsResponse payload without building protobuf objects.
 * This is the proxy's hottest message (hundreds of reports per second), so it is hand-decoded;
 * a conformance test checks it against the generated protobuf-ts codec, packed and unpacked forms alike.
 */
export function decodeRawAdvertisements(buf: Uint8Array, onReport: RawReportHandler): number {
  let pos = 0;
  let count = 0;
  const end = buf.length;
  while (pos < end) {
    const tag = buf[pos++]!;
    if (tag !== 0x0a) {
      pos = skipField(buf, pos, tag, end);
      continue;
    }
    // Lengths accumulate by multiplication: a corrupt 5-byte length must not wrap to a small or negative number.
    let len = 0;
    let mul = 1;
    let shift = 0;
    let byte: number;
    do {
      if (pos >= end) throw truncated();
      byte = buf[pos++]!;
      len += (byte & 0x7f) * mul;
      mul *= 128;
    } while (byte & 0x80);
    const stop = pos + len;
    if (stop > end) throw truncated();
    let address = 0;
    let rssi = 0;
    let addressType = 0;
    let dataStart = 0;
    let dataEnd = 0;
    while (pos < stop) {
      const t = buf[pos++]!;
      switch (t) {
        case 0x08: {
          // 48-bit address: accumulate with multiplication, bitwise ops would truncate to 32 bits.
          let mul = 1;
          address = 0;
          do {
            if (pos >= stop) throw truncated();
            byte = buf[pos++]!;
            address += (byte & 0x7f) * mul;
            mul *= 128;
          } while (byte & 0x80);
          break;
        }
        case 0x10: {
          let zz = 0;
          shift = 0;
          do {
            if (pos >= stop) throw truncated();
            byte = buf[pos++]!;
            if (shift < 32) zz |= (byte & 0x7f) << shift;
            shift += 7;
          } while (byte & 0x80);
          rssi = (zz >>> 1) ^ -(zz & 1);
          break;
        }
        case 0x18: {
          addressType = 0;
          shift = 0;
          do {
            if (pos >= stop) throw truncated();
            byte = buf[pos++]!;
            if (shift < 32) addressType |= (byte & 0x7f) << shift;
            shift += 7;
          } while (byte & 0x80);
          addressType >>>= 0; // uint32
          break;
        }
        case 0x22: {
          let dl = 0;
          mul = 1;
          do {
            if (pos >= stop) throw truncated();
            byte = buf[pos++]!;
            dl += (byte & 0x7f) * mul;
            mul *= 128;
          } while (byte & 0x80);
          dataStart = pos;
          dataEnd = pos + dl;
          if (dataEnd > stop) throw truncated();
          pos = dataEnd;
          break;
        }
        default:
          pos = skipField(buf, pos, t, stop);
      }
    }
    onReport(address, rssi, addressType, buf.subarray(dataStart, dataEnd));
    count++;
  }
  return count;
}

/** Skips an unknown field; every part of it must lie before `end` (the enclosing entry or the buffer). */
function skipField(buf: Uint8Array, pos: number, tag: number, end: number): number {
  // Tags above 15 take two bytes; read the rest of the tag varint first.
  let t = tag;
  if (t & 0x80) {
    let shift = 7;
    t &= 0x7f;
    let byte: number;
    do {
      if (pos >= end) throw truncated();
      byte = buf[pos++]!;
      t |= (byte & 0x7f) << shift;
      shift += 7;
    } while (byte & 0x80);
  }
  if (t >>> 3 === 0) throw new FrameError('Invalid protobuf field number 0 in advertisement batch', { code: 'ESPAPI_ERR_DECODE' });
  let next: number;
  switch (t & 7) {
    case 0: {
      let byte: number;
      do {
        if (pos >= end) throw truncated();
        byte = buf[pos++]!;
      } while (byte & 0x80);
      return pos;
    }
    case 1:
      next = pos + 8;
      break;
    case 2: {
      let len = 0;
      let mul = 1;
      let byte: number;
      do {
        if (pos >= end) throw truncated();
        byte = buf[pos++]!;
        len += (byte & 0x7f) * mul;
        mul *= 128;
      } while (byte & 0x80);
      next = pos + len;
      break;
    }
    case 5:
      next = pos + 4;
      break;
    default:
      throw new FrameError(`Unsupported protobuf wire type ${t & 7} in advertisement batch`, { code: 'ESPAPI_ERR_DECODE' });
  }
  if (next > end) throw truncated();
  return next;
}

function truncated(): FrameError {
  return new FrameError('Truncated BluetoothLERawAdvertisementsResponse', { code: 'ESPAPI_ERR_DECODE' });
}
