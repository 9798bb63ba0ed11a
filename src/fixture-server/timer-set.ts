/**
 * The simulated proxy's pending timers, all cleared when it closes. A timer may also belong to a group (a
 * slot's timers), which is cleared on its own when that slot ends.
 */
export class TimerSet {
  readonly #timers = new Set<NodeJS.Timeout>();
  #closed = false;

  /** True once close() ran. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Runs `fn` in `ms` unless the set closes first; nothing is scheduled once it has closed. */
  later(ms: number, fn: () => void): void {
    if (this.#closed) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    this.#timers.add(timer);
  }

  /** Runs `fn` in `ms` unless `group` or the set is cleared first. */
  inGroup(group: Set<NodeJS.Timeout>, ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      group.delete(timer);
      this.#timers.delete(timer);
      fn();
    }, ms);
    group.add(timer);
    this.#timers.add(timer);
  }

  /** Cancels every timer of `group`. */
  clearGroup(group: Set<NodeJS.Timeout>): void {
    for (const timer of group) {
      clearTimeout(timer);
      this.#timers.delete(timer);
    }
    group.clear();
  }

  /** Cancels every timer; later() schedules nothing from now on. */
  close(): void {
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }
}
