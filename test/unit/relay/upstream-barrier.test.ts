import { describe, expect, it } from 'vitest';
import { DEFAULT_KEEPALIVE_INTERVAL_MS, PONG_TIMEOUT_FACTOR } from '../../../src/connection/connection.js';
import { barrierTiming } from '../../../src/relay/upstream-barrier.js';

describe('upstream-barrier', () => {
  it("upstream-barrier - a relayed connect's wait is the keep-alive's, and never longer than its default however the keep-alive is set", () => {
    expect(barrierTiming(200)).toEqual({ interval: 200, deadline: 200 * PONG_TIMEOUT_FACTOR });
    const bound = { interval: DEFAULT_KEEPALIVE_INTERVAL_MS, deadline: DEFAULT_KEEPALIVE_INTERVAL_MS * PONG_TIMEOUT_FACTOR };
    expect(bound.deadline).toBe(90_000);
    // Unset, off, invalid or larger than the default: the default's bound.
    for (const keepalive of [undefined, 0, -1, Number.NaN, Number.POSITIVE_INFINITY, 60_000, 2 ** 40]) {
      expect(barrierTiming(keepalive)).toEqual(bound);
    }
  });
});
