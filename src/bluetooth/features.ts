/** Bluetooth proxy feature bits (`BluetoothProxyFeature`, §6.1); names follow aioesphomeapi. */
export const BluetoothProxyFeature = {
  PASSIVE_SCAN: 0x01,
  ACTIVE_CONNECTIONS: 0x02,
  REMOTE_CACHING: 0x04,
  PAIRING: 0x08,
  CACHE_CLEARING: 0x10,
  RAW_ADVERTISEMENTS: 0x20,
  FEATURE_STATE_AND_MODE: 0x40,
  CONNECTION_PARAMS_SETTING: 0x80,
} as const;

/** One `BluetoothProxyFeature` bit. */
export type BluetoothProxyFeature = (typeof BluetoothProxyFeature)[keyof typeof BluetoothProxyFeature];

const FEATURE_ENTRIES = Object.entries(BluetoothProxyFeature) as ReadonlyArray<[string, number]>;

// Legacy version N implies the first N feature bits (§6.1); versions above 5 add nothing more.
const LEGACY_FEATURES: readonly number[] = [
  0,
  BluetoothProxyFeature.PASSIVE_SCAN,
  BluetoothProxyFeature.PASSIVE_SCAN | BluetoothProxyFeature.ACTIVE_CONNECTIONS,
  BluetoothProxyFeature.PASSIVE_SCAN | BluetoothProxyFeature.ACTIVE_CONNECTIONS | BluetoothProxyFeature.REMOTE_CACHING,
  BluetoothProxyFeature.PASSIVE_SCAN |
    BluetoothProxyFeature.ACTIVE_CONNECTIONS |
    BluetoothProxyFeature.REMOTE_CACHING |
    BluetoothProxyFeature.PAIRING,
  BluetoothProxyFeature.PASSIVE_SCAN |
    BluetoothProxyFeature.ACTIVE_CONNECTIONS |
    BluetoothProxyFeature.REMOTE_CACHING |
    BluetoothProxyFeature.PAIRING |
    BluetoothProxyFeature.CACHE_CLEARING,
];

/** Feature bitmask implied by DeviceInfo's `legacy_bluetooth_proxy_version` (API < 1.9). */
export function featuresFromLegacyVersion(version: number): number {
  if (!(version > 0)) return 0;
  return LEGACY_FEATURES[Math.min(Math.floor(version), LEGACY_FEATURES.length - 1)]!;
}

/** Names of the bits set in `flags`, lowest first; unknown bits appear as `UNKNOWN_0x…`. */
export function featureNames(flags: number): string[] {
  const names: string[] = [];
  let rest = flags >>> 0;
  for (const [name, bit] of FEATURE_ENTRIES) {
    if (rest & bit) names.push(name);
    rest &= ~bit;
  }
  for (let bit = 0x100; rest !== 0 && bit !== 0; bit = (bit << 1) >>> 0) {
    if (rest & bit) {
      names.push(`UNKNOWN_0x${bit.toString(16)}`);
      rest = (rest & ~bit) >>> 0;
    }
  }
  return names;
}

/** True when every bit of `feature` (one flag or several OR-ed) is set in `flags`. */
export function hasFeature(flags: number, feature: number): boolean {
  return (flags & feature) === feature;
}

/** The bits a proxy needs for GATT connections: v3 connects (with and without cache) need both. */
export const GATT_CONNECTION_FEATURES = BluetoothProxyFeature.ACTIVE_CONNECTIONS | BluetoothProxyFeature.REMOTE_CACHING;

/** True when a proxy with feature bits `flags` can open GATT connections. */
export function canConnectGatt(flags: number): boolean {
  return hasFeature(flags, GATT_CONNECTION_FEATURES);
}

/** Where a proxy may report its feature bits. */
export interface FeatureFlagSources {
  /** `DeviceCapabilitiesResponse.bluetooth_proxy.feature_flags`; pass it only for devices reporting API ≥ 1.15. */
  capabilitiesFlags?: number;
  /** `DeviceInfoResponse.bluetooth_proxy_feature_flags` (field 15). */
  deviceInfoFlags?: number;
  /** `DeviceInfoResponse.legacy_bluetooth_proxy_version` (field 11, API < 1.9). */
  legacyVersion?: number;
}

/** The effective feature bitmask: capabilities if non-zero, else DeviceInfo field 15 if non-zero, else the legacy mapping. */
export function resolveFeatureFlags(sources: FeatureFlagSources): number {
  if (sources.capabilitiesFlags) return sources.capabilitiesFlags >>> 0;
  if (sources.deviceInfoFlags) return sources.deviceInfoFlags >>> 0;
  return featuresFromLegacyVersion(sources.legacyVersion ?? 0);
}

/**
 * True for a proxy that forwards advertisements but opens no connections: PASSIVE_SCAN without ACTIVE_CONNECTIONS
 * (`bluetooth_proxy: active: false`, and since 2026.8 the boards built without connection slots, whose firmware has
 * no handler for connection, GATT or slot requests at all: they go unanswered).
 */
export function isAdvertisementOnly(flags: number): boolean {
  return hasFeature(flags, BluetoothProxyFeature.PASSIVE_SCAN) && !hasFeature(flags, BluetoothProxyFeature.ACTIVE_CONNECTIONS);
}
