import type { MessageType } from '@protobuf-ts/runtime';
import { BluetoothProxyFeature } from '../bluetooth/features.js';
import { SUBSCRIPTION_PROBE_ADDRESS } from '../bluetooth/proxy-client.js';
import { FrameError } from '../errors.js';
import { MessageDispatcher } from '../frame/dispatch.js';
import { messageId } from '../frame/message-types.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceClearCacheResponse,
  BluetoothDeviceConnectionResponse,
  BluetoothDevicePairingResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  BluetoothGATTErrorResponse,
  BluetoothGATTGetServicesRequest,
  BluetoothGATTNotifyRequest,
  BluetoothGATTReadDescriptorRequest,
  BluetoothGATTReadRequest,
  BluetoothGATTWriteDescriptorRequest,
  BluetoothGATTWriteRequest,
  BluetoothScannerSetModeRequest,
  BluetoothScannerStateResponse,
  BluetoothSetConnectionParamsRequest,
  BluetoothSetConnectionParamsResponse,
  NoiseEncryptionSetKeyRequest,
  NoiseEncryptionSetKeyResponse,
  SubscribeBluetoothConnectionsFreeRequest,
  SubscribeBluetoothLEAdvertisementsRequest,
  UnsubscribeBluetoothLEAdvertisementsRequest,
} from '../gen/api_pb.js';
import type { ApiSession } from '../server/api-server.js';
import type { RelayPermissions } from './client-policy.js';
import type { HeldConnect } from './connect-sequencer.js';
import { DEVICE_OPS_BUSY_ERROR, type DeviceOps } from './device-ops.js';
import type { SlotLedger, SlotView } from './slot-ledger.js';

/**
 * What a connect beyond the free slots or the quota, or to a device another client holds, gets:
 * ESP_GATT_CONN_CONN_CANCEL, right after a slot report that shows the client no free slot (then its true view).
 * The firmware answers error 0 when it has no free slot, which bleak-esphome turns into a plain "Disconnected"
 * that bleak-retry-connector retries at once; 0x100 gets its 4 s backoff (BleakAbortedError since its PR #327,
 * out of slots before). The full view makes our pool read the 0x100 as out of slots, not the controller.
 */
export const RELAY_OUT_OF_SLOTS_ERROR = 0x100;
/** ESP_ERR_INVALID_STATE: unpair / clear-cache of a device another client of the relay is connected to. */
export const HELD_BY_OTHER_CLIENT = 0x103;
/**
 * ESP_ERR_NOT_SUPPORTED: what a client gets for an unpair / clear-cache its policy does not allow; the listener,
 * for this client, has no such operation (a code every client's table names, unlike ESP-IDF's newer NOT_ALLOWED).
 */
export const NOT_PERMITTED_ERROR = 0x106;
/** ESP_ERR_INVALID_ARG: unpair / clear-cache of an address beyond 48 bits. */
const INVALID_ADDRESS_ERROR = 0x102;
/** ESPHome's "not connected" value in GATT error and connection-parameter replies (spec §6.14). */
const NOT_CONNECTED = -1;
/**
 * Addresses are 48 bits carried in a uint64 (spec §6.2). The firmware finds a link by the whole uint64 but opens,
 * unpairs and clears the cache of the low 48 bits: `2^48 + A` would reach device A while looking like another.
 */
const MAX_ADDRESS = 0xffff_ffff_ffff;

/** A downstream client as the guard needs it; the relay's clients are the slot ledger's holders. */
export interface GuardedClient {
  readonly session: ApiSession;
  /** Who the client is for quotas and caps: its remote address (every session from it shares them). */
  readonly identity: string;
  /** Subscribed to advertisements: the firmware answers Bluetooth requests to its subscriber only. */
  readonly subscribed: boolean;
  /** Receives the legacy parsed advertisements (message 67). */
  legacy: boolean;
  /** Asked for the slots (80) while not subscribed: its view follows once it subscribes. */
  askedSlotsUnsubscribed: boolean;
  readonly permissions: RelayPermissions;
}

/** What the relay lends the guard: its slot ledger, its upstream and its bookkeeping of clients. */
export interface RequestGuardHost {
  readonly ledger: SlotLedger;
  /** True while a connect may go upstream: a live upstream session whose Bluetooth subscription is the relay's. */
  upstreamReady(): boolean;
  /** The upstream's last scanner state (raw payload), if any. */
  scannerState(): Uint8Array | undefined;
  /** Encodes `message` and sends it upstream; false when no upstream session can take it. */
  forward<T extends object>(type: MessageType<T>, message: T): boolean;
  /**
   * Sends a client's connect upstream and books the slot for it, until the proxy has shown what it did with it
   * (SlotLedger.reserve / handled); false when no upstream session can take it (nothing is booked then).
   */
  connect(client: GuardedClient, request: BluetoothDeviceRequest): boolean;
  /** A client's connect for an address it holds (ConnectSequencer.again). */
  connectHeld(client: GuardedClient, request: BluetoothDeviceRequest): HeldConnect;
  /**
   * `client` sent a DISCONNECT for `address`, held or not: its connect waiting there is dropped (ConnectSequencer
   * .disconnecting). Its entry may be gone while that connect waits (the relay's settling DISCONNECT was answered).
   */
  dropWaiting(client: GuardedClient, address: number): void;
  /** Sends the DISCONNECT of `client`, which holds its address, upstream; false when no upstream session can take it. */
  disconnect(client: GuardedClient, request: BluetoothDeviceRequest): boolean;
  hasFeature(feature: number): boolean;
  /** Whether subscribers with flags=0 get the legacy message 67 (the upstream firmware decides). */
  legacyForFlagsZero(): boolean;
  setSubscribed(client: GuardedClient, subscribed: boolean): void;
  /** Disconnects the client's links upstream. */
  releaseLinks(client: GuardedClient): void;
  /** The slot report this client is shown. */
  slotView(client: GuardedClient): SlotView;
  /**
   * The client's view with nothing left to take (its own links, no free slot), sent right before a refusal; undefined
   * while the proxy has not shown that it lists its slots (such a view would not add up).
   */
  fullView(client: GuardedClient): SlotView | undefined;
  /** The proxy's free and limit without addresses: the answer to 80 of a client that has not subscribed. */
  proxySlots(): SlotView;
  /** The address the full-proxy view lists as the proxy's own slot (its Bluetooth MAC), if known. */
  proxyAddress(): number | undefined;
  /** How many slots the client's address may hold now, over all its sessions. */
  slotQuota(client: GuardedClient): number;
  /** How many slots the client's address holds, over all its sessions. */
  identityHeld(client: GuardedClient): number;
  /** Who asked for each unpair / clear-cache sent upstream, so its answer goes back to them. */
  readonly deviceOps: DeviceOps<GuardedClient>;
}

/**
 * Decode, authorise, re-encode: every downstream request the relay acts on is decoded through the message table
 * into its generated type, as the proxy decodes it (the last of repeated fields wins), checked against the slot
 * ledger and the client's policy, and what goes upstream is encoded again from that decoded message, never the
 * client's bytes. A refused request gets the answer the firmware gives in the same situation.
 */
export class RequestGuard {
  readonly #host: RequestGuardHost;
  readonly #dispatcher = new MessageDispatcher<GuardedClient>();

  constructor(host: RequestGuardHost) {
    this.#host = host;
    const d = this.#dispatcher;
    d.on(SubscribeBluetoothLEAdvertisementsRequest, (m, client) => this.#subscribe(m.flags, client));
    d.on(UnsubscribeBluetoothLEAdvertisementsRequest, (_m, client) => {
      // The firmware drops every link of a subscriber that unsubscribes.
      host.setSubscribed(client, false);
      host.releaseLinks(client);
    });
    // A subscriber sees its own slots. A client that has not subscribed can take none (its connects get no answer, as
    // the firmware's): it is told how full the proxy is, counts only, so inspection through the relay tells the truth
    // without naming other clients' devices it could neither use nor release.
    d.on(SubscribeBluetoothConnectionsFreeRequest, (_m, client) => {
      if (client.subscribed) client.session.send(BluetoothConnectionsFreeResponse, host.slotView(client));
      else {
        client.askedSlotsUnsubscribed = true;
        client.session.send(BluetoothConnectionsFreeResponse, host.proxySlots());
      }
    });
    d.on(BluetoothScannerSetModeRequest, (m, client) => this.#setScannerMode(m, client));
    // The relay's key is its operator's to set, not a client's: refuse instead of leaving the client waiting.
    d.on(NoiseEncryptionSetKeyRequest, (_m, client) => client.session.send(NoiseEncryptionSetKeyResponse, { success: false }));
    // The firmware sends every Bluetooth answer to its subscriber only: a client that never subscribed, or
    // unsubscribed (87), hears nothing back, and the relay does not act for it either.
    d.on(BluetoothDeviceRequest, (m, client) => {
      checkAddress(m);
      if (client.subscribed) this.#deviceRequest(m, client);
    });
    this.#gatt(BluetoothGATTGetServicesRequest, () => 0);
    this.#gatt(BluetoothGATTReadRequest, (m) => m.handle);
    this.#gatt(BluetoothGATTWriteRequest, (m) => m.handle);
    this.#gatt(BluetoothGATTReadDescriptorRequest, (m) => m.handle);
    this.#gatt(BluetoothGATTWriteDescriptorRequest, (m) => m.handle);
    this.#gatt(BluetoothGATTNotifyRequest, (m) => m.handle);
    d.on(BluetoothSetConnectionParamsRequest, (m, client) => {
      checkAddress(m);
      if (!client.subscribed || this.#forwardForOwner(BluetoothSetConnectionParamsRequest, m, client)) return;
      client.session.send(BluetoothSetConnectionParamsResponse, { address: m.address, error: NOT_CONNECTED });
    });
  }

  /**
   * Handles one downstream message if it is a request the relay acts on: true when handled (answered, refused or
   * sent upstream). Throws FrameError `ESPAPI_ERR_DECODE` for a payload that does not decode (the session drops
   * the client, as for any malformed frame). Every other id is left to the server, which stays silent after
   * authentication as the firmware does for messages it has no handler for: nothing else reaches the upstream.
   */
  handle(client: GuardedClient, id: number, payload: Uint8Array): boolean {
    return this.#dispatcher.dispatch(id, payload, client);
  }

  /** Judges again a connect of `client` that waited for the proxy to handle the one before it, as if sent now. */
  connectAgain(client: GuardedClient, request: BluetoothDeviceRequest): void {
    if (client.subscribed && client.session.state !== 'closed') this.#deviceRequest(request, client);
  }

  /** A GATT request (70, 73, 75–78): only the link's owner reaches it; anyone else gets the not-connected answer. */
  #gatt<T extends { address: number }>(type: MessageType<T>, handleOf: (message: T) => number): void {
    this.#dispatcher.on(type, (m, client) => {
      checkAddress(m);
      if (!client.subscribed || this.#forwardForOwner(type, m, client)) return;
      client.session.send(BluetoothGATTErrorResponse, { address: m.address, handle: handleOf(m), error: NOT_CONNECTED });
    });
  }

  /** Sends `message` upstream when the client holds the link to its address; false otherwise (nothing sent). */
  #forwardForOwner<T extends { address: number }>(type: MessageType<T>, message: T, client: GuardedClient): boolean {
    return message.address <= MAX_ADDRESS && this.#host.ledger.holderOf(message.address) === client && this.#host.forward(type, message);
  }

  #subscribe(flags: number, client: GuardedClient): void {
    const host = this.#host;
    client.legacy = (flags & 1) === 0 && host.legacyForFlagsZero();
    const wasSubscribed = client.subscribed;
    host.setSubscribed(client, true);
    if (!wasSubscribed && client.askedSlotsUnsubscribed) {
      // Its last report was the proxy's counts, which it would otherwise keep until a slot changes.
      client.askedSlotsUnsubscribed = false;
      client.session.send(BluetoothConnectionsFreeResponse, host.slotView(client));
    }
    const state = host.scannerState();
    if (state !== undefined && host.hasFeature(BluetoothProxyFeature.FEATURE_STATE_AND_MODE))
      client.session.sendRaw(SCANNER_STATE_ID, state);
  }

  /** Every client sees the resulting scanner states (one scanner, the last request wins), so a policy may forbid it. */
  #setScannerMode(message: BluetoothScannerSetModeRequest, client: GuardedClient): void {
    const host = this.#host;
    if (client.permissions.scannerMode) {
      host.forward(BluetoothScannerSetModeRequest, message);
      return;
    }
    // The firmware answers a mode change with state messages only, to its subscriber: the refused client hears
    // that nothing changed (the current state), instead of waiting for a change that will not come.
    const state = host.scannerState();
    if (client.subscribed && state !== undefined && host.hasFeature(BluetoothProxyFeature.FEATURE_STATE_AND_MODE)) {
      client.session.sendRaw(SCANNER_STATE_ID, state);
    }
  }

  #deviceRequest(request: BluetoothDeviceRequest, client: GuardedClient): void {
    const host = this.#host;
    const { address } = request;
    const session = client.session;
    const valid = address <= MAX_ADDRESS;
    const holder = valid ? host.ledger.holderOf(address) : undefined;
    switch (request.requestType) {
      case BluetoothDeviceRequestType.CONNECT_V3_WITH_CACHE:
      case BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE: {
        if (!valid || !request.hasAddressType || neverALink(address, host.proxyAddress()) !== undefined) {
          // No device has this address, or it must never become a link: refused at once as the firmware refuses
          // a connect it cannot take. The firmware refuses a connect without an address type the same way, but
          // only after reserving a slot it may never free (spec §6.7): such a connect must not reach it.
          session.send(BluetoothDeviceConnectionResponse, { address, connected: false, mtu: 0, error: 0 });
          return;
        }
        if (holder === client) {
          // Already connected or connecting. Its link may be ending meanwhile and the connect take the slot again: a
          // connect that goes upstream is booked as any until the proxy has handled it.
          const outcome = host.connectHeld(client, request);
          if (outcome === 'up') {
            // What the firmware answers a connect for an address it is connected to, without asking it again. It may
            // overtake replies to the client's earlier GATT requests that the proxy sent within the last round trip;
            // the firmware's own answer overtakes every reply whose BLE operation is still running when it reads the
            // connect. Neither order changes an outcome: aioesphomeapi fails a GATT request waiting on an address at
            // any connection state for it (connected=true too) whichever came first, and bleak-esphome sends a
            // connect only from a client that is not connected, so none of its requests waits then. Answering in
            // order (behind a ping) would cost a ping per repeat and a second look at the link when it returns.
            session.send(BluetoothDeviceConnectionResponse, { address, connected: true, mtu: 0, error: 0 });
            session.send(BluetoothConnectionsFreeResponse, host.slotView(client));
          } else if (outcome === 'failed') this.#refuseConnect(client, address);
          return;
        }
        const held = host.identityHeld(client);
        if (holder !== undefined || host.ledger.free === 0 || held >= host.slotQuota(client) || !host.upstreamReady()) {
          this.#refuseConnect(client, address);
          return;
        }
        // Not sent (the upstream session is closing): refused as above, so the client does not wait for its timeout.
        if (!host.connect(client, request)) this.#refuseConnect(client, address);
        return;
      }
      case BluetoothDeviceRequestType.DISCONNECT:
        // First, whether it holds the address or not: sent after this DISCONNECT, a connect of it that waited would
        // open the link again, where the firmware, reading them in order, ends with no link.
        host.dropWaiting(client, address);
        if (holder === client && host.disconnect(client, request)) return;
        // No slot of this client's: the firmware's answer for an address without a slot.
        session.send(BluetoothDeviceConnectionResponse, { address, connected: false, mtu: 0, error: 0 });
        session.send(BluetoothConnectionsFreeResponse, host.slotView(client));
        return;
      case BluetoothDeviceRequestType.PAIR:
        // The firmware does not answer a pair request for an address it has no connection to.
        if (holder === client) host.forward(BluetoothDeviceRequest, request);
        return;
      case BluetoothDeviceRequestType.UNPAIR:
      case BluetoothDeviceRequestType.CLEAR_CACHE:
        this.#deviceOp(request, client, holder, valid);
        return;
      case BluetoothDeviceRequestType.CONNECT:
        // The v1 connect was removed from the firmware, which refuses it at once.
        session.send(BluetoothDeviceConnectionResponse, { address, connected: false, mtu: 0, error: 0 });
        return;
      default:
        // Request types the firmware does not know are ignored there too.
        return;
    }
  }

  /**
   * Refused as a full proxy refuses: the client's report at the answer shows no slot for it (its view may have one,
   * for other devices), so the refusal reads as out of slots, not as the proxy's controller.
   */
  #refuseConnect(client: GuardedClient, address: number): void {
    const host = this.#host;
    const session = client.session;
    const full = host.fullView(client);
    if (full !== undefined) session.send(BluetoothConnectionsFreeResponse, full);
    session.send(BluetoothDeviceConnectionResponse, { address, connected: false, mtu: 0, error: RELAY_OUT_OF_SLOTS_ERROR });
    if (full !== undefined) session.send(BluetoothConnectionsFreeResponse, host.slotView(client));
  }

  /**
   * Unpair / clear-cache: of a device nobody else holds, if the client's policy allows it — its own links
   * included, since the bond and the GATT cache are the proxy's and outlive the link (a client could otherwise
   * connect first and then unpair).
   */
  #deviceOp(request: BluetoothDeviceRequest, client: GuardedClient, holder: object | undefined, valid: boolean): void {
    const host = this.#host;
    const unpair = request.requestType === BluetoothDeviceRequestType.UNPAIR;
    let refusal: number | undefined;
    if (!valid) refusal = INVALID_ADDRESS_ERROR;
    else if (holder !== undefined && holder !== client) refusal = HELD_BY_OTHER_CLIENT;
    else if (!host.hasFeature(unpair ? BluetoothProxyFeature.PAIRING : BluetoothProxyFeature.CACHE_CLEARING)) {
      // Without the feature the firmware has no handler and stays silent: nothing to wait for.
      return;
    } else if (!(unpair ? client.permissions.unpair : client.permissions.clearCache)) refusal = NOT_PERMITTED_ERROR;
    else if (!host.deviceOps.hasRoom(client)) refusal = DEVICE_OPS_BUSY_ERROR;
    const { address } = request;
    if (refusal === undefined) {
      // Its own link's too: each answer goes to the oldest request's client, and this one counts towards its cap.
      if (host.forward(BluetoothDeviceRequest, request)) host.deviceOps.track(unpair ? 'unpair' : 'clear', address, client);
    } else if (unpair) client.session.send(BluetoothDevicePairingResponse, { address, paired: false, error: refusal });
    else client.session.send(BluetoothDeviceClearCacheResponse, { address, success: false, error: refusal });
  }
}

const SCANNER_STATE_ID = messageId(BluetoothScannerStateResponse);

/**
 * Why a 48-bit address must never become a link through the relay, if it must not: 0 is the firmware's mark of
 * an empty slot, left out of every `allocated` list, so no report would account for the link; FF:FF:FF:FF:FF:FF
 * is the relay's own subscriber probe (no valid device address either); `proxyAddress` is the proxy's own
 * Bluetooth address, which the full-proxy view lists as a taken slot.
 */
export function neverALink(address: number, proxyAddress: number | undefined): { name: string; why: string } | undefined {
  if (address === 0) return { name: 'EMPTY_SLOT_ADDRESS', why: 'address 0 marks an empty slot' };
  if (address === SUBSCRIPTION_PROBE_ADDRESS) return { name: 'PROBE_ADDRESS', why: 'FF:FF:FF:FF:FF:FF is no device address' };
  if (address === proxyAddress) return { name: 'PROXY_OWN_ADDRESS', why: "it is the proxy's own address" };
  return undefined;
}

/**
 * protobuf-ts reads a uint64 just below 2^64 into a JS number as a small negative value (other values beyond 2^53
 * throw while decoding), which no reply can echo (it does not encode back) and no address check should see:
 * such a request is malformed too.
 */
function checkAddress(message: { address: number }): void {
  if (message.address < 0) {
    throw new FrameError('Bluetooth address beyond 2^63 in a request (not a 48-bit address)', { code: 'ESPAPI_ERR_DECODE' });
  }
}
