import type { BluetoothConnectionsFreeResponse } from '../gen/api_pb.js';
import type { QueueOptions } from '../util/async-queue.js';
import { Channel } from '../util/channel.js';
import { withoutOwnAddress } from './own-address.js';

/** The proxy's connection-slot accounting. */
export interface SlotState {
  readonly free: number;
  readonly limit: number;
  /** Addresses currently holding a slot (ours and other clients'). */
  readonly allocated: readonly number[];
}

/**
 * The proxy's slots as its reports tell them, and the slots still being freed: after a link or attempt ends the
 * firmware sends a second connected=false and only then frees the slot (spec §6.7), so a connect to the same
 * address waits until a report stops listing it.
 */
export class SlotTracker {
  /** Slot updates, to listeners and streams. */
  readonly updates = new Channel<SlotState>();
  /** The node's own Bluetooth address: never a device's, so a slot report listing it (a relay's full marker) drops it. */
  readonly #ownAddress: number | undefined;
  #slots: SlotState | undefined;
  /** Addresses whose link or attempt ended while the proxy still lists their slot, with waiters for the release. */
  readonly #releasing = new Map<number, Set<() => void>>();
  #closed = false;

  constructor(ownAddress: number | undefined) {
    this.#ownAddress = ownAddress;
  }

  /** The last report (undefined before the first). */
  get current(): SlotState | undefined {
    return this.#slots;
  }

  /** Addresses whose slot the proxy is still freeing. */
  get releasing(): readonly number[] {
    return [...this.#releasing.keys()];
  }

  /** A slot report as this library reads it: empty entries (0) and a relay's full marker (the node's own address) left out. */
  read(message: BluetoothConnectionsFreeResponse): SlotState {
    const allocated = message.allocated.filter((a) => a !== 0);
    return withoutOwnAddress({ free: message.free, limit: message.limit, allocated }, this.#ownAddress);
  }

  /** Takes a report: wakes the waiters of every address it no longer lists, then tells listeners and streams. */
  apply(slots: SlotState): void {
    this.#slots = slots;
    for (const [address, waiters] of this.#releasing) {
      if (slots.allocated.includes(address)) continue;
      this.#releasing.delete(address);
      for (const done of waiters) done();
    }
    this.updates.emit(slots);
  }

  /** Slot updates as a stream, starting with the current state. */
  stream(options: { signal?: AbortSignal } & QueueOptions): AsyncIterableIterator<SlotState> {
    return this.updates.stream(options, this.#slots);
  }

  /** A link or attempt to `address` ended: until a report stops listing the address, the proxy is still tearing it down. */
  markReleasing(address: number): void {
    if (this.#closed || this.#releasing.has(address)) return;
    if (this.#slots?.allocated.includes(address)) this.#releasing.set(address, new Set());
  }

  /** Resolves once the proxy has freed the slot of an ended link or attempt to `address` (at once when none is pending). */
  released(address: number, signal?: AbortSignal): Promise<void> {
    const waiters = this.#releasing.get(address);
    if (waiters === undefined) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        waiters.delete(done);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      waiters.add(done);
    });
  }

  /** No report will come to this session any more: every waiter goes on, nothing is tracked. */
  forgetReleases(): void {
    for (const waiters of this.#releasing.values()) for (const done of waiters) done();
    this.#releasing.clear();
  }

  /** The session or client ended: streams end, waiters go on, and no release is tracked any more. */
  close(): void {
    this.#closed = true;
    this.updates.end();
    this.forgetReleases();
  }
}
