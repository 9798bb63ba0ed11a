import { messageId } from '../frame/message-types.js';
import { BluetoothConnectionsFreeResponse, BluetoothScannerStateResponse } from '../gen/api_pb.js';
import type { ApiSession } from '../server/api-server.js';
import type { ApiServerEvent } from '../server/server-events.js';
import { plainAddress, type RelayClientIdentity, type RelayPermissions } from './client-policy.js';
import { DownstreamClient } from './downstream-client.js';
import type { RelayClientSnapshot, RelayStatus } from './relay-status.js';
import type { SlotView } from './slot-ledger.js';

const SCANNER_STATE_ID = messageId(BluetoothScannerStateResponse);

/** What the bookkeeping needs of its relay: the upstream's id, the client policy, and the event sink. */
export interface DownstreamClientsOptions {
  readonly proxy: string;
  slotsOf: (client: RelayClientIdentity) => number | undefined;
  permissionsOf: (client: RelayClientIdentity) => RelayPermissions;
  emit: (status: RelayStatus) => void;
}

/**
 * The downstream clients of one relay listener: who they are (numbered for the operator, with their quota and
 * permissions), which ones subscribed, and the client events (connected, dropped, disconnected, slow).
 */
export class DownstreamClients {
  readonly #options: DownstreamClientsOptions;
  readonly #clients = new Map<ApiSession, DownstreamClient>();
  /** Replaced, never mutated: a fan-out may keep the array it was handed. */
  #subscribers: readonly DownstreamClient[] = [];
  #nextId = 1;

  constructor(options: DownstreamClientsOptions) {
    this.#options = options;
  }

  /** Clients connected now. */
  get size(): number {
    return this.#clients.size;
  }

  /** The clients subscribed to advertisements now. */
  get subscribers(): readonly DownstreamClient[] {
    return this.#subscribers;
  }

  /** Every client connected now. */
  values(): IterableIterator<DownstreamClient> {
    return this.#clients.values();
  }

  /** The client of `session`, if it is one of ours. */
  get(session: ApiSession): DownstreamClient | undefined {
    return this.#clients.get(session);
  }

  /** A new session was accepted: it becomes a client with the policy of its address. */
  add(session: ApiSession): void {
    const identity = {
      address: plainAddress(session.socket.remoteAddress ?? ''),
      port: session.socket.remotePort ?? 0,
      proxy: this.#options.proxy,
    };
    const { slotsOf, permissionsOf } = this.#options;
    this.#clients.set(session, new DownstreamClient(this.#nextId++, session, identity, slotsOf(identity), permissionsOf(identity)));
  }

  /** Reports the client connected, once (after its Hello was accepted). */
  report(session: ApiSession): void {
    const client = this.#clients.get(session);
    if (client === undefined || client.reported) return;
    client.reported = true;
    this.#options.emit({
      type: 'clientConnected',
      proxy: this.#options.proxy,
      client: client.id,
      remote: client.remote,
      clientInfo: session.clientInfo,
    });
  }

  /** Takes the client of a closed session out (and out of the subscribers); undefined when it was not one of ours. */
  remove(session: ApiSession): DownstreamClient | undefined {
    const client = this.#clients.get(session);
    if (client === undefined) return undefined;
    this.#clients.delete(session);
    this.setSubscribed(client, false);
    return client;
  }

  /** Reports a removed client gone with the slots released for it. */
  reportGone(client: DownstreamClient, releasedSlots: string[]): void {
    // Only clients reported as connected are reported gone: an idle socket is one clientDropped line, not two.
    if (client.reported) this.#options.emit({ type: 'clientDisconnected', proxy: this.#options.proxy, client: client.id, releasedSlots });
  }

  setSubscribed(client: DownstreamClient, subscribed: boolean): void {
    client.subscribed = subscribed;
    this.#subscribers = [...this.#clients.values()].filter((c) => c.subscribed);
  }

  /** Shows every subscriber its slot view: slot updates go to subscribers only, as the firmware's (80 is answered once to anyone). */
  showSlots(viewOf: (client: DownstreamClient) => SlotView): void {
    for (const client of this.#clients.values()) {
      if (client.subscribed) client.session.send(BluetoothConnectionsFreeResponse, viewOf(client));
    }
  }

  /** Sends every subscriber the scanner state `payload` (a BluetoothScannerStateResponse as the proxy encoded it). */
  showScannerState(payload: Uint8Array): void {
    for (const client of this.#subscribers) client.session.sendRaw(SCANNER_STATE_ID, payload);
  }

  /** Connections refused at the listener's limit and clients the listener closed (backlog, keep-alive, protocol, deadline). */
  onServerEvent(event: ApiServerEvent, session: ApiSession | undefined): void {
    const proxy = this.#options.proxy;
    if (event.type === 'sessionRefused') {
      this.#options.emit({ type: 'clientRefused', proxy, remote: event.remote, limit: event.limit });
      return;
    }
    const client = session === undefined ? undefined : this.#clients.get(session);
    this.#options.emit({
      type: 'clientDropped',
      proxy,
      // A client that never said Hello was never reported (clientConnected): it has no number for the operator.
      client: client?.reported === true ? client.id : undefined,
      remote: event.remote,
      reason: event.reason,
      message: event.message,
    });
  }

  /** Reports the clients that had advertisements dropped since the last call (the stats tick). */
  reportSlow(): void {
    for (const client of this.#clients.values()) {
      if (client.droppedAdvertisements === client.droppedAtTick) continue;
      client.droppedAtTick = client.droppedAdvertisements;
      this.#options.emit({
        type: 'clientSlow',
        proxy: this.#options.proxy,
        client: client.id,
        droppedAdvertisements: client.droppedAdvertisements,
      });
    }
  }

  /** What the relay reports about each client; `slotsOf` names the devices a client holds. */
  snapshots(slotsOf: (client: DownstreamClient) => string[]): RelayClientSnapshot[] {
    return [...this.#clients.values()].map((client) => ({
      id: client.id,
      remote: client.remote,
      clientInfo: client.session.clientInfo,
      apiVersion: `${client.session.clientApiVersion.major}.${client.session.clientApiVersion.minor}`,
      subscribed: client.subscribed,
      legacyAdvertisements: client.legacy,
      droppedAdvertisements: client.droppedAdvertisements,
      slots: slotsOf(client),
    }));
  }
}
