import { describe, expect, it } from 'vitest';
import { parseMac } from '../../../src/bluetooth/address.js';
import { type AdvertisementData, parseAdvertisementData, parseRawAdvertisement } from '../../../src/bluetooth/advertisement.js';
import { recordedAdvertisements } from '../../helpers/fixtures.js';

const ads = recordedAdvertisements();

const hex = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');

function summarize(data: AdvertisementData) {
  return {
    local_name: data.localName ?? null,
    manufacturer_data: Object.fromEntries(
      [...data.manufacturerData].map(([id, bytes]) => [`0x${id.toString(16).toUpperCase().padStart(4, '0')}`, hex(bytes)]),
    ),
    service_data: Object.fromEntries([...data.serviceData].map(([uuid, bytes]) => [uuid, hex(bytes)])),
    service_uuids: [...data.serviceUuids],
    tx_power: data.txPower ?? null,
  };
}

describe('bluetooth/advertisement (real payloads)', () => {
  it('advertisement - parses every recorded payload to exactly its recorded fields', () => {
    expect(ads.length).toBeGreaterThan(300);
    const mismatches: string[] = [];
    for (const ad of ads) {
      const parsed = summarize(parseAdvertisementData(Uint8Array.from(Buffer.from(ad.raw_ad_hex, 'hex'))));
      const expected = {
        local_name: ad.local_name,
        manufacturer_data: ad.manufacturer_data,
        service_data: ad.service_data,
        service_uuids: ad.service_uuids,
        tx_power: ad.tx_power,
      };
      try {
        expect(parsed).toEqual(expected);
      } catch {
        mismatches.push(`${ad.id}: ${JSON.stringify(parsed)} != ${JSON.stringify(expected)}`);
      }
    }
    expect(mismatches).toEqual([]);
  });

  it('advertisement - builds full reports with the recorded address and a zero-copy raw view', () => {
    for (const ad of ads) {
      const bytes = Uint8Array.from(Buffer.from(ad.raw_ad_hex, 'hex'));
      const address = parseMac(ad.address);
      const report = parseRawAdvertisement(address, ad.rssi ?? -127, ad.address_type ?? 0, bytes, 1_700_000_000_000);
      expect(report.mac).toBe(ad.address);
      expect(report.raw).toBe(bytes);
      for (const value of [...report.serviceData.values(), ...report.manufacturerData.values()]) expect(value.buffer).toBe(bytes.buffer);
    }
  });

  it('advertisement - a report decoded from inside a batch reads the same as the payload parsed alone', () => {
    // Every payload placed at an offset in one shared buffer, as the batch decoder hands them over.
    const payloads = ads.map((ad) => Uint8Array.from(Buffer.from(ad.raw_ad_hex, 'hex')));
    const batch = new Uint8Array(payloads.reduce((n, p) => n + p.length + 3, 0)).fill(0xee);
    let at = 3;
    for (const [i, payload] of payloads.entries()) {
      batch.set(payload, at);
      const report = parseRawAdvertisement(i, -50, 1, batch, 0, at, at + payload.length);
      const alone = parseAdvertisementData(payload);
      expect(summarize(report), ads[i]!.id).toEqual(summarize(alone));
      expect([report.flags, report.txPower, report.appearance, report.shortName]).toEqual([
        alone.flags,
        alone.txPower,
        alone.appearance,
        alone.shortName,
      ]);
      expect(Buffer.from(report.raw).equals(payload)).toBe(true);
      at += payload.length + 3;
    }
  });

  it('advertisement - keeps trailing NULs of names byte for byte', () => {
    const withNul = ads.filter((ad) => ad.local_name?.includes('\0'));
    expect(withNul.length).toBeGreaterThan(0);
    for (const ad of withNul) {
      expect(parseAdvertisementData(Uint8Array.from(Buffer.from(ad.raw_ad_hex, 'hex'))).localName).toBe(ad.local_name);
    }
  });
});
