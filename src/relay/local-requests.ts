import { messageId } from '../frame/message-types.js';
import {
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  BluetoothGATTGetServicesRequest,
  BluetoothGATTNotifyRequest,
  BluetoothGATTReadDescriptorRequest,
  BluetoothGATTReadRequest,
  BluetoothGATTWriteDescriptorRequest,
  BluetoothGATTWriteRequest,
  BluetoothSetConnectionParamsRequest,
} from '../gen/api_pb.js';
import { varintField } from './wire.js';

// What an in-process pool sends over a relay's shared upstream session, as the relay's send guard needs to know it.
// These messages are encoded by this process, so reading their address field by hand is safe.

/** A request of the in-process pool that names one device: its address, what it does (for refusals), and whether it connects. */
export interface LocalDeviceRequest {
  address: number;
  what: string;
  connect: boolean;
}

const DEVICE_REQUEST_ID = messageId(BluetoothDeviceRequest);

/** What BluetoothDeviceRequest types other than connects do, for refusals. */
const DEVICE_REQUEST_NAMES: Partial<Record<BluetoothDeviceRequestType, string>> = {
  [BluetoothDeviceRequestType.CONNECT]: 'A v1 connect',
  [BluetoothDeviceRequestType.DISCONNECT]: 'A disconnect',
  [BluetoothDeviceRequestType.PAIR]: 'Pairing',
  [BluetoothDeviceRequestType.UNPAIR]: 'Unpairing',
  [BluetoothDeviceRequestType.CLEAR_CACHE]: "Clearing the proxy's GATT cache",
};

/** Requests on one device's link (its address in field 1), by wire id. */
const LINK_REQUESTS: ReadonlyMap<number, string> = new Map([
  [messageId(BluetoothGATTGetServicesRequest), 'Service discovery'],
  [messageId(BluetoothGATTReadRequest), 'A GATT read'],
  [messageId(BluetoothGATTWriteRequest), 'A GATT write'],
  [messageId(BluetoothGATTReadDescriptorRequest), 'A descriptor read'],
  [messageId(BluetoothGATTWriteDescriptorRequest), 'A descriptor write'],
  [messageId(BluetoothGATTNotifyRequest), 'A notification subscription'],
  [messageId(BluetoothSetConnectionParamsRequest), 'A connection parameters request'],
]);

/** The device an outgoing message of ours names, or undefined for a message that names none (pings, subscriptions, ...). */
export function localDeviceRequest(id: number, payload: Uint8Array): LocalDeviceRequest | undefined {
  if (id === DEVICE_REQUEST_ID) {
    const { address, requestType: type } = BluetoothDeviceRequest.fromBinary(payload);
    const connect =
      type === BluetoothDeviceRequestType.CONNECT_V3_WITH_CACHE || type === BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE;
    return { address, connect, what: connect ? 'A connect' : (DEVICE_REQUEST_NAMES[type] ?? `Bluetooth request ${type}`) };
  }
  const what = LINK_REQUESTS.get(id);
  return what === undefined ? undefined : { address: varintField(payload, 1), what, connect: false };
}
