import { describe, expect, it } from 'vitest';
import { esphomeRelease, isReleaseBefore, mayLoseSubscription, TAKEOVER_SINCE } from '../../../src/bluetooth/firmware-release.js';

describe('bluetooth/firmware-release', () => {
  it('firmware-release - reads year and month of ESPHome versions, nothing else', () => {
    expect(esphomeRelease('2026.7.0')).toEqual([2026, 7]);
    expect(esphomeRelease('2024.10.3')).toEqual([2024, 10]);
    expect(esphomeRelease('2025.12.0b2')).toEqual([2025, 12]);
    expect(esphomeRelease('2023.5')).toEqual([2023, 5]);
    expect(esphomeRelease('')).toBeUndefined();
    expect(esphomeRelease('v2026.7.0')).toBeUndefined();
    expect(esphomeRelease('proxy (esphome v2022.12.8)')).toBeUndefined();
    expect(esphomeRelease('2026.123.0')).toBeUndefined();
  });

  it('firmware-release - compares by year, then month; unreadable versions are never "before"', () => {
    expect(isReleaseBefore('2026.6.4', TAKEOVER_SINCE)).toBe(true);
    expect(isReleaseBefore('2025.12.0', TAKEOVER_SINCE)).toBe(true);
    expect(isReleaseBefore('2026.7.0', TAKEOVER_SINCE)).toBe(false);
    expect(isReleaseBefore('2026.10.0', TAKEOVER_SINCE)).toBe(false);
    expect(isReleaseBefore('2027.1.0', TAKEOVER_SINCE)).toBe(false);
    expect(isReleaseBefore('dev', TAKEOVER_SINCE)).toBe(false);
  });

  it('firmware-release - only newest-wins firmware (2026.7+) or an unknown one may take the subscription away', () => {
    expect(mayLoseSubscription('2022.12.8')).toBe(false);
    expect(mayLoseSubscription('2026.6.0')).toBe(false);
    expect(mayLoseSubscription('2026.7.0')).toBe(true);
    expect(mayLoseSubscription('2026.8.0')).toBe(true);
    expect(mayLoseSubscription('')).toBe(true);
  });
});
