import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliServer, runCliProcess, startCliServer } from '../helpers/cli.js';
import { HAS_SCRIPT, runInTerminal } from '../helpers/terminal.js';

const DEMO = 'C0:FF:EE:00:00:01';
/** The message that takes the Bluetooth subscription, as the --verbose trace names it. */
const SUBSCRIBE = /-> SubscribeBluetoothLEAdvertisementsRequest/;
/** What the question says holding a newest-wins proxy's subscription costs Home Assistant. */
const NEWEST_COST = /\(newest wins, 2026\.7\+\): taken from Home Assistant, and when this command lets go the proxy drops every link/;

function hostOf(server: CliServer): string {
  return `127.0.0.1:${(server.lines[0] as { port: number }).port}`;
}

describe('cli admin commands ask before taking the subscription (built CLI)', () => {
  let newest: CliServer;
  let first: CliServer;
  let old: CliServer;

  beforeAll(async () => {
    [newest, first, old] = await Promise.all([
      startCliServer(['--port', '0', '--name', 'consent-newest', '--subscription', 'newest-wins'], 1, {}, 60_000),
      startCliServer(['--port', '0', '--name', 'consent-first', '--firmware', '2026.1'], 1, {}, 60_000),
      startCliServer(['--port', '0', '--name', 'consent-old', '--firmware', '2023.5'], 1, {}, 60_000),
    ]);
  }, 90_000);

  afterAll(async () => {
    await Promise.all([newest.stop(), first.stop(), old.stop()]);
  }, 90_000);

  it('cli commands - scanner-mode without a mode takes no subscription unasked: exit 2 naming --subscribe and the cost; --subscribe or --yes reads it', async () => {
    const host = hostOf(newest);
    const unasked = await runCliProcess(['scanner-mode', '--host', host, '--verbose'], { timeoutMs: 30_000 });
    const subscribed = await runCliProcess(['scanner-mode', '--host', host, '--subscribe', '--json'], { timeoutMs: 30_000 });
    const yes = await runCliProcess(['scanner-mode', '--host', host, '--yes', '--json'], { timeoutMs: 30_000 });
    expect(unasked.code, unasked.stderr).toBe(2);
    expect(unasked.stderr).not.toMatch(SUBSCRIBE);
    expect(unasked.stderr).toContain('Refusing to read the scanner mode of consent-newest');
    expect(unasked.stderr).toMatch(NEWEST_COST);
    expect(unasked.stderr).toContain('pass --subscribe (nothing was changed)');
    for (const result of [subscribed, yes]) {
      expect(result.code, result.stderr).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ mode: null, proxies: [{ ok: true, detail: expect.stringMatching(/^running, /) }] });
    }
    // --yes (and --subscribe, which asks for it) say what is done before it is done.
    expect(yes.stderr).toMatch(/^note --yes: read the scanner mode of consent-newest/m);
    expect(subscribed.stderr).toMatch(/^note --subscribe: read the scanner mode/m);
  }, 90_000);

  it('cli commands - a proxy without scanner state is refused before anything is taken, without a question', async () => {
    const result = await runCliProcess(['scanner-mode', '--host', hostOf(old), '--json', '--verbose'], { timeoutMs: 30_000 });
    expect(result.code, result.stderr).toBe(1);
    expect(result.stderr).not.toMatch(SUBSCRIBE);
    expect(result.stderr).not.toContain('Refusing');
    expect(JSON.parse(result.stdout)).toMatchObject({ proxies: [{ ok: false, error: { code: 'ESPAPI_ERR_FEATURE_MISSING' } }] });
  }, 90_000);

  it('cli commands - unpair, clear-cache and a scanner switch name the subscription cost per firmware when they refuse, and --yes notes the action first', async () => {
    const [unpair, clear, mode] = await Promise.all([
      runCliProcess(['unpair', DEMO, '--host', hostOf(newest), '--verbose'], { timeoutMs: 30_000 }),
      runCliProcess(['clear-cache', DEMO, '--proxy', hostOf(first), '--proxy', hostOf(newest)], { timeoutMs: 30_000 }),
      runCliProcess(['scanner-mode', 'passive', '--host', hostOf(first)], { timeoutMs: 30_000 }),
    ]);
    for (const result of [unpair, clear, mode]) {
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain('pass --yes (nothing was changed)');
    }
    expect(unpair.stderr).not.toMatch(SUBSCRIBE);
    expect(unpair.stderr).toMatch(NEWEST_COST);
    expect(clear.stderr).toMatch(NEWEST_COST);
    expect(clear.stderr).toContain('consent-first (127.0.0.1:');
    expect(clear.stderr).toMatch(/\(first wins\): refused while Home Assistant holds it/);
    expect(mode.stderr).toMatch(/\(first wins\)/);
    const done = await runCliProcess(['unpair', DEMO, '--host', hostOf(newest), '--yes'], { timeoutMs: 30_000 });
    expect(done.code, done.stderr).toBe(0);
    const lines = done.stderr.split('\n');
    expect(lines[0]).toMatch(
      /^note --yes: remove the bond of C0:FF:EE:00:00:01 .* on consent-newest .*; it holds the Bluetooth subscription/,
    );
    expect(done.stdout).toContain('bond removed');
  }, 90_000);

  it.skipIf(!HAS_SCRIPT)(
    'cli commands - on a terminal the question says the subscription cost before asking, and a no changes nothing (waits for util-linux script for a pseudo-terminal)',
    async () => {
      const result = await runInTerminal(['clear-cache', DEMO, '--host', hostOf(newest)], { answer: 'n', timeoutMs: 30_000 });
      expect(result.code).toBe(0);
      const flat = result.screen.replace(/\s+/g, ' ');
      expect(flat).toMatch(
        /Clear the cached GATT services of C0:FF:EE:00:00:01 .*; it holds the Bluetooth subscription for a moment: .*\[y\/N\]/,
      );
      expect(flat).toMatch(NEWEST_COST);
      expect(flat).toContain('Nothing was changed.');
      expect(flat).not.toContain('cache cleared');
    },
    90_000,
  );
});
