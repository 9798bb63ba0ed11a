import { describe, expect, it } from 'vitest';
import { parseAdvertisementData } from '../../../src/bluetooth/advertisement.js';
import { emptyNobleAdvertisement, foldAdStructures, foldAdvertisementData } from '../../../src/noble/noble-advertisement.js';
import { recordedAdvertisements } from '../../helpers/fixtures.js';
import { newNobleGap, nobleGapAdvertisement } from '../../helpers/noble.js';

const ads = recordedAdvertisements();

/** noble's advertisement for these payloads of one address, from noble's own HCI GAP layer. */
function nobleReference(...payloads: string[]): unknown {
  const gap = newNobleGap();
  let advertisement: unknown;
  for (const payload of payloads) advertisement = nobleGapAdvertisement(gap, 'aa:bb:cc:dd:ee:ff', Buffer.from(payload, 'hex'));
  return advertisement === undefined ? undefined : structuredClone(advertisement);
}

function ours(...payloads: string[]): unknown {
  const advertisement = emptyNobleAdvertisement();
  for (const payload of payloads) foldAdStructures(advertisement, Buffer.from(payload, 'hex'));
  return structuredClone(advertisement);
}

describe('noble/advertisement (real payloads)', () => {
  it('noble advertisement - every recorded payload gives exactly what noble’s HCI GAP layer gives', () => {
    expect(ads.length).toBeGreaterThan(300);
    for (const ad of ads) expect(ours(ad.raw_ad_hex), ad.id).toEqual(nobleReference(ad.raw_ad_hex));
  });

  it('noble advertisement - accumulation over successive reports of one address matches noble’s', () => {
    const payloads = ads.map((a) => a.raw_ad_hex);
    expect(ours(...payloads)).toEqual(nobleReference(...payloads));
    expect(ours(...payloads.reverse())).toEqual(nobleReference(...payloads));
  });

  it('noble advertisement - ESPHome’s advertisement + scan response in one report equals noble’s two HCI reports', () => {
    const split = ads.filter((a) => a.raw_parts_hex !== undefined && a.raw_parts_hex.length === 2);
    expect(split.length).toBeGreaterThan(0);
    for (const ad of split) expect(ours(ad.raw_ad_hex), ad.id).toEqual(nobleReference(...ad.raw_parts_hex!));
  });

  it('noble advertisement - parsed fields (legacy message 67) are spelled as noble would spell the same AD bytes', () => {
    // Payloads with 32-bit service UUID lists differ on purpose: noble ignores those lists, message 67 cannot say where a UUID came from.
    for (const ad of ads.filter((a) => !/^[0-9a-f]{8}-/.test(a.service_uuids.find((u) => !u.startsWith('0000')) ?? ''))) {
      const fromFields = emptyNobleAdvertisement();
      foldAdvertisementData(fromFields, parseAdvertisementData(Buffer.from(ad.raw_ad_hex, 'hex')));
      const reference = nobleReference(ad.raw_ad_hex) as { manufacturerData?: Buffer };
      // Two Manufacturer Specific Data ADs with different company ids cannot be told apart from a map's last entry order.
      expect({ ...structuredClone(fromFields), manufacturerData: undefined }, ad.id).toEqual({ ...reference, manufacturerData: undefined });
      if (fromFields.manufacturerData !== undefined) expect(reference.manufacturerData).toBeDefined();
    }
  });
});

describe('noble/advertisement (noble’s quirks)', () => {
  it('noble advertisement - unpadded 16-bit UUIDs, padded service-data UUIDs, solicitation lists, 32-bit lists ignored', () => {
    const payload =
      '05' +
      '03' +
      '120a' +
      '0d18' + // 16-bit list: 0x0A12, 0x180D
      '05' +
      '05' +
      '78563412' + // 32-bit list: ignored by noble
      '05' +
      '16' +
      '120a' +
      'beef' + // service data 0x0A12
      '07' +
      '20' +
      '78563412' +
      '0102' + // service data, 32-bit UUID
      '03' +
      '14' +
      '0f18' + // 16-bit solicitation
      '05' +
      '1f' +
      '01000100' + // 32-bit solicitation
      '02' +
      '0a' +
      'f4' + // TX power -12
      '04' +
      '09' +
      '616263'; // name "abc"
    const got = ours(payload) as Record<string, unknown>;
    expect(got).toEqual(nobleReference(payload));
    expect(got.serviceUuids).toEqual(['a12', '180d']);
    expect((got.serviceData as Array<{ uuid: string }>).map((s) => s.uuid)).toEqual(['0a12', '12345678']);
    expect(got.serviceSolicitationUuids).toEqual(['180f', '10001']);
    expect(got.txPowerLevel).toBe(-12);
  });

  it('noble advertisement - zero padding ends the data, an overrunning structure is dropped, a TX power without value drops the report', () => {
    for (const payload of ['0201060000000000', '020106ff09', '020106', '0302aabb0b', '']) {
      expect(ours(payload), payload).toEqual(nobleReference(payload) ?? emptyNobleAdvertisement());
    }
    const advertisement = emptyNobleAdvertisement();
    expect(foldAdStructures(advertisement, Buffer.from('0409616263010a', 'hex'))).toBe(false);
    // Fields folded before the bad structure stay, as in noble (whose parser throws after setting them).
    expect(advertisement.localName).toBe('abc');
  });
});
