import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  DeviceTracker,
  fromLegacyAdvertisement,
  parseAdvertisementData,
  parseRawAdvertisement,
} from '../../../src/bluetooth/advertisement.js';
import { InvalidArgumentError } from '../../../src/errors.js';
import { BluetoothLEAdvertisementResponse } from '../../../src/gen/api_pb.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replaceAll(' ', ''), 'hex'));
const toHex = (bytes: Uint8Array | undefined): string | undefined => (bytes === undefined ? undefined : Buffer.from(bytes).toString('hex'));
const base = (short: string): string => `0000${short}-0000-1000-8000-00805f9b34fb`;

describe('bluetooth/advertisement', () => {
  it('advertisement - reads flags, TX power (signed) and appearance', () => {
    const ad = parseAdvertisementData(hex('020106 020af4 03194201'));
    expect(ad.flags).toBe(0x06);
    expect(ad.txPower).toBe(-12);
    expect(ad.appearance).toBe(0x0142);
    expect(parseAdvertisementData(hex('020a7f')).txPower).toBe(127);
    expect(parseAdvertisementData(hex('020a80')).txPower).toBe(-128);
  });

  it('advertisement - leaves absent fields undefined and collections empty', () => {
    const ad = parseAdvertisementData(new Uint8Array(0));
    expect(ad.localName).toBeUndefined();
    expect(ad.shortName).toBeUndefined();
    expect(ad.flags).toBeUndefined();
    expect(ad.txPower).toBeUndefined();
    expect(ad.appearance).toBeUndefined();
    expect(ad.serviceUuids).toEqual([]);
    expect(ad.serviceData.size).toBe(0);
    expect(ad.manufacturerData.size).toBe(0);
  });

  it('advertisement - shared empty collections cannot be mutated', () => {
    const ad = parseAdvertisementData(hex('020106'));
    expect(() => (ad.serviceData as Map<string, Uint8Array>).set('x', new Uint8Array(0))).toThrow(TypeError);
    expect(() => (ad.manufacturerData as Map<number, Uint8Array>).clear()).toThrow(TypeError);
    expect(() => (ad.serviceUuids as string[]).push('x')).toThrow(TypeError);
    expect(parseAdvertisementData(hex('020106')).serviceData.size).toBe(0);
  });

  it('advertisement - collects 16/32/128-bit UUID lists, complete or not, without duplicates', () => {
    const ad = parseAdvertisementData(
      hex(
        '0502 0d18 0f18' +
          '0303 0d18' +
          '0504 78563412' +
          '0505 ffffffff' +
          '1106 9ecadc240ee5a9e093f3a3b50100406e' +
          '1107 1bc5d5a50200aa9de3112af21019aa06',
      ),
    );
    expect(ad.serviceUuids).toEqual([
      base('180d'),
      base('180f'),
      '12345678-0000-1000-8000-00805f9b34fb',
      'ffffffff-0000-1000-8000-00805f9b34fb',
      '6e400001-b5a3-f393-e0a9-e50e24dcca9e',
      '06aa1910-f22a-11e3-9daa-0002a5d5c51b',
    ]);
  });

  it('advertisement - ignores partial UUIDs at the end of a list', () => {
    expect(parseAdvertisementData(hex('0403 0d18 0f')).serviceUuids).toEqual([base('180d')]);
    expect(parseAdvertisementData(hex('0605 78563412 aa')).serviceUuids).toEqual(['12345678-0000-1000-8000-00805f9b34fb']);
    expect(parseAdvertisementData(hex('0507 01020304')).serviceUuids).toEqual([]);
  });

  it('advertisement - a complete name beats a shortened one in either order', () => {
    expect(parseAdvertisementData(hex('0408 4142 43'))).toMatchObject({ localName: 'ABC', shortName: true });
    expect(parseAdvertisementData(hex('0308 4142 0509 41424344'))).toMatchObject({ localName: 'ABCD', shortName: false });
    expect(parseAdvertisementData(hex('0509 41424344 0308 4142'))).toMatchObject({ localName: 'ABCD', shortName: false });
    expect(parseAdvertisementData(hex('0109')).localName).toBeUndefined();
  });

  it('advertisement - decodes UTF-8 names and replaces invalid bytes', () => {
    expect(parseAdvertisementData(hex('0709 c3a4 e282ac 41')).localName).toBe('ä€A');
    expect(parseAdvertisementData(hex('0409 41ff42')).localName).toBe('A\ufffdB');
    expect(parseAdvertisementData(hex('0409 410000')).localName).toBe('A\0\0');
  });

  it('advertisement - reads service data for 16-, 32- and 128-bit UUIDs', () => {
    const ad = parseAdvertisementData(
      hex('0516 95fe 0102' + '0720 78563412 aabb' + '1321 9ecadc240ee5a9e093f3a3b50100406e 0c0d' + '0316 d2fc' + '0216 aa'),
    );
    expect([...ad.serviceData.keys()]).toEqual([
      base('fe95'),
      '12345678-0000-1000-8000-00805f9b34fb',
      '6e400001-b5a3-f393-e0a9-e50e24dcca9e',
      base('fcd2'),
    ]);
    expect(toHex(ad.serviceData.get(base('fe95')))).toBe('0102');
    expect(toHex(ad.serviceData.get('12345678-0000-1000-8000-00805f9b34fb'))).toBe('aabb');
    expect(toHex(ad.serviceData.get('6e400001-b5a3-f393-e0a9-e50e24dcca9e'))).toBe('0c0d');
    expect(toHex(ad.serviceData.get(base('fcd2')))).toBe('');
  });

  it('advertisement - keys manufacturer data by company id, later entries win', () => {
    const ad = parseAdvertisementData(hex('06ff 4c00 0215aa' + '03ff 5900' + '05ff 4c00 0102' + '02ff 01'));
    expect([...ad.manufacturerData.keys()]).toEqual([0x004c, 0x0059]);
    expect(toHex(ad.manufacturerData.get(0x004c))).toBe('0102');
    expect(toHex(ad.manufacturerData.get(0x0059))).toBe('');
  });

  it('advertisement - data values are views of the payload, not copies', () => {
    const payload = hex('05ff 4c00 0102 0516 95fe 0304');
    const ad = parseAdvertisementData(payload);
    const mfr = ad.manufacturerData.get(0x4c)!;
    expect(mfr.buffer).toBe(payload.buffer);
    expect(mfr.byteOffset).toBe(4);
    payload[4] = 0x99;
    expect(mfr[0]).toBe(0x99);
  });

  it('advertisement - stops at a zero length byte (padding)', () => {
    const ad = parseAdvertisementData(hex('020106 0000000000 05ff4c000102'));
    expect(ad.flags).toBe(6);
    expect(ad.manufacturerData.size).toBe(0);
  });

  it('advertisement - keeps fields parsed before a truncated structure', () => {
    const ad = parseAdvertisementData(hex('020106 0309 4142 0aff 4c0001'));
    expect(ad).toMatchObject({ flags: 6, localName: 'AB' });
    expect(ad.manufacturerData.size).toBe(0);
    expect(parseAdvertisementData(hex('05')).flags).toBeUndefined();
    expect(parseAdvertisementData(hex('020106 1f')).flags).toBe(6);
  });

  it('advertisement - skips unknown and too-short structures', () => {
    const ad = parseAdvertisementData(hex('0312 0600 0101 010a 0219 01 0216 95 0420 785634 0321 0000 02ff 4c' + '020107'));
    expect(ad.flags).toBe(7);
    expect(ad.txPower).toBeUndefined();
    expect(ad.appearance).toBeUndefined();
    expect(ad.serviceData.size).toBe(0);
  });

  it('advertisement - never throws on arbitrary bytes', () => {
    let seed = 12345;
    const next = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
    for (let round = 0; round < 2000; round++) {
      const bytes = Uint8Array.from({ length: next() % 63 }, next);
      expect(() => parseAdvertisementData(bytes)).not.toThrow();
    }
  });

  it('advertisement - raw reports carry the report fields and a lazily formatted mac', () => {
    const payload = hex('020106 0409 414243');
    const ad = parseRawAdvertisement(0xe00990b61234, -62, 1, payload, 1_700_000_000_000);
    expect(ad).toMatchObject({
      address: 0xe00990b61234,
      rssi: -62,
      addressType: 1,
      timestamp: 1_700_000_000_000,
      flags: 6,
      localName: 'ABC',
    });
    expect(ad.raw).toBe(payload);
    expect(ad.mac).toBe('E0:09:90:B6:12:34');
    expect(ad.mac).toBe(ad.mac);
  });

  it('advertisement - numeric fields match the full parser on arbitrary bytes', () => {
    let seed = 777;
    const next = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
    for (let round = 0; round < 2000; round++) {
      const bytes = Uint8Array.from({ length: next() % 63 }, next);
      const full = parseAdvertisementData(bytes);
      const report = parseRawAdvertisement(1, -1, 0, bytes, 0);
      expect([report.flags, report.txPower, report.appearance, report.localName, report.shortName]).toEqual([
        full.flags,
        full.txPower,
        full.appearance,
        full.localName,
        full.shortName,
      ]);
      expect(report.serviceUuids).toEqual(full.serviceUuids);
      expect(report.serviceData).toEqual(full.serviceData);
      expect(report.manufacturerData).toEqual(full.manufacturerData);
    }
  });

  it('advertisement - builds strings and maps once, on first read', () => {
    const ad = parseRawAdvertisement(1, -40, 0, hex('0303 0d18 05ff 4c00 0102 0409 414243'), 0);
    expect(ad.serviceUuids).toBe(ad.serviceUuids);
    expect(ad.manufacturerData).toBe(ad.manufacturerData);
    expect(ad.raw).toBe(ad.raw);
    const bare = parseRawAdvertisement(1, -40, 0, hex('020106'), 0);
    expect(bare.localName).toBeUndefined();
    expect(bare.serviceUuids).toEqual([]);
    expect(bare.serviceData.size).toBe(0);
  });

  it('advertisement - serializes to JSON and inspects with every field', () => {
    const ad = parseRawAdvertisement(0xe00990b61234, -62, 1, hex('020106 0303 0d18 05ff 4c00 0102 0409 414243'), 5);
    expect(JSON.parse(JSON.stringify(ad))).toEqual({
      address: 0xe00990b61234,
      mac: 'E0:09:90:B6:12:34',
      addressType: 1,
      rssi: -62,
      timestamp: 5,
      localName: 'ABC',
      shortName: false,
      flags: 6,
      serviceUuids: [base('180d')],
      serviceData: {},
      manufacturerData: { '76': '0102' },
      raw: '02010603030d1805ff4c0001020409414243',
    });
    expect(inspect(ad)).toContain("localName: 'ABC'");
  });

  it('advertisement - converts legacy message 67', () => {
    const msg = BluetoothLEAdvertisementResponse.create({
      address: 0xaabbccddeeff,
      name: new TextEncoder().encode('Thermo'),
      rssi: -70,
      addressType: 1,
      serviceUuids: ['0x180F', '6E400001-B5A3-F393-E0A9-E50E24DCCA9E', '0x180f'],
      serviceData: [
        { uuid: '0xFE95', legacyData: [], data: hex('0102') },
        { uuid: '0x181A', legacyData: [3, 4, 255], data: new Uint8Array(0) },
      ],
      manufacturerData: [
        { uuid: '0x004C', legacyData: [], data: hex('0215') },
        { uuid: '0x0059', legacyData: [9], data: new Uint8Array(0) },
      ],
    });
    const ad = fromLegacyAdvertisement(msg, 42);
    expect(ad).toMatchObject({
      address: 0xaabbccddeeff,
      mac: 'AA:BB:CC:DD:EE:FF',
      rssi: -70,
      addressType: 1,
      timestamp: 42,
      localName: 'Thermo',
    });
    expect(ad.raw).toHaveLength(0);
    expect(ad.serviceUuids).toEqual([base('180f'), '6e400001-b5a3-f393-e0a9-e50e24dcca9e']);
    expect(toHex(ad.serviceData.get(base('fe95')))).toBe('0102');
    expect(toHex(ad.serviceData.get(base('181a')))).toBe('0304ff');
    expect(toHex(ad.manufacturerData.get(0x004c))).toBe('0215');
    expect(toHex(ad.manufacturerData.get(0x0059))).toBe('09');
  });

  it('advertisement - legacy conversion tolerates an empty message', () => {
    const ad = fromLegacyAdvertisement(BluetoothLEAdvertisementResponse.create({ address: 1 }), 0);
    expect(ad.localName).toBeUndefined();
    expect(ad.serviceUuids).toEqual([]);
    expect(ad.manufacturerData.size).toBe(0);
  });
});

describe('bluetooth/advertisement DeviceTracker', () => {
  const A = 0x112233445566;
  const report = (payload: string, rssi: number, timestamp: number, address = A) =>
    parseRawAdvertisement(address, rssi, 1, hex(payload), timestamp);

  it('advertisement - merges advertisement and scan response per field', () => {
    const tracker = new DeviceTracker();
    tracker.update(report('020106 0303 0d18 05ff 4c00 0102 0516 95fe aaaa', -70, 1000));
    const merged = tracker.update(report('0509 4e616d65 020a04 0303 0f18 05ff 5900 0304', -60, 2000));
    expect(merged).toMatchObject({
      address: A,
      mac: '11:22:33:44:55:66',
      localName: 'Name',
      shortName: false,
      flags: 6,
      txPower: 4,
      rssi: -60,
      timestamp: 2000,
    });
    expect(merged.serviceUuids).toEqual([base('180d'), base('180f')]);
    expect([...merged.manufacturerData.keys()]).toEqual([0x4c, 0x59]);
    expect(toHex(merged.serviceData.get(base('fe95')))).toBe('aaaa');

    const next = tracker.update(report('020102 05ff 4c00 0909 0516 95fe bbbb', -80, 3000));
    expect(next).toMatchObject({ localName: 'Name', flags: 2, txPower: 4, rssi: -80, timestamp: 3000 });
    expect(toHex(next.manufacturerData.get(0x4c))).toBe('0909');
    expect(toHex(next.manufacturerData.get(0x59))).toBe('0304');
    expect(toHex(next.serviceData.get(base('fe95')))).toBe('bbbb');
    expect(tracker.get(A)).toBe(next);
  });

  it('advertisement - a shortened name does not replace a complete one', () => {
    const tracker = new DeviceTracker();
    tracker.update(report('0408 4142 43', -70, 1));
    expect(tracker.update(report('0509 41424344', -70, 2))).toMatchObject({ localName: 'ABCD', shortName: false });
    expect(tracker.update(report('0308 4142', -70, 3))).toMatchObject({ localName: 'ABCD', shortName: false });
    expect(tracker.update(report('0509 58595a5a', -70, 4))).toMatchObject({ localName: 'XYZZ', shortName: false });
  });

  it('advertisement - snapshots stay unchanged by later updates', () => {
    const tracker = new DeviceTracker();
    const first = tracker.update(report('05ff 4c00 0102 0303 0d18', -70, 1));
    tracker.update(report('05ff 5900 0304 0303 0f18', -60, 2));
    expect([...first.manufacturerData.keys()]).toEqual([0x4c]);
    expect(first.serviceUuids).toEqual([base('180d')]);
    expect(first.rssi).toBe(-70);
  });

  it('advertisement - evicts the least recently heard device beyond maxDevices', () => {
    const tracker = new DeviceTracker({ maxDevices: 2 });
    tracker.update(report('020106', -70, 1, 1));
    tracker.update(report('020106', -70, 2, 2));
    tracker.update(report('020106', -70, 3, 1));
    tracker.update(report('020106', -70, 4, 3));
    expect(tracker.size).toBe(2);
    expect(tracker.get(2)).toBeUndefined();
    expect(tracker.devices().map((d) => d.address)).toEqual([1, 3]);
  });

  it('advertisement - prunes devices not heard recently', () => {
    const tracker = new DeviceTracker();
    tracker.update(report('020106', -70, 1000, 1));
    tracker.update(report('020106', -70, 5000, 2));
    const removed = tracker.prune(2000, 6000);
    expect(removed.map((d) => d.address)).toEqual([1]);
    expect(tracker.devices().map((d) => d.address)).toEqual([2]);
    expect(tracker.delete(2)).toBe(true);
    expect(tracker.size).toBe(0);
  });

  it('advertisement - rejects a non-positive maxDevices', () => {
    expect(() => new DeviceTracker({ maxDevices: 0 })).toThrow(InvalidArgumentError);
  });
});
