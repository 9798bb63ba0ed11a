import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { COALESCE_WINDOW_MS, EventCoalescer } from '../../src/cli/event-coalescer.js';

interface Event {
  kind: string;
  n: number;
}

describe('cli/event-coalescer', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('event-coalescer - the first event of a kind is printed at once, the rest of each window as one line with the count', () => {
    const lines: string[] = [];
    const coalescer = new EventCoalescer<Event>(
      (e) => e.kind,
      (e, count) => lines.push(`${e.kind} #${e.n} x${count}`),
    );
    expect(COALESCE_WINDOW_MS).toBe(1000);
    coalescer.push({ kind: 'refused', n: 1 });
    expect(lines).toEqual(['refused #1 x1']);
    for (let n = 2; n <= 500; n++) coalescer.push({ kind: 'refused', n });
    // Another kind is not held back by the first.
    coalescer.push({ kind: 'dropped', n: 1 });
    expect(lines).toEqual(['refused #1 x1', 'dropped #1 x1']);
    vi.advanceTimersByTime(1000);
    expect(lines).toEqual(['refused #1 x1', 'dropped #1 x1', 'refused #500 x499']);
    // A steady stream: one line per window.
    for (let n = 501; n <= 510; n++) coalescer.push({ kind: 'refused', n });
    vi.advanceTimersByTime(1000);
    expect(lines.at(-1)).toBe('refused #510 x10');
    // A quiet window resets the kind: the next event is printed at once again.
    vi.advanceTimersByTime(2000);
    const before = lines.length;
    coalescer.push({ kind: 'refused', n: 511 });
    expect(lines.slice(before)).toEqual(['refused #511 x1']);
    coalescer.push({ kind: 'refused', n: 512 });
    coalescer.flush();
    expect(lines.at(-1)).toBe('refused #512 x1');
    expect(vi.getTimerCount()).toBe(0);
  });
});
