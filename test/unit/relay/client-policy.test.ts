import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../../src/errors.js';
import { compileClientPolicy, compileSlotQuotas, plainAddress, slotQuota } from '../../../src/relay/client-policy.js';

const at = (address: string) => ({ address, port: 40000, proxy: 'kitchen' });

describe('relay client policy', () => {
  it('client-policy - absent rules allow everyone (as the firmware); an empty list nobody', () => {
    expect(compileClientPolicy()(at('192.168.1.7'))).toEqual({ scannerMode: true, unpair: true, clearCache: true });
    expect(compileClientPolicy({ unpair: [] })(at('127.0.0.1'))).toEqual({ scannerMode: true, unpair: false, clearCache: true });
  });

  it('client-policy - addresses and CIDR blocks, IPv4 and IPv6, IPv4-mapped sockets included', () => {
    const permissionsOf = compileClientPolicy({ scannerMode: ['192.168.1.10', '10.0.0.0/8', 'fd00::/8', '::1'] });
    const allowed = (address: string): boolean => permissionsOf(at(address)).scannerMode;
    expect(allowed('192.168.1.10')).toBe(true);
    expect(allowed('192.168.1.11')).toBe(false);
    expect(allowed('10.200.3.4')).toBe(true);
    expect(allowed('fd12::5')).toBe(true);
    expect(allowed('::1')).toBe(true);
    expect(allowed('127.0.0.1')).toBe(false);
    expect(allowed(plainAddress('::ffff:10.1.2.3'))).toBe(true);
    expect(allowed('')).toBe(false);
    expect(plainAddress('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(plainAddress('fe80::1')).toBe('fe80::1');
  });

  it('client-policy - a predicate sees the identity the relay can vouch for', () => {
    const seen: unknown[] = [];
    const permissionsOf = compileClientPolicy({
      clearCache: (client) => {
        seen.push(client);
        return client.proxy === 'kitchen';
      },
    });
    expect(permissionsOf(at('192.168.1.7')).clearCache).toBe(true);
    expect(seen).toEqual([at('192.168.1.7')]);
  });

  it('client-policy - a predicate that throws denies what its rule guards and is reported; the other rules stand', () => {
    const reported: unknown[] = [];
    const permissionsOf = compileClientPolicy(
      {
        unpair: () => {
          throw new Error('lookup failed');
        },
        clearCache: ['192.168.1.7'],
      },
      (rule, client, error) => reported.push([rule, client.address, (error as Error).message]),
    );
    expect(permissionsOf(at('192.168.1.7'))).toEqual({ scannerMode: true, unpair: false, clearCache: true });
    expect(reported).toEqual([['unpair', '192.168.1.7', 'lookup failed']]);
    // Without a handler the throw is still caught.
    expect(compileClientPolicy({ scannerMode: () => JSON.parse('{') })(at('10.0.0.1')).scannerMode).toBe(false);
  });

  it('client-policy - entries that are no address or block are refused up front', () => {
    for (const entry of ['kitchen.local', '10.0.0.0/33', '1.2.3.4/', '::1/129', '1.2.3.4/8/1', '1.2.3.4/x', '']) {
      expect(() => compileClientPolicy({ scannerMode: [entry] }), entry).toThrow(InvalidArgumentError);
    }
  });

  it('client-policy - the default quota is all but one of the slots, at least one; explicit values must be whole and positive', () => {
    expect([1, 2, 3, 5, 9].map((limit) => slotQuota(undefined, limit))).toEqual([1, 1, 2, 4, 8]);
    expect(slotQuota(0 + 1, 3)).toBe(1);
    expect(slotQuota(Number.POSITIVE_INFINITY, 3)).toBe(Number.POSITIVE_INFINITY);
    expect(() => compileSlotQuotas(2)).not.toThrow();
    expect(() => compileSlotQuotas(Number.POSITIVE_INFINITY)).not.toThrow();
    for (const bad of [0, -2, 1.5, Number.NaN]) {
      expect(() => compileSlotQuotas(bad)).toThrow(InvalidArgumentError);
      expect(() => compileSlotQuotas(undefined, [{ clients: ['10.0.0.1'], slots: bad }])).toThrow(/slotsFor\[0\]\.slots/);
    }
    expect(() => compileSlotQuotas(undefined, [{ clients: ['kitchen.local'], slots: 1 }])).toThrow(/slotsFor\[0\]\.clients/);
  });

  it('client-policy - slotsFor: the first rule listing the address gives its quota, else slotsPerClient (undefined: the default)', () => {
    const rules = [
      { clients: ['192.168.1.20'], slots: Number.POSITIVE_INFINITY },
      { clients: ['192.168.1.0/24', '::1'], slots: 1 },
    ];
    const quotaOf = compileSlotQuotas(undefined, rules);
    expect(quotaOf(at('192.168.1.20'))).toBe(Number.POSITIVE_INFINITY);
    expect(quotaOf(at('192.168.1.21'))).toBe(1);
    expect(quotaOf(at('::1'))).toBe(1);
    expect(quotaOf(at('10.0.0.1'))).toBeUndefined();
    expect(compileSlotQuotas(3, rules)(at('10.0.0.1'))).toBe(3);
  });
});
