import { describe, expect, it } from 'vitest';
import { AddressTypeCache } from '../../../src/bluetooth/address-types.js';

describe('bluetooth/address-types', () => {
  it('address-types - remembers the latest type per 48-bit address, including 0 and the largest address', () => {
    const cache = new AddressTypeCache();
    const addresses = [0, 1, 0xffff_ffff, 0x1_0000_0000, 0xc0ff_ee00_0001, 0xffff_ffff_ffff];
    for (const [i, address] of addresses.entries()) cache.set(address, i % 4);
    for (const [i, address] of addresses.entries()) expect(cache.get(address), String(address)).toBe(i % 4);
    cache.set(0xc0ff_ee00_0001, 3);
    expect(cache.get(0xc0ff_ee00_0001)).toBe(3);
    expect(cache.get(0xc0ff_ee00_0002)).toBeUndefined();
  });

  it('address-types - colliding addresses keep their own entries', () => {
    // Same low 32 bits, different high halves: the probe must compare the whole address.
    const cache = new AddressTypeCache(64);
    for (let hi = 0; hi < 40; hi++) cache.set(hi * 0x1_0000_0000 + 0x1234, hi & 3);
    for (let hi = 0; hi < 40; hi++) expect(cache.get(hi * 0x1_0000_0000 + 0x1234)).toBe(hi & 3);
  });

  it('address-types - grows from a small table without losing entries', () => {
    const cache = new AddressTypeCache();
    for (let i = 0; i < 3000; i++) cache.set(0xc000_0000_0000 + i * 0x1_0001, i & 3);
    for (let i = 0; i < 3000; i++) expect(cache.get(0xc000_0000_0000 + i * 0x1_0001)).toBe(i & 3);
  });

  it('address-types - stays bounded: an address unheard for two generations is forgotten, a recent one is kept', () => {
    const cache = new AddressTypeCache(100);
    cache.set(0xaaaa_0000_0001, 1);
    for (let i = 0; i < 250; i++) cache.set(0xbbbb_0000_0000 + i, 2);
    expect(cache.get(0xaaaa_0000_0001)).toBeUndefined();
    expect(cache.get(0xbbbb_0000_0000 + 249)).toBe(2);
    // The previous generation still answers.
    expect(cache.get(0xbbbb_0000_0000 + 150)).toBe(2);
  });
});
