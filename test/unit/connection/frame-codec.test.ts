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
    // The largest allowed server hello is taken (and is only a malformed hello, not an allocation).
    const allowed = new NoiseClientCodec(() => {}, { psk: PSK });
    allowed.opening();
    expect(() => allowed.push(Uint8Array.of(1, 0x02, 0x00))).not.toThrow();
  });

  it('frame-codec - the plaintext client holds what arrived of a frame, not what its header declares', () => {
    const frames: number[] = [];
    const codec = new PlaintextCodec((_type, payload) => frames.push(payload.length));
    // A 65535-byte payload declared, 4 bytes of it sent.
    codec.push(Uint8Array.of(0, 0xff, 0xff, 0x03, 0x5d, 1, 2, 3, 4));
    expect(frames).toEqual([]);
    codec.push(new Uint8Array(65535 - 4));
    expect(frames).toEqual([65535]);
  });
});
