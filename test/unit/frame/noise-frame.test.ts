import { describe, expect, it } from 'vitest';
import {
  DevicePlaintextError,
  FrameError,
  FrameTooLargeError,
  HandshakeError,
  InvalidArgumentError,
  InvalidEncryptionKeyError,
} from '../../../src/errors.js';
import {
  encodeHandshakeBody,
  encodeHandshakeRejection,
  encodeNoiseFrame,
  encodeServerHello,
  HANDSHAKE_REJECT_BAD_ERROR_BYTE,
  HANDSHAKE_REJECT_BAD_INDICATOR,
  HANDSHAKE_REJECT_BAD_PACKET_LEN,
  HANDSHAKE_REJECT_EMPTY,
  HANDSHAKE_REJECT_ERROR,
  HANDSHAKE_REJECT_MAC_FAILURE,
  handshakeRejectionError,
  MAX_HANDSHAKE_BODY,
  MAX_NOISE_FRAME_BODY,
  MAX_NOISE_PAYLOAD,
  NOISE_INDICATOR,
  NoiseFrameDecoder,
  NoiseTransportCodec,
  parseHandshakeBody,
  parseServerHello,
} from '../../../src/frame/noise-frame.js';
import { CipherState } from '../../../src/noise/cipher-state.js';

const hex = (value: string): Uint8Array => Uint8Array.from(Buffer.from(value.replace(/\s/g, ''), 'hex'));
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const ascii = (text: string): Uint8Array => new TextEncoder().encode(text);
const K1 = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
const K2 = Uint8Array.from({ length: 32 }, (_, i) => 200 - i);

function decodeAll(chunks: Uint8Array[]): string[] {
  const bodies: string[] = [];
  const decoder = new NoiseFrameDecoder((body) => bodies.push(toHex(body)));
  for (const chunk of chunks) decoder.push(chunk);
  expect(decoder.buffered).toBe(0);
  return bodies;
}

function bytewise(bytes: Uint8Array): Uint8Array[] {
  return Array.from(bytes, (byte) => Uint8Array.of(byte));
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

/** Client and device codecs over a matched pair of keys. */
function codecs() {
  return {
    client: new NoiseTransportCodec(new CipherState(K1), new CipherState(K2)),
    device: new NoiseTransportCodec(new CipherState(K2), new CipherState(K1)),
  };
}

describe('noise-frame', () => {
  it('noise-frame - limits are the firmware numbers', () => {
    expect(NOISE_INDICATOR).toBe(0x01);
    expect(MAX_NOISE_FRAME_BODY).toBe(65535);
    expect(MAX_HANDSHAKE_BODY).toBe(128);
    expect(MAX_NOISE_PAYLOAD).toBe(65515);
  });

  it('noise-frame - encodes the outer header as 01 + u16be length', () => {
    expect(toHex(encodeNoiseFrame(new Uint8Array(0)))).toBe('010000');
    expect(toHex(encodeNoiseFrame(hex('aabbcc')))).toBe('010003aabbcc');
    expect(toHex(encodeNoiseFrame(new Uint8Array(0x1234)).subarray(0, 3))).toBe('011234');
    expect(encodeNoiseFrame(new Uint8Array(MAX_NOISE_FRAME_BODY)).length).toBe(3 + MAX_NOISE_FRAME_BODY);
    expect(() => encodeNoiseFrame(new Uint8Array(MAX_NOISE_FRAME_BODY + 1))).toThrow(FrameTooLargeError);
  });

  describe('decoder', () => {
    const bodies = [new Uint8Array(0), hex('00aa'), new Uint8Array(300).fill(7), hex('01'), new Uint8Array(70).fill(9), new Uint8Array(0)];
    const stream = Uint8Array.from(Buffer.concat(bodies.map(encodeNoiseFrame)));
    const expected = bodies.map(toHex);

    it('noise-frame - whole, byte by byte and concatenated input give the same bodies', () => {
      expect(decodeAll([stream])).toEqual(expected);
      expect(decodeAll(bytewise(stream))).toEqual(expected);
      for (const size of [2, 3, 4, 5, 7, 64, 301]) {
        const chunks: Uint8Array[] = [];
        for (let i = 0; i < stream.length; i += size) chunks.push(stream.subarray(i, i + size));
        expect(decodeAll(chunks), `chunks of ${size}`).toEqual(expected);
      }
      // Every possible single split point.
      for (let cut = 0; cut <= stream.length; cut++) {
        expect(decodeAll([stream.subarray(0, cut), stream.subarray(cut)])).toEqual(expected);
      }
    });

    it('noise-frame - a frame inside one chunk is a view, not a copy', () => {
      const frame = encodeNoiseFrame(hex('deadbeef'));
      const seen: Uint8Array[] = [];
      new NoiseFrameDecoder((body) => seen.push(body)).push(frame);
      expect(seen[0]!.buffer).toBe(frame.buffer);
      expect(seen[0]!.byteOffset).toBe(3);
    });

    it('noise-frame - buffered counts held-back bytes and memory is bounded by one frame', () => {
      const decoder = new NoiseFrameDecoder(() => {});
      decoder.push(hex('01'));
      expect(decoder.buffered).toBe(1);
      decoder.push(hex('ffff'));
      expect(decoder.buffered).toBe(0);
      decoder.push(new Uint8Array(65534));
      expect(decoder.buffered).toBe(65534);
      decoder.push(new Uint8Array(1));
      expect(decoder.buffered).toBe(0);
      const big = new Uint8Array(3 + MAX_NOISE_FRAME_BODY);
      big.set([1, 0xff, 0xff]);
      let got = 0;
      const whole = new NoiseFrameDecoder((body) => (got = body.length));
      whole.push(big);
      expect(got).toBe(MAX_NOISE_FRAME_BODY);
    });

    it('noise-frame - a header reserves nothing: a split body is held in a buffer that grows with what arrived', () => {
      const decoder = new NoiseFrameDecoder(() => {});
      decoder.push(hex('01ffff'));
      expect(decoder.allocated).toBe(0);
      decoder.push(new Uint8Array(10));
      expect(decoder.allocated).toBeLessThanOrEqual(256);
      decoder.push(new Uint8Array(5000));
      expect(decoder.allocated).toBeLessThanOrEqual(2 * 5010);
      decoder.push(new Uint8Array(65535 - 5010));
      expect(decoder.allocated).toBe(0);
      expect(decoder.buffered).toBe(0);
    });

    it('noise-frame - maxBody refuses a body at its header (FrameTooLargeError), whole or split; it may change between frames', () => {
      const whole = new NoiseFrameDecoder(() => {}, { maxBody: MAX_HANDSHAKE_BODY });
      expect(() => whole.push(hex('01ffff'))).toThrow(FrameTooLargeError);
      expect(() => whole.push(hex('010000'))).toThrow(FrameError);
      const split = new NoiseFrameDecoder(() => {}, { maxBody: MAX_HANDSHAKE_BODY });
      split.push(hex('01'));
      split.push(hex('00'));
      expect(() => split.push(hex('81'))).toThrow(FrameTooLargeError);
      const bodies: number[] = [];
      const changing = new NoiseFrameDecoder((body) => bodies.push(body.length), { maxBody: 128 });
      changing.push(encodeNoiseFrame(new Uint8Array(128)));
      changing.maxBody = 300;
      changing.push(encodeNoiseFrame(new Uint8Array(300)));
      expect(bodies).toEqual([128, 300]);
    });

    it('noise-frame - yieldWhen stops after a frame and push() says how much it used', () => {
      const bodies: number[] = [];
      const decoder = new NoiseFrameDecoder((body) => bodies.push(body.length), { yieldWhen: () => bodies.length % 2 === 1 });
      const stream = Uint8Array.from(Buffer.concat([1, 2, 3].map((n) => encodeNoiseFrame(new Uint8Array(n)))));
      const used = decoder.push(stream);
      expect(used).toBe(4);
      expect(bodies).toEqual([1]);
      expect(decoder.push(stream.subarray(used))).toBe(stream.length - used);
      expect(bodies).toEqual([1, 2, 3]);
    });

    it('noise-frame - a plaintext reply (first byte 00) is DevicePlaintextError', () => {
      const reply = Uint8Array.from([0x00, ...ascii(HANDSHAKE_REJECT_BAD_INDICATOR)]);
      expect(reply.length).toBe(19);
      for (const chunks of [[reply], bytewise(reply)]) {
        const decoder = new NoiseFrameDecoder(() => {});
        const error = thrown(() => {
          for (const chunk of chunks) decoder.push(chunk);
        });
        expect(error).toBeInstanceOf(DevicePlaintextError);
        expect((error as DevicePlaintextError).code).toBe('ESPAPI_ERR_DEVICE_PLAINTEXT');
        expect((error as Error).message).toMatch(/plaintext/);
        // The decoder stays failed.
        expect(() => decoder.push(encodeNoiseFrame(new Uint8Array(0)))).toThrow(FrameError);
      }
    });

    it('noise-frame - any other indicator, or a 00 mid-stream, is FrameError', () => {
      for (const indicator of [0x02, 0x80, 0xff]) {
        const error = thrown(() => new NoiseFrameDecoder(() => {}).push(Uint8Array.of(indicator, 0, 0)));
        expect(error).toBeInstanceOf(FrameError);
        expect((error as Error).message).toContain(`0x${indicator.toString(16).padStart(2, '0')}`);
      }
      const decoder = new NoiseFrameDecoder(() => {});
      decoder.push(encodeNoiseFrame(hex('aa')));
      const error = thrown(() => decoder.push(hex('000000')));
      expect(error).toBeInstanceOf(FrameError);
      expect(error).not.toBeInstanceOf(DevicePlaintextError);
    });

    it('noise-frame - bodies before a bad frame in the same chunk are still delivered', () => {
      const bodies: string[] = [];
      const decoder = new NoiseFrameDecoder((body) => bodies.push(toHex(body)));
      expect(() => decoder.push(Uint8Array.from([...encodeNoiseFrame(hex('aa')), 0x07, 0, 0]))).toThrow(FrameError);
      expect(bodies).toEqual(['aa']);
    });
  });

  describe('server hello', () => {
    it('noise-frame - parses all three firmware generations', () => {
      expect(parseServerHello(hex('01'))).toEqual({ protocol: 1 });
      expect(parseServerHello(Uint8Array.from([1, ...ascii('proxy'), 0]))).toEqual({ protocol: 1, name: 'proxy' });
      expect(parseServerHello(Uint8Array.from([1, ...ascii('proxy'), 0, ...ascii('a4cf12ab34cd'), 0]))).toEqual({
        protocol: 1,
        name: 'proxy',
        mac: 'a4cf12ab34cd',
      });
    });

    it('noise-frame - is tolerant of unterminated trailing text', () => {
      expect(parseServerHello(Uint8Array.from([1, ...ascii('prox')]))).toEqual({ protocol: 1 });
      expect(parseServerHello(Uint8Array.from([1, ...ascii('proxy'), 0, ...ascii('a4cf')]))).toEqual({ protocol: 1, name: 'proxy' });
    });

    it('noise-frame - rejects an empty hello or an unknown protocol', () => {
      expect(() => parseServerHello(new Uint8Array(0))).toThrow(HandshakeError);
      expect(() => parseServerHello(Uint8Array.from([2, ...ascii('proxy'), 0]))).toThrow(/0x02/);
      expect(() => parseServerHello(hex('00'))).toThrow(HandshakeError);
    });

    it('noise-frame - encodes each generation and round-trips', () => {
      expect(toHex(encodeServerHello({}))).toBe('01');
      expect(toHex(encodeServerHello({ name: 'proxy' }))).toBe('0170726f787900');
      expect(toHex(encodeServerHello({ name: 'proxy', mac: 'a4cf12ab34cd' }))).toBe('01' + '70726f787900' + '61346366313261623334636400');
      expect(encodeServerHello({ name: 'proxy', mac: 'A4:CF:12:AB:34:CD' })).toEqual(
        encodeServerHello({ name: 'proxy', mac: 'a4cf12ab34cd' }),
      );
      expect(parseServerHello(encodeServerHello({ name: 'kök', mac: '001122334455' }))).toEqual({
        protocol: 1,
        name: 'kök',
        mac: '001122334455',
      });
      expect(() => encodeServerHello({ name: 'a\0b' })).toThrow(InvalidArgumentError);
      expect(() => encodeServerHello({ name: 'x', mac: 'a4cf12' })).toThrow(InvalidArgumentError);
    });
  });

  describe('handshake bodies', () => {
    it('noise-frame - 00 + message is a Noise message, 01 + text a rejection', () => {
      expect(toHex(encodeHandshakeBody(hex('aabb')))).toBe('00aabb');
      const ok = parseHandshakeBody(hex('00aabb'));
      expect(ok.ok && toHex(ok.message)).toBe('aabb');
      const rejection = encodeHandshakeRejection(HANDSHAKE_REJECT_MAC_FAILURE);
      expect(toHex(encodeNoiseFrame(rejection)).slice(0, 8)).toBe('01001601');
      expect(parseHandshakeBody(rejection)).toEqual({ ok: false, reason: 'Handshake MAC failure', status: 1 });
      expect(toHex(encodeNoiseFrame(encodeHandshakeRejection(HANDSHAKE_REJECT_BAD_INDICATOR))).slice(0, 8)).toBe('01001301');
      expect(() => parseHandshakeBody(new Uint8Array(0))).toThrow(HandshakeError);
      expect(parseHandshakeBody(Uint8Array.from([7, ...ascii('odd')]))).toEqual({ ok: false, reason: 'odd', status: 7 });
    });

    it('noise-frame - rejection strings are the firmware text', () => {
      expect([
        HANDSHAKE_REJECT_MAC_FAILURE,
        HANDSHAKE_REJECT_ERROR,
        HANDSHAKE_REJECT_BAD_INDICATOR,
        HANDSHAKE_REJECT_BAD_PACKET_LEN,
        HANDSHAKE_REJECT_EMPTY,
        HANDSHAKE_REJECT_BAD_ERROR_BYTE,
      ]).toEqual([
        'Handshake MAC failure',
        'Handshake error',
        'Bad indicator byte',
        'Bad handshake packet len',
        'Empty handshake message',
        'Bad handshake error byte',
      ]);
    });

    it('noise-frame - only "Handshake MAC failure" means a wrong key', () => {
      const wrongKey = handshakeRejectionError(HANDSHAKE_REJECT_MAC_FAILURE);
      expect(wrongKey).toBeInstanceOf(InvalidEncryptionKeyError);
      expect(wrongKey.code).toBe('ESPAPI_ERR_INVALID_KEY');
      expect(wrongKey.message).toMatch(/key is wrong/);
      for (const reason of [
        HANDSHAKE_REJECT_ERROR,
        HANDSHAKE_REJECT_BAD_INDICATOR,
        HANDSHAKE_REJECT_EMPTY,
        'handshake mac failure',
        'x'.repeat(500),
      ]) {
        const error = handshakeRejectionError(reason);
        expect(error).toBeInstanceOf(HandshakeError);
        expect(error).not.toBeInstanceOf(InvalidEncryptionKeyError);
        expect(error.code).toBe('ESPAPI_ERR_HANDSHAKE');
        expect(error.message.length).toBeLessThan(300);
      }
    });
  });

  describe('transport', () => {
    it('noise-frame - encodes 01 len + ENCRYPT(type, len, payload) and decodes it back', () => {
      const { client, device } = codecs();
      const payload = hex('0a0373646b1001180f');
      const frame = client.encodeMessage(1, payload);
      expect(frame.length).toBe(3 + 4 + payload.length + 16);
      expect(toHex(frame.subarray(0, 3))).toBe(`01${(4 + payload.length + 16).toString(16).padStart(4, '0')}`);
      // The inner header is encrypted with k1 at nonce 0.
      expect(new CipherState(K2).tryDecryptWithAd(new Uint8Array(0), frame.subarray(3))).toBeNull();
      expect(toHex(new CipherState(K1).decrypt(frame.subarray(3)))).toBe(`00010009${toHex(payload)}`);
      const got: [number, string][] = [];
      device.decodeBody(frame.subarray(3), (type, body) => got.push([type, toHex(body)]));
      expect(got).toEqual([[1, toHex(payload)]]);
    });

    it('noise-frame - many frames through the decoder, whole and byte by byte', () => {
      const { client, device } = codecs();
      const sent: [number, string][] = [];
      const frames: Uint8Array[] = [];
      for (let i = 0; i < 20; i++) {
        const payload = Uint8Array.from({ length: i * 37 }, (_, j) => j ^ i);
        sent.push([0x100 + i, toHex(payload)]);
        frames.push(client.encodeMessage(0x100 + i, payload));
      }
      const stream = Uint8Array.from(Buffer.concat(frames));
      const received: [number, string][] = [];
      const decoder = new NoiseFrameDecoder((body) => device.decodeBody(body, (type, payload) => received.push([type, toHex(payload)])));
      for (const chunk of bytewise(stream)) decoder.push(chunk);
      expect(received).toEqual(sent);
    });

    it('noise-frame - a tampered frame throws ESPAPI_ERR_DECRYPT and the receive nonce does not advance', () => {
      const receive = new CipherState(K1);
      const device = new NoiseTransportCodec(new CipherState(K2), receive);
      const { client } = codecs();
      const frame = client.encodeMessage(7, new Uint8Array(0));
      const tampered = frame.slice(3);
      tampered[1]! ^= 0x40;
      const error = thrown(() => device.decodeBody(tampered, () => {}));
      expect(error).toBeInstanceOf(HandshakeError);
      expect((error as HandshakeError).code).toBe('ESPAPI_ERR_DECRYPT');
      expect(receive.nonce).toBe(0);
      const got: number[] = [];
      device.decodeBody(frame.subarray(3), (type) => got.push(type));
      expect(got).toEqual([7]);
      expect(receive.nonce).toBe(1);
      expect(() => device.decodeBody(new Uint8Array(5), () => {})).toThrow(HandshakeError);
    });

    it('noise-frame - inner header rules: under 4 bytes is FrameError, inner len may not exceed the rest', () => {
      const tooShort = new CipherState(K1).encrypt(hex('0007'));
      expect(() => new NoiseTransportCodec(new CipherState(K2), new CipherState(K1)).decodeBody(tooShort, () => {})).toThrow(FrameError);
      const overlong = new CipherState(K1).encrypt(hex('00070003aabb'));
      expect(() => new NoiseTransportCodec(new CipherState(K2), new CipherState(K1)).decodeBody(overlong, () => {})).toThrow(/claims 3/);
      // Shorter inner len than sent: the firmware uses the inner len.
      const shorter = new CipherState(K1).encrypt(hex('00070001aabb'));
      const got: string[] = [];
      new NoiseTransportCodec(new CipherState(K2), new CipherState(K1)).decodeBody(shorter, (_type, payload) => got.push(toHex(payload)));
      expect(got).toEqual(['aa']);
    });

    it('noise-frame - enforces the payload and type limits', () => {
      const { client, device } = codecs();
      const max = client.encodeMessage(0xffff, new Uint8Array(MAX_NOISE_PAYLOAD));
      expect(max.length).toBe(3 + MAX_NOISE_FRAME_BODY);
      let length = -1;
      new NoiseFrameDecoder((body) => device.decodeBody(body, (type, payload) => (length = type === 0xffff ? payload.length : -2))).push(
        max,
      );
      expect(length).toBe(MAX_NOISE_PAYLOAD);
      expect(() => client.encodeMessage(1, new Uint8Array(MAX_NOISE_PAYLOAD + 1))).toThrow(FrameTooLargeError);
      expect(() => client.encodeMessage(0x10000, new Uint8Array(0))).toThrow(InvalidArgumentError);
      expect(() => client.encodeMessage(-1, new Uint8Array(0))).toThrow(InvalidArgumentError);
    });
  });
});
