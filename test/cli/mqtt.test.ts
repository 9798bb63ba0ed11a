import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedBroker } from '../../src/mqtt/embedded-broker.js';
import { CLI, cliEnv, runCliProcess } from '../helpers/cli.js';
import { DEMO_MAC, profileWithDevices, startTestFleet } from '../helpers/fleet.js';
import { findTool, Mosquitto, requireTools } from '../helpers/mosquitto.js';
import { TestClient } from '../helpers/mqtt.js';

const run = promisify(execFile);
/** Checked from outside with Mosquitto's own clients. */
const TOOLS = requireTools(['mosquitto', 'mosquitto_sub', 'mosquitto_pub']);
const closers: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** Starts `esphome-ble mqtt … --json` and resolves with its `started` event. */
async function startGatewayCli(args: string[]): Promise<{ child: ChildProcess; started: Record<string, unknown>; lines: unknown[] }> {
  const child = spawn(process.execPath, [CLI, 'mqtt', ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv() });
  const lines: unknown[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const reader = createInterface({ input: child.stdout! });
  closers.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const closed = once(child, 'close');
      child.kill('SIGTERM');
      await closed;
    }
    reader.close();
  });
  const started = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mqtt did not start: ${stderr}`)), 8_000);
    reader.on('line', (line) => {
      const event = JSON.parse(line) as Record<string, unknown>;
      lines.push(event);
      if (event.event === 'started') {
        clearTimeout(timer);
        resolve(event);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`mqtt exited with ${code}: ${stderr}`));
    });
  });
  return { child, started, lines };
}

async function fleet(): Promise<string> {
  const f = await startTestFleet(1, await profileWithDevices(0));
  closers.push(() => f.close());
  return `127.0.0.1:${f.nodes[0]!.server.address.port}`;
}

describe('cli mqtt', () => {
  it('cli mqtt - usage errors exit 2, a listener beyond loopback without credentials is refused', async () => {
    const [extra, badListen, wildcardWrite, help, open] = await Promise.all([
      runCliProcess(['mqtt', 'now']),
      runCliProcess(['mqtt', '--proxy', '127.0.0.1:1', '--broker-listen', 'nowhere']),
      runCliProcess(['mqtt', '--proxy', '127.0.0.1:1', '--allow-write', '*']),
      runCliProcess(['mqtt', '--help']),
      runCliProcess(['mqtt', '--proxy', '127.0.0.1:1', '--broker-listen', '0.0.0.0:0', '--json']),
    ]);
    expect(extra.code).toBe(2);
    expect(badListen.code).toBe(2);
    expect(wildcardWrite.code).toBe(2);
    expect(wildcardWrite.stderr).toContain('allowWrite takes MAC addresses only');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--allow-read');
    expect(open.code).toBe(2); // the command line must change: a usage exit, as for serve and relay
    expect(JSON.parse(open.stdout.trim().split('\n').at(-1)!)).toMatchObject({ error: { code: 'ESPAPI_ERR_INSECURE_LISTENER' } });
  });

  it('cli mqtt - --min-rssi takes -90 as documented, =-90, and the magnitude 90 (OpenMQTTGateway compares minrssi by magnitude)', async () => {
    const proxy = await fleet();
    const run = (...flags: string[]) =>
      runCliProcess(['mqtt', '--proxy', proxy, '--broker-listen', '127.0.0.1:0', '--duration', '100ms', '--json', ...flags]);
    // One after the other: the gateway waits for its pool, and the node serves one Bluetooth subscriber at a time.
    const results = [];
    for (const flags of [['--min-rssi', '-90'], ['--min-rssi=-90'], ['--min-rssi', '90'], ['--min-rssi', 'x']])
      results.push(await run(...flags));
    for (const result of results.slice(0, 3)) {
      expect(result.code, result.stderr).toBe(0);
      const started = result.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((event) => event.event === 'started');
      expect(started).toMatchObject({ minRssi: -90 });
    }
    expect(results[3]!.code).toBe(2);
  });

  it('cli mqtt - command topics the broker refuses are not announced, and the refusal is printed', async () => {
    const broker = await EmbeddedBroker.start({ port: 0, maxSubscriptionsPerClient: 0 });
    closers.push(() => broker.close());
    const result = await runCliProcess([
      'mqtt',
      '--proxy',
      await fleet(),
      '--broker',
      broker.url,
      '--allow-read',
      '*',
      '--duration',
      '100ms',
      '--json',
    ]);
    expect(result.code, result.stderr).toBe(0);
    const events = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(events.find((e) => e.event === 'subscribeRefused')).toMatchObject({
      topics: ['home/esphome-ble/commands/MQTTtoBT', 'home/esphome-ble/commands/MQTTtoBT/config'],
    });
    expect(events.find((e) => e.event === 'started')).toMatchObject({ topics: { commands: null, commandTopics: [] } });
  });

  describe.skipIf(TOOLS.skip /* waits for the tools TOOLS names (apt-get install mosquitto mosquitto-clients openssl) */)(
    `with mosquitto${TOOLS.label}`,
    () => {
      it('cli mqtt - the last will says offline when the gateway process is killed (SIGKILL)', async () => {
        const broker = await Mosquitto.start();
        closers.push(() => broker.close());
        const proxy = await fleet();
        const { child } = await startGatewayCli(['--proxy', proxy, '--broker', broker.url, '--name', 'killme']);
        const client = await TestClient.connect(broker.url, ['home/killme/LWT']);
        closers.push(() => client.close());
        expect((await client.next((m) => m.topic === 'home/killme/LWT')).text).toBe('online');
        const will = client.after((m) => m.topic === 'home/killme/LWT', 5_000, 'the last will');
        const closed = once(child, 'close');
        child.kill('SIGKILL');
        await closed;
        expect((await will).text).toBe('offline');
        // Retained: a consumer arriving now learns the gateway is gone.
        const late = await TestClient.connect(broker.url, ['home/killme/LWT']);
        closers.push(() => late.close());
        expect(await late.next((m) => m.topic === 'home/killme/LWT')).toMatchObject({ text: 'offline', retain: true });
      });

      it("cli mqtt - checked from outside with Mosquitto's own clients against the embedded broker: advertisements and a read", async () => {
        const proxy = await fleet();
        const { started } = await startGatewayCli(['--proxy', proxy, '--broker-listen', '127.0.0.1:0', '--allow-read', DEMO_MAC]);
        const port = new URL(String(started.broker)).port;
        // mosquitto_sub exits non-zero when -W runs out before -C messages: what it printed is what counts.
        const sub = (topic: string, count: number, seconds: number) =>
          run(findTool('mosquitto_sub'), [
            '-h',
            '127.0.0.1',
            '-p',
            port,
            '-t',
            topic,
            '-C',
            String(count),
            '-W',
            String(seconds),
            '-v',
          ]).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }));
        const ads = await sub('home/esphome-ble/BTtoMQTT/C0FFEE000001', 2, 8);
        const first = ads.stdout.trim().split('\n')[0]!;
        expect(first.startsWith('home/esphome-ble/BTtoMQTT/C0FFEE000001 {"id":"C0:FF:EE:00:00:01","mac_type":1')).toBe(true);
        const answer = sub('home/esphome-ble/BTtoMQTT/C0FFEE000001', 1000, 4);
        await new Promise((resolve) => setTimeout(resolve, 300));
        await run(findTool('mosquitto_pub'), [
          '-h',
          '127.0.0.1',
          '-p',
          port,
          '-t',
          'home/esphome-ble/commands/MQTTtoBT',
          '-m',
          JSON.stringify({ ble_read_address: DEMO_MAC, ble_read_service: '1800', ble_read_char: '2a00', value_type: 'STRING' }),
        ]);
        const { stdout } = await answer;
        const read = stdout.split('\n').find((line) => line.includes('"read"'));
        expect(read).toContain('"read":"esphome-ble-demo","success":true');
      });
    },
  );
});
