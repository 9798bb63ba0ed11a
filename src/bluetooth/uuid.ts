import { InvalidArgumentError } from '../errors.js';

/** Tail shared by every UUID on the Bluetooth base UUID (`0000xxxx-0000-1000-8000-00805f9b34fb`). */
export const BASE_UUID_SUFFIX = '-0000-1000-8000-00805f9b34fb';

// Low word of the base UUID as the proxy sends it for expanded 16/32-bit UUIDs (§6.8).
const BASE_UUID_LOW_WORD = 0x800000805f9b34fbn;
const BASE_UUID_HIGH_TAIL = 0x1000n;
const WORD_MASK = 0xffffffffffffffffn;

const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

// 16-bit UUIDs repeat in nearly every advertisement (0xFE95, 0xFCD2, ...), so their strings are built once.
// Two levels of 256 slots, allocated on first use: about twice as fast as a Map lookup without a flat 64 K table.
const SHORT_CACHE: Array<Array<string | undefined> | undefined> = new Array(256).fill(undefined);

function cachedShort(n: number): string {
  let row = SHORT_CACHE[n >>> 8];
  if (row === undefined) row = SHORT_CACHE[n >>> 8] = new Array<string | undefined>(256).fill(undefined);
  return (row[n & 0xff] ??= n.toString(16).padStart(8, '0') + BASE_UUID_SUFFIX);
}

const CANONICAL_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DASHED_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const HEX_RE = /^[0-9a-f]+$/i;

/** Full UUID string of a 16- or 32-bit Bluetooth UUID (`%08x-0000-1000-8000-00805f9b34fb`). */
export function uuidFromShort(n: number): string {
  if (n >= 0 && n <= 0xffff && Number.isInteger(n)) return cachedShort(n);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new InvalidArgumentError(`Not a 16/32-bit UUID value: ${n}`);
  return n.toString(16).padStart(8, '0') + BASE_UUID_SUFFIX;
}

/** UUID string from two 64-bit words, most significant first; words are taken modulo 2^64. */
export function uuidFromWords(hi: bigint, lo: bigint): string {
  const high = hi & WORD_MASK;
  const low = lo & WORD_MASK;
  if (low === BASE_UUID_LOW_WORD && (high & 0xffffffffn) === BASE_UUID_HIGH_TAIL) return uuidFromShort(Number(high >> 32n));
  const h = high.toString(16).padStart(16, '0');
  const l = low.toString(16).padStart(16, '0');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${l.slice(0, 4)}-${l.slice(4)}`;
}

/** UUID of a GATT service/characteristic/descriptor message: `short_uuid` when non-zero, else the word pair (§6.8). */
export function uuidFromProto(words: readonly bigint[], shortUuid: number): string {
  if (shortUuid !== 0) return uuidFromShort(shortUuid);
  return uuidFromWords(words[0] ?? 0n, words[1] ?? 0n);
}

/** The two 64-bit words (most significant first) of any UUID form `normalizeUuid` accepts. */
export function uuidToWords(uuid: string): [bigint, bigint] {
  const hex = normalizeUuid(uuid).replaceAll('-', '');
  return [BigInt(`0x${hex.slice(0, 16)}`), BigInt(`0x${hex.slice(16)}`)];
}

/**
 * Canonical lowercase 128-bit form of a UUID given as 16-bit (`2a00`, `0x2A00`), 32-bit (8 hex digits)
 * or 128-bit text (dashed or 32 bare hex digits, any case). Throws InvalidArgumentError otherwise.
 */
export function normalizeUuid(input: string): string {
  if (CANONICAL_RE.test(input)) return input;
  const text = input.trim();
  if (DASHED_RE.test(text)) return text.toLowerCase();
  const bare = text.startsWith('0x') || text.startsWith('0X') ? text.slice(2) : text;
  if (HEX_RE.test(bare)) {
    if (bare.length === 4 || bare.length === 8) return uuidFromShort(Number.parseInt(bare, 16));
    if (bare.length === 32 && bare === text) {
      const h = bare.toLowerCase();
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    }
  }
  throw new InvalidArgumentError(
    `Not a Bluetooth UUID: ${JSON.stringify(input)} (expected 4, 8 or 32 hex digits, or the dashed 128-bit form)`,
  );
}

/** The 16/32-bit value of a UUID on the Bluetooth base UUID, or undefined for any other UUID. */
export function shortUuidOf(uuid: string): number | undefined {
  const full = normalizeUuid(uuid);
  if (!full.endsWith(BASE_UUID_SUFFIX)) return undefined;
  return Number.parseInt(full.slice(0, 8), 16);
}

/** UUID string of the little-endian 16-bit UUID at `data[at]` (AD-structure hot path). */
export function uuid16At(data: Uint8Array, at: number): string {
  return cachedShort(data[at]! | (data[at + 1]! << 8));
}

/** UUID string of the little-endian 32-bit UUID at `data[at]`. */
export function uuid32At(data: Uint8Array, at: number): string {
  return uuidFromShort((data[at]! | (data[at + 1]! << 8) | (data[at + 2]! << 16) | (data[at + 3]! << 24)) >>> 0);
}

/** UUID string of the little-endian (on-air order) 128-bit UUID at `data[at]`. */
export function uuid128At(data: Uint8Array, at: number): string {
  const d = data;
  const i = at;
  return (
    HEX[d[i + 15]!]! +
    HEX[d[i + 14]!]! +
    HEX[d[i + 13]!]! +
    HEX[d[i + 12]!]! +
    '-' +
    HEX[d[i + 11]!]! +
    HEX[d[i + 10]!]! +
    '-' +
    HEX[d[i + 9]!]! +
    HEX[d[i + 8]!]! +
    '-' +
    HEX[d[i + 7]!]! +
    HEX[d[i + 6]!]! +
    '-' +
    HEX[d[i + 5]!]! +
    HEX[d[i + 4]!]! +
    HEX[d[i + 3]!]! +
    HEX[d[i + 2]!]! +
    HEX[d[i + 1]!]! +
    HEX[d[i]!]!
  );
}
