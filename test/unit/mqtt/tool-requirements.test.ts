import { describe, expect, it } from 'vitest';
import { requireTools } from '../../helpers/mosquitto.js';

describe('test tool requirements', () => {
  it('mqtt tools - a suite is skipped only when a program it runs is missing, naming it, and never under CI', () => {
    expect(requireTools(['node'])).toEqual({ skip: false, label: '' });
    const missing = requireTools(['node', 'no-such-tool-esphome-ble'], false);
    expect(missing.skip).toBe(true);
    expect(missing.label).toContain('no-such-tool-esphome-ble not installed');
    // CI says every test must run: the suite runs and fails on the missing program instead of passing silently.
    expect(requireTools(['no-such-tool-esphome-ble'], true)).toEqual({ skip: false, label: '' });
  });
});
