import { formatMac, parseMac } from '../bluetooth/address.js';

/**
 * A MAC as every --json of the CLI writes it: `AA:BB:CC:DD:EE:FF` (from a number, or text in any spelling such as an
 * mDNS TXT record's `5ec3f82838ba`); null when absent. Text that is not a MAC is kept as it is.
 */
export function jsonMac(value: number | string | undefined | null): string | null {
  if (value === undefined || value === null || value === '') return null;
  if (typeof value === 'number') return formatMac(value);
  try {
    return formatMac(parseMac(value.trim()));
  } catch {
    return value;
  }
}
