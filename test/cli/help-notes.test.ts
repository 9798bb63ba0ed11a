import { describe, expect, it } from 'vitest';
import { runCliProcess } from '../helpers/cli.js';

describe('cli help notes (built CLI)', () => {
  it('cli help - notify says --timeout bounds each step and --duration bounds a --count a device stops feeding; the pool says where its passwords come from', async () => {
    const [notify, read] = await Promise.all([runCliProcess(['help', 'notify']), runCliProcess(['help', 'read'])]);
    const flatNotify = notify.stdout.replace(/\s+/g, ' ');
    expect(flatNotify).toContain('--timeout bounds each step (connect, enabling the notifications), not the wait between notifications');
    expect(flatNotify).toContain('--count 3 --duration 30s');
    const flatRead = read.stdout.replace(/\s+/g, ' ');
    expect(flatRead).toContain('A legacy API password (firmware before 2026.1) is per proxy, in --config ("password")');
    expect(flatRead).toContain('--password and $ESPHOME_BLE_PASSWORD are for --host only');
  }, 90_000);
});
