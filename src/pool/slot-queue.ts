/** A caller waiting for a free slot on any of its candidate proxies. */
interface SlotWaiter {
  readonly candidates: ReadonlySet<string>;
  /** Books the slot on `proxy` at once, so it cannot be handed out twice before the waiter runs. */
  readonly take: (proxy: string) => void;
  readonly wake: (proxy: string) => void;
}

/**
 * Fair (FIFO) queue of establishConnection calls waiting for a slot when every proxy that hears
 * their device is full: a freed slot is handed to the longest-waiting caller that can use it.
 */
export class SlotQueue {
  readonly #waiters: SlotWaiter[] = [];

  /** Callers waiting now. */
  get length(): number {
    return this.#waiters.length;
  }

  /** True when an earlier caller is already waiting for one of these proxies (newcomers must queue behind it). */
  hasWaiterFor(candidates: Iterable<string>): boolean {
    for (const id of candidates) if (this.#waiters.some((w) => w.candidates.has(id))) return true;
    return false;
  }

  /**
   * Waits until a slot is handed over on one of `candidates`; resolves with that proxy's id. Rejects on abort.
   * `take` is called at the hand-over to book the slot for this waiter.
   */
  wait(candidates: Iterable<string>, signal: AbortSignal, take: (proxy: string) => void = () => {}): Promise<string> {
    return new Promise((resolve, reject) => {
      signal.throwIfAborted();
      const waiter: SlotWaiter = {
        candidates: new Set(candidates),
        take,
        wake: (proxy) => {
          signal.removeEventListener('abort', onAbort);
          resolve(proxy);
        },
      };
      const onAbort = (): void => {
        const index = this.#waiters.indexOf(waiter);
        if (index >= 0) this.#waiters.splice(index, 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** A proxy has `free` takeable slots: hand them to the oldest waiters that can use it (each books its slot). */
  release(proxy: string, free: number): void {
    let left = free;
    for (let i = 0; i < this.#waiters.length && left > 0; ) {
      const waiter = this.#waiters[i]!;
      if (waiter.candidates.has(proxy)) {
        this.#waiters.splice(i, 1);
        waiter.take(proxy);
        waiter.wake(proxy);
        left--;
      } else {
        i++;
      }
    }
  }
}
