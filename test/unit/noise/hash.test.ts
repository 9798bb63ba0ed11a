import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../../src/errors.js';
import { DEFAULT_HASH_IMPL, type HashImpl, noiseHash } from '../../../src/noise/hash.js';

const bytes = (n: number, seed = 1): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('noise/hash', () => {
  it('hash - node:crypto is the default and unknown implementations are refused', () => {
    expect(DEFAULT_HASH_IMPL).toBe('node');
    expect(noiseHash().impl).toBe('node');
    expect(() => noiseHash('md5' as HashImpl)).toThrow(InvalidArgumentError);
  });

  describe.each(['node', 'noble'] as const)('%s', (impl) => {
    const hash = noiseHash(impl);
    it('hash - SHA-256 of one or two parts matches the reference, with plain Uint8Array results', () => {
      for (const [a, b] of [
        [bytes(0), undefined],
        [bytes(32), bytes(0, 2)],
        [bytes(32), bytes(65, 3)],
        [bytes(100).subarray(7, 40), bytes(1, 4)],
      ] as const) {
        const joined = Buffer.concat([a, ...(b ? [b] : [])]);
        expect(hex(hash.sha256(a, b))).toBe(createHash('sha256').update(joined).digest('hex'));
        expect(Object.getPrototypeOf(hash.sha256(a, b))).toBe(Uint8Array.prototype);
      }
    });

    it('hash - HKDF gives the HMAC chain of the Noise spec, for empty and 32-byte input key material', () => {
      const hmac = (key: Uint8Array, ...parts: Uint8Array[]): Buffer => {
        const mac = createHmac('sha256', key);
        for (const part of parts) mac.update(part);
        return mac.digest();
      };
      for (const ikm of [bytes(0), bytes(32, 5)]) {
        const ck = bytes(32, 11);
        const temp = hmac(ck, ikm);
        const out1 = hmac(temp, Uint8Array.of(1));
        const out2 = hmac(temp, out1, Uint8Array.of(2));
        const out3 = hmac(temp, out2, Uint8Array.of(3));
        expect(hash.hkdf(ck, ikm, 2).map(hex)).toEqual([out1, out2].map(hex));
        expect(hash.hkdf(ck, ikm, 3).map(hex)).toEqual([out1, out2, out3].map(hex));
      }
    });
  });
});
