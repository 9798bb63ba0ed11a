import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SlotsProxyJson } from '../../src/cli/commands/slots.js';
import type { ApiConnection } from '../../src/connection/connection.js';
import { startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { MdnsAdvertiser, simulatedProxyTxt } from '../../src/fixture-server/mdns-advertiser.js';
import type { ApiSession } from '../../src/server/api-server.js';
import { type CliResult, type CliServer, runCliProcess, startCliProcess, startCliServer } from '../helpers/cli.js';
import { TEST_PSK } from '../helpers/fixture.js';
import { subscribeAsOtherAt } from '../helpers/fleet.js';

// `serve --fleet 3` cycles kitchen, living-room, garage (fixtures/profiles/README.md): the espresso machine is
// heard by proxy-1 (kitchen, -58 dBm) and faintly by proxy-2 (living-room, -84 dBm), not by proxy-3.
const ESPRESSO = '34:AB:95:FD:29:AE';
/** Where the simulation puts phantom devices holding busy slots. */
const PHANTOM = 'F0:00:00:00:00:10';
/** The default profile's connectable demo peripheral. */
const DEMO_MAC = 'C0:FF:EE:00:00:01';

interface Listening {
  port: number;
  name: string;
  mac: string;
  encryption: 'noise' | 'plaintext';
}

let fleet: CliServer;
/** Three proxies whose subscription another client (Home Assistant) holds, so that their phantom links live. */
let home: CliServer;
let homeClients: ApiConnection[] = [];
let full: CliServer;
let vault: CliServer;
/** Boards since 2026.8: an advertisement-only LibreTiny hub and a one-slot RP2040. */
let hub: CliServer;
let pico: CliServer;
let fleetArgs: string[];
let homeArgs: string[];
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
  [fleet, home, full, vault, hub, pico] = await Promise.all([
    startCliServer(['--fleet', '3', '--port', '0', '--slots-busy', '1'], 3),
    startCliServer(['--fleet', '3', '--port', '0', '--slots-busy', '1'], 3),
    startCliServer(['--port', '0', '--name', 'full', '--profile', 'kitchen', '--slots', '1', '--slots-busy', '1']),
    startCliServer(['--port', '0', '--name', 'vault', '--psk', TEST_PSK]),
    startCliServer(['--port', '0', '--name', 'hub', '--board', 'bk72xx']),
    startCliServer(['--port', '0', '--name', 'pico', '--board', 'rp2040']),
  ]);
  fleetArgs = proxyArgs(fleet);
  homeArgs = proxyArgs(home);
  // The phantoms are links of another client: they live only while somebody holds the subscription (spec §6.3).
  homeClients = await Promise.all(listening(home).map((l) => subscribeAsOtherAt(l.port)));
  tmp = await mkdtemp(join(tmpdir(), 'esphome-ble-pool-'));
});

afterAll(async () => {
  for (const client of homeClients.splice(0)) client.destroy();
  await Promise.all([fleet?.stop(), home?.stop(), full?.stop(), vault?.stop(), hub?.stop(), pico?.stop()]);
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('cli slots', () => {
  it('cli slots - the table shows every proxy with firmware, board, free/limit, who holds the subscription and the phantom', async () => {
    const result = await runCliProcess(['slots', ...homeArgs]);
    expect(result.code, result.stderr).toBe(0);
    for (const name of ['proxy-1', 'proxy-2', 'proxy-3']) {
      // Every simulated proxy lends its phantom the same address: a device holding slots on three proxies (a hint only).
      const others = ['proxy-1', 'proxy-2', 'proxy-3'].filter((other) => other !== name).join(', ');
      expect(result.stdout).toMatch(
        new RegExp(
          `${name}\\s+127\\.0\\.0\\.1:\\d+\\s+2026\\.8\\.0\\s+esp32dev\\s+2/3\\s+another client\\?\\s+${PHANTOM} \\(held \\d+(\\.\\d)?s, also on ${others}\\)`,
        ),
      );
      expect(result.stdout).toContain(`${name}: another client — ${PHANTOM} has held a slot for`);
    }
    expect(result.stdout).toContain('3/3 proxies online, 6/9 slots free; nothing taken');
    expect(result.stderr).toBe('');
  });

  it('cli slots - --json is one array with the documented fields', async () => {
    const proxies = parse<SlotsProxyJson[]>(await runCliProcess(['slots', ...homeArgs, '--json']));
    expect(proxies).toHaveLength(3);
    const ports = listening(home).map((l) => l.port);
    for (const [i, p] of proxies.entries()) {
      expect(p).toMatchObject({
        id: `127.0.0.1:${ports[i]}`,
        name: `proxy-${i + 1}`,
        host: '127.0.0.1',
        port: ports[i],
        online: true,
        firmware: '2026.8.0',
        apiVersion: '1.15',
        model: 'esp32dev',
        manufacturer: 'Espressif',
        advertisementOnly: false,
        free: 2,
        limit: 3,
        allocated: [
          {
            mac: PHANTOM,
            name: null,
            owned: false,
            orphanSigns: [],
            alsoOn: ['proxy-1', 'proxy-2', 'proxy-3'].filter((n) => n !== p.name),
          },
        ],
        subscription: { holder: 'otherClient', sure: false },
        scannerMode: null,
        error: null,
      });
      expect(p.features).toContain('ACTIVE_CONNECTIONS');
      expect(p.allocated[0]!.heldMs).toBeGreaterThanOrEqual(1000);
    }
  });

  it('cli slots - --reap releases no slot for being held on several proxies; without a sign of its own, nothing is offered', async () => {
    // Nothing is released by these, so they run side by side.
    const [dry, refused, yes] = await Promise.all([
      runCliProcess(['slots', ...homeArgs, '--reap', '--dry-run']),
      runCliProcess(['slots', ...homeArgs, '--reap']),
      runCliProcess(['slots', ...homeArgs, '--reap', '--yes', '--json']),
    ]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(
      dry.stdout.match(new RegExp(`${PHANTOM}\\s+\\d+(\\.\\d)?s\\s+another client\\?\\s+-\\s+proxy-\\d, proxy-\\d\\s+kept`, 'g')),
    ).toHaveLength(3);
    expect(dry.stdout).toContain(`to free one copy name it: --reap ${PHANTOM}@proxy-1`);
    expect(dry.stdout).toContain('0 would be released (dry run: nothing changed); 3 kept');
    // Nothing to release: no question, no refusal.
    expect(refused.code, refused.stderr).toBe(0);
    expect(refused.stdout).toContain('0 released; 3 kept');
    expect(yes.code, yes.stderr).toBe(0);
    const result = JSON.parse(yes.stdout) as { dryRun: boolean; slots: Array<{ mac: string; alsoOn: string[]; result: string }> };
    expect(result.slots.map((s) => [s.mac, s.alsoOn.length, s.result])).toEqual(Array.from({ length: 3 }, () => [PHANTOM, 2, 'kept']));
  });

  it('cli slots - --reap MAC releases only the named slot; held on several proxies it needs MAC@proxy; a name nobody holds is reported', async () => {
    const two = homeArgs.slice(0, 4);
    const [alone, named, dry] = await Promise.all([
      runCliProcess(['slots', ...two, '--reap', PHANTOM, '--json']),
      runCliProcess(['slots', ...two, '--reap', `${PHANTOM.toLowerCase()}@proxy-1`, '11:22:33:44:55:66', '--json']),
      runCliProcess(['slots', ...homeArgs.slice(0, 2), '--reap', '11:22:33:44:55:66', '--dry-run']),
    ]);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toContain(`${PHANTOM} holds slots on proxy-1, proxy-2: name the copy to free as ${PHANTOM}@proxy-1`);
    expect((JSON.parse(alone.stdout) as { slots: Array<{ result: string }> }).slots.map((s) => s.result)).toEqual([
      'needsProxy',
      'needsProxy',
    ]);
    // The phantom's client keeps its link: still allocated, exit 1.
    expect(named.code).toBe(1);
    const result = JSON.parse(named.stdout) as { slots: Array<{ mac: string; proxyName: string | null; named: boolean; result: string }> };
    expect((JSON.parse(named.stdout) as { orphans: unknown[] }).orphans).toEqual([
      { proxy: `127.0.0.1:${listening(home)[0]!.port}`, mac: PHANTOM, released: false },
    ]);
    expect(result.slots.map((s) => [s.mac, s.proxyName, s.named, s.result])).toEqual([
      [PHANTOM, 'proxy-1', true, 'stillAllocated'],
      [PHANTOM, 'proxy-2', false, 'kept'],
      ['11:22:33:44:55:66', null, true, 'notAllocated'],
    ]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(new RegExp(`${PHANTOM}\\s+\\d+(\\.\\d)?s\\s+another client\\?\\s+-\\s+-\\s+kept`));
    expect(dry.stdout).toMatch(/11:22:33:44:55:66\s+-\s+-\s+-\s+-\s+not allocated on any proxy/);
  });

  it('cli slots - --watch appends snapshots and redraws when a proxy goes down; Ctrl-C ends it with exit 0', async () => {
    const lone = await startSimulatedProxy({ name: 'lone' });
    const sessions: ApiSession[] = [];
    const off = lone.server.onSession((session) => sessions.push(session));
    try {
      const watching = startCliProcess(['slots', '--proxy', `127.0.0.1:${lone.server.address.port}`, '--watch', '--interval', '200ms'], {
        timeoutMs: 14_000,
      });
      const queries = (): number => sessions[0]?.received.filter((t) => t === 80).length ?? 0;
      await expect.poll(queries, { timeout: 8_000, interval: 50 }).toBeGreaterThanOrEqual(2);
      await lone.server.close();
      await new Promise((resolve) => setTimeout(resolve, 600));
      watching.child.kill('SIGINT');
      const result = await watching.done;
      expect(result.code, result.stderr).toBe(0);
      const snapshots = result.stdout.split('\n').filter((line) => /^--- \d{4}-\d\d-\d\dT/.test(line));
      expect(snapshots.length).toBeGreaterThanOrEqual(2);
      expect(result.stdout).toMatch(/lone\s+127\.0\.0\.1:\d+\s+2026\.8\.0\s+esp32dev\s+3\/3\s+nobody seen\?\s+-/);
      expect(result.stdout).toContain('offline:');
      expect(result.stdout).not.toContain('\u001b[2J');
    } finally {
      off();
      await lone.server.close();
    }
  });

  it('cli slots - --timeout bounds the whole look, and discover --connect-timeout the connect and the query together', async () => {
    // Feature flags that claim connections on a board without them: the slot query is never answered.
    const mute = await startSimulatedProxy({ name: 'mute', board: 'esp32-adv-only', featureFlags: 0xff });
    try {
      const proxy = ['--proxy', `127.0.0.1:${mute.server.address.port}`];
      const started = Date.now();
      const [slots, table, discover, human] = await Promise.all([
        runCliProcess(['slots', ...proxy, '--timeout', '500', '--json']),
        runCliProcess(['slots', ...proxy, '--timeout', '500']),
        runCliProcess(['discover', ...proxy, '--connect-timeout', '500', '--json']),
        runCliProcess(['discover', ...proxy, '--connect-timeout', '500']),
      ]);
      // They used to wait a fixed 5 s for the slot answer on top of the connect ("timed out after 5000 ms"): now
      // the query gets what the deadline leaves. (Wall-clock time here is mostly four processes starting.)
      const waited = (message: string): number => Number(/timed out after (\d+) ms/.exec(message)?.[1]);
      const [slotsJson] = parse<SlotsProxyJson[]>(slots);
      expect(slotsJson).toMatchObject({ online: true, error: { code: 'ESPAPI_ERR_TIMEOUT' } });
      expect(waited(slotsJson!.error!.message)).toBeLessThanOrEqual(500);
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(table.stdout).toMatch(/mute\s+127\.0\.0\.1:\d+.*no answer: SubscribeBluetoothConnectionsFreeRequest .* timed out/);
      // What it said at Hello stands; the slot query is what failed.
      const [discovered] = parse<Array<{ error: { message: string } }>>(discover);
      expect(discovered).toMatchObject({
        connected: true,
        bluetooth: { featureFlags: 0xff, slots: null },
        error: { code: 'ESPAPI_ERR_TIMEOUT' },
      });
      expect(waited(discovered!.error.message)).toBeLessThanOrEqual(500);
      expect(human.code, human.stderr).toBe(0);
      expect(human.stdout).toMatch(/mute\s+127\.0\.0\.1:\d+\s+2026\.8\.0\s+plaintext\s+active \(0xff\)\s+no answer/);
      expect(human.stdout).toContain('1 node, 0 usable Bluetooth proxies, 1 connected but did not answer the slot query');
      expect(human.stdout).not.toContain('failed to connect');
    } finally {
      await mute.server.close();
    }
  });

  it('cli slots - an advertisement-only board shows as such (no slot query to read), a one-slot board as 1/1', async () => {
    const human = await runCliProcess(['slots', ...proxyArgs(hub), ...proxyArgs(pico)]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/hub\s+127\.0\.0\.1:\d+\s+2026\.8\.0\s+generic-bk7231n-qfn32-tuya\s+adv\. only\s+unknown\?\s+-/);
    expect(human.stdout).toMatch(/pico\s+127\.0\.0\.1:\d+\s+2026\.8\.0\s+rpipicow\s+1\/1\s+nobody seen\?/);
    expect(human.stdout).toContain('hub: unknown — advertisement-only proxy');
    expect(human.stdout).toContain('2/2 proxies online (1 advertisement-only), 1/1 slots free');
    const [adv, one] = parse<SlotsProxyJson[]>(await runCliProcess(['slots', ...proxyArgs(hub), ...proxyArgs(pico), '--json']));
    expect(adv).toMatchObject({
      advertisementOnly: true,
      free: null,
      limit: null,
      manufacturer: 'Beken',
      subscription: { holder: 'unknown' },
    });
    expect(one).toMatchObject({ advertisementOnly: false, free: 1, limit: 1, manufacturer: 'Raspberry Pi', model: 'rpipicow' });
  });

  it('cli slots - a node with feature flags 0 reads as not a proxy, not as advertisement-only', async () => {
    const plug = await startSimulatedProxy({ name: 'plug', featureFlags: 0 });
    try {
      const result = await runCliProcess(['slots', '--proxy', `127.0.0.1:${plug.server.address.port}`]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/plug\s+127\.0\.0\.1:\d+\s+2026\.8\.0\s+esp32dev\s+not a proxy\s+none \(not a proxy\)\s+-/);
      expect(result.stdout).toContain('plug: none (not a proxy) — not a Bluetooth proxy');
      expect(result.stdout).not.toContain('advertisement-only');
    } finally {
      await plug.server.close();
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
    // Two batches: a dozen node processes starting at once take seconds on a loaded 2-core machine.
    const lines = [
      ['--dry-run', ...fleetArgs],
      ['--watch', '--reap', ...fleetArgs],
      ['--duration', '1', ...fleetArgs],
      ['--proxy', '127.0.0.1:99999'],
      ['--config', join(tmp, 'missing.json')],
      ['--config', badConfig],
      ['--mdns-interface', 'eth0'],
      ['extra', ...fleetArgs],
      ['--watch', '--interval', 'soon', ...fleetArgs],
      ['--reap', '--dry-run', '--yes', ...fleetArgs],
      ['--reap', '11:22:33', ...fleetArgs],
      ['--yes', ...fleetArgs],
      ['--reap', 'C0:FF:EE:00:00:01@', ...fleetArgs],
    ];
    const results: CliResult[] = [];
    for (const batch of [lines.slice(0, 6), lines.slice(6)]) {
      results.push(...(await Promise.all(batch.map((args) => runCliProcess(['slots', ...args], { timeoutMs: 20_000 })))));
    }
    for (const result of results) {
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain('Usage: esphome-ble slots');
    }
    expect(results[5]!.stderr).toContain('proxies[0].host');
    expect(results[8]!.stderr).toContain('--interval must be a duration such as 500ms, 5s');
  });
});

describe('cli explain', () => {
  it('cli explain - ranks the proxies that hear a device and says which one would be used', async () => {
    const result = await runCliProcess(['explain', ESPRESSO, ...fleetArgs, '--listen-for', '800']);
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
    }>(await runCliProcess(['explain', ESPRESSO.toLowerCase(), ...fleetArgs, '--listen-for', '800', '--json']));
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
      runCliProcess(['explain', ESPRESSO, ...proxyArgs(full), '--listen-for', '800', '--json']),
      runCliProcess(['explain', '11:22:33:44:55:66', ...fleetArgs, '--listen-for', '300']),
    ]);
    const report = parse<{ ranking: Array<{ eligible: boolean; reason: string }>; verdict: { action: string; waitingOn: string[] } }>(busy);
    expect(report.ranking).toMatchObject([{ eligible: false, reason: 'no free slot' }]);
    expect(report.verdict.action).toBe('waitForSlot');
    expect(report.verdict.waitingOn).toHaveLength(1);
    expect(missing.code, missing.stderr).toBe(0);
    expect(missing.stdout).toContain('11:22:33:44:55:66: heard by no proxy');
    expect(missing.stdout).toContain('Not found: none of the 3 online proxies heard 11:22:33:44:55:66');
  });

  it('cli explain - an advertisement-only proxy is named as such and never the verdict; the note says what is held', async () => {
    // One after the other: the hub is first-wins, and the second run's subscribe would be ignored.
    const json = await runCliProcess(['explain', DEMO_MAC, ...proxyArgs(hub), '--listen-for', '600', '--json']);
    const human = await runCliProcess(['explain', DEMO_MAC, ...proxyArgs(hub), '--listen-for', '600']);
    const report = parse<{ ranking: Array<Record<string, unknown>>; verdict: { action: string; message: string } }>(json);
    expect(report.ranking).toMatchObject([
      { proxyName: 'hub', advertisementOnly: true, eligible: false, reason: 'advertisement-only proxy (no connections)' },
    ]);
    expect(report.verdict.action).toBe('noUsableProxy');
    expect(report.verdict.message).toContain('advertisement-only proxy (no connections)');
    expect(human.stdout).toMatch(/1\s+hub\s+-\d+(\.\d)? dBm.*no: advertisement-only proxy/);
    // explain needs the subscription to hear the device: it says so, and what that means for Home Assistant.
    expect(human.stderr).toMatch(
      /^note this command holds the Bluetooth subscription of hub \(127\.0\.0\.1:\d+\) \(newest wins, 2026\.7\+: taken from Home Assistant/m,
    );
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
    // Nobody holds the fleet's subscriptions now, so its phantom links are gone (the firmware drops every link then).
    expect(human.stdout).toMatch(/proxy-1\s+127\.0\.0\.1:\d+\s+2026\.8\.0\s+plaintext\s+active \(0xff\)\s+3\/3 free/);
    expect(human.stdout).toMatch(/vault\s+127\.0\.0\.1:\d+\s+2026\.8\.0\s+noise\s+needs a key/);
    expect(human.stdout).toContain('4 nodes, 3 usable Bluetooth proxies, 1 failed to connect');
    const nodes = parse<Array<Record<string, unknown>>>(json);
    expect(nodes.map((n) => n.name)).toEqual(['proxy-1', 'proxy-2', 'proxy-3', 'vault']);
    expect(nodes[0]).toMatchObject({
      addresses: ['127.0.0.1'],
      source: 'mdns',
      version: '2026.8.0',
      encryption: 'none',
      proxyImage: true,
      connected: true,
      transport: 'plaintext',
      model: 'esp32dev',
      bluetooth: { featureFlags: 0xff, advertisementOnly: false, slots: { free: 3, limit: 3, allocated: [] } },
      error: null,
    });
    // One MAC format in every --json: the TXT record's `mac` (12 hex digits) as AA:BB:CC:DD:EE:FF.
    expect(nodes[0]!.mac).toMatch(/^([0-9A-F]{2}:){5}[0-9A-F]{2}$/);
    expect(nodes[3]).toMatchObject({ encryption: 'required', connected: true, transport: 'noise', bluetooth: { slots: { free: 3 } } });
  });

  it('cli discover - --proxy checks named nodes directly; an advertisement-only and a one-slot board show as such', async () => {
    const [human, json] = await Promise.all([
      runCliProcess(['discover', ...proxyArgs(hub), ...proxyArgs(pico)]),
      runCliProcess(['discover', ...proxyArgs(hub), ...proxyArgs(pico), '--json']),
    ]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/hub\s+127\.0\.0\.1:\d+\s+2026\.8\.0\s+plaintext\s+adv\. only \(0x21\)\s+-/);
    expect(human.stdout).toMatch(/pico\s+127\.0\.0\.1:\d+\s+2026\.8\.0\s+plaintext\s+active \(0xef\)\s+1\/1 free/);
    expect(human.stdout).toContain('2 nodes, 1 usable Bluetooth proxy');
    const nodes = parse<Array<Record<string, unknown>>>(json);
    expect(nodes).toMatchObject([
      {
        name: 'hub',
        source: 'named',
        version: null,
        encryption: null,
        connected: true,
        transport: 'plaintext',
        manufacturer: 'Beken',
        bluetooth: { featureFlags: 0x21, advertisementOnly: true, slots: null },
        error: null,
      },
      {
        name: 'pico',
        model: 'rpipicow',
        bluetooth: { featureFlags: 0xef, advertisementOnly: false, slots: { free: 1, limit: 1, allocated: [] } },
      },
    ]);
  });

  it('cli discover - nothing announced on the port: an empty list, exit 1 (as slots: nothing found is not a success)', async () => {
    const port = String(mdnsPort());
    const [human, json] = await Promise.all([
      runCliProcess(['discover', '--mdns-interface', '127.0.0.1', '--mdns-port', port, '--timeout', '400']),
      runCliProcess(['discover', '--mdns-interface', '127.0.0.1', '--mdns-port', port, '--timeout', '400', '--json']),
    ]);
    expect(human.code, human.stderr).toBe(1);
    expect(human.stdout).toContain('No ESPHome node answered in 0.4 s');
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toEqual([]);
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
    expect(results[1]!.stdout).toContain('"allocated":[{"mac","name"(advertised, heard only with --subscribe),"owned","heldMs"');
    expect(results[1]!.stdout).toContain('"orphans":[{"proxy","mac","released"}]');
    expect(results[2]!.stdout).toContain('"verdict":{"action":"connect|waitForSlot|notFound|noUsableProxy"');
    const top = await runCliProcess(['--help']);
    for (const name of ['demo', 'discover', 'slots', 'explain']) expect(top.stdout).toContain(`  ${name} `);
  });
});
