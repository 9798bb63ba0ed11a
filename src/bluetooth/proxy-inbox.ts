import type { MessageType } from '@protobuf-ts/runtime';
import type { ApiConnection } from '../connection/connection.js';
import { MessageDispatcher } from '../frame/dispatch.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceClearCacheResponse,
  BluetoothDeviceConnectionResponse,
  BluetoothDevicePairingResponse,
  BluetoothDeviceUnpairingResponse,
  BluetoothGATTErrorResponse,
  BluetoothGATTGetServicesDoneResponse,
  BluetoothGATTGetServicesResponse,
  BluetoothGATTNotifyDataResponse,
  BluetoothGATTNotifyResponse,
  BluetoothGATTReadResponse,
  BluetoothGATTWriteResponse,
  BluetoothLEAdvertisementResponse,
  BluetoothScannerStateResponse,
  BluetoothSetConnectionParamsResponse,
} from '../gen/api_pb.js';
import type { BleConnection } from './ble-connection.js';
import type { ConnectAttempts } from './connect-attempts.js';
import type { DeviceOps } from './device-ops.js';
import type { ProxyStreams } from './proxy-streams.js';
import { RAW_ADVERTISEMENTS_MESSAGE_ID } from './raw-advertisements.js';
import type { SlotTracker } from './slot-tracker.js';
import { SUBSCRIPTION_PROBE_ADDRESS, type Subscription } from './subscription.js';

/** The parts of BluetoothProxy that receive the proxy's messages. */
export interface InboxHost {
  readonly subscription: Subscription;
  readonly streams: ProxyStreams;
  readonly slots: SlotTracker;
  readonly links: ReadonlyMap<number, BleConnection>;
  readonly attempts: ConnectAttempts;
  readonly deviceOps: DeviceOps;
}

/**
 * Listens to every Bluetooth message a proxy sends its client: one handler per message type, each given the message
 * decoded through the one message table (frame/dispatch.ts); returns the unsubscribe functions. Every message the
 * firmware sends its subscriber only counts as heard (the subscription's proof); slot reports go to anyone asking.
 */
export function listenToProxy(api: ApiConnection, host: InboxHost): Array<() => void> {
  const { streams, slots, links, attempts, deviceOps } = host;
  const heard = (): void => host.subscription.heard();
  const d = new MessageDispatcher<void>(api.label);
  d.on(BluetoothLEAdvertisementResponse, (m) => {
    heard();
    streams.legacyAdvertisement(m);
  });
  d.on(BluetoothScannerStateResponse, (m) => {
    heard();
    streams.scannerState(m);
  });
  d.on(BluetoothConnectionsFreeResponse, (m) => slots.apply(slots.read(m)));
  d.on(BluetoothDeviceConnectionResponse, (m) => {
    if (m.address === SUBSCRIPTION_PROBE_ADDRESS) {
      host.subscription.probeAnswered();
      return;
    }
    heard();
    streams.connectionState(m);
    if (attempts.answer(m)) return;
    if (!m.connected) links.get(m.address)?.handleLinkDown(m.error);
  });
  const toLink = <T extends { address: number }>(type: MessageType<T>, handle: (link: BleConnection, message: T) => void): void => {
    d.on(type, (m) => {
      heard();
      const link = links.get(m.address);
      if (link !== undefined) handle(link, m);
    });
  };
  toLink(BluetoothGATTGetServicesResponse, (link, m) => link.handleServices(m));
  toLink(BluetoothGATTGetServicesDoneResponse, (link) => link.handleServicesDone());
  toLink(BluetoothGATTReadResponse, (link, m) => link.handleReadResponse(m));
  toLink(BluetoothGATTWriteResponse, (link, m) => link.handleWriteResponse(m));
  toLink(BluetoothGATTNotifyResponse, (link, m) => link.handleNotifyResponse(m));
  toLink(BluetoothGATTNotifyDataResponse, (link, m) => link.handleNotifyData(m));
  toLink(BluetoothGATTErrorResponse, (link, m) => link.handleGattError(m));
  toLink(BluetoothSetConnectionParamsResponse, (link, m) => link.handleConnectionParams(m));
  d.on(BluetoothDevicePairingResponse, (m) => {
    heard();
    // Upstream firmware answers UNPAIR with message 85 (paired=true means the bond was removed).
    if (deviceOps.settle('unpair', m.address, { success: m.paired, error: m.error })) return;
    links.get(m.address)?.handlePairing(m);
  });
  d.on(BluetoothDeviceUnpairingResponse, (m) => {
    heard();
    deviceOps.settle('unpair', m.address, m);
  });
  d.on(BluetoothDeviceClearCacheResponse, (m) => {
    heard();
    deviceOps.settle('clear', m.address, m);
  });
  return [
    // The hot path decodes its batches itself (raw-advertisements.ts), without a message object per batch.
    api.onRaw(RAW_ADVERTISEMENTS_MESSAGE_ID, (payload) => {
      heard();
      streams.rawAdvertisements(payload);
    }),
    // Decoded from a copy (a plain Uint8Array: `slice()` of a Buffer is a view): bytes fields are views, and the
    // payload lives in the socket's reusable read buffer.
    ...d.ids().map((id) => api.onRaw(id, (payload) => d.dispatch(id, new Uint8Array(payload), undefined))),
  ];
}
