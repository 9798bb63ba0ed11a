import { InvalidPskError } from '../errors.js';

/** Raw length of an ESPHome API encryption key. */
export const PSK_SIZE = 32;
/** The all-zero key that unprovisioned devices accept (spec §4.7, §4.12): confidentiality, no authentication. */
export const ZERO_PSK_BASE64 = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

/** Standard base64 alphabet, padding optional (some tools strip the trailing `=`). */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Decodes an ESPHome API encryption key (standard base64 of 32 bytes); throws InvalidPskError otherwise. */
export function parsePsk(base64: string): Uint8Array {
  if (typeof base64 !== 'string') throw new InvalidPskError('Encryption key must be a base64 string');
  const text = base64.trim();
  if (text.length === 0) throw new InvalidPskError('Encryption key is empty: expected base64 of exactly 32 bytes (44 characters)');
  if (!BASE64.test(text)) {
    // Name the position, never the character: the string is a secret.
    const bad = text.search(/[^A-Za-z0-9+/=]|=(?=[^=])/);
    throw new InvalidPskError(
      `Encryption key is not standard base64 (unexpected character at position ${bad < 0 ? '?' : bad + 1}): expected 44 characters of A-Z, a-z, 0-9, + and / ending in =`,
    );
  }
  const unpadded = text.replace(/=+$/, '');
  // A lone trailing character carries only 6 bits, which is never valid base64.
  if (unpadded.length % 4 === 1 || (text.length !== unpadded.length && text.length % 4 !== 0)) {
    throw new InvalidPskError('Encryption key is truncated base64: expected base64 of exactly 32 bytes (44 characters)');
  }
  const bytes = Buffer.from(unpadded, 'base64');
  if (bytes.length !== PSK_SIZE) {
    throw new InvalidPskError(
      `Encryption key decodes to ${bytes.length} bytes; it must be base64 of exactly ${PSK_SIZE} bytes (44 characters, e.g. \`openssl rand -base64 32\`)`,
    );
  }
  return new Uint8Array(bytes);
}

/** True for the all-zero key of unprovisioned devices. */
export function isZeroPsk(psk: Uint8Array): boolean {
  return psk.length === PSK_SIZE && psk.every((byte) => byte === 0);
}
