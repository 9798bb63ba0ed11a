/**
 * Unpair / clear-cache requests one client (all sessions of its address) may have waiting for the proxy's answer.
 * The firmware answers each at once (spec §6.12), so a client never has more than a few in flight; beyond this it
 * gets the refusal below, which bounds what a flood of them costs the relay and the proxy.
 */
export const MAX_PENDING_DEVICE_OPS = 16;

/** ESP_ERR_NO_MEM: what a client beyond MAX_PENDING_DEVICE_OPS gets, as from a proxy out of resources for it. */
export const DEVICE_OPS_BUSY_ERROR = 0x101;

/** Which answer a request waits for: unpair (answered by message 85 or 86) or clear-cache (88). */
export type DeviceOpKind = 'unpair' | 'clear';

/** One request sent upstream: its client, or undefined once that client left (its answer is then nobody's). */
export interface PendingDeviceOp<C> {
  client: C | undefined;
}

/** A first-in first-out queue that takes from the front without copying. */
class Fifo<T> {
  #items: Array<T | undefined> = [];
  #head = 0;

  push(item: T): void {
    this.#items.push(item);
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    }
    return item;
  }

  get length(): number {
    return this.#items.length - this.#head;
  }
}

/** How a DeviceOps counts its cap and which client an operation is (the relay: by remote address, as the slot quota). */
export interface DeviceOpsOptions<C> {
  /** Operations one identity may have waiting (default MAX_PENDING_DEVICE_OPS). */
  readonly limit?: number;
  /** Who a client is for the cap: every session of one identity shares it (default: each client on its own). */
  readonly identityOf?: (client: C) => unknown;
}

/** One request in flight, with the identity whose cap it counts against. */
interface Tracked<C> extends PendingDeviceOp<C> {
  readonly identity: unknown;
}

/**
 * Who asked for each unpair / clear-cache the relay sent upstream, so that each answer goes back to its requester:
 * the firmware answers them in order, so the answers for one kind and address go to its requests' clients,
 * oldest first. Each identity (all sessions of one client address) may have MAX_PENDING_DEVICE_OPS waiting, so
 * opening more sessions buys no more; every operation is O(1) (forget: O(limit)).
 */
export class DeviceOps<C extends object> {
  readonly #queues = new Map<string, Fifo<Tracked<C>>>();
  /** The operations each identity has waiting from its live sessions (a closed session's no longer count). */
  readonly #byIdentity = new Map<unknown, Set<Tracked<C>>>();
  readonly #limit: number;
  readonly #identityOf: (client: C) => unknown;

  constructor(options: DeviceOpsOptions<C> = {}) {
    this.#limit = options.limit ?? MAX_PENDING_DEVICE_OPS;
    this.#identityOf = options.identityOf ?? ((client) => client);
  }

  /** True while `client` (its identity) may send one more. */
  hasRoom(client: C): boolean {
    return (this.#byIdentity.get(this.#identityOf(client))?.size ?? 0) < this.#limit;
  }

  /** Remembers that `client` asked for this operation, which went upstream. */
  track(kind: DeviceOpKind, address: number, client: C): void {
    const key = `${kind}:${address}`;
    const identity = this.#identityOf(client);
    const pending: Tracked<C> = { client, identity };
    const queue = this.#queues.get(key) ?? new Fifo();
    queue.push(pending);
    this.#queues.set(key, queue);
    const mine = this.#byIdentity.get(identity) ?? new Set();
    mine.add(pending);
    this.#byIdentity.set(identity, mine);
  }

  /** The oldest operation of this kind and address waiting for its answer, taken off the queue; undefined if none. */
  take(kind: DeviceOpKind, address: number): PendingDeviceOp<C> | undefined {
    const key = `${kind}:${address}`;
    const queue = this.#queues.get(key);
    const pending = queue?.shift();
    if (queue?.length === 0) this.#queues.delete(key);
    if (pending === undefined) return undefined;
    if (pending.client !== undefined) this.#release(pending);
    return { client: pending.client };
  }

  /** `client` left: its operations stay queued (their answers keep the order) but are nobody's, and no longer count. */
  forget(client: C): void {
    const mine = this.#byIdentity.get(this.#identityOf(client));
    if (mine === undefined) return;
    for (const pending of [...mine]) {
      if (pending.client !== client) continue;
      pending.client = undefined;
      mine.delete(pending);
    }
    if (mine.size === 0) this.#byIdentity.delete(this.#identityOf(client));
  }

  /** The upstream went away: no answer will come. */
  clear(): void {
    this.#queues.clear();
    this.#byIdentity.clear();
  }

  /** Operations waiting for their answer. */
  get size(): number {
    let size = 0;
    for (const queue of this.#queues.values()) size += queue.length;
    return size;
  }

  #release(pending: Tracked<C>): void {
    const mine = this.#byIdentity.get(pending.identity);
    mine?.delete(pending);
    if (mine?.size === 0) this.#byIdentity.delete(pending.identity);
  }
}
