import { describe, expect, it } from 'vitest';
import { addressOfNobleId, fromNobleUuid, nobleAddress, nobleAddressType, nobleId, toNobleUuid } from '../../../src/noble/noble-format.js';

describe('noble/format', () => {
  it('noble format - ids and addresses as noble’s HCI bindings spell them', () => {
    expect(nobleId(0xc0ffee000001)).toBe('c0ffee000001');
    expect(nobleId(0x000000000a0b)).toBe('000000000a0b');
    expect(nobleAddress(0xaabbccddeeff)).toBe('aa:bb:cc:dd:ee:ff');
    expect(addressOfNobleId('C0FFEE000001')).toBe(0xc0ffee000001);
    expect(() => addressOfNobleId('c0:ff:ee:00:00:01')).toThrow(expect.objectContaining({ code: 'ESPAPI_ERR_INVALID_ARGUMENT' }));
    expect(nobleAddressType(0)).toBe('public');
    expect(nobleAddressType(1)).toBe('random');
    // noble's HCI layer only says 'random' for type 1.
    expect(nobleAddressType(3)).toBe('public');
  });

  it('noble format - GATT UUIDs: 16-bit unpadded, everything else 32 hex digits', () => {
    expect(toNobleUuid('00002a00-0000-1000-8000-00805f9b34fb')).toBe('2a00');
    expect(toNobleUuid('00000a12-0000-1000-8000-00805f9b34fb')).toBe('a12');
    expect(toNobleUuid('12345678-0000-1000-8000-00805f9b34fb')).toBe('12345678000010008000' + '00805f9b34fb');
    expect(toNobleUuid('a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b00')).toBe('a3f1c2e05b7d4e8a9c3b0d1e2f3a4b00');
  });

  it('noble format - any spelling noble users write maps back to our canonical form', () => {
    const canonical = '00000a12-0000-1000-8000-00805f9b34fb';
    for (const text of ['a12', '0a12', '0x0A12', '00000a1200001000800000805f9b34fb', canonical.toUpperCase()]) {
      expect(fromNobleUuid(text), text).toBe(canonical);
    }
    expect(() => fromNobleUuid('xyz')).toThrow(expect.objectContaining({ code: 'ESPAPI_ERR_INVALID_ARGUMENT' }));
  });
});
