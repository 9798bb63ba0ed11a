import { describe, expect, it } from 'vitest';
import { MAX_RECONNECT_DELAY_MS, reconnectDelay } from '../../../src/connection/reconnect.js';

describe('connection/reconnect', () => {
  it('reconnect - grows by 1.8x per try and caps at one minute', () => {
    const mid = (): number => 0.5;
    expect([0, 1, 2, 3].map((t) => reconnectDelay(t, {}, mid))).toEqual([1000, 1800, 3240, 5832]);
    expect(reconnectDelay(10, {}, mid)).toBe(MAX_RECONNECT_DELAY_MS);
    expect(reconnectDelay(50, {}, mid)).toBe(MAX_RECONNECT_DELAY_MS);
  });

  it('reconnect - jitter stays within ±20 %', () => {
    expect(reconnectDelay(2, {}, () => 0)).toBe(Math.round(3240 * 0.8));
    expect(reconnectDelay(2, {}, () => 1)).toBe(Math.round(3240 * 1.2));
  });
});
