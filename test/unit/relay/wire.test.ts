import { describe, expect, it } from 'vitest';
import { fromLegacyAdvertisement, parseAdvertisementData } from '../../../src/bluetooth/advertisement.js';
import {
  BluetoothGATTErrorResponse,
  BluetoothGATTReadResponse,
  BluetoothLEAdvertisementResponse,
  BluetoothLERawAdvertisementsResponse,
} from '../../../src/gen/api_pb.js';
import { toLegacyAdvertisements } from '../../../src/relay/legacy-advertisements.js';
import { countReports, varintField } from '../../../src/relay/wire.js';

describe('relay wire helpers', () => {
  it('wire - reads the address and handle of routed messages without decoding them', () => {
    const read = BluetoothGATTReadResponse.toBinary(
      BluetoothGATTReadResponse.create({ address: 0xc0ffee000001, handle: 0x1234, data: new Uint8Array(40) }),
    );
    expect(varintField(read, 1)).toBe(0xc0ffee000001);
    expect(varintField(read, 2)).toBe(0x1234);
    const error = BluetoothGATTErrorResponse.toBinary(BluetoothGATTErrorResponse.create({ address: 0xffffffffffff, handle: 0, error: -1 }));
    expect(varintField(error, 1)).toBe(0xffffffffffff);
    expect(varintField(error, 2)).toBe(0); // omitted default
    expect(() => varintField(read.subarray(0, read.length - 3), 4)).toThrow(/Truncated/);
  });

  it('wire - a field written twice reads as its last occurrence, as protobuf-ts decodes it', () => {
    const once = BluetoothGATTReadResponse.toBinary(BluetoothGATTReadResponse.create({ address: 0xa1, handle: 7, data: Uint8Array.of(8) }));
    const twice = Uint8Array.from([...once, 0x08, 0xb2, 0x01]); // address 0xb2 appended
    expect(varintField(twice, 1)).toBe(0xb2);
    expect(varintField(twice, 1)).toBe(BluetoothGATTReadResponse.fromBinary(twice).address);
    expect(varintField(twice, 2)).toBe(7);
  });

  it('wire - counts the reports of a raw batch', () => {
    const batch = BluetoothLERawAdvertisementsResponse.toBinary(
      BluetoothLERawAdvertisementsResponse.create({
        advertisements: Array.from({ length: 16 }, (_, i) => ({ address: i + 1, rssi: -60, addressType: 1, data: new Uint8Array(31) })),
      }),
    );
    expect(countReports(batch)).toBe(16);
    expect(countReports(new Uint8Array(0))).toBe(0);
  });

  it('legacy - each raw report becomes one message 67 that parses to the same fields', () => {
    const data = new Uint8Array(Buffer.from('02010605096162636403031218051628feab0109ff4c000215aabbccdd', 'hex'));
    const batch = BluetoothLERawAdvertisementsResponse.toBinary(
      BluetoothLERawAdvertisementsResponse.create({ advertisements: [{ address: 0xa1b2c3d4e5f6, rssi: -77, addressType: 1, data }] }),
    );
    const [payload, ...rest] = toLegacyAdvertisements(batch);
    expect(rest).toEqual([]);
    const message = BluetoothLEAdvertisementResponse.fromBinary(payload!);
    expect(message).toMatchObject({ address: 0xa1b2c3d4e5f6, rssi: -77, addressType: 1, serviceUuids: ['0x1812'] });
    const legacy = fromLegacyAdvertisement(message, 0);
    const direct = parseAdvertisementData(data);
    expect(legacy.localName).toBe(direct.localName);
    expect(legacy.serviceUuids).toEqual(direct.serviceUuids);
    expect([...legacy.serviceData]).toEqual([...direct.serviceData]);
    expect([...legacy.manufacturerData]).toEqual([...direct.manufacturerData]);
  });
});
