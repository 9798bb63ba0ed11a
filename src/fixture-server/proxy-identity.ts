import type { PartialMessage } from '@protobuf-ts/runtime';
import { BluetoothProxyFeature } from '../bluetooth/features.js';
import type { DeviceCapabilitiesResponse, DeviceInfoResponse } from '../gen/api_pb.js';
import type { BoardProfile, ProxyBoard } from './boards.js';
import type { FirmwareProfile } from './firmware.js';

/** Current ESP32 firmware with `bluetooth_proxy: active: true` reports every feature bit. */
export const ALL_PROXY_FEATURES = 0xff;

/** Who the simulated proxy says it is: board, firmware generation, feature bits and Bluetooth MAC. */
export interface ProxyIdentity {
  readonly board: ProxyBoard;
  readonly boardProfile: BoardProfile;
  readonly firmware: FirmwareProfile | undefined;
  readonly featureFlags: number;
  readonly bluetoothMac: string;
}

/** The feature bits a proxy reports: explicit ones, else its generation's (or all), masked by what the board can do. */
export function proxyFeatureFlags(explicit: number | undefined, firmware: FirmwareProfile | undefined, board: BoardProfile): number {
  return explicit ?? (firmware?.featureFlags ?? ALL_PROXY_FEATURES) & board.featureMask;
}

/** The DeviceInfo fields the Bluetooth half adds, as the played generation fills them. */
export function proxyDeviceInfo(identity: ProxyIdentity): Partial<DeviceInfoResponse> {
  const { firmware, featureFlags, bluetoothMac } = identity;
  // The default board leaves model and manufacturer to the node (ApiServerOptions.model).
  const board = identity.board === 'esp32' ? {} : { model: identity.boardProfile.model, manufacturer: identity.boardProfile.manufacturer };
  if (firmware === undefined) return { ...board, bluetoothProxyFeatureFlags: featureFlags, bluetoothMacAddress: bluetoothMac };
  // Field 15 arrived with API 1.9; before it only field 11 (1 = passive, the generation's number = active proxy).
  const active = (featureFlags & BluetoothProxyFeature.ACTIVE_CONNECTIONS) !== 0;
  return {
    ...board,
    bluetoothProxyFeatureFlags: firmware.apiVersion.minor >= 9 ? featureFlags : 0,
    legacyBluetoothProxyVersion: firmware.legacyProxyVersion === 0 ? 0 : active ? firmware.legacyProxyVersion : 1,
    bluetoothMacAddress: firmware.reportsBluetoothMacAndAllocated ? bluetoothMac : '',
  };
}

/** The Bluetooth part of DeviceCapabilities (API 1.15 and later). */
export function proxyCapabilities(identity: ProxyIdentity): PartialMessage<DeviceCapabilitiesResponse> {
  return { bluetoothProxy: { featureFlags: identity.featureFlags, macAddress: identity.bluetoothMac } };
}
