import { describe, expect, it } from 'vitest';
import { fromLegacyAdvertisement, parseAdvertisementData } from '../../../src/bluetooth/advertisement.js';
import { featuresFromLegacyVersion } from '../../../src/bluetooth/features.js';
import { FIRMWARE_GENERATIONS, firmwareProfile, isFirmwareGeneration, legacyAdvertisement } from '../../../src/fixture-server/firmware.js';
import { BluetoothLEAdvertisementResponse } from '../../../src/gen/api_pb.js';
import { recordedAdvertisements } from '../../helpers/fixtures.js';

const ads = recordedAdvertisements();

describe('fixture-server/firmware', () => {
  it('firmware - generations are ordered and each one is consistent with the spec history', () => {
    let previous = { major: 1, minor: 0 };
    for (const generation of FIRMWARE_GENERATIONS) {
      const p = firmwareProfile(generation);
      expect(p.apiVersion.minor).toBeGreaterThan(previous.minor);
      previous = p.apiVersion;
      // Before API 1.9 the legacy version is the only feature source, and it must say what the flags say.
      if (p.apiVersion.minor < 9) expect(featuresFromLegacyVersion(p.legacyProxyVersion)).toBe(p.featureFlags);
      // Scanner state shipped with 2025.5; raw-only advertisements with 2025.8; newest-wins with 2026.7.
      expect((p.featureFlags & 0x40) !== 0).toBe(generation >= '2025.5');
      expect(p.advertisements === 'raw').toBe(generation >= '2026.1');
      expect(p.subscriptionPolicy === 'newest-wins').toBe(generation >= '2026.7');
      expect(p.legacyLogin).toBe(generation < '2025.5');
      // The single subscriber (and with it UNPAIR answered by the pairing message) came with 2023.6.
      expect(p.bluetoothAnswers === 'all-clients').toBe(generation < '2023.6');
      expect(p.unpairAnswer === 'unpairing').toBe(generation < '2023.6');
    }
    // API 1.8 shipped with 2023.5; every minor from 1.7 to 1.10 has its generation.
    expect(FIRMWARE_GENERATIONS.map((g) => firmwareProfile(g).apiVersion.minor).slice(0, 4)).toEqual([7, 8, 9, 10]);
    expect(isFirmwareGeneration('2024.10')).toBe(true);
    expect(isFirmwareGeneration('current')).toBe(false);
  });

  it('firmware - a parsed (67) advertisement decodes to the same fields as the raw bytes, for every real payload', () => {
    expect(ads.length).toBeGreaterThan(100);
    for (const ad of ads) {
      const raw = Uint8Array.from(Buffer.from(ad.raw_ad_hex, 'hex'));
      const expected = parseAdvertisementData(raw);
      // Through the wire: encode, decode with the generated codec, convert as the client does.
      const wire = BluetoothLEAdvertisementResponse.toBinary(
        BluetoothLEAdvertisementResponse.create(legacyAdvertisement(0x112233445566, -60, 1, raw)),
      );
      const legacy = fromLegacyAdvertisement(BluetoothLEAdvertisementResponse.fromBinary(wire), 0);
      expect(legacy.localName, ad.id).toBe(expected.localName);
      expect(legacy.serviceUuids, ad.id).toEqual(expected.serviceUuids);
      expect([...legacy.serviceData], ad.id).toEqual([...expected.serviceData]);
      expect([...legacy.manufacturerData], ad.id).toEqual([...expected.manufacturerData]);
      expect(legacy.addressType).toBe(1);
      expect(legacy.raw.length).toBe(0);
    }
  });
});
