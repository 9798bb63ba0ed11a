import { describe, expect, it } from 'vitest';
import { ADDRESS_TYPE_NAMES, AddressType, addressTypeName, formatMac, isValidAddress, parseMac } from '../../../src/bluetooth/address.js';
import { InvalidArgumentError } from '../../../src/errors.js';

describe('bluetooth/address', () => {
  it('address - formats 48-bit numbers upper-case and zero-padded', () => {
    expect(formatMac(0xaabbccddeeff)).toBe('AA:BB:CC:DD:EE:FF');
    expect(formatMac(0)).toBe('00:00:00:00:00:00');
    expect(formatMac(0x000102030405)).toBe('00:01:02:03:04:05');
    expect(formatMac(0xffffffffffff)).toBe('FF:FF:FF:FF:FF:FF');
    // Values above 2^32 must not be truncated by 32-bit bitwise operators.
    expect(formatMac(0x1_0000_0001)).toBe('00:01:00:00:00:01');
    expect(formatMac(0x8000_0000_0000)).toBe('80:00:00:00:00:00');
  });

  it('address - parses the three accepted spellings', () => {
    expect(parseMac('AA:BB:CC:DD:EE:FF')).toBe(0xaabbccddeeff);
    expect(parseMac('aa-bb-cc-dd-ee-ff')).toBe(0xaabbccddeeff);
    expect(parseMac('aabbccddeeff')).toBe(0xaabbccddeeff);
    expect(parseMac('f2:fa:be:00:00:01')).toBe(0xf2fabe000001);
  });

  it('address - round-trips', () => {
    for (const n of [0, 1, 0xff, 0x1_0000_0000, 0xe00990b61234, 0xffffffffffff, 0x7f_ff_ff_ff_ff_ff]) {
      expect(parseMac(formatMac(n))).toBe(n);
    }
  });

  it('address - rejects malformed text', () => {
    for (const bad of [
      '',
      'AA:BB:CC:DD:EE',
      'AA:BB:CC:DD:EE:FF:00',
      'AA-BB:CC-DD:EE-FF',
      'GG:BB:CC:DD:EE:FF',
      'aabbccddeef',
      ' AA:BB:CC:DD:EE:FF',
      'A:B:C:D:E:F',
    ]) {
      expect(() => parseMac(bad), bad).toThrow(InvalidArgumentError);
    }
  });

  it('address - validates the numeric range', () => {
    expect(isValidAddress(0xffffffffffff)).toBe(true);
    expect(isValidAddress(0x1000000000000)).toBe(false);
    expect(isValidAddress(-1)).toBe(false);
    expect(isValidAddress(1.5)).toBe(false);
  });

  it('address - names the address types', () => {
    expect(AddressType).toEqual({ PUBLIC: 0, RANDOM: 1, RPA_PUBLIC: 2, RPA_RANDOM: 3 });
    expect(ADDRESS_TYPE_NAMES).toEqual(['public', 'random', 'rpa-public', 'rpa-random']);
    expect(addressTypeName(AddressType.RANDOM)).toBe('random');
    expect(addressTypeName(7)).toBe('unknown(7)');
  });
});
