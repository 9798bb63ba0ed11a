import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProxyPool } from 'esphome-ble';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { SimulatedFleet } from '../../src/fixture-server/fleet.js';
import { EmbeddedBroker } from '../../src/mqtt/embedded-broker.js';
import { TEST_PSK } from '../helpers/fixture.js';
import { DEMO_MAC, profileWithDevices, startTestFleet } from '../helpers/fleet.js';
import { TestClient } from '../helpers/mqtt.js';
import { REPO_ROOT } from '../helpers/repo-root.js';
import { readName } from './basic.js';
import { printDiagnostics } from './diagnostics.js';
import { connectWatched } from './disconnect-callback.js';
import { tryConnect } from './error-handling.js';
import { firstNotification } from './lower-layers.js';
import { connectWithName } from './missing-characteristic.js';
import { relayToMqtt } from './mqtt.js';
import { readViaProxies } from './noble.js';
import { serveAndRead } from './relay.js';
import { pinAndPair } from './routing.js';

/** Example files whose `#region readme` is a README snippet, in README order. */
const EXAMPLES = [
  'basic',
  'disconnect-callback',
  'error-handling',
  'routing',
  'missing-characteristic',
  'diagnostics',
  'lower-layers',
  'inspect',
  'noble',
  'relay',
  'mqtt',
  'matter',
  'matter-simulated',
];
const REGION = /^\/\/ #region readme\n([\s\S]*?)\n+\/\/ #endregion readme\n/;
/** The demo peripheral's counter characteristic: notifies 01, 02, … every 500 ms (fixtures/profiles/README.md). */
const COUNTER_UUID = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b04';

let fleet: SimulatedFleet | undefined;

afterEach(async () => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
  await fleet?.close();
  fleet = undefined;
});

async function startFleet(perNode: Parameters<typeof startTestFleet>[2] = []): Promise<SimulatedFleet> {
  fleet = await startTestFleet(2, await profileWithDevices(0), perNode);
  vi.spyOn(console, 'log').mockImplementation(() => {});
  return fleet;
}

async function withPool<T>(proxies: string[], use: (pool: ProxyPool) => Promise<T>): Promise<T> {
  const pool = new ProxyPool(proxies);
  try {
    return await use(pool);
  } finally {
    await pool.close();
  }
}

describe('README examples', () => {
  it('examples - every example file is its README region (imports included) plus one export line', async () => {
    const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
    for (const file of EXAMPLES) {
      const source = await readFile(join(REPO_ROOT, `test/examples/${file}.ts`), 'utf8');
      const region = REGION.exec(source);
      expect(region?.[1], `${file}.ts must start with // #region readme and close it with // #endregion readme`).toBeDefined();
      // Nothing the snippet uses is declared outside it, so what the README shows compiles and runs as shown.
      expect(source.slice(region![0].length), `${file}.ts outside its region`).toMatch(/^\n*export \{ \w+ \};\n$/);
      expect(readme, `README must contain the ${file} example`).toContain(`\`\`\`ts\n${region![1]}\n\`\`\``);
    }
  });

  it('examples - every TypeScript block of the README longer than one line is an example region', async () => {
    const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
    const regions = await Promise.all(
      EXAMPLES.map(async (file) => REGION.exec(await readFile(join(REPO_ROOT, `test/examples/${file}.ts`), 'utf8'))?.[1]),
    );
    const blocks = [...readme.matchAll(/^```ts\n([\s\S]*?)\n```$/gm)].map((m) => m[1]!);
    const untested = blocks.filter((block) => block.includes('\n') && !regions.includes(block));
    expect(untested, 'move these README snippets into a #region readme of test/examples/*.ts').toEqual([]);
  });

  it('examples - diagnostics lists every proxy online and subscribed', async () => {
    const f = await startFleet();
    const report = await printDiagnostics(f.addresses);
    expect(report.map((d) => [d.state, d.subscription.state])).toEqual([
      ['online', 'subscribed'],
      ['online', 'subscribed'],
    ]);
  });

  it('examples - basic connects and reads the device name', async () => {
    const f = await startFleet();
    expect(await readName(f.addresses, DEMO_MAC)).toBe('esphome-ble-demo');
  });

  it('examples - the disconnect callback reports the reason', async () => {
    const f = await startFleet([{ slotsBusy: 3 }]);
    const logged = new Promise<string>((resolve) => {
      vi.mocked(console.log).mockImplementation((line: string) => {
        if (line.includes('dropped the link')) resolve(line);
      });
    });
    await withPool(f.addresses, async (pool) => {
      const device = await connectWatched(pool, DEMO_MAC);
      expect(device.proxy).toBe(pool.proxies()[1]!.id);
      f.nodes[1]!.bluetooth.dropLink(0xc0ffee000001);
      expect(await logged).toMatch(/^C0:FF:EE:00:00:01 dropped the link: \w+ \(8\)$/);
    });
  });

  it('examples - error handling maps out-of-slots to OutOfSlotsError with advice', async () => {
    const f = await startFleet([{ slotsBusy: 3 }, { slotsBusy: 3 }]);
    await withPool(f.addresses, async (pool) => {
      expect(await tryConnect(pool, DEMO_MAC)).toMatch(/^ESPAPI_ERR_OUT_OF_SLOTS after 2 attempts: .*connection_slots/);
      expect(await tryConnect(pool, '11:22:33:44:55:66')).toMatch(/^not found: /);
    });
  });

  it('examples - error handling: a 0x100 at once is CONTROLLER_REFUSED; proxies that need a key we lack are named', async () => {
    const f = await startFleet();
    for (const node of f.nodes) node.bluetooth.setBehaviour(0xc0ffee000001, { connectError: 0x100, connectDelayMs: 5 });
    await withPool(f.addresses, async (pool) => {
      expect(await tryConnect(pool, DEMO_MAC)).toMatch(/^ESPAPI_ERR_CONTROLLER_REFUSED after 2 attempts: .*esphome#18047/);
    });
    await f.close();
    fleet = await startTestFleet(2, await profileWithDevices(0), [{ psk: TEST_PSK }, { psk: TEST_PSK }]);
    const keyed = fleet.addresses;
    await withPool(keyed, async (pool) => {
      expect(await tryConnect(pool, DEMO_MAC)).toBe(
        `no usable proxy: ${keyed.map((a) => `${a} ESPAPI_ERR_ENCRYPTION_REQUIRED`).join(', ')}`,
      );
    });
  });

  it('examples - routing pins the device, pairs it there, and the next connect goes to the bonded proxy', async () => {
    const f = await startFleet([{ rssiOffset: 10 }, { rssiOffset: -10 }]);
    const dir = await mkdtemp(join(tmpdir(), 'example-routing-'));
    try {
      const pinned = f.addresses[1]!;
      const next = await pinAndPair(f.addresses, DEMO_MAC, pinned, join(dir, 'cache.json'));
      expect(console.log).toHaveBeenCalledWith(expect.stringMatching(new RegExp(`^prefer: ${pinned} is pinned and goes first`)));
      expect(next).toEqual(['bond']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('examples - the missing-characteristic pattern connects', async () => {
    const f = await startFleet();
    expect(await withPool(f.addresses, (pool) => connectWithName(pool, DEMO_MAC))).toBe(false);
  });

  it('examples - lower layers: five advertisements, then the first notification of one device', async () => {
    vi.stubEnv('ESPHOME_BLE_PSK', undefined);
    const f = await startFleet();
    const port = f.nodes[0]!.server.address.port;
    expect(await firstNotification('127.0.0.1', 0xc0ffee000001, COUNTER_UUID, port)).toEqual(Uint8Array.of(1));
    const lines = vi.mocked(console.log).mock.calls;
    expect(lines.filter((args) => args.length === 4 && /^([0-9A-F]{2}:){5}[0-9A-F]{2}$/.test(String(args[0])))).toHaveLength(5);
    expect(lines).toContainEqual([DEMO_MAC, expect.any(Number), 'characteristics']);
  });

  it('examples - a noble-based function finds, connects and reads through the proxies', async () => {
    const f = await startFleet();
    expect(await readViaProxies(f.addresses, 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b00')).toBe('esphome-ble-demo');
  });

  it('examples - the relay serves a proxy and shares its session with an in-process pool', async () => {
    const f = await startFleet();
    const node = f.nodes[0]!;
    const proxies = [{ host: '127.0.0.1', port: node.server.address.port }];
    expect(await serveAndRead(proxies, { host: '127.0.0.1', port: 0 }, DEMO_MAC)).toBe('esphome-ble-demo');
    expect(console.log).toHaveBeenCalledWith(
      expect.stringMatching(new RegExp(`^${node.server.name} \\(${node.server.mac}\\) is served on 127\\.0\\.0\\.1:\\d+$`)),
    );
  });

  it('examples - the MQTT gateway publishes the relayed proxies on a broker', async () => {
    const f = await startFleet();
    const node = f.nodes[0]!;
    const broker = await EmbeddedBroker.start({ port: 0 });
    const client = await TestClient.connect(broker.url, ['home/esphome-ble/#', 'home/presence/#']);
    const stop = new AbortController();
    try {
      const running = relayToMqtt(
        [{ host: '127.0.0.1', port: node.server.address.port }],
        { host: '127.0.0.1', port: 0 },
        broker.url,
        stop.signal,
      );
      const ad = await client.next((m) => m.topic === 'home/esphome-ble/BTtoMQTT/C0FFEE000001', 5_000);
      expect(ad.json).toMatchObject({ id: DEMO_MAC, mac_type: 1 });
      await client.next((m) => m.topic.startsWith('home/presence/') && m.json?.distance !== undefined, 5_000);
      stop.abort();
      // The stream opened after start() begins with where the gateway stands.
      expect(await running).toEqual(['brokerConnected']);
    } finally {
      stop.abort();
      await client.close();
      await broker.close();
    }
  });
});
