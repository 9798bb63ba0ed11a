import { describe, expect, it } from 'vitest';
import {
  BluetoothProxyFeature,
  featureNames,
  featuresFromLegacyVersion,
  hasFeature,
  resolveFeatureFlags,
} from '../../../src/bluetooth/features.js';

describe('bluetooth/features', () => {
  it('features - has the §6.1 bit values', () => {
    expect(Object.values(BluetoothProxyFeature)).toEqual([0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80]);
  });

  it('features - maps legacy versions cumulatively', () => {
    expect(featuresFromLegacyVersion(0)).toBe(0);
    expect(featuresFromLegacyVersion(1)).toBe(0x01);
    expect(featuresFromLegacyVersion(2)).toBe(0x03);
    expect(featuresFromLegacyVersion(3)).toBe(0x07);
    expect(featuresFromLegacyVersion(4)).toBe(0x0f);
    expect(featuresFromLegacyVersion(5)).toBe(0x1f);
    expect(featuresFromLegacyVersion(9)).toBe(0x1f);
    expect(featuresFromLegacyVersion(-1)).toBe(0);
  });

  it('features - names set bits, unknown ones by value', () => {
    expect(featureNames(0x61)).toEqual(['PASSIVE_SCAN', 'RAW_ADVERTISEMENTS', 'FEATURE_STATE_AND_MODE']);
    expect(featureNames(0xff)).toHaveLength(8);
    expect(featureNames(0)).toEqual([]);
    expect(featureNames(0x201)).toEqual(['PASSIVE_SCAN', 'UNKNOWN_0x200']);
    expect(featureNames(0x80000000)).toEqual(['UNKNOWN_0x80000000']);
  });

  it('features - tests one or several bits', () => {
    const gatt = BluetoothProxyFeature.ACTIVE_CONNECTIONS | BluetoothProxyFeature.REMOTE_CACHING;
    expect(hasFeature(0xff, gatt)).toBe(true);
    expect(hasFeature(0x03, gatt)).toBe(false);
    expect(hasFeature(0x61, BluetoothProxyFeature.RAW_ADVERTISEMENTS)).toBe(true);
  });

  it('features - prefers capabilities, then DeviceInfo, then the legacy version', () => {
    expect(resolveFeatureFlags({ capabilitiesFlags: 0x61, deviceInfoFlags: 0xff, legacyVersion: 5 })).toBe(0x61);
    expect(resolveFeatureFlags({ capabilitiesFlags: 0, deviceInfoFlags: 0xff, legacyVersion: 5 })).toBe(0xff);
    expect(resolveFeatureFlags({ deviceInfoFlags: 0, legacyVersion: 5 })).toBe(0x1f);
    expect(resolveFeatureFlags({})).toBe(0);
  });
});
