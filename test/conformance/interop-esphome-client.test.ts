import '../helpers/polyfills.js';
import { type BluetoothLERawAdvertisement, BluetoothScannerState, EspHomeClient, type EspHomeLogging } from 'esphome-client';
import { describe, expect, it } from 'vitest';
import { formatMac, parseMac } from '../../src/bluetooth/address.js';
import type { SimulatedNode } from '../../src/fixture-server/fleet.js';
import { DEFAULT_ESPHOME_VERSION } from '../../src/server/api-server.js';
import { useClosers } from '../helpers/closers.js';
import { TEST_PSK } from '../helpers/fixture.js';
import { startProxy } from '../helpers/fleet.js';
import { within } from '../helpers/wait.js';

// Canary: esphome-client (hjdhjd/esphome-client, written with no knowledge of this project) must take our
// fixture server for an ESPHome device, plaintext and Noise, including its Bluetooth proxy.

/**
 * Deadlines we hand esphome-client. It arms each one with `AbortSignal.timeout`, whose timer Node keeps until it
 * fires, whatever happens to the operation; the leak guard rightly counts them, so each test waits its deadlines
 * out (see `Deadlines`). The connect gets more room than one GATT round trip because on a loaded CI runner a
 * cold Noise handshake can take a few hundred ms; both stay short so each test takes about 2 s.
 */
const CONNECT_DEADLINE_MS = 2000;
const OP_DEADLINE_MS = 1000;
/** Hard cap per test (each needs about 2 s, most of it outwaiting the deadlines above). */
const TEST_TIMEOUT_MS = 5000;
/** The demo peripheral of fixtures/profiles/default.json and its handles (fixtures/profiles/README.md). */
const DEMO = { mac: 'C0:FF:EE:00:00:01', addressType: 1, mtu: 247, statusHandle: 12, counterHandle: 18, counterCccdHandle: 19 } as const;
const DEMO_ADDRESS = BigInt(parseMac(DEMO.mac));
const DEMO_SERVICE_UUID_WORDS = [0xa3f1c2e05b7d4e8an, 0x9c3b0d1e2f3a4b00n];
const COUNTER_UUID_WORDS = [0xa3f1c2e05b7d4e8an, 0x9c3b0d1e2f3a4b04n];
const CCCD_SHORT_UUID = 0x2902;

/** Tracks the latest `AbortSignal.timeout` deadline esphome-client armed, so the test can outwait it. */
class Deadlines {
  #latest = 0;

  /** Returns `ms` after noting that a timer of that length starts now. */
  arm(ms: number = OP_DEADLINE_MS): number {
    this.#latest = Math.max(this.#latest, Date.now() + ms);
    return ms;
  }

  /** Resolves once every armed deadline has passed (its timer fired and is gone). */
  async lapse(): Promise<void> {
    const wait = this.#latest - Date.now() + 20;
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/** A logger that keeps esphome-client's warnings and errors: it must have none about our wire data. */
function collectingLogger(): EspHomeLogging & { problems: string[] } {
  const problems: string[] = [];
  return {
    problems,
    debug: () => {},
    info: () => {},
    warn: (message: string) => problems.push(`warn: ${message}`),
    error: (message: string) => problems.push(`error: ${message}`),
  };
}

const closers = useClosers();

const proxy = (name: string, psk: string | undefined): Promise<SimulatedNode> => startProxy(closers, { name, ...(psk ? { psk } : {}) });

/** esphome-client as a user would configure it for one device; no reconnects, no keep-alive pings. */
function client(node: SimulatedNode, psk: string | undefined, logger: EspHomeLogging): EspHomeClient {
  const c = new EspHomeClient({
    host: '127.0.0.1',
    port: node.server.address.port,
    clientId: 'interop-esphome-client',
    logger,
    reconnect: false,
    keepAlive: false,
    connectTimeoutMs: CONNECT_DEADLINE_MS,
    handshakeTimeoutMs: CONNECT_DEADLINE_MS,
    gracefulDisconnectTimeoutMs: OP_DEADLINE_MS,
    ...(psk ? { psk, serverName: node.server.name } : {}),
  });
  closers.push(() => c.disconnect());
  return c;
}

/** Connects and notes the deadlines the handshake armed. */
async function connect(c: EspHomeClient, deadlines: Deadlines): Promise<void> {
  deadlines.arm(CONNECT_DEADLINE_MS);
  await c.connect();
  deadlines.arm(CONNECT_DEADLINE_MS); // the per-step handshake signals started during the connect
}

/** Graceful disconnect (DisconnectRequest, wait for the response); notes its deadline. */
async function disconnect(c: EspHomeClient, deadlines: Deadlines): Promise<void> {
  deadlines.arm();
  await c.disconnectAsync();
}

for (const mode of ['plaintext', 'noise'] as const) {
  const psk = mode === 'noise' ? TEST_PSK : undefined;

  describe(`interop esphome-client (${mode})`, () => {
    it(
      'interop esphome-client - connects and reads the device info our server sends',
      async () => {
        const deadlines = new Deadlines();
        const logger = collectingLogger();
        const node = await proxy(`interop-ec-${mode}`, psk);
        const session = node.server.nextSession();
        const c = client(node, psk, logger);

        await connect(c, deadlines);
        expect(c.isEncrypted).toBe(mode === 'noise');
        const info = c.deviceInfo();
        expect(info?.name).toBe(`interop-ec-${mode}`);
        expect(info?.macAddress).toBe(node.server.mac);
        expect(info?.esphomeVersion).toBe(DEFAULT_ESPHOME_VERSION);
        expect(info?.bluetoothMacAddress).toBe(node.bluetooth.bluetoothMac);
        expect(info?.bluetoothProxyFeatureFlags).toBe(node.bluetooth.featureFlags);
        // false is omitted on the wire (proto3 default), which esphome-client leaves undefined.
        expect(info?.apiEncryptionSupported ?? false).toBe(mode === 'noise');
        expect(c.bluetooth.available).toBe(true);
        // And the other direction: our server understood their HelloRequest.
        const s = await session;
        expect(s.clientInfo).toBe('interop-esphome-client');
        expect(s.clientApiVersion).toEqual({ major: 1, minor: 14 });

        await disconnect(c, deadlines);
        expect(s.received).toContain(5); // their DisconnectRequest
        expect(logger.problems).toEqual([]);
        await deadlines.lapse();
      },
      TEST_TIMEOUT_MS,
    );

    it(
      'interop esphome-client - Bluetooth proxy: advertisements, connect, services, read, notify, disconnect',
      async () => {
        const deadlines = new Deadlines();
        const logger = collectingLogger();
        const node = await proxy(`interop-ec-ble-${mode}`, psk);
        const c = client(node, psk, logger);
        await connect(c, deadlines);
        const ble = c.bluetooth;

        // Advertisements: every peripheral of the default profile, with its address type and payloads.
        // The iterator stays open until the end: the proxy sends GATT results only to the advertisement subscriber.
        const ads = ble.advertisements()[Symbol.asyncIterator]();
        const expected = new Map(node.bluetooth.peripherals.map((p) => [p.mac, p]));
        const seen = new Map<string, BluetoothLERawAdvertisement>();
        while (seen.size < expected.size) {
          const next = await within(ads.next(), 'advertisement', OP_DEADLINE_MS);
          if (next.done) throw new Error('advertisement stream ended');
          seen.set(formatMac(Number(next.value.address)), next.value);
        }
        expect([...seen.keys()].sort()).toEqual([...expected.keys()].sort());
        const demoAd = seen.get(DEMO.mac);
        expect(demoAd?.addressType).toBe(DEMO.addressType);
        expect(['0201061107004b3a2f1e0d3b9c8a4e7d5be0c2f1a3', '1109657370686f6d652d626c652d64656d6f']).toContain(
          demoAd?.data.toString('hex'),
        );
        expect(demoAd?.rssi).toBeGreaterThanOrEqual(-55);
        expect(demoAd?.rssi).toBeLessThanOrEqual(-49);
        // The scanner state our proxy pushes on subscribe (126) decodes: running, active.
        expect(ble.lastScannerState()).toEqual({ state: BluetoothScannerState.RUNNING, mode: 1, configuredMode: 1 });

        // Connection slots (80 → 81): all 3 free before the connect.
        const slots = ble.connectionsFree()[Symbol.asyncIterator]();
        expect((await within(slots.next(), 'slots message', OP_DEADLINE_MS)).value).toEqual({ free: 3, limit: 3, allocated: [] });

        // Connect without cache (a first connect: the client needs the services).
        const state = await ble.connect(DEMO_ADDRESS, { addressType: DEMO.addressType, useCache: false, timeoutMs: deadlines.arm() });
        expect(state).toMatchObject({ address: DEMO_ADDRESS, connected: true, error: 0, mtu: DEMO.mtu });
        expect(ble.isConnected(DEMO_ADDRESS)).toBe(true);
        // The slot push after the connect names the peripheral (repeated uint64, unpacked as the firmware writes it).
        let slotUpdate = await within(slots.next(), 'slots message', OP_DEADLINE_MS);
        while (!slotUpdate.done && slotUpdate.value.free === 3) slotUpdate = await within(slots.next(), 'slots message', OP_DEADLINE_MS);
        expect(slotUpdate.value).toEqual({ free: 2, limit: 3, allocated: [DEMO_ADDRESS] });
        await slots.return?.();

        // Services: the 3 services of the profile; 16-bit UUIDs compact (client API 1.14 ≥ 1.12), 128-bit ones as two words.
        const services = await ble.getServices(DEMO_ADDRESS, { timeoutMs: deadlines.arm() });
        expect(services.map((s) => s.handle)).toEqual([1, 6, 10]);
        expect(services.map((s) => s.shortUuid)).toEqual([0x1800, 0x1801, undefined]);
        expect(services[2]?.uuid).toEqual(DEMO_SERVICE_UUID_WORDS);
        const counter = services[2]?.characteristics.find((ch) => ch.handle === DEMO.counterHandle);
        expect(counter?.uuid).toEqual(COUNTER_UUID_WORDS);
        expect(counter?.properties).toBe(0x02 | 0x10); // read | notify
        const cccd = counter?.descriptors.find((d) => d.shortUuid === CCCD_SHORT_UUID);
        expect(cccd?.handle).toBe(DEMO.counterCccdHandle);

        // Read the status characteristic: 'ready'.
        const status = await ble.readCharacteristic(DEMO_ADDRESS, DEMO.statusHandle, { timeoutMs: deadlines.arm() });
        expect(status.toString('utf8')).toBe('ready');

        // Notifications: esphome-client's setNotify sends only the proxy request (78); with remote caching the
        // client writes the CCCD itself, as the firmware expects.
        const notifications = ble.notify(DEMO_ADDRESS, DEMO.counterHandle)[Symbol.asyncIterator]();
        await ble.setNotify(DEMO_ADDRESS, DEMO.counterHandle, true, { timeoutMs: deadlines.arm() });
        if (cccd === undefined) throw new Error('counter CCCD missing');
        await ble.writeDescriptor(DEMO_ADDRESS, cccd.handle, Buffer.from([0x01, 0x00]), { timeoutMs: deadlines.arm() });
        const first = await within(notifications.next(), 'notification', OP_DEADLINE_MS);
        expect(first.done).toBe(false);
        expect(first.value).toMatchObject({ address: DEMO_ADDRESS, handle: DEMO.counterHandle });
        expect(['01', '02', '03', '04']).toContain(first.value?.data.toString('hex'));
        await notifications.return?.();

        // Disconnect the peripheral, then stop scanning.
        await ble.disconnect(DEMO_ADDRESS, { timeoutMs: deadlines.arm() });
        expect(ble.isConnected(DEMO_ADDRESS)).toBe(false);
        await ads.return?.();

        await disconnect(c, deadlines);
        expect(logger.problems).toEqual([]);
        await deadlines.lapse();
      },
      TEST_TIMEOUT_MS,
    );
  });
}
