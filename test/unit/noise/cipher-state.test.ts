import { describe, expect, it } from 'vitest';
import { HandshakeError, InvalidArgumentError } from '../../../src/errors.js';
import type { AeadImpl } from '../../../src/noise/aead.js';
import { CipherState, MAX_NONCE } from '../../../src/noise/cipher-state.js';

const KEY = Uint8Array.from({ length: 32 }, (_, i) => i * 3);
const EMPTY = new Uint8Array(0);
const text = (value: string): Uint8Array => new TextEncoder().encode(value);

describe.each(['node', 'noble'] as AeadImpl[])('cipher-state (%s)', (aead) => {
  it('cipher-state - round-trips and advances one nonce per message', () => {
    const send = new CipherState(KEY, { aead });
    const receive = new CipherState(KEY, { aead });
    expect(send.aead).toBe(aead);
    for (let i = 0; i < 3; i++) {
      const ciphertext = send.encryptWithAd(text('ad'), text(`message ${i}`));
      expect(send.nonce).toBe(i + 1);
      expect(receive.decryptWithAd(text('ad'), ciphertext)).toEqual(text(`message ${i}`));
      expect(receive.nonce).toBe(i + 1);
    }
  });

  it('cipher-state - the same plaintext encrypts differently at each nonce', () => {
    const state = new CipherState(KEY, { aead });
    expect(state.encrypt(text('x'))).not.toEqual(state.encrypt(text('x')));
  });

  it('cipher-state - a bad tag throws ESPAPI_ERR_DECRYPT and does not advance the nonce', () => {
    const send = new CipherState(KEY, { aead });
    const receive = new CipherState(KEY, { aead });
    const ciphertext = send.encrypt(text('hello'));
    const tampered = ciphertext.slice();
    tampered[0]! ^= 1;
    let caught: unknown;
    try {
      receive.decrypt(tampered);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(HandshakeError);
    expect((caught as HandshakeError).code).toBe('ESPAPI_ERR_DECRYPT');
    expect(receive.nonce).toBe(0);
    expect(receive.tryDecryptWithAd(EMPTY, tampered)).toBeNull();
    expect(receive.nonce).toBe(0);
    expect(receive.decrypt(ciphertext)).toEqual(text('hello'));
    expect(receive.nonce).toBe(1);
  });

  it('cipher-state - AD is authenticated', () => {
    const ciphertext = new CipherState(KEY, { aead }).encryptWithAd(text('one'), text('payload'));
    expect(new CipherState(KEY, { aead }).tryDecryptWithAd(text('two'), ciphertext)).toBeNull();
  });

  it('cipher-state - refuses to go past the largest safe nonce instead of wrapping', () => {
    const state = new CipherState(KEY, { aead, nonce: MAX_NONCE });
    const last = state.encrypt(text('last'));
    expect(new CipherState(KEY, { aead, nonce: MAX_NONCE }).decrypt(last)).toEqual(text('last'));
    expect(() => state.encrypt(text('one more'))).toThrow(/nonce space exhausted/);
    expect(() => state.decrypt(last)).toThrow(HandshakeError);
  });

  it('cipher-state - rejects a bad starting nonce', () => {
    expect(() => new CipherState(KEY, { aead, nonce: -1 })).toThrow(InvalidArgumentError);
    expect(() => new CipherState(KEY, { aead, nonce: 2 ** 53 })).toThrow(InvalidArgumentError);
  });

  it('cipher-state - encryptWithAdInto writes ciphertext and tag into the given buffer', () => {
    const a = new CipherState(KEY, { aead });
    const b = new CipherState(KEY, { aead });
    const out = new Uint8Array(5 + 16);
    a.encryptWithAdInto(EMPTY, text('abcde'), out);
    expect(out).toEqual(b.encrypt(text('abcde')));
    expect(() => a.encryptWithAdInto(EMPTY, text('abcde'), new Uint8Array(5))).toThrow(InvalidArgumentError);
    expect(a.nonce).toBe(1);
  });
});
