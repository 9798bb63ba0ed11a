import { SlowConsumerError } from '../errors.js';

/** What a full queue does with a new item. */
export type OverflowPolicy = 'dropOldest' | 'dropNewest' | 'error';

/** Options of a bounded stream. */
export interface QueueOptions {
  /** Most items held for a slow consumer (default 1024). */
  highWaterMark?: number;
  /** What happens when the consumer falls behind (default 'dropOldest'). */
  overflow?: OverflowPolicy;
  /** Called with the running drop count whenever an item is dropped. */
  onDrop?: (dropped: number) => void;
}

/** Default queue bound: one second of a busy proxy's advertisements. */
const DEFAULT_HIGH_WATER_MARK = 1024;

/**
 * Single-consumer bounded async queue: producers `push()`, the consumer iterates.
 * Overflow is explicit and counted (`dropped`); with 'error' the iterator throws SlowConsumerError.
 */
export class AsyncQueue<T> implements AsyncIterableIterator<T> {
  readonly #items: T[] = [];
  #head = 0;
  readonly #limit: number;
  readonly #policy: OverflowPolicy;
  readonly #onDrop: ((dropped: number) => void) | undefined;
  readonly #onReturn: (() => void) | undefined;
  #waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  #done = false;
  #error: unknown;
  #dropped = 0;
  #returned = false;

  constructor(options: QueueOptions = {}, onReturn?: () => void) {
    this.#limit = Math.max(1, options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK);
    this.#policy = options.overflow ?? 'dropOldest';
    this.#onDrop = options.onDrop;
    this.#onReturn = onReturn;
  }

  /** Items dropped so far because the consumer was slow. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Items waiting for the consumer. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** True once ended (by end(), fail() or the consumer breaking out). */
  get done(): boolean {
    return this.#done;
  }

  /** Adds an item, applying the overflow policy when full. */
  push(item: T): void {
    if (this.#done) return;
    const waiter = this.#waiter;
    if (waiter !== undefined) {
      this.#waiter = undefined;
      waiter.resolve({ value: item, done: false });
      return;
    }
    if (this.size >= this.#limit) {
      this.#dropped++;
      this.#onDrop?.(this.#dropped);
      if (this.#policy === 'dropNewest') return;
      if (this.#policy === 'error') {
        this.fail(new SlowConsumerError(this.#dropped));
        return;
      }
      this.#head++;
    }
    this.#items.push(item);
  }

  /** Ends the stream after the queued items are consumed. */
  end(): void {
    if (this.#done) return;
    this.#done = true;
    this.#settleWaiter();
  }

  /** Ends the stream with an error, thrown after the queued items are consumed. */
  fail(error: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = error;
    this.#settleWaiter();
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#head < this.#items.length) {
      const value = this.#items[this.#head] as T;
      this.#items[this.#head] = undefined as T;
      this.#head++;
      if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
        this.#items.splice(0, this.#head);
        this.#head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.#done) {
      if (this.#error !== undefined) {
        const error = this.#error;
        this.#error = undefined;
        return Promise.reject(error);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<T>> {
    this.#done = true;
    this.#items.length = 0;
    this.#head = 0;
    this.#error = undefined;
    this.#settleWaiter();
    this.#release();
    return Promise.resolve({ value: undefined, done: true });
  }

  /**
   * Ends the stream for its consumer's signal: the items already queued are still delivered, and the cleanup that
   * return() runs (unsubscribe, remove the listener) runs now, once. A for-await loop that ends because the stream
   * ended never calls return(), so without this an aborted stream would keep its subscription.
   */
  cancel(): void {
    this.end();
    this.#release();
  }

  #release(): void {
    if (this.#returned) return;
    this.#returned = true;
    this.#onReturn?.();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }

  #settleWaiter(): void {
    const waiter = this.#waiter;
    if (waiter === undefined) return;
    this.#waiter = undefined;
    if (this.#error !== undefined) {
      const error = this.#error;
      this.#error = undefined;
      waiter.reject(error);
    } else {
      waiter.resolve({ value: undefined, done: true });
    }
  }
}

/** Ends `queue` and runs its cleanup (AsyncQueue.cancel) when `signal` aborts; returns a detach function. */
export function endOnAbort<T>(queue: AsyncQueue<T>, signal: AbortSignal | undefined): () => void {
  if (signal === undefined) return () => {};
  if (signal.aborted) {
    queue.cancel();
    return () => {};
  }
  const onAbort = (): void => queue.cancel();
  signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}

/** Opens one consumer's queue on a set of live queues (it leaves the set when consumed or aborted); ended at once if `ended`. */
export function openQueue<T>(queues: Set<AsyncQueue<T>>, ended: boolean, options: { signal?: AbortSignal } & QueueOptions): AsyncQueue<T> {
  const queue: AsyncQueue<T> = new AsyncQueue(options, () => queues.delete(queue));
  if (ended) {
    queue.end();
    return queue;
  }
  queues.add(queue);
  endOnAbort(queue, options.signal);
  return queue;
}
