import '../helpers/polyfills.js';
import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { EspHomeClient, type EspHomeLogging } from 'esphome-client';
import { afterEach, describe, expect, it } from 'vitest';
import { formatMac, parseMac } from '../../src/bluetooth/address.js';
import type { FirmwareGeneration } from '../../src/fixture-server/firmware.js';
import { type SimulatedNode, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { RelayServer } from '../../src/relay/relay-server.js';
import { OTHER_PSK } from '../helpers/fixture.js';
import { profileWithDevices } from '../helpers/fleet.js';
import { within } from '../helpers/wait.js';

// Canary: two clients written with no knowledge of this project, esphome-client and @2colors/esphome-native-api,
// use ONE simulated proxy at the same time through the relay — which the proxy alone would not allow (one
// Bluetooth subscriber) — each with its own link, plaintext and with the relay's own Noise key.
// In front of 2024 firmware (API 1.10) the relay must also log them in as that firmware does.

/** esphome-client arms an `AbortSignal.timeout` per operation, which Node keeps until it fires: tests outwait them. */
const OP_DEADLINE_MS = 1000;
const TEST_TIMEOUT_MS = 12_000;
/** The slowest advertiser in the default profile advertises every 2 s: hearing all of them needs more than one interval. */
const HEAR_ALL_MS = 5000;
/** The demo peripheral (fixtures/profiles/README.md) and its first clone from profileWithDevices(). */
const DEMO = { mac: 'C0:FF:EE:00:00:01', addressType: 1, mtu: 247, statusHandle: 12, counterHandle: 18, counterCccdHandle: 19 } as const;
const CLONE = parseMac('C0:FF:EE:00:01:00');

/** What we use of @2colors (CommonJS, partial typings). */
interface NativeApiConnection extends EventEmitter {
  connectBluetoothDeviceService(address: number, addressType?: number): Promise<{ address: number; connected: boolean; error: number }>;
  disconnectBluetoothDeviceService(address: number): Promise<{ address: number; connected: boolean }>;
  listBluetoothGATTServicesService(address: number): Promise<{ servicesList: Array<{ uuid: string; shortUuid: number; handle: number }> }>;
  readBluetoothGATTCharacteristicService(address: number, handle: number): Promise<{ data: string }>;
}
interface NativeApiClient extends EventEmitter {
  readonly connection: NativeApiConnection;
  readonly deviceInfo: Record<string, unknown> | null;
  connect(): void;
  disconnect(): void;
}
const require = createRequire(import.meta.url);
const { Client } = require('@2colors/esphome-native-api') as {
  Client: new (options: Record<string, unknown>) => NativeApiClient;
};

const closers: Array<() => unknown> = [];
let latestDeadline = 0;

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  const wait = latestDeadline - Date.now() + 20;
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
});

/** Notes that esphome-client starts a timer of `ms` now; returns `ms`. */
function arm(ms = OP_DEADLINE_MS): number {
  latestDeadline = Math.max(latestDeadline, Date.now() + ms);
  return ms;
}

function next<T>(emitter: EventEmitter, event: string, accept: (value: T) => boolean = () => true, ms?: number): Promise<T> {
  return within(
    new Promise<T>((resolve) => {
      const onEvent = (value: T): void => {
        if (!accept(value)) return;
        emitter.off(event, onEvent);
        resolve(value);
      };
      emitter.on(event, onEvent);
    }),
    `'${event}'`,
    ms,
  );
}

async function relayed(psk: string | undefined, firmware?: FirmwareGeneration): Promise<{ node: SimulatedNode; port: number }> {
  const node = await startSimulatedProxy({
    name: 'interop-relay-up',
    profile: await profileWithDevices(1),
    ...(firmware === undefined ? {} : { firmware }),
  });
  closers.push(() => node.server.close());
  const relay = new RelayServer({
    proxies: [{ host: '127.0.0.1', port: node.server.address.port }],
    ...(psk ? { downstreamPsk: psk } : {}),
    // Both libraries connect from 127.0.0.1, one client to the relay's quota: it would show them a full proxy
    // (free 0, which esphome-client warns about as a report without `free`) once they hold two links.
    slotsPerClient: Number.POSITIVE_INFINITY,
  });
  closers.push(() => relay.close());
  const [listening] = await relay.start({ timeout: 2000 });
  return { node, port: listening!.port };
}

/** An esphome-client and an @2colors client for the relay on `port` (not connected yet), closed after the test. */
function bothClients(
  port: number,
  psk: string | undefined,
  id: string,
): { ec: EspHomeClient; twoColors: NativeApiClient; finish: () => Promise<void> } {
  const problems: string[] = [];
  const logger: EspHomeLogging = {
    debug: () => {},
    info: () => {},
    warn: (m: string) => problems.push(`warn: ${m}`),
    error: (m: string) => problems.push(`error: ${m}`),
  };
  const ec = new EspHomeClient({
    host: '127.0.0.1',
    port,
    clientId: `${id}-ec`,
    logger,
    reconnect: false,
    keepAlive: false,
    connectTimeoutMs: arm(2000),
    handshakeTimeoutMs: arm(2000),
    gracefulDisconnectTimeoutMs: OP_DEADLINE_MS,
    ...(psk ? { psk, serverName: 'interop-relay-up' } : {}),
  });
  closers.push(() => ec.disconnect());
  const twoColors = new Client({
    host: '127.0.0.1',
    port,
    clientInfo: `${id}-2c`,
    reconnect: false,
    initializeSubscribeBLEAdvertisements: true,
    ...(psk ? { encryptionKey: psk, expectedServerName: 'interop-relay-up' } : {}),
  });
  closers.push(() => twoColors.disconnect());
  const errors: unknown[] = [];
  twoColors.on('error', (e: unknown) => errors.push(e));
  /** Disconnects both as their users would; neither may have logged a problem or emitted an error. */
  const finish = async (): Promise<void> => {
    arm();
    await ec.disconnectAsync();
    twoColors.disconnect();
    expect(problems).toEqual([]);
    expect(errors).toEqual([]);
  };
  return { ec, twoColors, finish };
}

for (const mode of ['plaintext', 'noise'] as const) {
  const psk = mode === 'noise' ? OTHER_PSK : undefined;

  describe(`interop relay (${mode} downstream)`, () => {
    it(
      'interop relay - esphome-client and @2colors share one proxy: both hear it, each drives its own link',
      async () => {
        const { node, port } = await relayed(psk);
        const { ec, twoColors, finish } = bothClients(port, psk, 'interop-relay');

        const initialized = next(twoColors, 'initialized');
        twoColors.connect();
        await Promise.all([ec.connect(), initialized]);
        arm(2000);
        // Both take the relay for the proxy itself.
        expect(ec.deviceInfo()?.name).toBe('interop-relay-up');
        expect(ec.deviceInfo()?.macAddress).toBe(node.server.mac);
        expect(twoColors.deviceInfo).toMatchObject({
          name: 'interop-relay-up',
          macAddress: node.server.mac,
          bluetoothProxyFeatureFlags: 0xff,
        });

        // Both hear every peripheral at once (the proxy alone would serve only the first subscriber).
        const expected = new Set(node.bluetooth.peripherals.map((p) => p.mac));
        const ecSeen = new Set<string>();
        const ads = ec.bluetooth.advertisements()[Symbol.asyncIterator]();
        const twoSeen = new Set<string>();
        const twoHeardAll = next<{ address: number }>(
          twoColors,
          'ble',
          (ad) => {
            twoSeen.add(formatMac(ad.address));
            return [...expected].every((m) => twoSeen.has(m));
          },
          HEAR_ALL_MS,
        );
        const ecHeardAll = within(
          (async () => {
            while (ecSeen.size < expected.size) {
              const ad = await ads.next();
              if (ad.done) throw new Error('advertisement stream ended');
              ecSeen.add(formatMac(Number(ad.value.address)));
            }
          })(),
          'advertisement from every peripheral',
          HEAR_ALL_MS,
        );
        // Awaited together: neither wait can reject while nobody listens.
        await Promise.all([ecHeardAll, twoHeardAll]);
        expect([...ecSeen].sort()).toEqual([...expected].sort());

        // Each connects its own device through the same proxy, concurrently.
        const demo = BigInt(parseMac(DEMO.mac));
        const [ecState, twoState] = await Promise.all([
          ec.bluetooth.connect(demo, { addressType: DEMO.addressType, useCache: false, timeoutMs: arm() }),
          twoColors.connection.connectBluetoothDeviceService(CLONE, 1),
        ]);
        expect(ecState).toMatchObject({ connected: true, mtu: DEMO.mtu });
        expect(twoState).toMatchObject({ address: CLONE, connected: true, error: 0 });
        expect(node.bluetooth.allocated.sort()).toEqual([parseMac(DEMO.mac), CLONE].sort());

        // GATT on each link answers only its owner: @2colors (API 0.0) gets 128-bit UUIDs, esphome-client (1.14) compact ones.
        const [ecServices, twoServices] = await Promise.all([
          ec.bluetooth.getServices(demo, { timeoutMs: arm() }),
          twoColors.connection.listBluetoothGATTServicesService(CLONE),
        ]);
        expect(ecServices.map((s) => s.shortUuid)).toEqual([0x1800, 0x1801, undefined]);
        expect(twoServices.servicesList.map((s) => s.shortUuid)).toEqual([0, 0, 0]);
        expect(twoServices.servicesList[0]?.uuid).toBe('00001800-0000-1000-8000-00805f9b34fb');
        const [ecRead, twoRead] = await Promise.all([
          ec.bluetooth.readCharacteristic(demo, DEMO.statusHandle, { timeoutMs: arm() }),
          twoColors.connection.readBluetoothGATTCharacteristicService(CLONE, DEMO.statusHandle),
        ]);
        expect(ecRead.toString('utf8')).toBe('ready');
        expect(Buffer.from(twoRead.data, 'base64').toString('utf8')).toBe('ready');

        // Notifications on esphome-client's link reach esphome-client only.
        const twoNotified: unknown[] = [];
        twoColors.connection.on('message.BluetoothGATTNotifyDataResponse', (m: unknown) => twoNotified.push(m));
        const notifications = ec.bluetooth.notify(demo, DEMO.counterHandle)[Symbol.asyncIterator]();
        await ec.bluetooth.setNotify(demo, DEMO.counterHandle, true, { timeoutMs: arm() });
        await ec.bluetooth.writeDescriptor(demo, DEMO.counterCccdHandle, Buffer.from([0x01, 0x00]), { timeoutMs: arm() });
        const first = await within(notifications.next(), 'notification');
        expect(first.value).toMatchObject({ address: demo, handle: DEMO.counterHandle });
        await notifications.return?.();
        expect(twoNotified).toEqual([]);

        const [ecGone, twoGone] = await Promise.all([
          ec.bluetooth.disconnect(demo, { timeoutMs: arm() }).then(() => ec.bluetooth.isConnected(demo)),
          twoColors.connection.disconnectBluetoothDeviceService(CLONE),
        ]);
        expect(ecGone).toBe(false);
        expect(twoGone).toMatchObject({ address: CLONE, connected: false });
        await ads.return?.();
        await finish();
      },
      TEST_TIMEOUT_MS,
    );
  });
}

describe('interop relay (in front of 2024.10 firmware, API 1.10)', () => {
  it(
    'interop relay - esphome-client and @2colors log in as that firmware wants (AuthenticationRequest answered) and each drives its own link',
    async () => {
      const { node, port } = await relayed(undefined, '2024.10');
      const { ec, twoColors, finish } = bothClients(port, undefined, 'interop-relay-old');
      // Both send AuthenticationRequest to a device below API 1.12 (esphome-client below 1.11) and wait for the answer.
      const initialized = next(twoColors, 'initialized');
      twoColors.connect();
      await Promise.all([ec.connect(), initialized]);
      arm(2000);
      expect(twoColors.deviceInfo).toMatchObject({ name: 'interop-relay-up', esphomeVersion: '2024.10.3' });
      expect(ec.deviceInfo()?.name).toBe('interop-relay-up');

      // @2colors asks for raw batches (API >= 1.9) and hears the demo peripheral. esphome-client subscribes with flags 0 and
      // reads only raw batches: firmware of this era sends such subscribers the parsed message 67, so does the relay,
      // and esphome-client hears nothing, from the relay as from the proxy itself.
      const demo = parseMac(DEMO.mac);
      await next<{ address: number }>(twoColors, 'ble', (ad) => ad.address === demo, HEAR_ALL_MS);
      // Its subscription is what makes it a Bluetooth client of the proxy (answers go to subscribers only).
      const ads = ec.bluetooth.advertisements()[Symbol.asyncIterator]();

      const [ecState, twoState] = await Promise.all([
        ec.bluetooth.connect(BigInt(demo), { addressType: DEMO.addressType, useCache: false, timeoutMs: arm() }),
        twoColors.connection.connectBluetoothDeviceService(CLONE, 1),
      ]);
      expect(ecState).toMatchObject({ connected: true });
      expect(twoState).toMatchObject({ address: CLONE, connected: true, error: 0 });
      const twoRead = await twoColors.connection.readBluetoothGATTCharacteristicService(CLONE, DEMO.statusHandle);
      expect(Buffer.from(twoRead.data, 'base64').toString('utf8')).toBe('ready');
      expect(node.bluetooth.allocated.sort()).toEqual([demo, CLONE].sort());
      await Promise.all([
        ec.bluetooth.disconnect(BigInt(demo), { timeoutMs: arm() }),
        twoColors.connection.disconnectBluetoothDeviceService(CLONE),
      ]);
      await ads.return?.();
      await finish();
    },
    TEST_TIMEOUT_MS,
  );
});
