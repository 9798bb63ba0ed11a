import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../../src/errors.js';
import { AEAD_TAG_SIZE, type AeadImpl, createAead, DEFAULT_AEAD_IMPL, NODE_AEAD_AVAILABLE } from '../../../src/noise/aead.js';

const KEY = Uint8Array.from({ length: 32 }, (_, i) => 0x80 + i);
const IMPLS: readonly AeadImpl[] = ['node', 'noble'];
const bytes = (length: number, seed = 1): Uint8Array => Uint8Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff);

/** Reference: @noble/ciphers called directly with a hand-built Noise nonce (4 zero bytes + LE64 counter). */
function reference(counter: bigint, plaintext: Uint8Array, ad?: Uint8Array): Uint8Array {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, counter, true);
  return chacha20poly1305(KEY, nonce, ad).encrypt(plaintext);
}

describe('aead', () => {
  it('aead - default is node:crypto when OpenSSL has the cipher', () => {
    expect(DEFAULT_AEAD_IMPL).toBe(NODE_AEAD_AVAILABLE ? 'node' : 'noble');
    expect(createAead(KEY).impl).toBe(DEFAULT_AEAD_IMPL);
  });

  it('aead - rejects a key that is not 32 bytes and an unknown implementation', () => {
    expect(() => createAead(new Uint8Array(31))).toThrow(InvalidArgumentError);
    expect(() => createAead(KEY, 'openssl' as AeadImpl)).toThrow(InvalidArgumentError);
  });

  describe.each(IMPLS)('%s', (impl) => {
    it('aead - seal matches the reference nonce layout, including counters above 2^32', () => {
      const aead = createAead(KEY, impl);
      const ad = bytes(32, 7);
      for (const counter of [0, 1, 255, 256, 0xffff_ffff, 0x1_0000_0000, 0x1234_5678_9abc, Number.MAX_SAFE_INTEGER]) {
        for (const size of [0, 1, 20, 756, 1400]) {
          const plaintext = bytes(size, counter & 0xff);
          expect(aead.seal(counter, plaintext, ad)).toEqual(reference(BigInt(counter), plaintext, ad));
          expect(aead.seal(counter, plaintext)).toEqual(reference(BigInt(counter), plaintext));
        }
      }
    });

    it('aead - open inverts seal and returns a plain Uint8Array', () => {
      const aead = createAead(KEY, impl);
      const plaintext = bytes(756);
      const sealed = aead.seal(42, plaintext, bytes(5));
      expect(sealed.length).toBe(plaintext.length + AEAD_TAG_SIZE);
      const opened = aead.open(42, sealed, bytes(5));
      expect(opened).toEqual(plaintext);
      expect(Object.getPrototypeOf(opened)).toBe(Uint8Array.prototype);
      expect(aead.open(0, aead.seal(0, new Uint8Array(0)))).toEqual(new Uint8Array(0));
    });

    it('aead - open returns null (no throw) on a bad tag, wrong counter, wrong AD or short input', () => {
      const aead = createAead(KEY, impl);
      const sealed = aead.seal(3, bytes(20), bytes(4));
      const flipped = sealed.slice();
      flipped[5]! ^= 1;
      expect(aead.open(3, flipped, bytes(4))).toBeNull();
      const badTag = sealed.slice();
      badTag[badTag.length - 1]! ^= 0x80;
      expect(aead.open(3, badTag, bytes(4))).toBeNull();
      expect(aead.open(4, sealed, bytes(4))).toBeNull();
      expect(aead.open(3, sealed)).toBeNull();
      expect(aead.open(3, sealed.subarray(0, AEAD_TAG_SIZE - 1))).toBeNull();
      expect(aead.open(3, sealed, bytes(4))).toEqual(bytes(20));
    });

    it('aead - accepts subarrays at odd offsets', () => {
      const aead = createAead(KEY, impl);
      const plaintext = bytes(100);
      const sealed = aead.seal(9, plaintext);
      const host = new Uint8Array(sealed.length + 7);
      host.set(sealed, 3);
      expect(aead.open(9, host.subarray(3, 3 + sealed.length))).toEqual(plaintext);
      const ptHost = new Uint8Array(plaintext.length + 5);
      ptHost.set(plaintext, 1);
      expect(aead.seal(9, ptHost.subarray(1, 1 + plaintext.length))).toEqual(sealed);
    });

    it('aead - sealInto encrypts in place over its own plaintext', () => {
      const aead = createAead(KEY, impl);
      const plaintext = bytes(64);
      const buffer = new Uint8Array(2 + plaintext.length + AEAD_TAG_SIZE);
      buffer.set(plaintext, 2);
      const out = buffer.subarray(2);
      aead.sealInto(11, out.subarray(0, plaintext.length), out);
      expect(out).toEqual(reference(11n, plaintext));
      expect(() => aead.sealInto(12, plaintext, new Uint8Array(plaintext.length))).toThrow(InvalidArgumentError);
    });

    it('aead - does not keep a reference to the caller key', () => {
      const key = KEY.slice();
      const aead = createAead(key, impl);
      key.fill(0);
      expect(aead.seal(0, bytes(8))).toEqual(reference(0n, bytes(8)));
    });
  });

  it('aead - node and noble agree byte for byte', () => {
    const node = createAead(KEY, 'node');
    const noble = createAead(KEY, 'noble');
    for (const size of [0, 16, 20, 63, 64, 65, 756, 1400, 4096]) {
      const sealed = node.seal(size, bytes(size), bytes(3));
      expect(noble.seal(size, bytes(size), bytes(3))).toEqual(sealed);
      expect(noble.open(size, sealed, bytes(3))).toEqual(bytes(size));
    }
  });
});
