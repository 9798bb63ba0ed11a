import { describe, expect, it } from 'vitest';
import {
  normalizeUuid,
  shortUuidOf,
  uuid16At,
  uuid32At,
  uuid128At,
  uuidFromProto,
  uuidFromShort,
  uuidFromWords,
  uuidToWords,
} from '../../../src/bluetooth/uuid.js';
import { InvalidArgumentError } from '../../../src/errors.js';

const BASE_LOW = 0x800000805f9b34fbn;

describe('bluetooth/uuid', () => {
  it('uuid - expands 16- and 32-bit values onto the base UUID', () => {
    expect(uuidFromShort(0x2902)).toBe('00002902-0000-1000-8000-00805f9b34fb');
    expect(uuidFromShort(0xfe95)).toBe('0000fe95-0000-1000-8000-00805f9b34fb');
    expect(uuidFromShort(0x12345678)).toBe('12345678-0000-1000-8000-00805f9b34fb');
    expect(uuidFromShort(0)).toBe('00000000-0000-1000-8000-00805f9b34fb');
    // Cached strings are returned as the same value every time.
    expect(uuidFromShort(0x2a00)).toBe(uuidFromShort(0x2a00));
    expect(() => uuidFromShort(-1)).toThrow(InvalidArgumentError);
    expect(() => uuidFromShort(0x1_0000_0000)).toThrow(InvalidArgumentError);
  });

  it('uuid - formats word pairs most significant first', () => {
    expect(uuidFromWords(0x6e400001b5a3f393n, 0xe0a9e50e24dcca9en)).toBe('6e400001-b5a3-f393-e0a9-e50e24dcca9e');
    expect(uuidFromWords(0n, 0n)).toBe('00000000-0000-0000-0000-000000000000');
    expect(uuidFromWords(0x0000290200001000n, BASE_LOW)).toBe('00002902-0000-1000-8000-00805f9b34fb');
    expect(uuidFromWords(0x0000000100000000n, 1n)).toBe('00000001-0000-0000-0000-000000000001');
  });

  it('uuid - short_uuid wins over words and missing words count as zero (§6.8)', () => {
    expect(uuidFromProto([0x6e400001b5a3f393n, 0xe0a9e50e24dcca9en], 0x2a00)).toBe('00002a00-0000-1000-8000-00805f9b34fb');
    expect(uuidFromProto([0x6e400001b5a3f393n, 0xe0a9e50e24dcca9en], 0)).toBe('6e400001-b5a3-f393-e0a9-e50e24dcca9e');
    expect(uuidFromProto([], 0)).toBe('00000000-0000-0000-0000-000000000000');
    expect(uuidFromProto([0x0000180f00001000n], 0)).toBe('0000180f-0000-1000-0000-000000000000');
  });

  it('uuid - round-trips through words', () => {
    for (const uuid of [
      '6e400001-b5a3-f393-e0a9-e50e24dcca9e',
      '00002902-0000-1000-8000-00805f9b34fb',
      'ffffffff-ffff-ffff-ffff-ffffffffffff',
    ]) {
      const [hi, lo] = uuidToWords(uuid);
      expect(uuidFromWords(hi, lo)).toBe(uuid);
    }
    expect(uuidToWords('2902')).toEqual([0x0000290200001000n, BASE_LOW]);
  });

  it('uuid - normalizes every accepted spelling', () => {
    const gap = '00002a00-0000-1000-8000-00805f9b34fb';
    expect(normalizeUuid('2a00')).toBe(gap);
    expect(normalizeUuid('0x2A00')).toBe(gap);
    expect(normalizeUuid('2A00')).toBe(gap);
    expect(normalizeUuid('00002a00')).toBe(gap);
    expect(normalizeUuid('00002A00-0000-1000-8000-00805F9B34FB')).toBe(gap);
    expect(normalizeUuid(gap)).toBe(gap);
    expect(normalizeUuid('6E400001B5A3F393E0A9E50E24DCCA9E')).toBe('6e400001-b5a3-f393-e0a9-e50e24dcca9e');
    expect(normalizeUuid('FE95')).toBe('0000fe95-0000-1000-8000-00805f9b34fb');
  });

  it('uuid - rejects anything else', () => {
    for (const bad of [
      '',
      '2a0',
      '2a000',
      'xyz1',
      '0x',
      '6e400001-b5a3-f393-e0a9-e50e24dcca9',
      '6e400001b5a3-f393-e0a9-e50e24dcca9e',
      '0x6e400001b5a3f393e0a9e50e24dcca9e',
    ]) {
      expect(() => normalizeUuid(bad), bad).toThrow(InvalidArgumentError);
    }
  });

  it('uuid - finds the short value of base UUIDs only', () => {
    expect(shortUuidOf('00002902-0000-1000-8000-00805f9b34fb')).toBe(0x2902);
    expect(shortUuidOf('0x2902')).toBe(0x2902);
    expect(shortUuidOf('12345678-0000-1000-8000-00805F9B34FB')).toBe(0x12345678);
    expect(shortUuidOf('6e400001-b5a3-f393-e0a9-e50e24dcca9e')).toBeUndefined();
  });

  it('uuid - reads little-endian UUIDs from AD bytes', () => {
    const bytes = Uint8Array.from(Buffer.from('95fe' + '78563412' + '9ecadc240ee5a9e093f3a3b5010040' + '6e', 'hex'));
    expect(uuid16At(bytes, 0)).toBe('0000fe95-0000-1000-8000-00805f9b34fb');
    expect(uuid32At(bytes, 2)).toBe('12345678-0000-1000-8000-00805f9b34fb');
    expect(uuid128At(bytes, 6)).toBe('6e400001-b5a3-f393-e0a9-e50e24dcca9e');
    expect(uuid32At(Uint8Array.of(0xff, 0xff, 0xff, 0xff), 0)).toBe('ffffffff-0000-1000-8000-00805f9b34fb');
  });
});
