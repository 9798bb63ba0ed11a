import { describe, expect, it } from 'vitest';
import { RateMeter } from '../../../src/pool/rate-meter.js';

const T0 = 1_700_000_000_000;

describe('rate-meter', () => {
  it('rate-meter - nothing marked is 0 per second', () => {
    expect(new RateMeter().perSecond(T0)).toBe(0);
  });

  it('rate-meter - counts over the time since the first event, at least one second', () => {
    const meter = new RateMeter();
    for (let i = 0; i < 50; i++) meter.mark(T0 + i * 10); // 50 events in 0.5 s
    expect(meter.perSecond(T0 + 500)).toBe(50); // window floored at 1 s
    expect(meter.perSecond(T0 + 2_000)).toBe(25);
  });

  it('rate-meter - a steady 20/s reads 20 over the rolling ten seconds', () => {
    const meter = new RateMeter();
    for (let t = 0; t < 30_000; t += 50) meter.mark(T0 + t);
    expect(meter.perSecond(T0 + 30_000)).toBeCloseTo(20, 0);
  });

  it('rate-meter - falls to 0 ten seconds after the last event, and old buckets do not come back', () => {
    const meter = new RateMeter();
    for (let t = 0; t < 5_000; t += 100) meter.mark(T0 + t);
    expect(meter.perSecond(T0 + 5_000)).toBeCloseTo(10, 0);
    expect(meter.perSecond(T0 + 16_000)).toBe(0);
    meter.mark(T0 + 60_000);
    expect(meter.perSecond(T0 + 60_500)).toBeCloseTo(0.1, 1);
  });
});
