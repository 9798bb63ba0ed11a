import { BASE_UUID_SUFFIX, normalizeUuid } from '../bluetooth/uuid.js';
import { InvalidArgumentError } from '../errors.js';

const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

// 2^24: a 48-bit address is split into two 24-bit halves because bitwise operators truncate to 32 bits.
const HALF = 0x1000000;

const ID_RE = /^[0-9a-f]{12}$/i;

/** noble's peripheral id of an address: 12 lower-case hex digits (`c0ffee000001`), as its HCI bindings' addressToId gives. */
export function nobleId(address: number): string {
  const hi = Math.floor(address / HALF) % HALF;
  const lo = address % HALF;
  return HEX[hi >>> 16]! + HEX[(hi >>> 8) & 0xff]! + HEX[hi & 0xff]! + HEX[lo >>> 16]! + HEX[(lo >>> 8) & 0xff]! + HEX[lo & 0xff]!;
}

/** noble's address text: lower-case, colon-separated (`c0:ff:ee:00:00:01`), as its HCI layer formats report addresses. */
export function nobleAddress(address: number): string {
  const id = nobleId(address);
  return `${id.slice(0, 2)}:${id.slice(2, 4)}:${id.slice(4, 6)}:${id.slice(6, 8)}:${id.slice(8, 10)}:${id.slice(10)}`;
}

/** The 48-bit address of a noble peripheral id (12 hex digits, any case); throws InvalidArgumentError otherwise. */
export function addressOfNobleId(id: string): number {
  if (typeof id !== 'string' || !ID_RE.test(id)) {
    throw new InvalidArgumentError(`Not a noble peripheral id: ${JSON.stringify(id)} (expected 12 hex digits, e.g. c0ffee000001)`);
  }
  return Number.parseInt(id, 16);
}

/** noble's address type names: its HCI layer says 'random' for type 1 and 'public' for every other value. */
export function nobleAddressType(addressType: number): 'public' | 'random' {
  return addressType === 1 ? 'random' : 'public';
}

/**
 * noble's text of a GATT UUID given in our canonical form: a 16-bit UUID on the Bluetooth base as its hex value
 * without padding (`2a00`, `180d`; noble's HCI GATT layer prints `readUInt16LE().toString(16)`), anything else
 * as 32 lower-case hex digits without dashes (ATT has no 32-bit UUIDs, so those arrive as 128-bit there).
 */
export function toNobleUuid(uuid: string): string {
  if (uuid.endsWith(BASE_UUID_SUFFIX) && uuid.startsWith('0000')) return Number.parseInt(uuid.slice(4, 8), 16).toString(16);
  return uuid.replaceAll('-', '');
}

/**
 * Canonical 128-bit form of a UUID as noble users write it: noble's own short forms (`2a00`, unpadded `a12`),
 * 32 hex digits, the dashed form, `0x…`, any case. Throws InvalidArgumentError for anything else.
 */
export function fromNobleUuid(uuid: string): string {
  if (typeof uuid !== 'string') throw new InvalidArgumentError(`Not a Bluetooth UUID: ${JSON.stringify(uuid)}`);
  const bare = uuid.startsWith('0x') || uuid.startsWith('0X') ? uuid.slice(2) : uuid;
  // noble prints 16-bit values without padding, so 1–3 hex digits are short UUIDs too.
  if (/^[0-9a-f]{1,3}$/i.test(bare)) return normalizeUuid(bare.padStart(4, '0'));
  return normalizeUuid(uuid);
}
