import type { PartialMessage } from '@protobuf-ts/runtime';
import { type EsphomeRelease, isReleaseBefore } from '../bluetooth/firmware-release.js';
import { ownBluetoothAddress } from '../bluetooth/own-address.js';
import type { ApiConnection } from '../connection/connection.js';
import { NameMismatchError } from '../errors.js';
import type { DeviceCapabilitiesResponse, DeviceInfoResponse } from '../gen/api_pb.js';
import type { ApiServer, FirmwareIdentity } from '../server/api-server.js';

/** Firmware from this release on sends raw advertisements whatever the subscribe flags say (spec §6.4). */
const RAW_ALWAYS_SINCE: EsphomeRelease = [2025, 8];
/**
 * Firmware before 2025 (API below 1.12) authenticates a session only by an AuthenticationRequest, which it answers
 * (spec §5.2); clients decide by the minor whether to send one and wait for the answer (@2colors below 1.12).
 */
const HELLO_AUTHENTICATES_MIN_MINOR = 12;

/** The upstream's answers the relay speaks for: its DeviceInfo and the session it came over (Hello, feature flags). */
interface Identity {
  info: DeviceInfoResponse;
  api: ApiConnection;
}

/** What the listener is created with to speak as the upstream: its name and MAC, its firmware and login rules. */
export type MirroredServerIdentity = { name: string; mac?: string } & FirmwareIdentity;

/**
 * Who the relay's listener is downstream: the upstream proxy's name, MAC, versions and login rules, as a
 * Bluetooth-proxy-only node. Keeps the first device relayed as the identity (a reconnect that reaches another
 * device at the address is refused) and follows that device's firmware updates.
 */
export class IdentityMirror {
  readonly #downstreamEncrypted: boolean;
  #identity: Identity | undefined;

  /** `downstreamEncrypted`: the listener takes a Noise key (what it advertises, not what the proxy does). */
  constructor(downstreamEncrypted: boolean) {
    this.#downstreamEncrypted = downstreamEncrypted;
  }

  /** The upstream's DeviceInfo, once an upstream session has been adopted. */
  get info(): DeviceInfoResponse | undefined {
    return this.#identity?.info;
  }

  /** The Bluetooth feature flags of the last upstream session's DeviceInfo (0 before any). */
  get featureFlags(): number {
    return this.#identity?.api.deviceInfo.bluetoothProxyFeatureFlags ?? 0;
  }

  /** Throws NameMismatchError when `info` is not the device the listener speaks as (another one at the same address). */
  check(info: DeviceInfoResponse): void {
    const served = this.#identity?.info;
    if (served === undefined) return;
    if (served.name !== info.name) throw new NameMismatchError('name', served.name, info.name);
    if (served.macAddress !== info.macAddress) throw new NameMismatchError('mac', served.macAddress, info.macAddress);
  }

  /**
   * Takes the session's identity on. After a firmware update the proxy reboots, which sends its clients a
   * DisconnectRequest; through the relay they would keep the old version and login rules. So the listener takes
   * the new firmware on, and asks its clients to reconnect (as the proxy would have), which makes Home Assistant
   * read the new DeviceInfo.
   */
  adopt(info: DeviceInfoResponse, api: ApiConnection, server: ApiServer | undefined): void {
    const identity = { info, api };
    this.#identity = identity;
    if (server === undefined) return;
    const firmware = firmwareOf(identity);
    const { major, minor } = server.apiVersion;
    const same =
      firmware.apiVersion.major === major && firmware.apiVersion.minor === minor && firmware.esphomeVersion === server.esphomeVersion;
    if (same) return;
    server.setFirmware(firmware);
    void server.disconnectSessions();
  }

  /** The listener's identity options; only after an upstream session was adopted. */
  serverIdentity(): MirroredServerIdentity {
    const identity = this.#identity!;
    return {
      name: identity.info.name || identity.api.hello.name,
      ...(identity.info.macAddress ? { mac: identity.info.macAddress } : {}),
      ...firmwareOf(identity),
    };
  }

  /**
   * The upstream's DeviceInfo as a Bluetooth-proxy-only node: Home Assistant adopts the listener as the proxy and
   * must not look for a web server, areas, sub-devices, entities, voice, Z-Wave or serial proxies the relay does
   * not serve, nor for a password, key provisioning or deep sleep.
   */
  deviceInfo(): Partial<DeviceInfoResponse> {
    const info = this.#identity?.info;
    if (info === undefined) return {};
    const { area: _area, ...rest } = info;
    return {
      ...rest,
      usesPassword: false,
      hasDeepSleep: false,
      webserverPort: 0,
      // What this listener does, not the proxy: a plaintext listener would otherwise invite key provisioning.
      apiEncryptionSupported: this.#downstreamEncrypted,
      apiEncryptionProvisionable: false,
      legacyVoiceAssistantVersion: 0,
      voiceAssistantFeatureFlags: 0,
      suggestedArea: '',
      devices: [],
      areas: [],
      zwaveProxyFeatureFlags: 0,
      zwaveHomeId: 0,
      serialProxies: [],
    };
  }

  /** The capabilities answer: the upstream's Bluetooth proxy flags and MAC. */
  capabilities(): PartialMessage<DeviceCapabilitiesResponse> {
    const info = this.#identity?.api.deviceInfo;
    if (info === undefined) return {};
    return { bluetoothProxy: { featureFlags: info.bluetoothProxyFeatureFlags, macAddress: info.bluetoothMacAddress } };
  }

  /** The proxy's Bluetooth MAC (its network MAC on firmware that reports none): the address HA knows the scanner by. */
  proxyAddress(): number | undefined {
    const info = this.#identity?.api.deviceInfo;
    return info === undefined ? undefined : ownBluetoothAddress(info);
  }

  /** Whether subscribers with flags=0 get the legacy message 67: always with 'flags', else when the firmware predates 2025.8. */
  legacyForFlagsZero(mode: 'auto' | 'flags'): boolean {
    if (mode === 'flags') return true;
    return isReleaseBefore(this.#identity?.info.esphomeVersion ?? '', RAW_ALWAYS_SINCE);
  }
}

/** The upstream's firmware as the listener plays it: its versions, and its login rules (no password downstream either way). */
function firmwareOf(identity: Identity): Required<Pick<FirmwareIdentity, 'apiVersion' | 'esphomeVersion'>> & FirmwareIdentity {
  const hello = identity.api.hello;
  const legacy = hello.apiVersionMajor === 1 && hello.apiVersionMinor < HELLO_AUTHENTICATES_MIN_MINOR;
  return {
    apiVersion: { major: hello.apiVersionMajor, minor: hello.apiVersionMinor },
    esphomeVersion: identity.info.esphomeVersion || hello.serverInfo,
    legacyLogin: legacy,
    // 2024 firmware also skips ids it has no handler for before authentication; 2025+ closes the session.
    unknownBeforeAuth: legacy ? 'ignore' : 'close',
  };
}
