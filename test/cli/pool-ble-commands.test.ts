import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AttemptJson } from '../../src/cli/device-session.js';
import { MdnsAdvertiser, simulatedProxyTxt } from '../../src/fixture-server/mdns-advertiser.js';
import { ADVICE } from '../../src/pool/retry-policy.js';
import { type CliResult, type CliServer, runCliProcess, SUBSCRIPTION_NOTE, startCliServer, withoutNote } from '../helpers/cli.js';
import { TEST_PSK } from '../helpers/fixture.js';
import { FIXTURES_DIR } from '../helpers/fixtures.js';

// `serve --fleet 3` cycles kitchen, living-room, garage (fixtures/profiles/README.md): the espresso machine is
// heard by proxy-1 (kitchen, -58 dBm) and faintly by proxy-2 (living-room, -84 dBm), not by proxy-3; the
// Tilt hydrometer only by proxy-3 (garage).
const ESPRESSO = '34:AB:95:FD:29:AE';
const TILT = '04:A3:16:9B:09:5A';
// The demo peripheral of fixtures/profiles/default.json, on the single-node servers below.
const DEMO = 'C0:FF:EE:00:00:01';
const DEMO_NAME_HEX = Buffer.from('esphome-ble-demo').toString('hex');
const COUNTER_UUID = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b04';
const UNHEARD = '11:22:33:44:55:66';

interface Listening {
  port: number;
  name: string;
  mac: string;
  encryption: 'noise' | 'plaintext';
}

interface ScanDeviceJson {
  mac: string;
  name: string | null;
  rssi: number;
  count: number;
  proxies: Record<string, number>;
}

/** Three simulated proxies with different neighbourhoods. */
let fleet: CliServer;
/** Default profile, every slot held by another client: the pool must look elsewhere. */
let full: CliServer;
/** Default profile behind Noise, 15 dB fainter than the others. */
let vault: CliServer;
/** Default profile whose demo peripheral always refuses the link with 0x100 (no controller resources). */
let flaky: CliServer;
let tmp: string;
/** --config FILE naming `full` (plaintext) and `vault` with its key. */
let fullAndVault: string;
/** --config FILE naming `flaky` (plaintext) and `vault` with its key. */
let flakyAndVault: string;

function listening(server: CliServer): Listening[] {
  return server.lines as Listening[];
}

function portOf(server: CliServer): number {
  return listening(server)[0]!.port;
}

function idOf(server: CliServer, index = 0): string {
  return `127.0.0.1:${listening(server)[index]!.port}`;
}

function proxyArgs(...servers: CliServer[]): string[] {
  return servers.flatMap((s) => listening(s).flatMap((l) => ['--proxy', `127.0.0.1:${l.port}`]));
}

function jsonLines(result: CliResult): Array<Record<string, unknown>> {
  expect(result.stdout.trim(), result.stderr).not.toBe('');
  return result.stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

function expectOk(result: CliResult): void {
  expect(result.code, result.stderr).toBe(0);
}

function mdnsPort(): number {
  return 20_000 + Math.floor(Math.random() * 40_000);
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'esphome-ble-pool-ble-'));
  const profile = JSON.parse(await readFile(join(FIXTURES_DIR, 'profiles/default.json'), 'utf8')) as {
    name: string;
    peripherals: Array<{ mac: string; behaviour?: Record<string, unknown> }>;
  };
  profile.name = 'flaky';
  const demo = profile.peripherals.find((p) => p.mac === DEMO)!;
  demo.behaviour = { ...demo.behaviour, connectError: 0x100 };
  const flakyProfile = join(tmp, 'flaky.json');
  await writeFile(flakyProfile, JSON.stringify(profile));
  [fleet, full, vault, flaky] = await Promise.all([
    startCliServer(['--fleet', '3', '--port', '0'], 3),
    startCliServer(['--port', '0', '--name', 'full', '--profile', 'default', '--slots-busy', '3']),
    startCliServer(['--port', '0', '--name', 'vault', '--profile', 'default', '--psk', TEST_PSK, '--rssi-offset=-15']),
    startCliServer(['--port', '0', '--name', 'flaky', '--profile', flakyProfile]),
  ]);
  const vaultEntry = { host: '127.0.0.1', port: portOf(vault), name: 'vault' };
  fullAndVault = join(tmp, 'full-and-vault.json');
  flakyAndVault = join(tmp, 'flaky-and-vault.json');
  await writeFile(
    fullAndVault,
    JSON.stringify({ proxies: [{ host: '127.0.0.1', port: portOf(full) }, vaultEntry], keys: { vault: TEST_PSK } }),
  );
  await writeFile(
    flakyAndVault,
    JSON.stringify({ proxies: [{ host: '127.0.0.1', port: portOf(flaky) }, vaultEntry], keys: { vault: TEST_PSK } }),
  );
});

afterAll(async () => {
  await Promise.all([fleet?.stop(), full?.stop(), vault?.stop(), flaky?.stop()]);
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('cli pool ble commands', () => {
  it('cli pool scan - merges every proxy per device with the proxies that heard it and the best RSSI', async () => {
    // One at a time: a proxy serves a single Bluetooth subscriber (as ESPHome does), so two CLI runs on the
    // same proxies at once would push each other out.
    const json = await runCliProcess(['scan', ...proxyArgs(fleet), '--duration', '1', '--json']);
    const human = await runCliProcess(['scan', ...proxyArgs(fleet), '--duration', '1']);
    expectOk(json);
    const out = jsonLines(json);
    expect(out).toHaveLength(1);
    const devices = out[0] as unknown as ScanDeviceJson[];
    const macs = devices.map((d) => d.mac);
    expect(new Set(macs).size).toBe(macs.length);
    const espresso = devices.find((d) => d.mac === ESPRESSO)!;
    expect(espresso).toMatchObject({ name: 'LM-espresso' });
    expect(Object.keys(espresso.proxies).sort()).toEqual([idOf(fleet, 0), idOf(fleet, 1)].sort());
    expect(espresso.proxies[idOf(fleet, 0)]).toBeGreaterThan(espresso.proxies[idOf(fleet, 1)]!);
    expect(espresso.rssi).toBe(Math.max(...Object.values(espresso.proxies)));
    expect(espresso.count).toBeGreaterThanOrEqual(2);
    expect(Object.keys(devices.find((d) => d.mac === TILT)!.proxies)).toEqual([idOf(fleet, 2)]);
    // Strongest first, by the best RSSI.
    const rssis = devices.map((d) => d.rssi);
    expect(rssis).toEqual([...rssis].sort((a, b) => b - a));

    expectOk(human);
    const lines = human.stdout.split('\n');
    expect(lines[0]).toMatch(/^mac\s+type\s+rssi\s+name\s+services\s+manufacturer\s+count\s+proxies$/);
    expect(lines.find((l) => l.startsWith(ESPRESSO))).toMatch(/LM-espresso\s+.*\s+\d+\s+proxy-1 -\d+, proxy-2 -\d+$/);
    expect(lines.find((l) => l.startsWith(TILT))).toMatch(/\s+proxy-3 -\d+$/);
    expect(human.stdout).toMatch(/\d+ devices, \d+ reports in \d+\.\d s via 3 proxies/);
  });

  it('cli pool read - connects through the best proxy that hears the device and says which one', async () => {
    const json = await runCliProcess(['read', ESPRESSO, '2a00', ...proxyArgs(fleet), '--json']);
    expectOk(json);
    const [line] = jsonLines(json);
    expect(line).toMatchObject({
      mac: ESPRESSO,
      handle: 3,
      kind: 'characteristic',
      text: 'LM-espresso',
      proxy: idOf(fleet, 0),
    });
    const attempts = line!.attempts as AttemptJson[];
    expect(attempts).toHaveLength(1);
    expect(attempts[0]).toMatchObject({ attempt: 1, proxy: idOf(fleet, 0), code: null, reason: null, ok: true });
    expect(attempts[0]!.rssi).toBeLessThan(-50);

    const human = await runCliProcess(['read', ESPRESSO, '2a00', ...proxyArgs(fleet)]);
    expectOk(human);
    expect(human.stdout).toMatch(/^0x0003\s+2a00 Device Name\s+[0-9a-f]+\s+"LM-espresso"$/m);
    expect(withoutNote(human.stderr).trim()).toMatch(
      new RegExp(`^Connected to ${ESPRESSO} via proxy-1 \\(${idOf(fleet, 0)}\\) \\(\\d+ ms\\)$`),
    );
    // read needs the subscription: one note names the three proxies it holds and what that means for Home Assistant.
    expect(human.stderr).toMatch(SUBSCRIPTION_NOTE);
    for (const i of [0, 1, 2]) expect(human.stderr).toContain(`proxy-${i + 1} (${idOf(fleet, i)})`);
    // Newest wins: Home Assistant's links report to us meanwhile and drop when we exit; the pool takes it back if HA resubscribes.
    expect(human.stderr).toContain('newest wins, 2026.7+: taken from Home Assistant: the events of its open links come to this command');
    expect(human.stderr).toContain("drops every link, Home Assistant's included");
    expect(human.stderr).toContain('this command takes it back (with backoff)');
  });

  it('cli pool read - a proxy without free slots is passed over; --config gives the Noise key of the other', async () => {
    const json = await runCliProcess(['read', DEMO, '2a00', '--config', fullAndVault, '--json']);
    expectOk(json);
    // `full` hears the demo 15 dB louder than `vault`, but every one of its slots is taken.
    expect(jsonLines(json)).toEqual([
      expect.objectContaining({
        mac: DEMO,
        handle: 3,
        value: DEMO_NAME_HEX,
        proxy: 'vault',
        attempts: [expect.objectContaining({ proxy: 'vault', ok: true })],
      }),
    ]);
    const human = await runCliProcess(['write', DEMO, '14', '6869', '--config', fullAndVault]);
    expectOk(human);
    expect(human.stdout.trim()).toBe(`Wrote 2 bytes to 0x000e (a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b02) on ${DEMO} (acknowledged)`);
    expect(human.stderr).toMatch(new RegExp(`Connected to ${DEMO} via vault \\(\\d+ ms\\)`));
  });

  it('cli pool read - a refused connect fails over to the next proxy and the timeline shows both attempts', async () => {
    const json = await runCliProcess(['read', DEMO, '2a00', '--config', flakyAndVault, '--json']);
    expectOk(json);
    const [line] = jsonLines(json);
    expect(line).toMatchObject({ handle: 3, text: 'esphome-ble-demo', proxy: 'vault' });
    expect(line!.attempts).toEqual([
      expect.objectContaining({
        attempt: 1,
        proxy: idOf(flaky),
        code: 'ESPAPI_ERR_BLE_CONNECT',
        reason: 0x100,
        ok: false,
        failure: 'controllerRefused',
      }),
      expect.objectContaining({ attempt: 2, proxy: 'vault', code: null, ok: true }),
    ]);

    const human = await runCliProcess(['read', DEMO, '2a00', '--config', flakyAndVault]);
    expectOk(human);
    const stderr = withoutNote(human.stderr).trim().split('\n');
    expect(stderr).toHaveLength(1);
    expect(stderr[0]).toMatch(
      new RegExp(
        `^Connected to ${DEMO} via vault on attempt 2; #1 flaky \\(${idOf(flaky)}\\): ESPAPI_ERR_BLE_CONNECT 0x100 ESP_GATT_CONN_CONN_CANCEL, controllerRefused \\(\\d+ ms\\), #2 vault: ok \\(\\d+ ms\\)$`,
      ),
    );
  });

  it('cli pool gatt and notify - the tree and the notifications carry the proxy; $ESPHOME_BLE_PSK keys --proxy', async () => {
    const gatt = await runCliProcess(['gatt', ESPRESSO, ...proxyArgs(fleet), '--json']);
    expectOk(gatt);
    const [tree] = jsonLines(gatt) as unknown as [
      { mac: string; proxy: string; attempts: AttemptJson[]; mtu: number; services: unknown[] },
    ];
    expect(tree).toMatchObject({ mac: ESPRESSO, proxy: idOf(fleet, 0), mtu: 247 });
    expect(tree.attempts).toMatchObject([{ proxy: idOf(fleet, 0), ok: true }]);
    expect(tree.services.length).toBeGreaterThan(2);

    const notify = await runCliProcess(['notify', DEMO, COUNTER_UUID, '--count', '2', ...proxyArgs(vault), '--json'], {
      env: { ESPHOME_BLE_PSK: TEST_PSK },
    });
    expectOk(notify);
    const lines = jsonLines(notify);
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).toMatchObject({
        mac: DEMO,
        handle: 18,
        uuid: COUNTER_UUID,
        value: expect.stringMatching(/^0[1-4]$/),
        proxy: idOf(vault),
      });
    }
  });

  it('cli pool connector errors - a device no proxy hears: one line with the advice, exit 1', async () => {
    const notFound = await runCliProcess(['read', UNHEARD, '2a00', ...proxyArgs(fleet), '--attempts', '1', '--listen-for', '0']);
    const notFoundJson = await runCliProcess(['gatt', UNHEARD, ...proxyArgs(fleet), '--attempts', '2', '--listen-for', '0', '--json']);
    expect(notFound.code).toBe(1);
    expect(notFound.stdout).toBe('');
    const stderr = withoutNote(notFound.stderr).trim().split('\n');
    expect(stderr).toHaveLength(1);
    expect(stderr[0]).toMatch(new RegExp(`^error ESPAPI_ERR_DEVICE_NOT_FOUND: ${UNHEARD} was not found by any proxy`));
    expect(stderr[0]).toContain(ADVICE.notFound);

    expect(notFoundJson.code).toBe(1);
    const [error] = jsonLines(notFoundJson) as Array<{ error: Record<string, unknown> }>;
    expect(error!.error).toMatchObject({ code: 'ESPAPI_ERR_DEVICE_NOT_FOUND', name: 'DeviceNotFoundError', advice: ADVICE.notFound });
    expect(error!.error.attempts).toEqual([
      expect.objectContaining({ attempt: 1, proxy: null, code: 'ESPAPI_ERR_DEVICE_NOT_FOUND', ok: false }),
      expect.objectContaining({ attempt: 2, proxy: null, code: 'ESPAPI_ERR_DEVICE_NOT_FOUND', ok: false }),
    ]);
  });

  it('cli pool connector errors - every proxy that hears the device is full: out of slots with the advice, exit 1', async () => {
    const noSlot = await runCliProcess(['read', DEMO, '2a00', ...proxyArgs(full), '--attempts', '1', '--json']);
    expect(noSlot.code).toBe(1);
    expect(jsonLines(noSlot)).toEqual([
      { error: expect.objectContaining({ code: 'ESPAPI_ERR_OUT_OF_SLOTS', advice: ADVICE.outOfSlots, attempts: [expect.anything()] }) },
    ]);
  });

  it('cli pool - no reachable proxy exits 1 naming why; mixing --host with pool options exits 2', async () => {
    const results = await Promise.all([
      runCliProcess(['scan', '--proxy', '127.0.0.1:1', '--timeout', '500']),
      runCliProcess(['read', DEMO, '2a00', '--host', '127.0.0.1', '--proxy', '127.0.0.1:1']),
      runCliProcess(['gatt', DEMO, '--port', '1']),
      runCliProcess(['scan', '--password', 'pw', '--proxy', '127.0.0.1:1']),
      runCliProcess(['write', DEMO, '14', '01', '--address-type', 'random', '--proxy', '127.0.0.1:1']),
      runCliProcess(['notify', DEMO, '18', '--attempts', '0', '--proxy', '127.0.0.1:1']),
      runCliProcess(['read', DEMO, '3', '--listen-for=-5', '--proxy', '127.0.0.1:1']),
      runCliProcess(['scan', '--host', '127.0.0.1', '--mdns-port', '5353']),
    ]);
    const [unreachable, ...usage] = results;
    expect(unreachable!.code).toBe(1);
    expect(unreachable!.stderr).toMatch(/^error ESPAPI_ERR_NO_PROXY: No proxy is usable: 127\.0\.0\.1:1 is offline \(/);
    for (const result of usage) {
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain('Usage: esphome-ble');
    }
    expect(usage[0]!.stderr).toContain('--proxy is a pool option and cannot be combined with --host');
    expect(usage[1]!.stderr).toContain('--port only goes with --host');
    expect(usage[2]!.stderr).toContain('--password only goes with --host');
    expect(usage[3]!.stderr).toContain('--address-type only goes with --host');
    expect(usage[4]!.stderr).toContain('--attempts must be a whole number, at least 1');
    expect(usage[5]!.stderr).toContain('--listen-for must be a duration such as 500ms');
    expect(usage[6]!.stderr).toContain('--mdns-port is a pool option');
  });

  it('cli pool read - without a named proxy the pool comes from mDNS (loopback only)', async () => {
    const port = mdnsPort();
    const advertiser = new MdnsAdvertiser({ interface: '127.0.0.1', bind: '0.0.0.0', port });
    try {
      for (const node of listening(fleet)) {
        advertiser.publish({
          name: node.name,
          port: node.port,
          host: '127.0.0.1',
          txt: simulatedProxyTxt({ mac: node.mac, encrypted: false }),
        });
      }
      const result = await runCliProcess([
        'read',
        ESPRESSO,
        '2a00',
        '--mdns-interface',
        '127.0.0.1',
        '--mdns-port',
        String(port),
        '--timeout',
        '1500',
        '--json',
      ]);
      expectOk(result);
      // Discovered proxies are known by their node name.
      expect(jsonLines(result)).toEqual([expect.objectContaining({ text: 'LM-espresso', proxy: 'proxy-1' })]);
    } finally {
      await advertiser.close();
    }
  });

  it('cli pool ble commands - --help documents both paths, --json and --timeout', async () => {
    const results = await Promise.all(['scan', 'gatt', 'read', 'write', 'notify'].map((name) => runCliProcess([name, '--help'])));
    for (const result of results) {
      expectOk(result);
      for (const text of ['--host', '--proxy', '--config', '--json', '--timeout', 'ESPHOME_BLE_PSK', 'mDNS'])
        expect(result.stdout).toContain(text);
    }
    expect(results[0]!.stdout).toContain('"proxies":{"<proxy id>":rssi}');
    for (const result of results.slice(1)) {
      expect(result.stdout).toContain('"attempts":[{"attempt"');
      expect(result.stdout).toContain('--attempts');
    }
  });
});
