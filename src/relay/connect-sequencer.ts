import type { BluetoothDeviceRequest } from '../gen/api_pb.js';
import type { GuardedClient } from './request-guard.js';
import type { Reservation, SlotHolder, SlotLedger } from './slot-ledger.js';
import type { UpstreamBarrier } from './upstream-barrier.js';

/** What the sequencer needs of its relay. */
export interface ConnectSequencerHost {
  readonly ledger: SlotLedger;
  /** The live upstream session's barrier (undefined while it is down). */
  barrier(): UpstreamBarrier | undefined;
  /** Encodes `request` again and sends it upstream; false when no upstream session can take it. */
  forward(request: BluetoothDeviceRequest): boolean;
  /** Sends the relay's own DISCONNECT for `address` upstream. */
  disconnect(address: number): void;
  /** The ledger may have changed: subscribers are shown their views if it did. */
  changed(): void;
  /** Judges a connect that waited as if its client sent it now (RequestGuard.connectAgain). */
  retry(client: GuardedClient, request: BluetoothDeviceRequest): void;
}

/**
 * What became of a connect for an address its client holds: sent upstream, waiting for the proxy to handle the one
 * before it, answered as the firmware answers one for a connected address (the link is up), or not sent (no upstream
 * session could take it).
 */
export type HeldConnect = 'sent' | 'waiting' | 'up' | 'failed';

/**
 * The order of the relay's connects per address: each connect's slot stays booked until the proxy has handled it
 * (UpstreamBarrier), at most one of a client's connects per address is in flight, a connect for a link that is up
 * is answered as the firmware answers it (connected=true, mtu 0, then a slot report) without going upstream, and on
 * firmware without `allocated` lists an ambiguous handling is settled without killing the client's next connect.
 *
 * So a client that loops connects on an address it holds sends at most one connect and one ping upstream per
 * round trip to the proxy, and the barrier waits for at most one callback per address the ledger books (a connect
 * or a settling DISCONNECT), plus the in-process pool's own connects.
 */
export class ConnectSequencer {
  readonly #host: ConnectSequencerHost;
  /** The last connect of a client for an address it holds, sent while the proxy had not handled the one before. */
  readonly #waiting = new Map<number, { client: GuardedClient; request: BluetoothDeviceRequest }>();

  constructor(host: ConnectSequencerHost) {
    this.#host = host;
  }

  /** Connects waiting for the proxy to handle the one before them. */
  get waiting(): number {
    return this.#waiting.size;
  }

  /** Sends `holder`'s connect upstream, its slot booked until the proxy has handled it; false when it could not go out. */
  connect(holder: GuardedClient, request: BluetoothDeviceRequest): boolean {
    if (!this.#host.forward(request)) return false;
    this.track(request.address, this.#host.ledger.reserve(request.address, holder));
    // A connect of the address's previous holder may still wait (its link ended while the relay settled it): the
    // address is another's now, so that one is judged at once instead of waiting behind this one.
    this.#next(request.address);
    return true;
  }

  /**
   * A connect of `client` for an address it holds. The firmware answers one for a connected address with
   * connected=true (mtu 0) and a slot report, ignores one for an address it is connecting, and takes the slot again
   * for one whose link has ended: the relay answers the first itself, holds one back while its previous connect is
   * not handled (the next one would cross it: it goes out once that is handled), and sends the rest.
   */
  again(client: GuardedClient, request: BluetoothDeviceRequest): HeldConnect {
    const state = this.#host.ledger.connectState(request.address);
    if (state === 'waiting') {
      this.#waiting.set(request.address, { client, request });
      return 'waiting';
    }
    if (state === 'up') return 'up';
    return this.connect(client, request) ? 'sent' : 'failed';
  }

  /** Ends `reservation` once the proxy has handled its connect (the in-process pool's connects too). */
  track(address: number, reservation: Reservation): void {
    const placed = this.#host.barrier()?.after(() => this.#handled(address, reservation)) ?? false;
    // No ping could follow it (the session is closing, whose end resets the ledger and tells every holder; or its tap
    // or send guard threw): the connect no longer holds the entry, which follows the proxy's reports from here.
    if (!placed) this.#host.ledger.abandon(address, reservation);
  }

  /**
   * True for connection states of `address` its holder must not hear: those that arrive while the relay settles the
   * address and the holder's next connect waits for it. They were written before the proxy read that connect, which
   * gets its own answers; passed on, they would read as its failure.
   */
  quiet(address: number): boolean {
    const ledger = this.#host.ledger;
    const waiting = this.#waiting.get(address);
    return waiting !== undefined && waiting.client === ledger.holderOf(address) && ledger.isSettling(address);
  }

  /**
   * `holder` sends a DISCONNECT for `address`: its connect waiting there is dropped before the DISCONNECT goes out.
   * The firmware, reading them in order, ignored that connect (the address was connecting) or answered it for a link
   * the DISCONNECT then ended; sent after the DISCONNECT it would open the link again behind the client's back.
   */
  disconnecting(holder: GuardedClient, address: number): void {
    if (this.#waiting.get(address)?.client === holder) this.#waiting.delete(address);
  }

  /** Drops what waits for `holder` (it went away or gave up its links). */
  forget(holder: SlotHolder): void {
    for (const [address, waiting] of this.#waiting) if (waiting.client === holder) this.#waiting.delete(address);
  }

  /** Drops everything that waits (the upstream session is gone, and every link with it). */
  clear(): void {
    this.#waiting.clear();
  }

  #handled(address: number, reservation: Reservation): void {
    const ledger = this.#host.ledger;
    const unsettled = ledger.handled(address, reservation);
    this.#next(address);
    // A connect that went out now settles it: handled after whatever the connected=false ended, it shows what the
    // proxy holds. Without one, the relay's DISCONNECT does (its answer, connected=false, always comes).
    if (unsettled && ledger.connectState(address) !== 'waiting') this.#settle(address);
    this.#host.changed();
  }

  #settle(address: number): void {
    const host = this.#host;
    const settle = host.ledger.settle(address);
    if (settle === undefined) return;
    host.disconnect(address);
    const placed =
      host.barrier()?.after(() => {
        host.ledger.settled(address, settle);
        this.#next(address);
        host.changed();
      }) ?? false;
    if (!placed) host.ledger.settled(address, settle);
  }

  /**
   * Judges the connect that waited for `address` as if sent now, once nothing of its client is in flight for the
   * address any more — or at once when its client no longer holds it (then it is a connect like any other).
   */
  #next(address: number): void {
    const waiting = this.#waiting.get(address);
    if (waiting === undefined) return;
    const ledger = this.#host.ledger;
    if (waiting.client === ledger.holderOf(address) && ledger.connectState(address) === 'waiting') return;
    this.#waiting.delete(address);
    this.#host.retry(waiting.client, waiting.request);
  }
}
