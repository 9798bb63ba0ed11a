import { describe, expect, it } from 'vitest';
import { EncryptionRequiredError, FrameError, FrameTooLargeError } from '../../../src/errors.js';
import {
  DEVICE_MAX_PLAINTEXT_PAYLOAD,
  encodePlaintextFrame,
  MAX_PLAINTEXT_PAYLOAD,
  PlaintextFrameDecoder,
} from '../../../src/frame/plaintext.js';
import { MAX_HEADER_VARINT_BYTES, readVarint, varintLength, writeVarint } from '../../../src/frame/varint.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replaceAll(' ', ''), 'hex'));

function decodeAll(chunks: Uint8Array[]): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  const decoder = new PlaintextFrameDecoder((type, payload) => out.push([type, Buffer.from(payload).toString('hex')]));
  for (const chunk of chunks) decoder.push(chunk);
  expect(decoder.buffered).toBe(0);
  return out;
}

describe('frame/plaintext', () => {
  const hello = hex('00 09 01 0A 03 73 64 6B 10 01 18 0F');
  const ping = hex('00 00 07');
  const caps = hex('00 00 95 01');

  it('plaintext - decodes the spec examples whole', () => {
    expect(decodeAll([hello])).toEqual([[1, '0a0373646b1001180f']]);
    expect(decodeAll([ping])).toEqual([[7, '']]);
    expect(decodeAll([caps])).toEqual([[149, '']]);
  });

  it('plaintext - gives the same result byte by byte and concatenated', () => {
    const all = Buffer.concat([hello, ping, caps, hello]);
    const whole = decodeAll([all]);
    const bytes = decodeAll([...all].map((b) => Uint8Array.of(b)));
    expect(bytes).toEqual(whole);
    expect(whole.map(([t]) => t)).toEqual([1, 7, 149, 1]);
    for (let split = 1; split < all.length; split++) {
      expect(decodeAll([all.subarray(0, split), all.subarray(split)])).toEqual(whole);
    }
  });

  it('plaintext - encodes what it decodes, two-byte ids included', () => {
    expect(Buffer.from(encodePlaintextFrame(1, hex('0A 03 73 64 6B 10 01 18 0F')))).toEqual(Buffer.from(hello));
    expect(Buffer.from(encodePlaintextFrame(149, new Uint8Array(0)))).toEqual(Buffer.from(caps));
    const big = new Uint8Array(300).fill(7);
    expect(decodeAll([encodePlaintextFrame(93, big)])).toEqual([[93, Buffer.from(big).toString('hex')]]);
  });

  it('plaintext - a Noise first byte means the device requires encryption', () => {
    const decoder = new PlaintextFrameDecoder(() => {});
    expect(() => decoder.push(hex('01 00 13 01 42 61 64'))).toThrow(EncryptionRequiredError);
  });

  it('plaintext - rejects a bad indicator byte', () => {
    const decoder = new PlaintextFrameDecoder(() => {});
    expect(() => decoder.push(hex('05 00 07'))).toThrow(FrameError);
  });

  it('plaintext - rejects a header varint longer than the named limit', () => {
    const decoder = new PlaintextFrameDecoder(() => {});
    expect(() => decoder.push(hex('00 80 80 80 80 01 07'))).toThrow(/Varint longer than 4/);
  });

  it('plaintext - rejects a payload over the limit before buffering it', () => {
    const decoder = new PlaintextFrameDecoder(() => {}, { maxPayload: 100 });
    expect(() => decoder.push(hex('00 e5 00 07'))).toThrow(FrameTooLargeError);
    const def = new PlaintextFrameDecoder(() => {});
    const len = new Uint8Array(4);
    const end = writeVarint(len, 0, MAX_PLAINTEXT_PAYLOAD + 1);
    expect(() => def.push(Uint8Array.of(0, ...len.subarray(0, end), 7))).toThrow(FrameTooLargeError);
    expect(() => encodePlaintextFrame(7, new Uint8Array(MAX_PLAINTEXT_PAYLOAD + 1))).toThrow(FrameTooLargeError);
  });

  it('plaintext - waits for incomplete varints without consuming them', () => {
    const out: number[] = [];
    const decoder = new PlaintextFrameDecoder((type) => out.push(type));
    decoder.push(hex('00 00'));
    decoder.push(hex('95'));
    expect(out).toEqual([]);
    decoder.push(hex('01'));
    expect(out).toEqual([149]);
  });

  it('plaintext - the device-side limit is the firmware receive buffer (32768 on ESP32)', () => {
    expect(DEVICE_MAX_PLAINTEXT_PAYLOAD).toBe(32768);
    const decoder = new PlaintextFrameDecoder(() => {}, { maxPayload: DEVICE_MAX_PLAINTEXT_PAYLOAD });
    // 32769 = 81 80 02: refused on the header, before a byte of payload arrived.
    expect(() => decoder.push(hex('00 81 80 02 07'))).toThrow(FrameTooLargeError);
    let got = -1;
    new PlaintextFrameDecoder((_type, payload) => (got = payload.length), { maxPayload: DEVICE_MAX_PLAINTEXT_PAYLOAD }).push(
      encodePlaintextFrame(75, new Uint8Array(DEVICE_MAX_PLAINTEXT_PAYLOAD)),
    );
    expect(got).toBe(DEVICE_MAX_PLAINTEXT_PAYLOAD);
  });

  it('plaintext - a declared length reserves nothing: what is held grows with what arrived', () => {
    const frames: number[] = [];
    const decoder = new PlaintextFrameDecoder((_type, payload) => frames.push(payload.length));
    const frame = encodePlaintextFrame(75, new Uint8Array(60_000).fill(5));
    decoder.push(frame.subarray(0, 4)); // header of a 60000-byte payload and one byte
    expect(decoder.buffered).toBe(4);
    expect(decoder.allocated).toBeLessThanOrEqual(256);
    let fed = 4;
    for (const size of [10, 100, 1000, 10_000]) {
      decoder.push(frame.subarray(fed, fed + size));
      fed += size;
      expect(decoder.buffered).toBe(fed);
      expect(decoder.allocated).toBeLessThanOrEqual(Math.max(256, 2 * fed));
    }
    decoder.push(frame.subarray(fed));
    expect(frames).toEqual([60_000]);
    expect(decoder.buffered).toBe(0);
    expect(decoder.allocated).toBe(0);
  });

  it('plaintext - a header split byte by byte after a frame is parsed once whole, the bytes after it start the next frame', () => {
    const out: Array<[number, number]> = [];
    const decoder = new PlaintextFrameDecoder((type, payload) => out.push([type, payload.length]));
    const two = Buffer.concat([encodePlaintextFrame(7, new Uint8Array(0)), encodePlaintextFrame(149, new Uint8Array(3))]);
    decoder.push(two.subarray(0, 2));
    // The rest of a 3-byte frame plus the whole next one: only the needed byte may be taken for the first.
    decoder.push(two.subarray(2));
    expect(out).toEqual([
      [7, 0],
      [149, 3],
    ]);
    expect(decoder.buffered).toBe(0);
  });

  it('plaintext - yieldWhen stops after a frame and push() says how much it used; the rest decodes later', () => {
    const out: number[] = [];
    let stop = false;
    const decoder = new PlaintextFrameDecoder(
      (type) => {
        out.push(type);
        stop = out.length === 2;
      },
      { yieldWhen: () => stop },
    );
    const frames = Buffer.concat([1, 2, 3, 4].map((type) => encodePlaintextFrame(type, new Uint8Array(type))));
    const used = decoder.push(frames);
    expect(out).toEqual([1, 2]);
    expect(used).toBe(encodePlaintextFrame(1, new Uint8Array(1)).length + encodePlaintextFrame(2, new Uint8Array(2)).length);
    expect(decoder.buffered).toBe(0);
    stop = false;
    expect(decoder.push(frames.subarray(used))).toBe(frames.length - used);
    expect(out).toEqual([1, 2, 3, 4]);
    // A frame completed from held bytes also yields.
    const split = new PlaintextFrameDecoder(() => {}, { yieldWhen: () => true });
    expect(split.push(frames.subarray(0, 2))).toBe(2);
    expect(split.push(frames.subarray(2))).toBe(encodePlaintextFrame(1, new Uint8Array(1)).length - 2);
  });
});

describe('frame/varint', () => {
  it('varint - edge values round-trip', () => {
    for (const value of [0, 1, 127, 128, 150, 300, 16383, 16384, 2 ** 21 - 1, 2 ** 21, 2 ** 28 - 1]) {
      const buf = new Uint8Array(8);
      const end = writeVarint(buf, 0, value);
      expect(end).toBe(varintLength(value));
      expect(readVarint(buf, 0, 5)).toEqual({ value, length: end });
    }
    expect([...hex('96 01')]).toEqual([0x96, 0x01]);
    expect(readVarint(hex('AC 02'), 0)).toEqual({ value: 300, length: 2 });
  });

  it('varint - reports incomplete input', () => {
    expect(readVarint(hex('80'), 0).length).toBe(-1);
    expect(() => readVarint(hex('80 80 80 80 80'), 0, MAX_HEADER_VARINT_BYTES)).toThrow(FrameError);
  });
});
