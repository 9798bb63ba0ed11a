import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import type { Output } from '../../src/cli/output.js';
import { type CliResult, type CliServer, runCliProcess, SUBSCRIPTION_NOTE, startCliServer, withoutNote } from '../helpers/cli.js';
import { OTHER_PSK, TEST_PSK } from '../helpers/fixture.js';

// Values from fixtures/profiles/default.json (see its README): the demo peripheral and a real advertiser.
const DEMO = 'C0:FF:EE:00:00:01';
const TILT = '04:A3:16:9B:09:5A';
const DEMO_SERVICE = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b00';
const COUNTER_UUID = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b04';
const SECRET_UUID = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b05';
const DEVICE_NAME_HEX = Buffer.from('esphome-ble-demo').toString('hex');

interface CharacteristicJson {
  handle: number;
  properties: string[];
  descriptors: unknown[];
  error?: unknown;
}

interface GattJson {
  mac: string;
  mtu: number;
  services: Array<{ uuid: string; handle: number; characteristics: CharacteristicJson[] }>;
}

let plain: CliServer;
let noise: CliServer;
let plainArgs: string[];
let noiseArgs: string[];

function portOf(server: CliServer): string {
  return String((server.lines[0] as { port: number }).port);
}

function jsonLines(result: CliResult): Array<Record<string, unknown>> {
  return result.stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Runs the CLI in this process with captured output (for paths that never open a socket). */
async function runInProcess(args: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const out: Output = {
    isTty: false,
    line: (text = '') => {
      stdout += `${text}\n`;
    },
    error: (text) => {
      stderr += `${text}\n`;
    },
    json: (value) => {
      stdout += `${JSON.stringify(value)}\n`;
    },
  };
  const code = await runCli(args, out);
  return { code, stdout, stderr };
}

function expectUsage(result: CliResult, text: string): void {
  expect(result.code, result.stderr).toBe(2);
  expect(result.stderr).toContain(text);
  expect(result.stderr).toContain('Usage: esphome-ble');
}

beforeAll(async () => {
  [plain, noise] = await Promise.all([startCliServer(['--port', '0']), startCliServer(['--port', '0', '--psk', TEST_PSK])]);
  plainArgs = ['--host', '127.0.0.1', '--port', portOf(plain)];
  noiseArgs = ['--host', '127.0.0.1', '--port', portOf(noise), '--psk', TEST_PSK];
});

afterAll(async () => {
  await Promise.all([plain?.stop(), noise?.stop()]);
});

describe('cli single-proxy', () => {
  it('cli single-proxy - every command has --help with its JSON shape (in process)', async () => {
    const top = await runInProcess(['--help']);
    for (const name of ['scan', 'gatt', 'read', 'write', 'notify']) {
      expect(top.stdout).toContain(`  ${name} `);
      const help = await runInProcess([name, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain(`Usage: esphome-ble ${name}`);
      expect(help.stdout).toContain('--json');
      expect(help.stdout).toContain('--timeout');
    }
    expect((await runInProcess(['scan', '--help'])).stdout).toContain('ONE JSON array');
  });

  it('cli single-proxy - bad arguments exit 2 before connecting (in process)', async () => {
    // Port 1 refuses connections: reaching the network would fail with exit 1, not 2.
    const proxy = ['--host', '127.0.0.1', '--port', '1'];
    expectUsage(await runInProcess(['gatt', '11:22:33', ...proxy]), 'Not a Bluetooth address');
    expectUsage(await runInProcess(['gatt', DEMO, 'extra', ...proxy]), 'unexpected argument "extra"');
    expectUsage(await runInProcess(['read', DEMO, '0x10000', ...proxy]), 'Handle 0x10000 is out of range');
    expectUsage(await runInProcess(['read', DEMO, 'zz', ...proxy]), 'Not a Bluetooth UUID');
    expectUsage(await runInProcess(['read', DEMO, ...proxy]), 'a characteristic UUID or handle is required');
    expectUsage(await runInProcess(['write', DEMO, '14', 'abc', ...proxy]), 'Not hex bytes');
    expectUsage(await runInProcess(['write', DEMO, '14', ...proxy]), 'the value to write (hex bytes) is required');
    expectUsage(await runInProcess(['notify', DEMO, '18', '--count', '0', ...proxy]), '--count must be a whole number, at least 1');
    expectUsage(await runInProcess(['notify', DEMO, '18', '--duration', '0', ...proxy]), '--duration must be longer than 0');
    expectUsage(await runInProcess(['read', DEMO, '3', '--address-type', 'weird', ...proxy]), '--address-type must be');
    expectUsage(await runInProcess(['scan', '--timeout', 'soon', ...proxy]), '--timeout must be a duration such as 500ms');
    // Without --host the pool is used, where --port has no meaning.
    expectUsage(await runInProcess(['scan', '--port', '1']), '--port only goes with --host');
  });

  it('cli single-proxy - scan merges reports per address (table over plaintext, one JSON array over Noise)', async () => {
    const [human, json] = await Promise.all([
      runCliProcess(['scan', ...plainArgs, '--duration', '1.2']),
      runCliProcess(['scan', ...noiseArgs, '--duration', '1.2', '--json']),
    ]);
    expect(human.code, human.stderr).toBe(0);
    const lines = human.stdout.split('\n');
    expect(lines[0]).toMatch(/^mac\s+type\s+rssi\s+name\s+services\s+manufacturer\s+count$/);
    const demoRows = lines.filter((l) => l.startsWith(DEMO));
    expect(demoRows).toHaveLength(1);
    expect(demoRows[0]).toMatch(new RegExp(`^${DEMO}\\s+random\\s+-\\d+\\s+esphome-ble-demo\\s+${DEMO_SERVICE}\\s+-\\s+\\d+$`));
    expect(lines.find((l) => l.startsWith(TILT))).toMatch(/public\s+-\d+\s+-\s+-\s+0x004c\s+\d+$/);
    expect(human.stdout).toMatch(/\d+ devices, \d+ reports in \d+\.\d s via esphome-ble-proxy/);

    expect(json.code, json.stderr).toBe(0);
    const out = jsonLines(json);
    expect(out).toHaveLength(1);
    const devices = out[0] as unknown as Array<Record<string, unknown>>;
    expect(Array.isArray(devices)).toBe(true);
    const macs = devices.map((d) => d.mac);
    expect(new Set(macs).size).toBe(macs.length);
    const demo = devices.find((d) => d.mac === DEMO)!;
    // The name comes from the scan response, the service UUID from the advertisement: merged into one entry.
    expect(demo).toMatchObject({ addressType: 'random', name: 'esphome-ble-demo', serviceUuids: [DEMO_SERVICE], manufacturerIds: [] });
    expect(demo.count as number).toBeGreaterThanOrEqual(2);
    expect(typeof demo.rssi).toBe('number');
    expect(devices.find((d) => d.mac === TILT)).toMatchObject({
      addressType: 'public',
      manufacturerIds: ['0x004c'],
      manufacturerData: { '0x004c': expect.stringMatching(/^0215a495bb10/) },
    });
  });

  it('cli single-proxy - gatt prints the service tree, values and per-characteristic GATT errors', async () => {
    const [human, json] = await Promise.all([
      runCliProcess(['gatt', DEMO, ...plainArgs]),
      runCliProcess(['gatt', DEMO.toLowerCase(), ...noiseArgs, '--json']),
    ]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain(`${DEMO} via esphome-ble-proxy (127.0.0.1:${portOf(plain)}): MTU 247, 3 services, 9 characteristics`);
    const rows = human.stdout.split('\n');
    expect(rows.some((r) => /^handle\s+attribute\s+properties\s+value\s+text$/.test(r))).toBe(true);
    expect(rows.find((r) => r.startsWith('0x0001'))).toMatch(/service 1800 Generic Access$/);
    expect(rows.find((r) => r.startsWith('0x0003'))).toMatch(
      new RegExp(`2a00 Device Name\\s+read\\s+${DEVICE_NAME_HEX}\\s+"esphome-ble-demo"$`),
    );
    expect(rows.find((r) => r.startsWith('0x0012'))).toMatch(/4b04\s+read,notify\s+0[0-4]$/);
    expect(rows.find((r) => r.startsWith('0x0014'))).toMatch(/2901 User Description\s+436f756e746572\s+"Counter"$/);
    expect(rows.find((r) => r.startsWith('0x0016'))).toMatch(/4b05\s+read\s+error ESP_GATT_INSUF_AUTHENTICATION \(5\)$/);
    expect(rows.find((r) => r.startsWith('0x000e'))).toMatch(/4b02\s+write$/);

    expect(json.code, json.stderr).toBe(0);
    const [tree] = jsonLines(json) as unknown as [GattJson];
    expect(tree.mac).toBe(DEMO);
    expect(tree.mtu).toBe(247);
    expect(tree.services.map((s) => s.handle)).toEqual([1, 6, 10]);
    const chars = tree.services.flatMap((s) => s.characteristics);
    expect(chars.find((c) => c.handle === 3)).toEqual({
      uuid: '00002a00-0000-1000-8000-00805f9b34fb',
      handle: 3,
      properties: ['read'],
      value: DEVICE_NAME_HEX,
      text: 'esphome-ble-demo',
      descriptors: [],
    });
    const counter = chars.find((c) => c.handle === 18)!;
    expect(counter.properties).toEqual(['read', 'notify']);
    expect(counter.descriptors).toEqual([
      { uuid: '00002902-0000-1000-8000-00805f9b34fb', handle: 19, value: '0000', text: null },
      { uuid: '00002901-0000-1000-8000-00805f9b34fb', handle: 20, value: '436f756e746572', text: 'Counter' },
    ]);
    expect(chars.find((c) => c.handle === 22)?.error).toMatchObject({
      code: 'ESPAPI_ERR_GATT',
      status: 5,
      statusName: 'ESP_GATT_INSUF_AUTHENTICATION',
    });
    expect(chars.find((c) => c.handle === 14)).not.toHaveProperty('value');
  });

  it('cli single-proxy - read by UUID, decimal and hex handle, descriptor handle; --json lines', async () => {
    const human = await runCliProcess(['read', DEMO, '2a00', '0x12', '20', ...plainArgs]);
    expect(human.code, human.stderr).toBe(0);
    const rows = human.stdout.trim().split('\n');
    expect(rows[0]).toMatch(/^handle\s+attribute\s+value\s+text$/);
    expect(rows[2]).toMatch(new RegExp(`^0x0003\\s+2a00 Device Name\\s+${DEVICE_NAME_HEX}\\s+"esphome-ble-demo"$`));
    expect(rows[3]).toMatch(new RegExp(`^0x0012\\s+${COUNTER_UUID}\\s+0[0-4]$`));
    expect(rows[4]).toMatch(/^0x0014\s+2901 User Description\s+436f756e746572\s+"Counter"$/);

    const json = await runCliProcess(['read', DEMO, '3', COUNTER_UUID, '0x14', ...noiseArgs, '--json']);
    expect(json.code, json.stderr).toBe(0);
    const lines = jsonLines(json);
    expect(lines[0]).toEqual({
      mac: DEMO,
      handle: 3,
      uuid: '00002a00-0000-1000-8000-00805f9b34fb',
      kind: 'characteristic',
      value: DEVICE_NAME_HEX,
      text: 'esphome-ble-demo',
    });
    expect(lines[1]).toMatchObject({ handle: 18, uuid: COUNTER_UUID, kind: 'characteristic', value: expect.stringMatching(/^0[0-4]$/) });
    expect(lines[2]).toMatchObject({ handle: 20, kind: 'descriptor', value: '436f756e746572', text: 'Counter' });
  });

  it('cli single-proxy - a read the peripheral refuses is a GATT error with its status name (exit 1)', async () => {
    const [human, json] = await Promise.all([
      runCliProcess(['read', DEMO, SECRET_UUID, ...plainArgs]),
      runCliProcess(['read', DEMO, '2a00', '22', ...noiseArgs, '--json']),
    ]);
    expect(human.code).toBe(1);
    expect(human.stdout).toBe('');
    expect(withoutNote(human.stderr).trim()).toMatch(
      new RegExp(`^error ESPAPI_ERR_GATT: GATT error on ${DEMO} handle 0x0016 .*ESP_GATT_INSUF_AUTHENTICATION \\(5\\)`),
    );
    // The single-proxy path says what it holds too (before it failed): the proxy by name and address.
    expect(human.stderr).toMatch(SUBSCRIPTION_NOTE);
    expect(human.stderr).toMatch(/subscription of esphome-ble-proxy \(127\.0\.0\.1:\d+\) \(newest wins/);
    expect(json.code).toBe(1);
    const lines = jsonLines(json);
    expect(lines[0]).toMatchObject({ handle: 3, text: 'esphome-ble-demo' });
    expect(lines[1]).toMatchObject({
      mac: DEMO,
      handle: 22,
      uuid: SECRET_UUID,
      error: { code: 'ESPAPI_ERR_GATT', name: 'GattError', status: 5, statusName: 'ESP_GATT_INSUF_AUTHENTICATION' },
    });
  });

  it('cli single-proxy - write with and without response; the values read back', async () => {
    const [acked, refused] = await Promise.all([
      runCliProcess(['write', DEMO, 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b02', '68:69', ...noiseArgs]),
      runCliProcess(['write', DEMO, '12', '01', ...plainArgs]),
    ]);
    expect(acked.code, acked.stderr).toBe(0);
    expect(acked.stdout.trim()).toBe(`Wrote 2 bytes to 0x000e (a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b02) on ${DEMO} (acknowledged)`);
    const command = await runCliProcess(['write', DEMO, '16', '0xbeef', '--no-response', ...noiseArgs, '--json']);
    expect(command.code, command.stderr).toBe(0);
    expect(jsonLines(command)).toEqual([
      {
        mac: DEMO,
        handle: 16,
        uuid: 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b03',
        kind: 'characteristic',
        value: 'beef',
        bytes: 2,
        withResponse: false,
      },
    ]);
    // 14 echoes into 12 and 16 into 18 (profile `echoTo`).
    const back = await runCliProcess(['read', DEMO, '12', '18', ...noiseArgs, '--json']);
    expect(jsonLines(back).map((l) => [l.handle, l.value, l.text])).toEqual([
      [12, '6869', 'hi'],
      [18, 'beef', null],
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/ESPAPI_ERR_GATT: .*ESP_GATT_WRITE_NOT_PERMIT \(3\)/);
  });

  it('cli single-proxy - notify prints each notification until --count or --duration', async () => {
    const [human, json] = await Promise.all([
      runCliProcess(['notify', DEMO, '0x12', '--count', '2', ...plainArgs]),
      runCliProcess(['notify', DEMO, COUNTER_UUID, '--duration', '1.3', ...noiseArgs, '--json']),
    ]);
    expect(human.code, human.stderr).toBe(0);
    const rows = human.stdout.trim().split('\n');
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row).toMatch(/^\d\d:\d\d:\d\d\.\d{3}\s+\+\d+\.\d{3}s\s+0[1-4]$/);
    expect(human.stderr).toContain('2 notifications in');

    expect(json.code, json.stderr).toBe(0);
    const lines = jsonLines(json);
    // One counter value every 500 ms.
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines.length).toBeLessThanOrEqual(3);
    for (const line of lines) {
      expect(line).toMatchObject({ mac: DEMO, handle: 18, uuid: COUNTER_UUID, value: expect.stringMatching(/^0[1-4]$/), text: null });
      expect(Date.parse(line.time as string)).not.toBeNaN();
      expect(typeof line.elapsedMs).toBe('number');
    }
  });

  it('cli single-proxy - info fails with the typed error’s code and message: a wrong key and no key for a Noise device both exit 3', async () => {
    const [wrongKey, noKey] = await Promise.all([
      runCliProcess(['info', '--host', '127.0.0.1', '--port', portOf(noise), '--psk', OTHER_PSK]),
      runCliProcess(['info', '--host', '127.0.0.1', '--port', portOf(noise), '--json']),
    ]);
    expect(wrongKey.code, wrongKey.stderr).toBe(3);
    expect(wrongKey.stderr).toMatch(/^error ESPAPI_ERR_INVALID_KEY: /);
    expect(wrongKey.stdout).toBe('');
    expect(noKey.code, noKey.stderr).toBe(3);
    expect(jsonLines(noKey)).toEqual([{ error: expect.objectContaining({ code: 'ESPAPI_ERR_ENCRYPTION_REQUIRED' }) }]);
  });

  it('cli single-proxy - wrong key exits 3, an unknown device exits 1, notify on a non-notifying characteristic exits 2', async () => {
    const [wrongKey, wrongKeyJson, unknown, notNotifiable] = await Promise.all([
      runCliProcess(['gatt', DEMO, '--host', '127.0.0.1', '--port', portOf(noise), '--psk', OTHER_PSK]),
      runCliProcess(['scan', '--host', '127.0.0.1', '--port', portOf(noise), '--json'], { env: { ESPHOME_BLE_PSK: OTHER_PSK } }),
      runCliProcess(['read', '11:22:33:44:55:66', '2a00', '--address-type', 'public', ...plainArgs, '--json']),
      runCliProcess(['notify', DEMO, '14', ...noiseArgs]),
    ]);
    expect(notNotifiable.code).toBe(2);
    expect(notNotifiable.stderr).toContain('supports neither notify nor indicate');
    expect(wrongKey.code, wrongKey.stderr).toBe(3);
    expect(wrongKey.stderr).toMatch(/^error ESPAPI_ERR_INVALID_KEY: /);
    expect(wrongKeyJson.code).toBe(3);
    expect(jsonLines(wrongKeyJson)).toEqual([{ error: expect.objectContaining({ code: 'ESPAPI_ERR_INVALID_KEY' }) }]);
    expect(unknown.code).toBe(1);
    expect(jsonLines(unknown)).toEqual([
      { error: expect.objectContaining({ code: 'ESPAPI_ERR_BLE_CONNECT', message: expect.stringContaining('11:22:33:44:55:66') }) },
    ]);
  });
});
