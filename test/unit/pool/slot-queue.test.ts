import { describe, expect, it } from 'vitest';
import { SlotQueue } from '../../../src/pool/slot-queue.js';

describe('pool/slot-queue', () => {
  it('slot-queue - hands freed slots to the oldest waiter that can use them', async () => {
    const queue = new SlotQueue();
    const signal = new AbortController().signal;
    const order: string[] = [];
    const taken: string[] = [];
    const take = (who: string) => (p: string) => taken.push(`${who}:${p}`);
    const a = queue.wait(['p1'], signal, take('a')).then((p) => order.push(`a:${p}`));
    const b = queue.wait(['p2'], signal, take('b')).then((p) => order.push(`b:${p}`));
    const c = queue.wait(['p1', 'p2'], signal, take('c')).then((p) => order.push(`c:${p}`));
    queue.release('p2', 1);
    queue.release('p1', 2);
    // Each slot is booked at the hand-over, before any waiter runs.
    expect(taken).toEqual(['b:p2', 'a:p1', 'c:p1']);
    await Promise.all([a, b, c]);
    expect(order).toEqual(['b:p2', 'a:p1', 'c:p1']);
    expect(queue.length).toBe(0);
  });

  it('slot-queue - newcomers see that someone already waits for a proxy', () => {
    const queue = new SlotQueue();
    const controller = new AbortController();
    const pending = queue.wait(['p1'], controller.signal);
    expect(queue.hasWaiterFor(['p2', 'p1'])).toBe(true);
    expect(queue.hasWaiterFor(['p2'])).toBe(false);
    controller.abort(new Error('gone'));
    return expect(pending).rejects.toThrow('gone');
  });

  it('slot-queue - an aborted waiter leaves the queue and gets nothing', async () => {
    const queue = new SlotQueue();
    const controller = new AbortController();
    let taken = 0;
    const pending = queue.wait(['p1'], controller.signal, () => taken++).catch(() => 'aborted');
    controller.abort();
    expect(await pending).toBe('aborted');
    queue.release('p1', 1);
    expect(taken).toBe(0);
  });
});
