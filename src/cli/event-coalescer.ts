/** How long events of one kind are gathered into one line once one was printed. */
export const COALESCE_WINDOW_MS = 1_000;

interface Pending<E> {
  timer: NodeJS.Timeout;
  /** Events of this kind since the last line. */
  count: number;
  last: E | undefined;
}

/**
 * Prints the first event of a kind at once and each later one of that kind gathered per window: one line with
 * the latest event and how many it stands for. Under attack a listener refuses or drops thousands of connections
 * a second; a line each would flood the log (and whatever reads it) while an operator needs to see that it
 * happens, why and how often.
 */
export class EventCoalescer<E> {
  readonly #key: (event: E) => string;
  readonly #print: (event: E, count: number) => void;
  readonly #windowMs: number;
  readonly #pending = new Map<string, Pending<E>>();

  /** `key` names an event's kind (events of one kind share a line); `print` writes one line for `count` events. */
  constructor(key: (event: E) => string, print: (event: E, count: number) => void, windowMs = COALESCE_WINDOW_MS) {
    this.#key = key;
    this.#print = print;
    this.#windowMs = windowMs;
  }

  /** One event: printed now if its kind was quiet for a window, else counted for the next line. */
  push(event: E): void {
    const key = this.#key(event);
    const pending = this.#pending.get(key);
    if (pending !== undefined) {
      pending.count++;
      pending.last = event;
      return;
    }
    this.#print(event, 1);
    const timer = setInterval(() => this.#tick(key), this.#windowMs);
    // Gathering must not keep a process alive that has nothing else to do.
    timer.unref();
    this.#pending.set(key, { timer, count: 0, last: undefined });
  }

  /** Prints what is gathered and stops (the command ends). */
  flush(): void {
    for (const [key, pending] of this.#pending) {
      clearInterval(pending.timer);
      if (pending.last !== undefined) this.#print(pending.last, pending.count);
      this.#pending.delete(key);
    }
  }

  #tick(key: string): void {
    const pending = this.#pending.get(key);
    if (pending === undefined) return;
    if (pending.last === undefined) {
      // A quiet window: the next event of this kind is printed at once again.
      clearInterval(pending.timer);
      this.#pending.delete(key);
      return;
    }
    this.#print(pending.last, pending.count);
    pending.count = 0;
    pending.last = undefined;
  }
}
