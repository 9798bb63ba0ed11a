import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliServer, runCliProcess, startCliServer } from '../helpers/cli.js';
import { HAS_SCRIPT, runInTerminal } from '../helpers/terminal.js';

const DEMO = 'C0:FF:EE:00:00:01';
/** The service UUID the demo device of the default profile advertises. */
const DEMO_SERVICE = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b00';
/** The SwitchBot of the default profile advertises this name. */
const SWITCHBOT = 'B4:35:22:F5:3D:A4';

interface Report {
  time: string;
  mac: string;
  name: string | null;
  rssi: number;
  serviceUuids: string[];
  count: number;
  proxy?: string;
}

function reports(stdout: string): Report[] {
  return stdout
    .trim()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Report);
}

describe('cli scan --follow (built CLI)', () => {
  let node: CliServer;
  let host: string;

  beforeAll(async () => {
    node = await startCliServer(['--port', '0', '--name', 'follow-node']);
    host = `127.0.0.1:${(node.lines[0] as { port: number }).port}`;
  }, 90_000);

  afterAll(async () => {
    await node.stop();
  }, 90_000);

  it('cli scan --follow - off a terminal, one JSON line per report until --duration; the pool adds the proxy', async () => {
    // One after the other: the node, as the firmware, serves one Bluetooth subscriber at a time.
    const one = await runCliProcess(['scan', '--host', host, '--follow', '--duration', '2s'], { timeoutMs: 30_000 });
    const pool = await runCliProcess(['scan', '--proxy', host, '--follow', '--duration', '2s']);
    expect(one.code, one.stderr).toBe(0);
    const lines = reports(one.stdout);
    expect(lines.length).toBeGreaterThan(3);
    expect(new Set(lines.map((l) => l.mac))).toContain(DEMO);
    for (const line of lines) {
      expect(line.mac).toMatch(/^([0-9A-F]{2}:){5}[0-9A-F]{2}$/);
      expect(Number.isNaN(Date.parse(line.time))).toBe(false);
      expect(line.rssi).toBeLessThan(0);
      expect(line.proxy).toBeUndefined();
    }
    expect(one.stderr).toMatch(new RegExp(`^${lines.length} reports shown of ${lines.length} heard via follow-node \\(${host}\\)$`, 'm'));
    expect(pool.code, pool.stderr).toBe(0);
    const poolLines = reports(pool.stdout);
    expect(poolLines.length).toBeGreaterThan(3);
    for (const line of poolLines) expect(line.proxy).toBe(host);
  }, 90_000);

  it('cli scan --follow - filters by MAC, name, service UUID and RSSI, all of them having to match', async () => {
    const follow = (...filters: string[]) => runCliProcess(['scan', '--host', host, '--follow', '--duration', '1500ms', ...filters]);
    // One after the other: the node serves one Bluetooth subscriber at a time.
    const byMac = await follow('--mac', DEMO.toLowerCase());
    const byName = await follow('--name-contains', 'sbbt');
    const byService = await follow('--service', DEMO_SERVICE.toUpperCase());
    const byRssi = await follow('--min-rssi', '-55');
    const none = await follow('--mac', DEMO, '--name-contains', 'sbbt');
    const bad = await follow('--mac', 'not-a-mac');
    for (const result of [byMac, byName, byService, byRssi, none]) expect(result.code, result.stderr).toBe(0);
    const macs = reports(byMac.stdout);
    expect(macs.length).toBeGreaterThan(0);
    for (const line of macs) expect(line.mac).toBe(DEMO);
    const names = reports(byName.stdout);
    expect(names.length).toBeGreaterThan(0);
    for (const line of names) expect([line.mac, line.name]).toEqual([SWITCHBOT, 'SBBT-002C']);
    const services = reports(byService.stdout);
    expect(services.length).toBeGreaterThan(0);
    for (const line of services) expect(line.serviceUuids).toContain(DEMO_SERVICE);
    // -55 leaves out reports at -55 dBm and weaker.
    for (const line of reports(byRssi.stdout)) expect(line.rssi).toBeGreaterThan(-55);
    expect(none.stdout).toBe('');
    expect(none.stderr).toMatch(/^0 reports shown of \d+ heard via /m);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--mac');
  }, 90_000);

  it.skipIf(!HAS_SCRIPT)(
    'cli scan --follow - on a terminal a live table of the devices (waits for util-linux script for a pseudo-terminal)',
    async () => {
      const result = await runInTerminal(['scan', '--host', host, '--follow', '--duration', '2s', '--min-rssi', '-100'], {
        timeoutMs: 15_000,
      });
      expect(result.code).toBe(0);
      // Redrawn in place: the screen is cleared before each frame.
      const frames = result.screen.split('\u001b[2J\u001b[H');
      expect(frames.length).toBeGreaterThan(2);
      const last = frames.at(-1)!;
      expect(last).toContain('esphome-ble scan --follow');
      expect(last).toMatch(/mac\s+type\s+rssi\s+name/);
      expect(last).toContain(DEMO);
      expect(last).toMatch(/\d+ devices, \d+ reports in \d+ s via follow-node/);
      // No JSON on a terminal.
      expect(result.screen).not.toContain('"mac"');
    },
  );
});
