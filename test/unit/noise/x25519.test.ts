import { describe, expect, it } from 'vitest';
import { ephemeralFromPrivate, generateEphemeral } from '../../../src/noise/x25519.js';

describe('noise/x25519', () => {
  it('x25519 - node:crypto and noble ephemerals agree on the shared secret', () => {
    const fromNode = generateEphemeral('node');
    const fromNoble = generateEphemeral('noble');
    expect(fromNode.publicKey).toHaveLength(32);
    expect(Buffer.from(fromNode.sharedSecret(fromNoble.publicKey))).toEqual(Buffer.from(fromNoble.sharedSecret(fromNode.publicKey)));
  });

  it('x25519 - fixed private keys give the RFC 7748 public key', () => {
    // Spec Appendix A: client ephemeral private 11 x 32.
    const key = ephemeralFromPrivate(new Uint8Array(32).fill(0x11));
    expect(Buffer.from(key.publicKey).toString('hex')).toBe('7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13');
  });

  it('x25519 - both implementations refuse a low-order peer key', () => {
    const lowOrder = new Uint8Array(32); // the point 0
    expect(() => generateEphemeral('node').sharedSecret(lowOrder)).toThrow();
    expect(() => generateEphemeral('noble').sharedSecret(lowOrder)).toThrow();
  });
});
