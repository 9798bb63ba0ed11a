/** A caller waiting for a free slot on any of its candidate proxies. */
interface SlotWaiter {
  readonly candidates: ReadonlySet<string>;
  readonly wake: () => void;
}

/**
 * Fair (FIFO) queue of establishConnection calls waiting for a slot when every proxy that hears
 * their device is full: a freed slot wakes the longest-waiting caller that can use it.
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

  /** Waits until a slot frees on one of `candidates` and it is this caller's turn; rejects on abort. */
  wait(candidates: Iterable<string>, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      signal.throwIfAborted();
      const waiter: SlotWaiter = {
        candidates: new Set(candidates),
        wake: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
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

  /** A proxy has `free` takeable slots: wake that many waiters, oldest first. */
  release(proxy: string, free: number): void {
    let left = free;
    for (let i = 0; i < this.#waiters.length && left > 0; ) {
      const waiter = this.#waiters[i]!;
      if (waiter.candidates.has(proxy)) {
        this.#waiters.splice(i, 1);
        waiter.wake();
        left--;
      } else {
        i++;
      }
    }
  }
}
