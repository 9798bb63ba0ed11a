/** What a connect waits for: an advertisement of a device (by some proxies), or a condition on the pool's proxies. */
export interface PoolWait {
  /** Wake on an advertisement of this device... */
  readonly address?: number | undefined;
  /** ...heard by one of these proxies (default: any). */
  readonly by?: ReadonlySet<string> | undefined;
  /** Wake when this holds, checked now and on every change of a proxy (up, down, subscription, added, removed). */
  readonly until: () => boolean;
}

interface Waiter extends PoolWait {
  readonly finish: () => void;
}

/**
 * The connects waiting for the pool to change, each bounded by its own time and the caller's signal: woken by an
 * advertisement of their device (the hot path: one pass over the few waiters) or a proxy change that meets their
 * condition.
 */
export class PoolWaits {
  readonly #waiters = new Set<Waiter>();

  /** Resolves when `wait` is met or after `ms`; rejects with the abort reason at once. Leaves no timer or listener. */
  async wait(ms: number, signal: AbortSignal, wait: PoolWait): Promise<void> {
    signal.throwIfAborted();
    if (ms <= 0 || wait.until()) return;
    await new Promise<void>((resolve, reject) => {
      const done = (settle: () => void): void => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        signal.removeEventListener('abort', onAbort);
        settle();
      };
      const waiter: Waiter = { ...wait, finish: () => done(resolve) };
      const timer = setTimeout(() => done(resolve), ms);
      const onAbort = (): void => done(() => reject(signal.reason));
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.add(waiter);
    });
  }

  /** `proxy` heard `address`. */
  advertised(address: number, proxy: string): void {
    if (this.#waiters.size === 0) return;
    for (const waiter of this.#waiters) {
      if (waiter.address === address && (waiter.by === undefined || waiter.by.has(proxy))) waiter.finish();
    }
  }

  /** Some proxy changed: wake the waiters whose condition now holds. */
  changed(): void {
    for (const waiter of [...this.#waiters]) if (waiter.until()) waiter.finish();
  }
}
