import { describe, expect, it } from 'vitest';
import { MAX_DEVICE_HANDSHAKE_BODY, NoiseClientCodec, PlaintextCodec } from '../../../src/connection/frame-codec.js';
import { FrameTooLargeError } from '../../../src/errors.js';
import { parsePsk } from '../../../src/noise/psk.js';

const PSK = parsePsk('AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=');

describe('connection/frame-codec', () => {
  it('frame-codec - a hostile "proxy" cannot make the Noise client hold a large handshake frame: refused at its header', async () => {
    expect(MAX_DEVICE_HANDSHAKE_BODY).toBe(512);
    const codec = new NoiseClientCodec(() => {}, { psk: PSK });
    codec.opening();
    expect(() => codec.push(Uint8Array.of(1, 0xff, 0xff))).toThrow(FrameTooLargeError);
    await expect(codec.ready).rejects.toBeInstanceOf(FrameTooLargeError);
    expect(codec.inputBytes).toBe(0);
    // The largest allowed server hello is taken: its header alone allocates nothing, its body what arrived of it.
    const allowed = new NoiseClientCodec(() => {}, { psk: PSK });
    allowed.opening();
    expect(() => allowed.push(Uint8Array.of(1, 0x02, 0x00))).not.toThrow();
    expect(allowed.inputBytes).toBe(0);
    allowed.push(new Uint8Array(10));
    expect(allowed.inputBytes).toBeGreaterThanOrEqual(10);
    expect(allowed.inputBytes).toBeLessThanOrEqual(256);
  });

  it('frame-codec - the plaintext client holds what arrived of a frame, not what its header declares', () => {
    const frames: number[] = [];
    const codec = new PlaintextCodec((_type, payload) => frames.push(payload.length));
    // A 65535-byte payload declared, 4 bytes of it sent: a small buffer, not 64 KiB.
    codec.push(Uint8Array.of(0, 0xff, 0xff, 0x03, 0x5d, 1, 2, 3, 4));
    expect(frames).toEqual([]);
    expect(codec.inputBytes).toBeGreaterThanOrEqual(9);
    expect(codec.inputBytes).toBeLessThanOrEqual(256);
    // It grows with what arrives (at most twice it), and the frame is whole once everything came.
    codec.push(new Uint8Array(1000));
    expect(codec.inputBytes).toBeLessThanOrEqual(2 * 1009);
    codec.push(new Uint8Array(65535 - 1004));
    expect(frames).toEqual([65535]);
    expect(codec.inputBytes).toBe(0);
  });
});
