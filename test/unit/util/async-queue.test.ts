import { describe, expect, it } from 'vitest';
import { SlowConsumerError } from '../../../src/errors.js';
import { AsyncQueue, endOnAbort } from '../../../src/util/async-queue.js';

async function drain<T>(queue: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of queue) out.push(item);
  return out;
}

describe('util/async-queue', () => {
  it('async-queue - delivers in order to a waiting and to a late consumer', async () => {
    const queue = new AsyncQueue<number>();
    const first = queue.next();
    queue.push(1);
    queue.push(2);
    queue.push(3);
    queue.end();
    expect(await first).toEqual({ value: 1, done: false });
    expect(await drain(queue)).toEqual([2, 3]);
  });

  it('async-queue - dropOldest keeps the newest items and counts drops', async () => {
    const drops: number[] = [];
    const queue = new AsyncQueue<number>({ highWaterMark: 3, overflow: 'dropOldest', onDrop: (n) => drops.push(n) });
    for (let i = 0; i < 6; i++) queue.push(i);
    queue.end();
    expect(await drain(queue)).toEqual([3, 4, 5]);
    expect(queue.dropped).toBe(3);
    expect(drops).toEqual([1, 2, 3]);
  });

  it('async-queue - dropNewest keeps the oldest items', async () => {
    const queue = new AsyncQueue<number>({ highWaterMark: 2, overflow: 'dropNewest' });
    for (let i = 0; i < 5; i++) queue.push(i);
    queue.end();
    expect(await drain(queue)).toEqual([0, 1]);
    expect(queue.dropped).toBe(3);
  });

  it('async-queue - the error policy ends the stream with SlowConsumerError after the queued items', async () => {
    const queue = new AsyncQueue<number>({ highWaterMark: 2, overflow: 'error' });
    for (let i = 0; i < 3; i++) queue.push(i);
    const seen: number[] = [];
    const error = await (async () => {
      for await (const item of queue) seen.push(item);
    })().catch((e: unknown) => e);
    expect(seen).toEqual([0, 1]);
    expect(error).toBeInstanceOf(SlowConsumerError);
    expect((error as SlowConsumerError).dropped).toBe(1);
  });

  it('async-queue - breaking out calls the unsubscribe hook once', async () => {
    let returned = 0;
    const queue = new AsyncQueue<number>({}, () => returned++);
    queue.push(1);
    queue.push(2);
    for await (const _ of queue) break;
    await queue.return();
    expect(returned).toBe(1);
    queue.push(3);
    expect(queue.size).toBe(0);
  });

  it('async-queue - an abort signal ends a waiting consumer', async () => {
    const queue = new AsyncQueue<number>();
    const controller = new AbortController();
    endOnAbort(queue as AsyncQueue<unknown>, controller.signal);
    const pending = queue.next();
    controller.abort();
    expect(await pending).toEqual({ value: undefined, done: true });
  });

  it('async-queue - an abort runs the cleanup once (a for-await ended by the stream never calls return) and keeps queued items', async () => {
    let cleanups = 0;
    const queue = new AsyncQueue<number>({}, () => cleanups++);
    const controller = new AbortController();
    endOnAbort(queue as AsyncQueue<unknown>, controller.signal);
    queue.push(1);
    controller.abort();
    expect(cleanups).toBe(1);
    const seen: number[] = [];
    for await (const value of queue) seen.push(value);
    expect(seen).toEqual([1]);
    await queue.return();
    expect(cleanups).toBe(1);
    // A signal aborted before the stream was opened: cleaned up at once too.
    const late = new AsyncQueue<number>({}, () => cleanups++);
    endOnAbort(late as AsyncQueue<unknown>, AbortSignal.abort());
    expect(cleanups).toBe(2);
  });

  it('async-queue - compacts its storage under sustained load', async () => {
    const queue = new AsyncQueue<number>({ highWaterMark: 10_000 });
    let sum = 0;
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 3000; i++) queue.push(i);
      for (let i = 0; i < 3000; i++) sum += (await queue.next()).value as number;
    }
    expect(sum).toBe(5 * ((2999 * 3000) / 2));
    expect(queue.size).toBe(0);
  });
});
