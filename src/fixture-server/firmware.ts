import type { PartialMessage } from '@protobuf-ts/runtime';
import { parseAdvertisementData } from '../bluetooth/advertisement.js';
import { BluetoothProxyFeature as F } from '../bluetooth/features.js';
import { shortUuidOf } from '../bluetooth/uuid.js';
import type { BluetoothLEAdvertisementResponse } from '../gen/api_pb.js';
import type { FirmwareIdentity } from '../server/api-server.js';

/**
 * ESPHome firmware generations the simulated proxy can play, named after the release that changed
 * what a client sees (firmware history: spec §5.1, §5.2, §6.1, §6.3, §6.4 and the firmware's git log).
 */
export type FirmwareGeneration = '2022.12' | '2023.5' | '2023.6' | '2024.10' | '2025.5' | '2026.1' | '2026.7';

/** Every generation, oldest first. */
export const FIRMWARE_GENERATIONS: readonly FirmwareGeneration[] = ['2022.12', '2023.5', '2023.6', '2024.10', '2025.5', '2026.1', '2026.7'];

/** Which advertisement message a generation sends: legacy 67 only, raw 93 when the subscribe flag asks for it, or raw always. */
export type AdvertisementFormat = 'legacy' | 'raw-if-requested' | 'raw';

/** Who keeps the single Bluetooth subscription when a second client subscribes (spec §6.3). */
export type SubscriptionPolicy = 'first-wins' | 'newest-wins';

/**
 * Who receives the proxy's Bluetooth answers (connection states, slot updates, GATT, pairing, cache
 * clearing): every connected API client before 2023.6, which also sent advertisements to every client that
 * subscribed and dropped its links only once no client was connected at all; the single subscriber since.
 */
export type BluetoothAnswerRouting = 'all-clients' | 'subscriber';

/** What one generation looks like on the wire. */
export interface FirmwareProfile {
  readonly esphomeVersion: string;
  readonly apiVersion: { readonly major: number; readonly minor: number };
  /** Before 2025 a session is only authenticated by an AuthenticationRequest, password or not. */
  readonly legacyLogin: boolean;
  /** 2024 firmware skips unknown ids even before authentication; from 2025 anything unexpected there closes the session. */
  readonly unknownBeforeAuth: 'ignore' | 'close';
  /** Feature bits of an active proxy; sent in DeviceInfo field 15 from API 1.9 only. */
  readonly featureFlags: number;
  /** DeviceInfo field 11 (0 = not sent). */
  readonly legacyProxyVersion: number;
  readonly advertisements: AdvertisementFormat;
  readonly bluetoothAnswers: BluetoothAnswerRouting;
  /** Among subscribers (from 2023.6 on). */
  readonly subscriptionPolicy: SubscriptionPolicy;
  /** UNPAIR's answer: its own message (86) in 2023.5, the pairing message (85) from 2023.6. */
  readonly unpairAnswer: 'unpairing' | 'pairing';
  /** DeviceInfo field 18 and the slot message's `allocated` list arrived in 2025. */
  readonly reportsBluetoothMacAndAllocated: boolean;
  /** 2025+ firmware reports a disconnect twice (disconnect, then close event) and frees the slot after the second; older firmware once, freeing it at once. */
  readonly closeEvent: boolean;
  /** Noise server hello: the node name since 2022.2, the MAC too since 2025.4 (spec §4.5). */
  readonly serverHelloGeneration: 'name' | 'mac';
}

const ACTIVE_V3 = F.PASSIVE_SCAN | F.ACTIVE_CONNECTIONS | F.REMOTE_CACHING;
const ACTIVE_2023 = ACTIVE_V3 | F.PAIRING | F.CACHE_CLEARING | F.RAW_ADVERTISEMENTS;

/**
 * The generations. API minors: 1.7 (2022.10 active connections), 1.8 (2023.5), 1.9 (2023.6 feature flags, raw
 * batches and the single subscriber), 1.10 (2024.4) are from the firmware's git history; the 2025–2026 minors
 * follow the spec's table (§5.1) and are approximate.
 */
const PROFILES: Readonly<Record<FirmwareGeneration, FirmwareProfile>> = {
  // v3 connections with remote caching (legacy version 3), parsed advertisements only, no pairing or cache clearing.
  '2022.12': {
    esphomeVersion: '2022.12.8',
    apiVersion: { major: 1, minor: 7 },
    legacyLogin: true,
    unknownBeforeAuth: 'ignore',
    featureFlags: ACTIVE_V3,
    legacyProxyVersion: 3,
    advertisements: 'legacy',
    bluetoothAnswers: 'all-clients',
    subscriptionPolicy: 'first-wins',
    unpairAnswer: 'unpairing',
    reportsBluetoothMacAndAllocated: false,
    closeEvent: false,
    serverHelloGeneration: 'name',
  },
  // API 1.8 changed no Bluetooth message; pairing (2023.3) and cache clearing (2023.4) made an active proxy legacy
  // version 5. Still parsed advertisements only, and every answer to every client.
  '2023.5': {
    esphomeVersion: '2023.5.5',
    apiVersion: { major: 1, minor: 8 },
    legacyLogin: true,
    unknownBeforeAuth: 'ignore',
    featureFlags: ACTIVE_V3 | F.PAIRING | F.CACHE_CLEARING,
    legacyProxyVersion: 5,
    advertisements: 'legacy',
    bluetoothAnswers: 'all-clients',
    subscriptionPolicy: 'first-wins',
    unpairAnswer: 'unpairing',
    reportsBluetoothMacAndAllocated: false,
    closeEvent: false,
    serverHelloGeneration: 'name',
  },
  // Feature flags (API 1.9), raw advertisement batches for subscribers that set the raw flag, and the single
  // subscriber ("Only one API subscription is allowed at a time").
  '2023.6': {
    esphomeVersion: '2023.6.5',
    apiVersion: { major: 1, minor: 9 },
    legacyLogin: true,
    unknownBeforeAuth: 'ignore',
    featureFlags: ACTIVE_2023,
    legacyProxyVersion: 5,
    advertisements: 'raw-if-requested',
    bluetoothAnswers: 'subscriber',
    subscriptionPolicy: 'first-wins',
    unpairAnswer: 'pairing',
    reportsBluetoothMacAndAllocated: false,
    closeEvent: false,
    serverHelloGeneration: 'name',
  },
  '2024.10': {
    esphomeVersion: '2024.10.3',
    apiVersion: { major: 1, minor: 10 },
    legacyLogin: true,
    unknownBeforeAuth: 'ignore',
    featureFlags: ACTIVE_2023,
    legacyProxyVersion: 5,
    advertisements: 'raw-if-requested',
    bluetoothAnswers: 'subscriber',
    subscriptionPolicy: 'first-wins',
    unpairAnswer: 'pairing',
    reportsBluetoothMacAndAllocated: false,
    closeEvent: false,
    serverHelloGeneration: 'name',
  },
  // Scanner state and mode (FEATURE_STATE_AND_MODE); Hello authenticates a password-less node.
  '2025.5': {
    esphomeVersion: '2025.5.2',
    apiVersion: { major: 1, minor: 12 },
    legacyLogin: false,
    unknownBeforeAuth: 'close',
    featureFlags: ACTIVE_2023 | F.FEATURE_STATE_AND_MODE,
    legacyProxyVersion: 5,
    advertisements: 'raw-if-requested',
    bluetoothAnswers: 'subscriber',
    subscriptionPolicy: 'first-wins',
    unpairAnswer: 'pairing',
    reportsBluetoothMacAndAllocated: true,
    closeEvent: true,
    serverHelloGeneration: 'mac',
  },
  // Passwords gone, legacy advertisements gone (2025.8), connection parameters; no capabilities message yet.
  '2026.1': {
    esphomeVersion: '2026.1.4',
    apiVersion: { major: 1, minor: 14 },
    legacyLogin: false,
    unknownBeforeAuth: 'close',
    featureFlags: 0xff,
    legacyProxyVersion: 0,
    advertisements: 'raw',
    bluetoothAnswers: 'subscriber',
    subscriptionPolicy: 'first-wins',
    unpairAnswer: 'pairing',
    reportsBluetoothMacAndAllocated: true,
    closeEvent: true,
    serverHelloGeneration: 'mac',
  },
  // The newest subscriber takes the subscription over (esphome/esphome#17423); capabilities message (API 1.15).
  '2026.7': {
    esphomeVersion: '2026.7.0',
    apiVersion: { major: 1, minor: 15 },
    legacyLogin: false,
    unknownBeforeAuth: 'close',
    featureFlags: 0xff,
    legacyProxyVersion: 0,
    advertisements: 'raw',
    bluetoothAnswers: 'subscriber',
    subscriptionPolicy: 'newest-wins',
    unpairAnswer: 'pairing',
    reportsBluetoothMacAndAllocated: true,
    closeEvent: true,
    serverHelloGeneration: 'mac',
  },
};

/** The wire behaviour of `generation`; throws for unknown names (the CLI validates first). */
export function firmwareProfile(generation: FirmwareGeneration): FirmwareProfile {
  const profile = PROFILES[generation];
  if (profile === undefined) throw new RangeError(`Unknown firmware generation ${JSON.stringify(generation)}`);
  return profile;
}

/** True when `name` is one of FIRMWARE_GENERATIONS. */
export function isFirmwareGeneration(name: string): name is FirmwareGeneration {
  return (FIRMWARE_GENERATIONS as readonly string[]).includes(name);
}

/** The API server options that make a node look like `profile`. */
export function firmwareServerOptions(profile: FirmwareProfile): FirmwareIdentity {
  return {
    apiVersion: profile.apiVersion,
    esphomeVersion: profile.esphomeVersion,
    legacyLogin: profile.legacyLogin,
    unknownBeforeAuth: profile.unknownBeforeAuth,
  };
}

/**
 * Encodes one raw report the way pre-2025.8 firmware sent it as a parsed advertisement (67):
 * name, service UUIDs as text (`0xFE95` for 16-bit ones, the dashed upper-case form otherwise),
 * service and manufacturer data keyed by UUID / company id text.
 */
export function legacyAdvertisement(
  address: number,
  rssi: number,
  addressType: number,
  data: Uint8Array,
): PartialMessage<BluetoothLEAdvertisementResponse> {
  const parsed = parseAdvertisementData(data);
  const uuidText = (uuid: string): string => {
    const short = shortUuidOf(uuid);
    return short !== undefined && short <= 0xffff ? `0x${short.toString(16).toUpperCase().padStart(4, '0')}` : uuid.toUpperCase();
  };
  return {
    address,
    rssi,
    addressType,
    name: parsed.localName === undefined ? new Uint8Array(0) : new TextEncoder().encode(parsed.localName),
    serviceUuids: parsed.serviceUuids.map(uuidText),
    serviceData: [...parsed.serviceData].map(([uuid, bytes]) => ({ uuid: uuidText(uuid), data: bytes })),
    manufacturerData: [...parsed.manufacturerData].map(([company, bytes]) => ({
      uuid: `0x${company.toString(16).toUpperCase().padStart(4, '0')}`,
      data: bytes,
    })),
  };
}
