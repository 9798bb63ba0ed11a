import type { ApiConnection } from '../connection/connection.js';
import { decodeMessage } from '../frame/dispatch.js';
import { messageId } from '../frame/message-types.js';
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
  type BluetoothGATTService,
  BluetoothGATTWriteResponse,
  BluetoothLEAdvertisementResponse,
  BluetoothLERawAdvertisementsResponse,
  BluetoothScannerStateResponse,
  BluetoothSetConnectionParamsResponse,
} from '../gen/api_pb.js';
import type { AdvertisementFanOut } from './advertisement-fanout.js';
import type { DeviceOps } from './device-ops.js';
import { DownstreamClient } from './downstream-client.js';
import type { DownstreamClients } from './downstream-clients.js';
import type { GuardedClient } from './request-guard.js';
import { RELEASING, type SlotLedger } from './slot-ledger.js';
import { varintField } from './wire.js';

const BASE_UUID_LOW_WORD = 0x800000805f9b34fbn;

/** Replies on one device's link, passed on as the proxy sent them to the link's holder (address in field 1). */
const LINK_REPLIES = [
  BluetoothGATTGetServicesDoneResponse,
  BluetoothGATTReadResponse,
  BluetoothGATTNotifyDataResponse,
  BluetoothGATTErrorResponse,
  BluetoothGATTWriteResponse,
  BluetoothGATTNotifyResponse,
  BluetoothSetConnectionParamsResponse,
];

/** What the routing reads and changes of its relay. */
export interface UpstreamRepliesHost {
  readonly ledger: SlotLedger;
  readonly deviceOps: DeviceOps<GuardedClient>;
  readonly fanOut: AdvertisementFanOut;
  readonly clients: DownstreamClients;
  /** Counts advertisements received from the upstream. */
  advertised(reports: number): void;
  /** The upstream's scanner state changed (raw payload, kept for clients that subscribe later). */
  scannerState(payload: Uint8Array): void;
  /** A slot report of the upstream. */
  slots(message: BluetoothConnectionsFreeResponse): void;
  /** Sends a DISCONNECT for `address` upstream. */
  disconnect(address: number): void;
  /** Shows every subscriber its slot view now. */
  pushSlots(): void;
  /** True while connection states of `address` are not its holder's news (ConnectSequencer.quiet). */
  quiet(address: number): boolean;
}

/**
 * Routes what the upstream proxy sends to the relay's clients: advertisements and scanner states to every
 * subscriber, a link's replies to the client that holds the link, an unpair / clear-cache answer to who asked,
 * slot reports and connection states into the ledger. Replies are passed on as the proxy sent them, addressed by
 * field 1 read as the client's decoder will read it (wire.ts). Returns the listeners' unsubscribe functions.
 */
export function routeUpstreamReplies(api: ApiConnection, host: UpstreamRepliesHost): Array<() => void> {
  const { ledger } = host;
  const holderOf = (payload: Uint8Array): DownstreamClient | undefined => {
    const holder = ledger.holderOf(varintField(payload, 1));
    return holder instanceof DownstreamClient ? holder : undefined;
  };
  const route = (id: number): (() => void) => api.onRaw(id, (payload) => holderOf(payload)?.session.sendRaw(id, payload));
  const deviceOp = (id: number, kind: 'unpair' | 'clear'): (() => void) =>
    api.onRaw(id, (payload) => {
      const address = varintField(payload, 1);
      const pending = host.deviceOps.take(kind, address);
      // Not asked for by anyone waiting (a pair request's answer): the link's holder's.
      const target = pending === undefined ? ledger.holderOf(address) : pending.client;
      if (target instanceof DownstreamClient) target.session.sendRaw(id, payload);
    });
  const scannerStateId = messageId(BluetoothScannerStateResponse);
  const servicesId = messageId(BluetoothGATTGetServicesResponse);
  const connectionId = messageId(BluetoothDeviceConnectionResponse);
  return [
    api.onRaw(messageId(BluetoothLERawAdvertisementsResponse), (payload) =>
      host.advertised(host.fanOut.raw(host.clients.subscribers, payload)),
    ),
    // A proxy without raw advertisements sends the legacy form to its subscriber whatever it asked for.
    api.onRaw(messageId(BluetoothLEAdvertisementResponse), (payload) => {
      host.advertised(1);
      host.fanOut.legacy(host.clients.subscribers, payload);
    }),
    api.onRaw(scannerStateId, (payload) => {
      host.scannerState(new Uint8Array(payload));
      host.clients.showScannerState(payload);
    }),
    api.onRaw(messageId(BluetoothConnectionsFreeResponse), (payload) =>
      host.slots(decodeMessage(BluetoothConnectionsFreeResponse, payload)),
    ),
    api.onRaw(connectionId, (payload) => {
      const message = decodeMessage(BluetoothDeviceConnectionResponse, payload);
      const holder = ledger.holderOf(message.address);
      if (holder instanceof DownstreamClient) {
        if (!host.quiet(message.address)) holder.session.sendRaw(connectionId, payload);
      } else if (holder === RELEASING && message.connected) host.disconnect(message.address);
      if (message.connected) ledger.connected(message.address);
      else {
        const before = ledger.free;
        ledger.ended(message.address);
        if (ledger.free !== before) host.pushSlots();
      }
    }),
    api.onRaw(servicesId, (payload) => {
      const holder = holderOf(payload);
      if (holder === undefined) return;
      if (!holder.wantsFullUuids) {
        holder.session.sendRaw(servicesId, payload);
        return;
      }
      // The upstream session speaks API 1.15 and gets compact UUIDs; an older client must not.
      const message = BluetoothGATTGetServicesResponse.fromBinary(new Uint8Array(payload));
      for (const service of message.services) expandService(service);
      holder.session.send(BluetoothGATTGetServicesResponse, message);
    }),
    ...LINK_REPLIES.map((type) => route(messageId(type))),
    // A pair request's answer shares the unpair queue: an answer nobody waits for goes to the link's holder.
    deviceOp(messageId(BluetoothDevicePairingResponse), 'unpair'),
    deviceOp(messageId(BluetoothDeviceUnpairingResponse), 'unpair'),
    deviceOp(messageId(BluetoothDeviceClearCacheResponse), 'clear'),
  ];
}

/** Rewrites compact UUIDs as the two words the firmware sends to pre-1.12 clients (§6.8). */
function expandService(service: BluetoothGATTService): void {
  expandUuid(service);
  for (const characteristic of service.characteristics) {
    expandUuid(characteristic);
    for (const descriptor of characteristic.descriptors) expandUuid(descriptor);
  }
}

function expandUuid(item: { uuid: bigint[]; shortUuid: number }): void {
  if (item.shortUuid === 0) return;
  item.uuid = [(BigInt(item.shortUuid) << 32n) | 0x1000n, BASE_UUID_LOW_WORD];
  item.shortUuid = 0;
}
