import { InvalidArgumentError } from '../errors.js';

/** Bluetooth address types as the proxy reports them (ESP-IDF `esp_ble_addr_type_t`, §6.2). */
export const AddressType = {
  PUBLIC: 0,
  RANDOM: 1,
  RPA_PUBLIC: 2,
  RPA_RANDOM: 3,
} as const;

/** One of the `AddressType` values. */
export type AddressType = (typeof AddressType)[keyof typeof AddressType];

/** Human-readable names of the address types, indexed by value. */
export const ADDRESS_TYPE_NAMES: readonly string[] = ['public', 'random', 'rpa-public', 'rpa-random'];

// 2^24: a 48-bit address is split into two 24-bit halves because bitwise operators truncate to 32 bits.
const HALF = 0x1000000;
const MAX_ADDRESS = 0xffffffffffff;

const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).toUpperCase().padStart(2, '0'));

const MAC_RE = /^(?:[0-9a-f]{2}(?::[0-9a-f]{2}){5}|[0-9a-f]{2}(?:-[0-9a-f]{2}){5}|[0-9a-f]{12})$/i;

/** `AA:BB:CC:DD:EE:FF` (upper-case, zero-padded) text of a 48-bit address held as a number. */
export function formatMac(address: number): string {
  const hi = Math.floor(address / HALF) % HALF;
  const lo = address % HALF;
  return `${HEX[hi >>> 16]}:${HEX[(hi >>> 8) & 0xff]}:${HEX[hi & 0xff]}:${HEX[lo >>> 16]}:${HEX[(lo >>> 8) & 0xff]}:${HEX[lo & 0xff]}`;
}

/** Parses `AA:BB:CC:DD:EE:FF`, `aa-bb-cc-dd-ee-ff` or `aabbccddeeff` into the 48-bit number; throws InvalidArgumentError otherwise. */
export function parseMac(text: string): number {
  if (!MAC_RE.test(text)) throw new InvalidArgumentError(`Not a Bluetooth address: ${JSON.stringify(text)} (expected AA:BB:CC:DD:EE:FF)`);
  // 12 hex digits are at most 2^48 - 1, which parseInt returns exactly.
  return Number.parseInt(text.replace(/[:-]/g, ''), 16);
}

/** True for an integer in 0 … 2^48 - 1. */
export function isValidAddress(address: number): boolean {
  return Number.isInteger(address) && address >= 0 && address <= MAX_ADDRESS;
}

/** Name of an address type (`public`, `random`, `rpa-public`, `rpa-random`), or `unknown(n)`. */
export function addressTypeName(type: number): string {
  return ADDRESS_TYPE_NAMES[type] ?? `unknown(${type})`;
}
