import { formatMac } from '../bluetooth/address.js';
import { BleConnectError, DeviceHeldError } from '../errors.js';
import { decodeMessage } from '../frame/dispatch.js';
import { type BluetoothConnectionsFreeResponse, BluetoothDeviceRequest, BluetoothDeviceRequestType } from '../gen/api_pb.js';
import { slotQuota } from './client-policy.js';
import { DownstreamClient, holderLabel } from './downstream-client.js';
import { localDeviceRequest } from './local-requests.js';
import { type GuardedClient, neverALink, RELAY_OUT_OF_SLOTS_ERROR } from './request-guard.js';
import { LOCAL, RELEASING, type Reservation, SlotLedger, type SlotView } from './slot-ledger.js';

/** Where the upstream's Bluetooth subscription stands, as the arbiter needs to know it. */
export type UpstreamSlotsState = 'down' | 'subscriptionLost' | 'ready';

/** What the arbiter reads of its relay: the upstream's name, state and own address, and the pool's quota. */
export interface SlotArbiterHost {
  /** The upstream's id, named in refusals. */
  readonly id: string;
  /** Slots the in-process pool may hold (RelayProxyOptions.slotsPerClient). */
  readonly slotsPerClient: number | undefined;
  upstreamState(): UpstreamSlotsState;
  /** The address the full-proxy view lists as the proxy's own slot (its Bluetooth MAC), if known. */
  proxyAddress(): number | undefined;
}

/**
 * The relay's slot decisions over its ledger: what each client and the in-process pool may take (quotas per client
 * address, the proxy's free slots, devices held by others), what each is shown, and the refusals of the pool's
 * requests on a shared upstream session. The downstream clients' requests are judged by the RequestGuard through
 * the same methods.
 */
export class SlotArbiter {
  readonly ledger = new SlotLedger();
  readonly #host: SlotArbiterHost;
  /** The upstream's last slot report, kept while the subscription is lost (answers to our probes) for the resubscribe. */
  #upstreamSlots: BluetoothConnectionsFreeResponse | undefined;

  constructor(host: SlotArbiterHost) {
    this.#host = host;
  }

  /**
   * Takes a slot report of the upstream; false when it is not the relay's to hand out (an answer to our probes while
   * another client is the subscriber: kept for the resubscribe).
   */
  report(message: BluetoothConnectionsFreeResponse): boolean {
    this.#upstreamSlots = message;
    if (this.#host.upstreamState() === 'subscriptionLost') return false;
    this.#apply(message);
    return true;
  }

  /** The subscription is back: the proxy's last report becomes the ledger's again. */
  resubscribed(): void {
    if (this.#upstreamSlots !== undefined) this.#apply(this.#upstreamSlots);
  }

  /**
   * True when a downstream client holds `address` (connecting or connected) or the relay is releasing a gone
   * client's link to it: the in-process pool must not act on it.
   */
  heldElsewhere(address: number): boolean {
    const holder = this.ledger.holderOf(address);
    return holder instanceof DownstreamClient || holder === RELEASING;
  }

  /**
   * A connect the in-process pool sends over the shared session (seen by the session's tap): its address and
   * reservation when it took a slot (SlotLedger.handled takes them once the proxy has handled it).
   */
  noteLocalConnect(payload: Uint8Array): { address: number; reservation: Reservation } | undefined {
    const request = decodeMessage(BluetoothDeviceRequest, payload);
    const type = request.requestType;
    if (type !== BluetoothDeviceRequestType.CONNECT_V3_WITH_CACHE && type !== BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE)
      return undefined;
    const holder = this.ledger.holderOf(request.address);
    if (holder !== undefined && holder !== LOCAL) return undefined;
    return { address: request.address, reservation: this.ledger.reserve(request.address, LOCAL) };
  }

  /**
   * Refuses local connects to devices a downstream client holds, when the clients hold every free slot, beyond the
   * quota, or to the proxy's own address (the full-proxy view's marker).
   */
  guardLocalConnect(address: number): Error | undefined {
    const holder = this.ledger.holderOf(address);
    const mac = formatMac(address);
    const id = this.#host.id;
    const never = neverALink(address, this.#host.proxyAddress());
    if (never !== undefined) {
      return new BleConnectError(`Connecting to ${mac} via ${id} refused: ${never.why}`, address, 0, never.name);
    }
    if (holder !== undefined && holder !== LOCAL) {
      return new BleConnectError(
        `Connecting to ${mac} via ${id} refused: a client of the relay holds this device`,
        address,
        RELAY_OUT_OF_SLOTS_ERROR,
        'HELD_BY_RELAY_CLIENT',
        'outOfSlots',
      );
    }
    if (holder === undefined && this.ledger.free === 0) {
      return new BleConnectError(
        `Connecting to ${mac} via ${id} refused: the relay's clients hold every free slot`,
        address,
        RELAY_OUT_OF_SLOTS_ERROR,
        'ESP_GATT_CONN_CONN_CANCEL',
        'outOfSlots',
      );
    }
    const quota = this.quotaOf(LOCAL);
    if (holder === undefined && this.ledger.addressesOf(LOCAL).length >= quota) {
      return new BleConnectError(
        `Connecting to ${mac} via ${id} refused: the in-process pool holds its ${quota} slots (slotsPerClient)`,
        address,
        RELAY_OUT_OF_SLOTS_ERROR,
        'ESP_GATT_CONN_CONN_CANCEL',
        'outOfSlots',
      );
    }
    return undefined;
  }

  /**
   * The in-process pool's side of the shared session: a connect is judged as `guardLocalConnect` judges it (at the
   * moment it goes out), and any other request naming a device (disconnect, pair, unpair, clear-cache, GATT,
   * connection parameters) is refused while a client holds that device or its link is being released for a gone
   * client.
   */
  guardLocalSend(id: number, payload: Uint8Array): Error | undefined {
    const request = localDeviceRequest(id, payload);
    if (request === undefined) return undefined;
    return request.connect ? this.guardLocalConnect(request.address) : this.#heldRefusal(request.address, request.what);
  }

  /** How many slots a client (all sessions of its address) or the pool may hold at once; the proxy's limit decides the default. */
  quotaOf(holder: GuardedClient | typeof LOCAL): number {
    const configured = holder instanceof DownstreamClient ? holder.quota : this.#host.slotsPerClient;
    return slotQuota(configured, this.ledger.limit);
  }

  /** Slots the client's address holds, over all its sessions. */
  identityHeld(client: GuardedClient): number {
    return this.ledger.count((holder) => holder instanceof DownstreamClient && holder.identity === client.identity);
  }

  /**
   * The slot report `holder` is shown: its quota less what its address's other sessions hold; others' slots, when
   * they hold them all, as one slot of the proxy's own address.
   */
  slotView(holder: GuardedClient): SlotView {
    const siblings = this.identityHeld(holder) - this.ledger.addressesOf(holder).length;
    return this.ledger.viewFor(holder, this.quotaOf(holder) - siblings, this.#host.proxyAddress());
  }

  /** The client's view with nothing left to take, sent right before a refusal (RequestGuardHost.fullView). */
  fullView(client: GuardedClient): SlotView | undefined {
    return this.ledger.listsSeen ? this.ledger.viewFor(client, 0, this.#host.proxyAddress()) : undefined;
  }

  /**
   * The proxy's slots as counts, for a client that has not subscribed (README "Relay" and "Inspecting"): it can take
   * no slot, so it has no view of its own, and the addresses are other clients' devices it could not act on.
   */
  proxySlots(): SlotView {
    const none = { free: 0, limit: 0, allocated: [] };
    const state = this.#host.upstreamState();
    if (state === 'down') return none;
    if (state === 'subscriptionLost') {
      // The ledger stands still meanwhile; the relay's probes still read the proxy.
      const last = this.#upstreamSlots;
      return last === undefined ? none : { free: last.free, limit: last.limit, allocated: [] };
    }
    const upstream = this.ledger.upstream;
    return upstream === undefined ? none : { free: this.ledger.free, limit: upstream.limit, allocated: [] };
  }

  /** Who holds each slot, by MAC, for the `slots` event. */
  holders(): Record<string, string> {
    const holders: Record<string, string> = {};
    for (const [address, holder] of this.ledger.entries()) holders[formatMac(address)] = holderLabel(holder);
    return holders;
  }

  #apply(slots: BluetoothConnectionsFreeResponse): void {
    this.ledger.update({ free: slots.free, limit: slots.limit, allocated: slots.allocated.filter((a) => a !== 0) });
  }

  #heldRefusal(address: number, what: string): Error | undefined {
    const holder = this.ledger.holderOf(address);
    if (!(holder instanceof DownstreamClient) && holder !== RELEASING) return undefined;
    const why =
      holder === RELEASING ? 'the relay is releasing the link of a client that went away' : 'a client of the relay holds this device';
    return new DeviceHeldError(`${what} for ${formatMac(address)} via ${this.#host.id} refused: ${why}`, address, this.#host.id);
  }
}
