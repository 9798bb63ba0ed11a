import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { CI_REQUIRED } from '../helpers/ci-required.js';
import { IPV6_LOOPBACK_ERROR, listenError, skipWithoutIpv6Loopback } from '../helpers/ipv6-loopback.js';
import { commandLines } from '../helpers/processes.js';

describe('test environment helpers', () => {
  it('processes - a command line longer than any terminal is found whole while the process runs, and not once it has exited', async () => {
    // ps cut lines to $COLUMNS (80 when exported), so a marker past the cut was never found and "none left" passed.
    const marker = `marker-${process.pid}-${'x'.repeat(5_000)}-end`;
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', marker], { stdio: 'ignore' });
    try {
      await once(child, 'spawn');
      const found = commandLines().filter((line) => line.includes(marker));
      expect(found).toEqual([`${process.execPath} -e setInterval(() => {}, 1000) ${marker}`]);
    } finally {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    expect(commandLines().filter((line) => line.includes(marker))).toEqual([]);
  });

  it('ipv6-loopback - tests that need ::1 skip only on a developer machine without it; under CI they run, and ::1 must be there', async () => {
    expect(skipWithoutIpv6Loopback(undefined, false)).toBe(false);
    expect(skipWithoutIpv6Loopback('EADDRNOTAVAIL', false)).toBe(true);
    expect(skipWithoutIpv6Loopback('EADDRNOTAVAIL', true)).toBe(false);
    // The probe is this host's answer now: a skip never hides a host that has ::1.
    expect(await listenError('::1')).toBe(IPV6_LOOPBACK_ERROR);
    expect(await listenError('192.0.2.1')).toBe('EADDRNOTAVAIL');
    if (CI_REQUIRED) {
      expect(
        IPV6_LOOPBACK_ERROR,
        `CI=${process.env.CI}: the tests that wait for IPv6 loopback run here, but listening on ::1 fails`,
      ).toBeUndefined();
    }
  });
});
