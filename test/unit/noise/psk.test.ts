import { describe, expect, it } from 'vitest';
import { InvalidPskError } from '../../../src/errors.js';
import { isZeroPsk, PSK_SIZE, parsePsk, ZERO_PSK_BASE64 } from '../../../src/noise/psk.js';

const KEY = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
const RAW = Uint8Array.from({ length: 32 }, (_, i) => i);

function pskError(input: string): InvalidPskError {
  try {
    parsePsk(input);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidPskError);
    expect((error as InvalidPskError).code).toBe('ESPAPI_ERR_INVALID_PSK');
    return error as InvalidPskError;
  }
  throw new Error(`parsePsk(${JSON.stringify(input)}) did not throw`);
}

describe('psk', () => {
  it('psk - decodes standard base64 of 32 bytes to a plain Uint8Array', () => {
    const psk = parsePsk(KEY);
    expect(psk).toEqual(RAW);
    expect(psk.length).toBe(PSK_SIZE);
    expect(Object.getPrototypeOf(psk)).toBe(Uint8Array.prototype);
  });

  it('psk - accepts surrounding whitespace and a missing pad', () => {
    expect(parsePsk(`  ${KEY}\n`)).toEqual(RAW);
    expect(parsePsk(KEY.slice(0, -1))).toEqual(RAW);
  });

  it('psk - the zero key is 32 zero bytes', () => {
    const zero = parsePsk(ZERO_PSK_BASE64);
    expect(zero).toEqual(new Uint8Array(32));
    expect(isZeroPsk(zero)).toBe(true);
    expect(isZeroPsk(RAW)).toBe(false);
  });

  it('psk - rejects a key that decodes to the wrong length', () => {
    expect(pskError(Buffer.alloc(16).toString('base64')).message).toMatch(/decodes to 16 bytes/);
    expect(pskError(Buffer.alloc(33).toString('base64')).message).toMatch(/decodes to 33 bytes/);
    expect(pskError('').message).toMatch(/empty/);
    expect(pskError('   ').message).toMatch(/empty/);
  });

  it('psk - rejects non-base64 junk without echoing the secret', () => {
    const junk = `${KEY.slice(0, 10)}!${KEY.slice(11)}`;
    const error = pskError(junk);
    expect(error.message).toMatch(/not standard base64.*position 11/);
    expect(error.message).not.toContain(KEY.slice(0, 10));
    const withSymbols = Buffer.alloc(32, 0xfb).toString('base64');
    expect(parsePsk(withSymbols)).toEqual(new Uint8Array(32).fill(0xfb));
    pskError(withSymbols.replace(/\+/g, '-').replace(/\//g, '_')); // URL-safe alphabet is not what ESPHome prints
    pskError(`${KEY.slice(0, 20)} ${KEY.slice(20)}`);
    pskError(`=${KEY.slice(1)}`);
    pskError('hello world, this is not a key');
    pskError(`${KEY.slice(0, -1)}`.slice(0, 41)); // one character short of a group
  });

  it('psk - rejects a non-string', () => {
    pskError(undefined as unknown as string);
  });
});
