import { describe, expect, it } from 'vitest';
import { EncryptionRequiredError, FrameError, FrameTooLargeError } from '../../../src/errors.js';
import { encodePlaintextFrame, MAX_PLAINTEXT_PAYLOAD, PlaintextFrameDecoder } from '../../../src/frame/plaintext.js';
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
