import { describe, expect, it } from 'vitest';
import { HandshakeError, InvalidArgumentError, InvalidEncryptionKeyError, InvalidPskError } from '../../../src/errors.js';
import { esphomePrologue, NOISE_NN, NOISE_NNPSK0, NoiseHandshake, type NoiseHandshakeOptions } from '../../../src/noise/handshake.js';
import { generateEphemeral } from '../../../src/noise/x25519.js';

const PSK = Uint8Array.from({ length: 32 }, (_, i) => i);
const OTHER_PSK = Uint8Array.from({ length: 32 }, (_, i) => 255 - i);
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

function pair(initiator: Partial<NoiseHandshakeOptions> = {}, responder: Partial<NoiseHandshakeOptions> = {}) {
  const base = { prologue: esphomePrologue(), psk: PSK };
  return {
    client: new NoiseHandshake({ ...base, role: 'initiator', ...initiator }),
    device: new NoiseHandshake({ ...base, role: 'responder', ...responder }),
  };
}

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

describe('handshake', () => {
  it('handshake - NOISE_NNPSK0 names the ESPHome protocol', () => {
    expect(NOISE_NNPSK0).toBe('Noise_NNpsk0_25519_ChaChaPoly_SHA256');
    expect(NOISE_NNPSK0.length).toBe(36);
  });

  it('handshake - esphomePrologue is "NoiseAPIInit" + u16be length + client hello body', () => {
    expect(toHex(esphomePrologue())).toBe('4e6f697365415049496e69740000');
    expect(toHex(esphomePrologue(Uint8Array.of(0xaa, 0xbb)))).toBe('4e6f697365415049496e69740002aabb');
    expect(toHex(esphomePrologue(new Uint8Array(300))).slice(24, 28)).toBe('012c');
  });

  it('handshake - random ephemerals agree on hash and transport keys; messages are 48 bytes', () => {
    const { client, device } = pair();
    const message1 = client.writeMessage();
    expect(message1.length).toBe(48);
    expect(device.readMessage(message1)).toEqual(new Uint8Array(0));
    const message2 = device.writeMessage();
    expect(message2.length).toBe(48);
    client.readMessage(message2);
    expect(toHex(client.handshakeHash())).toBe(toHex(device.handshakeHash()));
    const c = client.split();
    const d = device.split();
    const payload = new TextEncoder().encode('ping');
    expect(d.receive.decrypt(c.send.encrypt(payload))).toEqual(payload);
    expect(c.receive.decrypt(d.send.encrypt(payload))).toEqual(payload);
  });

  it('handshake - payloads travel encrypted in both messages', () => {
    const { client, device } = pair();
    const secret = new TextEncoder().encode('secret payload');
    const message1 = client.writeMessage(secret);
    expect(Buffer.from(message1).includes(Buffer.from(secret))).toBe(false);
    expect(device.readMessage(message1)).toEqual(secret);
    expect(client.readMessage(device.writeMessage(secret))).toEqual(secret);
  });

  it('handshake - a wrong PSK fails on the responder reading message 1 with InvalidEncryptionKeyError', () => {
    const { client, device } = pair({}, { psk: OTHER_PSK });
    const error = caught(() => device.readMessage(client.writeMessage()));
    expect(error).toBeInstanceOf(InvalidEncryptionKeyError);
    expect((error as InvalidEncryptionKeyError).code).toBe('ESPAPI_ERR_INVALID_KEY');
    expect((error as Error).message).toMatch(/encryption key/);
    // The failed handshake stays failed.
    expect(device.isComplete).toBe(false);
    expect(() => device.writeMessage()).toThrow(HandshakeError);
  });

  it('handshake - a different prologue also fails authentication', () => {
    const { client, device } = pair({}, { prologue: esphomePrologue(Uint8Array.of(1)) });
    expect(() => device.readMessage(client.writeMessage())).toThrow(InvalidEncryptionKeyError);
  });

  it('handshake - a tampered message 2 fails on the initiator with InvalidEncryptionKeyError', () => {
    const { client, device } = pair();
    device.readMessage(client.writeMessage());
    const message2 = device.writeMessage();
    message2[40]! ^= 1;
    expect(() => client.readMessage(message2)).toThrow(InvalidEncryptionKeyError);
  });

  it('handshake - short messages are a protocol error, not a key error', () => {
    const { device } = pair();
    const error = caught(() => device.readMessage(new Uint8Array(40)));
    expect(error).toBeInstanceOf(HandshakeError);
    expect(error).not.toBeInstanceOf(InvalidEncryptionKeyError);
    expect(caught(() => pair().device.readMessage(new Uint8Array(10)))).not.toBeInstanceOf(InvalidEncryptionKeyError);
  });

  it('handshake - a low-order peer ephemeral is rejected', () => {
    const { client } = pair();
    client.writeMessage();
    // u = 0 is a low-order point: the DH output would be all zeros.
    const error = caught(() => client.readMessage(new Uint8Array(48)));
    expect(error).toBeInstanceOf(HandshakeError);
  });

  it('handshake - guards out-of-turn use, early hash/split and a second split', () => {
    const { client, device } = pair();
    expect(client.isMyTurn).toBe(true);
    expect(device.isMyTurn).toBe(false);
    expect(() => client.readMessage(new Uint8Array(48))).toThrow(/Out of turn/);
    expect(() => device.writeMessage()).toThrow(/Out of turn/);
    expect(() => client.handshakeHash()).toThrow(HandshakeError);
    expect(() => client.split()).toThrow(HandshakeError);
    const message1 = client.writeMessage();
    expect(() => client.writeMessage()).toThrow(/Out of turn/);
    device.readMessage(message1);
    client.readMessage(device.writeMessage());
    expect(client.isComplete && device.isComplete).toBe(true);
    expect(() => client.writeMessage()).toThrow(/complete/);
    expect(() => device.readMessage(message1)).toThrow(/complete/);
    client.split();
    expect(() => client.split()).toThrow(/already/);
  });

  it('handshake - a responder ephemeral generated ahead is the one message 2 carries', () => {
    const ephemeral = generateEphemeral();
    const { client, device } = pair({}, { ephemeral });
    device.readMessage(client.writeMessage());
    const message2 = device.writeMessage();
    expect(toHex(message2.subarray(0, 32))).toBe(toHex(ephemeral.publicKey));
    client.readMessage(message2);
    expect(toHex(client.handshakeHash())).toBe(toHex(device.handshakeHash()));
  });

  it('handshake - validates its options', () => {
    const prologue = esphomePrologue();
    expect(() => new NoiseHandshake({ role: 'initiator', prologue })).toThrow(InvalidPskError);
    expect(() => new NoiseHandshake({ role: 'initiator', prologue, psk: new Uint8Array(31) })).toThrow(InvalidPskError);
    expect(() => new NoiseHandshake({ role: 'initiator', prologue, protocolName: NOISE_NN, psk: PSK })).toThrow(InvalidArgumentError);
    expect(() => new NoiseHandshake({ role: 'initiator', prologue, psk: PSK, protocolName: 'Noise_XX_25519_AESGCM_SHA256' })).toThrow(
      InvalidArgumentError,
    );
    expect(() => new NoiseHandshake({ role: 'initiator', prologue, psk: PSK, ephemeralPrivateKey: new Uint8Array(16) })).toThrow(
      InvalidArgumentError,
    );
    const both = {
      role: 'initiator',
      prologue,
      psk: PSK,
      ephemeralPrivateKey: new Uint8Array(32),
      ephemeral: generateEphemeral(),
    } as const;
    expect(() => new NoiseHandshake(both)).toThrow(/either/);
  });

  it('handshake - NN (no PSK) works between two instances', () => {
    const prologue = esphomePrologue();
    const client = new NoiseHandshake({ role: 'initiator', prologue, protocolName: NOISE_NN });
    const device = new NoiseHandshake({ role: 'responder', prologue, protocolName: NOISE_NN });
    const message1 = client.writeMessage();
    expect(message1.length).toBe(32);
    device.readMessage(message1);
    client.readMessage(device.writeMessage());
    expect(client.handshakeHash()).toEqual(device.handshakeHash());
  });

  it('handshake - the two AEAD implementations interoperate', () => {
    const { client, device } = pair({ aead: 'node' }, { aead: 'noble' });
    device.readMessage(client.writeMessage());
    client.readMessage(device.writeMessage());
    const c = client.split();
    const d = device.split();
    expect(c.send.aead).toBe('node');
    expect(d.send.aead).toBe('noble');
    expect(d.receive.decrypt(c.send.encrypt(Uint8Array.of(1, 2, 3)))).toEqual(Uint8Array.of(1, 2, 3));
  });
});
