import { describe, expect, it } from 'vitest';
import { parseRawAdvertisement } from '../../../src/bluetooth/advertisement.js';
import { advertisementFields, contentKey, estimateDistance, formatAdvertisementJson } from '../../../src/mqtt/ad-payload.js';
import { AdThrottle } from '../../../src/mqtt/ad-throttle.js';

const ad = (hex: string, rssi = -60) => parseRawAdvertisement(0xa4c138b4944c, rssi, 0, Buffer.from(hex, 'hex'), 1_000);

describe('mqtt ad payload', () => {
  it('ad payload - distance is the estimate OpenMQTTGateway and Theengs Gateway compute (txpower -59 when absent)', () => {
    // ratio = rssi / txPower; < 1: ratio^10, else 0.89976 * ratio^7.7095 + 0.111
    expect(estimateDistance(-59, undefined)).toBeCloseTo(0.89976 + 0.111, 10);
    expect(estimateDistance(-50, undefined)).toBeCloseTo((50 / 59) ** 10, 10);
    expect(estimateDistance(-80, -66)).toBeCloseTo(0.89976 * (80 / 66) ** 7.7095 + 0.111, 10);
    // A non-negative TX power is no calibration: OpenMQTTGateway falls back to -59.
    expect(estimateDistance(-70, 4)).toBe(estimateDistance(-70, undefined));
  });

  it('ad payload - fields from the AD bytes as NimBLE hands them over: UUID widths kept, first manufacturer structure whole', () => {
    // flags; 16-bit service data fe95; 32-bit service data 0x12345678; 128-bit service data; two manufacturer structures; TX power -8; name
    const hex =
      '020106' +
      '0516' +
      '95fe' +
      'aabb' +
      '0720' +
      '78563412' +
      'cc' +
      'dd' +
      '1221' +
      '0102030405060708090a0b0c0d0e0f10' +
      'ee' +
      '05ff' +
      '4c00' +
      '0215' +
      '04ff' +
      '5900' +
      '01' +
      '020af8' +
      '0509' +
      '54657374';
    const fields = advertisementFields(ad(hex));
    expect(fields).toEqual({
      name: 'Test',
      manufacturerdata: '4c000215',
      txpower: -8,
      serviceData: [
        { uuid: '0xfe95', data: 'aabb' },
        { uuid: '0x12345678', data: 'ccdd' },
        { uuid: '100f0e0d-0c0b-0a09-0807-060504030201', data: 'ee' },
      ],
    });
    const json = JSON.parse(formatAdvertisementJson('A4:C1:38:B4:94:4C', 0, -60, fields, fields.serviceData[0], 1.5, 'kitchen'));
    expect(Object.keys(json)).toEqual([
      'id',
      'mac_type',
      'name',
      'manufacturerdata',
      'rssi',
      'txpower',
      'distance',
      'servicedata',
      'servicedatauuid',
      'proxy',
    ]);
    expect(json).toMatchObject({ servicedata: 'aabb', servicedatauuid: '0xfe95', distance: 1.5, proxy: 'kitchen' });
  });

  it('ad payload - names are JSON-escaped; truncated structures end the walk as in the parser', () => {
    const fields = advertisementFields(ad('0509' + Buffer.from('a"\\b').toString('hex') + '05ff4c00'));
    expect(fields.name).toBe('a"\\b');
    expect(fields.manufacturerdata).toBeUndefined();
    expect(JSON.parse(formatAdvertisementJson('AA:BB:CC:DD:EE:FF', 1, -70, fields, undefined, undefined, 'p"x')).name).toBe('a"\\b');
  });

  it('ad throttle - per device and proxy interval, change-only with a republish, bounded memory', () => {
    const t = new AdThrottle({ interval: 1_000, changesOnly: true, republishInterval: 5_000, maxDevices: 2 });
    expect(t.admit(1, 'a', 'k1', 0)).toBe(true);
    expect(t.admit(1, 'b', 'k1', 10)).toBe(true); // another proxy is another stream
    expect(t.admit(1, 'a', 'k2', 500)).toBe(false); // inside the interval
    expect(t.admit(1, 'a', 'k1', 1_500)).toBe(false); // unchanged
    expect(t.admit(1, 'a', 'k2', 1_600)).toBe(true); // changed
    expect(t.admit(1, 'a', 'k2', 6_700)).toBe(true); // unchanged, but due for a republish
    expect(t.admit(2, 'a', 'x', 7_000)).toBe(true);
    expect(t.size).toBe(2);
    expect(new AdThrottle().passThrough).toBe(true);
    expect(contentKey(advertisementFields(ad('0416' + '95fe' + '01')))).not.toBe(
      contentKey(advertisementFields(ad('0416' + '95fe' + '02'))),
    );
  });
});
