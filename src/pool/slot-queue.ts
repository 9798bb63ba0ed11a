/** A caller waiting for a free slot on any of its candidate proxies. */
interface SlotWaiter {
  readonly candidates: ReadonlySet<string>;
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

  /** Waits until a slot is handed over on one of `candidates`; resolves with that proxy's id. Rejects on abort. */
  wait(candidates: Iterable<string>, signal: AbortSignal): Promise<string> {
    return new Promise((resolve, reject) => {
      signal.throwIfAborted();
      const waiter: SlotWaiter = {
        candidates: new Set(candidates),
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

  /**
   * A proxy has `free` takeable slots: hand them to the oldest waiters that can use it.
   * `take` is called for each hand-over (the caller books the slot at once so it cannot be handed out twice).
   */
  release(proxy: string, free: number, take: () => void): void {
    let left = free;
    for (let i = 0; i < this.#waiters.length && left > 0; ) {
      const waiter = this.#waiters[i]!;
      if (waiter.candidates.has(proxy)) {
        this.#waiters.splice(i, 1);
        take();
        waiter.wake(proxy);
        left--;
      } else {
        i++;
      }
    }
  }
}
