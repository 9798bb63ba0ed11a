import type { DeviceCapabilitiesResponse, DeviceInfoResponse, HelloResponse } from '../gen/api_pb.js';

/** What the device said in its HelloResponse. */
export interface HelloInfo {
  readonly apiVersionMajor: number;
  readonly apiVersionMinor: number;
  readonly serverInfo: string;
  readonly name: string;
}

/** Identity and capabilities of an ESPHome node (plain model, no protobuf types). */
export interface DeviceInfo {
  readonly name: string;
  readonly friendlyName: string;
  readonly macAddress: string;
  readonly esphomeVersion: string;
  readonly compilationTime: string;
  readonly model: string;
  readonly manufacturer: string;
  readonly projectName: string;
  readonly projectVersion: string;
  readonly suggestedArea: string;
  readonly usesPassword: boolean;
  readonly hasDeepSleep: boolean;
  readonly apiEncryptionSupported: boolean;
  readonly apiEncryptionProvisionable: boolean;
  /** Bluetooth proxy feature bitmask (capabilities message when present, else DeviceInfo field 15 / legacy). */
  readonly bluetoothProxyFeatureFlags: number;
  /** The BLE controller's own MAC, `AA:BB:CC:DD:EE:FF`, when the node is a proxy. */
  readonly bluetoothMacAddress: string;
  /** DeviceInfo field 11 as sent by firmware older than API 1.9 (0 when absent). */
  readonly legacyBluetoothProxyVersion: number;
}

/** Builds the plain model from the protobuf answers. */
export function toDeviceInfo(info: DeviceInfoResponse, capabilities: DeviceCapabilitiesResponse | undefined): DeviceInfo {
  const capabilityFlags = capabilities?.bluetoothProxy?.featureFlags ?? 0;
  return {
    name: info.name,
    friendlyName: info.friendlyName,
    macAddress: info.macAddress,
    esphomeVersion: info.esphomeVersion,
    compilationTime: info.compilationTime,
    model: info.model,
    manufacturer: info.manufacturer,
    projectName: info.projectName,
    projectVersion: info.projectVersion,
    suggestedArea: info.suggestedArea,
    usesPassword: info.usesPassword,
    hasDeepSleep: info.hasDeepSleep,
    apiEncryptionSupported: info.apiEncryptionSupported,
    apiEncryptionProvisionable: info.apiEncryptionProvisionable,
    bluetoothProxyFeatureFlags: capabilityFlags !== 0 ? capabilityFlags : info.bluetoothProxyFeatureFlags,
    bluetoothMacAddress: capabilities?.bluetoothProxy?.macAddress || info.bluetoothMacAddress,
    legacyBluetoothProxyVersion: info.legacyBluetoothProxyVersion,
  };
}

/** Plain copy of a HelloResponse. */
export function toHelloInfo(hello: HelloResponse): HelloInfo {
  return {
    apiVersionMajor: hello.apiVersionMajor,
    apiVersionMinor: hello.apiVersionMinor,
    serverInfo: hello.serverInfo,
    name: hello.name,
  };
}
