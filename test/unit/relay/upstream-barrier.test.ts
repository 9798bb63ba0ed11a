import { describe, expect, it } from 'vitest';
import { DEFAULT_KEEPALIVE_INTERVAL_MS, PONG_TIMEOUT_FACTOR } from '../../../src/connection/connection.js';
import { barrierTiming, DEFAULT_CONNECT_PING_TIMEOUT_MS } from '../../../src/relay/upstream-barrier.js';

describe('upstream-barrier', () => {
  it("upstream-barrier - a relayed connect's ping: dead after 90 s however the keep-alive is set, pinged again each keep-alive interval (at most 20 s)", () => {
    expect(DEFAULT_CONNECT_PING_TIMEOUT_MS).toBe(90_000);
    expect(DEFAULT_CONNECT_PING_TIMEOUT_MS).toBe(DEFAULT_KEEPALIVE_INTERVAL_MS * PONG_TIMEOUT_FACTOR);
    // A short keep-alive pings again sooner; it does not shorten the deadline.
    expect(barrierTiming(200)).toEqual({ interval: 200, deadline: 90_000 });
    expect(barrierTiming(1000)).toEqual({ interval: 1000, deadline: 90_000 });
    // Unset, off, invalid or larger than the default: the default's interval.
    for (const keepalive of [undefined, 0, -1, Number.NaN, Number.POSITIVE_INFINITY, 60_000, 2 ** 40]) {
      expect(barrierTiming(keepalive)).toEqual({ interval: DEFAULT_KEEPALIVE_INTERVAL_MS, deadline: 90_000 });
    }
  });

  it('upstream-barrier - a shorter deadline is pinged again at least 4.5 times within it', () => {
    expect(barrierTiming(undefined, 900)).toEqual({ interval: 200, deadline: 900 });
    expect(barrierTiming(100, 900)).toEqual({ interval: 100, deadline: 900 });
  });
});
