import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SlotsProxyJson } from '../../src/cli/commands/slots.js';
import { MdnsAdvertiser, simulatedProxyTxt } from '../../src/fixture-server/mdns-advertiser.js';
import { type CliResult, type CliServer, runCliProcess, startCliServer } from '../helpers/cli.js';
import { TEST_PSK } from '../helpers/fixture.js';

// `serve --fleet 3` cycles kitchen, living-room, garage (fixtures/profiles/README.md): the espresso machine is
// heard by proxy-1 (kitchen, -58 dBm) and faintly by proxy-2 (living-room, -84 dBm), not by proxy-3.
const ESPRESSO = '34:AB:95:FD:29:AE';
/** Where the simulation puts phantom devices holding busy slots. */
const PHANTOM = 'F0:00:00:00:00:10';

interface Listening {
  port: number;
  name: string;
  mac: string;
  encryption: 'noise' | 'plaintext';
}

let fleet: CliServer;
let full: CliServer;
let vault: CliServer;
let fleetArgs: string[];
let tmp: string;

function listening(server: CliServer): Listening[] {
  return server.lines as Listening[];
}

function proxyArgs(server: CliServer): string[] {
  return listening(server).flatMap((l) => ['--proxy', `127.0.0.1:${l.port}`]);
}

function parse<T>(result: CliResult): T {
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as T;
}

function mdnsPort(): number {
  return 20_000 + Math.floor(Math.random() * 40_000);
}

beforeAll(async () => {
  [fleet, full, vault] = await Promise.all([
    startCliServer(['--fleet', '3', '--port', '0', '--slots-busy', '1'], 3),
    startCliServer(['--port', '0', '--name', 'full', '--profile', 'kitchen', '--slots', '1', '--slots-busy', '1']),
    startCliServer(['--port', '0', '--name', 'vault', '--psk', TEST_PSK]),
  ]);
  fleetArgs = proxyArgs(fleet);
  tmp = await mkdtemp(join(tmpdir(), 'esphome-ble-pool-'));
});

afterAll(async () => {
  await Promise.all([fleet?.stop(), full?.stop(), vault?.stop()]);
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('cli slots', () => {
  it('cli slots - the table shows every proxy with firmware, free/limit, the phantom holder and the scanner mode', async () => {
    const result = await runCliProcess(['slots', ...fleetArgs]);
    expect(result.code, result.stderr).toBe(0);
    for (const name of ['proxy-1', 'proxy-2', 'proxy-3']) {
      expect(result.stdout).toMatch(
        new RegExp(`${name}\\s+127\\.0\\.0\\.1:\\d+\\s+2026\\.8\\.0\\s+2/3\\s+active\\s+${PHANTOM} \\(other client\\)`),
      );
    }
    expect(result.stdout).toContain('3/3 proxies online, 6/9 slots free');
  });

  it('cli slots - --json is one array with the documented fields', async () => {
    const proxies = parse<SlotsProxyJson[]>(await runCliProcess(['slots', ...fleetArgs, '--json']));
    expect(proxies).toHaveLength(3);
    const ports = listening(fleet).map((l) => l.port);
    for (const [i, p] of proxies.entries()) {
      expect(p).toMatchObject({
        id: `127.0.0.1:${ports[i]}`,
        name: `proxy-${i + 1}`,
        host: '127.0.0.1',
        port: ports[i],
        online: true,
        firmware: '2026.8.0',
        free: 2,
        limit: 3,
        allocated: [{ mac: PHANTOM, name: null, owned: false }],
        scannerMode: 'active',
        error: null,
      });
      expect(p.features).toContain('ACTIVE_CONNECTIONS');
      expect(p.diagnostics).toMatchObject({
        state: 'online',
        apiVersion: '1.15',
        subscription: { state: 'subscribed', confirmed: true },
        leases: 0,
        lastErrors: [],
      });
      expect(p.diagnostics.devicesHeard).toBeGreaterThanOrEqual(0);
      expect(typeof p.diagnostics.adsPerSecond).toBe('number');
    }
  });

  it('cli slots - --reap --dry-run lists the phantom slots without touching them; --reap reports what the proxy kept', async () => {
    const dry = await runCliProcess(['slots', ...fleetArgs, '--reap', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout.match(new RegExp(`${PHANTOM}\\s+would release`, 'g'))).toHaveLength(3);
    expect(dry.stdout).toContain('3 orphan slots (dry run: nothing released)');
    const dryJson = parse<{ dryRun: boolean; orphans: Array<{ proxy: string; mac: string; released: boolean }> }>(
      await runCliProcess(['slots', ...fleetArgs, '--reap', '--dry-run', '--json']),
    );
    expect(dryJson.dryRun).toBe(true);
    expect(dryJson.orphans.map((o) => [o.mac, o.released])).toEqual([
      [PHANTOM, false],
      [PHANTOM, false],
      [PHANTOM, false],
    ]);
    // The simulation's phantoms belong to "another client" that keeps them: the honest answer is "still allocated".
    const reaped = parse<{ dryRun: boolean; orphans: Array<{ released: boolean }> }>(
      await runCliProcess(['slots', '--proxy', `127.0.0.1:${listening(full)[0]!.port}`, '--reap', '--json']),
    );
    expect(reaped.dryRun).toBe(false);
    expect(reaped.orphans).toHaveLength(1);
    expect(reaped.orphans.every((o) => o.released === false)).toBe(true);
  });

  it('cli slots - --watch appends snapshots until --duration and redraws when a proxy goes down', async () => {
    const lone = await startCliServer(['--port', '0', '--name', 'lone']);
    try {
      const watching = runCliProcess(['slots', ...proxyArgs(lone), '--watch', '--duration', '2.5']);
      await new Promise((resolve) => setTimeout(resolve, 1_200));
      await lone.stop();
      const result = await watching;
      expect(result.code, result.stderr).toBe(0);
      const snapshots = result.stdout.split('\n').filter((line) => /^--- \d{4}-\d\d-\d\dT/.test(line));
      expect(snapshots.length).toBeGreaterThanOrEqual(2);
      expect(result.stdout).toMatch(/lone\s+127\.0\.0\.1:\d+\s+2026\.8\.0\s+3\/3\s+active/);
      expect(result.stdout).toContain('offline:');
      expect(result.stdout).not.toContain('\u001b[2J');
    } finally {
      await lone.stop();
    }
  });

  it('cli slots - --config names proxies and gives keys; $ESPHOME_BLE_PSK keys --proxy', async () => {
    const vaultPort = listening(vault)[0]!.port;
    const config = join(tmp, 'pool.json');
    await writeFile(
      config,
      JSON.stringify({ proxies: [{ host: '127.0.0.1', port: vaultPort, name: 'vault' }], keys: { vault: TEST_PSK } }),
    );
    const [fromConfig, fromEnv, noKey] = await Promise.all([
      runCliProcess(['slots', '--config', config, '--json']),
      runCliProcess(['slots', '--proxy', `127.0.0.1:${vaultPort}`, '--json'], { env: { ESPHOME_BLE_PSK: TEST_PSK } }),
      runCliProcess(['slots', '--proxy', `127.0.0.1:${vaultPort}`, '--timeout', '1500'], { env: { ESPHOME_BLE_PSK: '' } }),
    ]);
    expect(parse<SlotsProxyJson[]>(fromConfig)).toMatchObject([{ id: 'vault', name: 'vault', online: true, free: 3, limit: 3 }]);
    expect(parse<SlotsProxyJson[]>(fromEnv)).toMatchObject([{ id: `127.0.0.1:${vaultPort}`, name: 'vault', online: true }]);
    // Nobody reachable: the table says why, and the exit code is the key's, as with --host (3).
    expect(noKey.code).toBe(3);
    expect(noKey.stdout).toMatch(/offline: .*encrypt/i);
  });

  it('cli slots - bad command lines exit 2 before connecting', async () => {
    const badConfig = join(tmp, 'bad.json');
    await writeFile(badConfig, JSON.stringify({ proxies: [{ port: 6053 }] }));
    const results = await Promise.all([
      runCliProcess(['slots', '--dry-run', ...fleetArgs]),
      runCliProcess(['slots', '--watch', '--reap', ...fleetArgs]),
      runCliProcess(['slots', '--duration', '1', ...fleetArgs]),
      runCliProcess(['slots', '--proxy', '127.0.0.1:99999']),
      runCliProcess(['slots', '--config', join(tmp, 'missing.json')]),
      runCliProcess(['slots', '--config', badConfig]),
      runCliProcess(['slots', '--mdns-interface', 'eth0']),
      runCliProcess(['slots', 'extra', ...fleetArgs]),
    ]);
    for (const result of results) {
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain('Usage: esphome-ble slots');
    }
    expect(results[5]!.stderr).toContain('proxies[0].host');
  });
});

describe('cli explain', () => {
  it('cli explain - ranks the proxies that hear a device and says which one would be used', async () => {
    const result = await runCliProcess(['explain', ESPRESSO, ...fleetArgs, '--listen', '800']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`${ESPRESSO} LM-espresso: heard by 2 proxies`);
    // kitchen.json: -58 dBm ± 3 of jitter, so the smoothed RSSI lies within -61…-55.
    expect(result.stdout).toMatch(/1\s+proxy-1\s+-(5\d|6[01])(\.\d)? dBm\s+2\s+\+4\s+0\s+0\s+-\d+(\.\d)?\s+yes/);
    expect(result.stdout).toMatch(/2\s+proxy-2\s+-8\d(\.\d)? dBm/);
    expect(result.stdout).toContain('Not heard by: proxy-3');
    expect(result.stdout).toMatch(/Connect via proxy-1 \(127\.0\.0\.1:\d+\): the best eligible score/);
  });

  it('cli explain - --json carries the score breakdown and the verdict', async () => {
    const report = parse<{
      mac: string;
      name: string | null;
      ranking: Array<Record<string, unknown>>;
      notHeardBy: string[];
      verdict: { action: string; proxy: string | null; waitingOn: string[]; message: string };
    }>(await runCliProcess(['explain', ESPRESSO.toLowerCase(), ...fleetArgs, '--listen', '800', '--json']));
    const ports = listening(fleet).map((l) => l.port);
    expect(report.mac).toBe(ESPRESSO);
    expect(report.name).toBe('LM-espresso');
    expect(report.ranking.map((r) => [r.rank, r.proxyName, r.eligible, r.reason])).toEqual([
      [1, 'proxy-1', true, null],
      [2, 'proxy-2', true, null],
    ]);
    const [best, second] = report.ranking as Array<{
      rssi: number;
      slotBonus: number;
      failurePenalty: number;
      inFlightPenalty: number;
      score: number;
    }>;
    expect(best!.slotBonus).toBe(4);
    expect(best!.failurePenalty).toBe(0);
    expect(best!.inFlightPenalty).toBe(0);
    expect(best!.score).toBeCloseTo(best!.rssi + 4, 5);
    expect(best!.score).toBeGreaterThan(second!.score);
    expect(report.notHeardBy).toEqual([`127.0.0.1:${ports[2]}`]);
    expect(report.verdict).toMatchObject({ action: 'connect', proxy: `127.0.0.1:${ports[0]}`, waitingOn: [] });
  });

  it('cli explain - a full proxy means waiting for a slot; an unheard device is not found (both exit 0)', async () => {
    const [busy, missing] = await Promise.all([
      runCliProcess(['explain', ESPRESSO, ...proxyArgs(full), '--listen', '800', '--json']),
      runCliProcess(['explain', '11:22:33:44:55:66', ...fleetArgs, '--listen', '300']),
    ]);
    const report = parse<{ ranking: Array<{ eligible: boolean; reason: string }>; verdict: { action: string; waitingOn: string[] } }>(busy);
    expect(report.ranking).toMatchObject([{ eligible: false, reason: 'no free slot' }]);
    expect(report.verdict.action).toBe('waitForSlot');
    expect(report.verdict.waitingOn).toHaveLength(1);
    expect(missing.code, missing.stderr).toBe(0);
    expect(missing.stdout).toContain('11:22:33:44:55:66: heard by no proxy');
    expect(missing.stdout).toContain('Not found: none of the 3 online proxies heard 11:22:33:44:55:66');
  });

  it('cli explain - a missing or malformed MAC exits 2', async () => {
    const [none, bad] = await Promise.all([runCliProcess(['explain', ...fleetArgs]), runCliProcess(['explain', '11:22:33', ...fleetArgs])]);
    for (const result of [none, bad]) {
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('Usage: esphome-ble explain');
    }
  });
});

describe('cli discover', () => {
  // The fleet and the vault are announced from this process on loopback mDNS; the CLI browses the same port.
  async function announced<T>(fn: (args: string[]) => Promise<T>): Promise<T> {
    const port = mdnsPort();
    const advertiser = new MdnsAdvertiser({ interface: '127.0.0.1', bind: '0.0.0.0', port });
    try {
      for (const node of [...listening(fleet), ...listening(vault)]) {
        advertiser.publish({
          name: node.name,
          port: node.port,
          host: '127.0.0.1',
          txt: simulatedProxyTxt({ mac: node.mac, encrypted: node.encryption === 'noise' }),
        });
      }
      return await fn(['--mdns-interface', '127.0.0.1', '--mdns-port', String(port)]);
    } finally {
      await advertiser.close();
    }
  }

  it('cli discover - finds the announced nodes and adds features and slots; a Noise node needs its key', async () => {
    const [human, json] = await announced((mdns) =>
      Promise.all([
        runCliProcess(['discover', ...mdns, '--timeout', '1200']),
        runCliProcess(['discover', ...mdns, '--timeout', '1200', '--json'], { env: { ESPHOME_BLE_PSK: TEST_PSK } }),
      ]),
    );
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/proxy-1\s+127\.0\.0\.1:\d+\s+2026\.8\.0\s+plaintext\s+active \(0xff\)\s+2\/3 free/);
    expect(human.stdout).toMatch(/vault\s+127\.0\.0\.1:\d+\s+2026\.8\.0\s+noise\s+needs a key/);
    expect(human.stdout).toContain('4 nodes, 3 usable Bluetooth proxies, 1 failed to connect');
    const nodes = parse<Array<Record<string, unknown>>>(json);
    expect(nodes.map((n) => n.name)).toEqual(['proxy-1', 'proxy-2', 'proxy-3', 'vault']);
    expect(nodes[0]).toMatchObject({
      addresses: ['127.0.0.1'],
      version: '2026.8.0',
      encryption: 'none',
      proxyImage: true,
      connected: true,
      transport: 'plaintext',
      bluetooth: { featureFlags: 0xff, slots: { free: 2, limit: 3, allocated: 1 } },
      error: null,
    });
    expect(nodes[3]).toMatchObject({ encryption: 'required', connected: true, transport: 'noise', bluetooth: { slots: { free: 3 } } });
  });

  it('cli discover - nothing announced on the port: an empty list, exit 0', async () => {
    const port = String(mdnsPort());
    const [human, json] = await Promise.all([
      runCliProcess(['discover', '--mdns-interface', '127.0.0.1', '--mdns-port', port, '--timeout', '400']),
      runCliProcess(['discover', '--mdns-interface', '127.0.0.1', '--mdns-port', port, '--timeout', '400', '--json']),
    ]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain('No ESPHome node answered in 0.4 s');
    expect(parse<unknown[]>(json)).toEqual([]);
  });

  it('cli discover - the pool commands use mDNS when no proxy is named', async () => {
    const result = await announced((mdns) =>
      runCliProcess(['slots', ...mdns, '--timeout', '1500', '--json'], { env: { ESPHOME_BLE_PSK: TEST_PSK } }),
    );
    const proxies = parse<SlotsProxyJson[]>(result);
    expect(proxies.map((p) => [p.id, p.online]).sort()).toEqual([
      ['proxy-1', true],
      ['proxy-2', true],
      ['proxy-3', true],
      ['vault', true],
    ]);
  });

  it('cli pool commands - --help documents the JSON shapes', async () => {
    const results = await Promise.all(['discover', 'slots', 'explain'].map((name) => runCliProcess([name, '--help'])));
    for (const result of results) {
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('--json');
    }
    expect(results[0]!.stdout).toContain('ONE JSON array');
    expect(results[1]!.stdout).toContain('"allocated":[{"mac","name"|null,"owned"}]');
    expect(results[2]!.stdout).toContain('"verdict":{"action":"connect|waitForSlot|notFound|noUsableProxy"');
    const top = await runCliProcess(['--help']);
    for (const name of ['demo', 'discover', 'slots', 'explain']) expect(top.stdout).toContain(`  ${name} `);
  });
});
