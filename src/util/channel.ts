import { type AsyncQueue, openQueue, type QueueOptions } from './async-queue.js';

/**
 * One typed event source with both ways to consume it: synchronous listeners (hot paths, layers below) and
 * bounded streams, one queue per consumer. `end()` ends every stream and every stream opened later.
 */
export class Channel<T> {
  readonly #listeners = new Set<(value: T) => void>();
  readonly #queues = new Set<AsyncQueue<T>>();
  #ended = false;

  /** True when nobody listens or streams (callers skip building the value). */
  get idle(): boolean {
    return this.#listeners.size === 0 && this.#queues.size === 0;
  }

  /** Calls `listener` with every value; returns an unsubscribe function. */
  listen(listener: (value: T) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** A stream of the values from now on (after `first`, when given); it leaves the channel when consumed, aborted or ended. */
  stream(options: { signal?: AbortSignal } & QueueOptions = {}, first?: T): AsyncQueue<T> {
    const queue = openQueue(this.#queues, false, options);
    if (first !== undefined) queue.push(first);
    if (this.#ended) {
      this.#queues.delete(queue);
      queue.end();
    }
    return queue;
  }

  /** Hands `value` to every listener, then to every stream. */
  emit(value: T): void {
    for (const listener of this.#listeners) listener(value);
    for (const queue of this.#queues) {
      // A stream ended by its signal or its 'error' overflow is not returned by for-await: forget it here.
      if (queue.done) this.#queues.delete(queue);
      else queue.push(value);
    }
  }

  /** Ends every stream (queued values are still delivered); later streams end at once. Listeners stay. */
  end(): void {
    this.#ended = true;
    for (const queue of this.#queues) queue.end();
    this.#queues.clear();
  }
}
