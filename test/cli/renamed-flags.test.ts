import { describe, expect, it } from 'vitest';
import { runCliProcess } from '../helpers/cli.js';

/** A private mDNS port on loopback: nothing answers there, so a browse hears nobody. */
const MDNS = ['--mdns-interface', '127.0.0.1', '--mdns-port', String(40_000 + (process.pid % 20_000))];

describe('cli renamed flags (built CLI)', () => {
  it('cli vocabulary - discover listens for mDNS answers with --listen-for; --timeout still works there, in ms, with a deprecation warning', async () => {
    const [renamed, old, both] = await Promise.all([
      runCliProcess(['discover', '--no-connect', '--listen-for', '300ms', '--json', ...MDNS], { timeoutMs: 30_000 }),
      runCliProcess(['discover', '--no-connect', '--timeout', '300', '--json', ...MDNS], { timeoutMs: 30_000 }),
      runCliProcess(['discover', '--no-connect', '--timeout', '300', '--listen-for', '1s', ...MDNS], { timeoutMs: 30_000 }),
    ]);
    // Nobody answers on a private mDNS port: exit 1 and an empty list, either way.
    expect([renamed.code, renamed.stdout.trim()], renamed.stderr).toEqual([1, '[]']);
    expect(renamed.stderr).not.toContain('deprecated');
    expect([old.code, old.stdout.trim()], old.stderr).toEqual([1, '[]']);
    expect(old.stderr).toContain('warning --timeout is deprecated in discover and goes away in the next release: use --listen-for');
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--timeout is the old spelling of --listen-for: give only --listen-for');
  }, 90_000);

  it('cli vocabulary - scan filters by name with --name-contains; --name (a node or gateway name elsewhere) is no scan option', async () => {
    const [help, old] = await Promise.all([runCliProcess(['help', 'scan']), runCliProcess(['scan', '--name', 'thermo', ...MDNS])]);
    expect(help.stdout).toContain('--name-contains');
    expect(help.stdout).not.toMatch(/--name\b(?!-)/);
    expect(old.code).toBe(2);
    expect(old.stderr).toContain("Unknown option '--name'");
  }, 90_000);
});
