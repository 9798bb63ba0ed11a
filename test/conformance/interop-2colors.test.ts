import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { describe, expect, it, vi } from 'vitest';
import { formatMac, parseMac } from '../../src/bluetooth/address.js';
import type { SimulatedNode } from '../../src/fixture-server/fleet.js';
import { DEFAULT_ESPHOME_VERSION } from '../../src/server/api-server.js';
import { useClosers } from '../helpers/closers.js';
import { TEST_PSK } from '../helpers/fixture.js';
import { startProxy } from '../helpers/fleet.js';

// Canary: @2colors/esphome-native-api (twocolors/esphome-native-api: google-protobuf messages, a wasm Noise
// implementation, written with no knowledge of this project) must take our fixture server for an ESPHome device.
// Its Discovery class (multicast-dns) is never touched here: everything stays on 127.0.0.1.

/** What we use of the package (CommonJS, its own typings are partial). */
interface NativeApiConnection extends EventEmitter {
  connectBluetoothDeviceService(address: number, addressType?: number, useCache?: boolean): Promise<ConnectionMessage>;
  disconnectBluetoothDeviceService(address: number): Promise<ConnectionMessage>;
  listBluetoothGATTServicesService(address: number): Promise<{ address: number; servicesList: ServiceMessage[] }>;
  readBluetoothGATTCharacteristicService(address: number, handle: number): Promise<{ address: number; handle: number; data: string }>;
  notifyBluetoothGATTCharacteristicService(address: number, handle: number): Promise<{ address: number; handle: number }>;
  writeBluetoothGATTDescriptorService(address: number, handle: number, value: Uint8Array): Promise<void>;
}
interface NativeApiClient extends EventEmitter {
  readonly connection: NativeApiConnection;
  readonly deviceInfo: Record<string, unknown> | null;
  readonly initialized: boolean;
  connect(): void;
  disconnect(): void;
}
interface ConnectionMessage {
  address: number;
  connected: boolean;
  mtu: number;
  error: number;
}
interface DescriptorMessage {
  uuid: string;
  handle: number;
  shortUuid: number;
}
interface CharacteristicMessage {
  uuid: string;
  handle: number;
  properties: number;
  shortUuid: number;
  descriptorsList: DescriptorMessage[];
}
interface ServiceMessage {
  uuid: string;
  handle: number;
  shortUuid: number;
  characteristicsList: CharacteristicMessage[];
}
interface BleAdvertisement {
  address: number;
  rssi: number;
  addressType: number;
  name?: string;
  serviceUuidsList: string[];
}
interface ClientOptions {
  host: string;
  port: number;
  clientInfo?: string;
  encryptionKey?: string;
  expectedServerName?: string;
  reconnect?: boolean;
  initializeSubscribeBLEAdvertisements?: boolean;
}

const require = createRequire(import.meta.url);
const { Client } = require('@2colors/esphome-native-api') as { Client: new (options: ClientOptions) => NativeApiClient };

/** Longest wait for one step; the library's own request timeouts (5–10 s) are cleared when the reply arrives. */
const STEP_TIMEOUT_MS = 2000;
/** The slowest advertiser in the default profile advertises every 2 s: hearing all of them needs more than one interval. */
const HEAR_ALL_MS = 5000;
/** Hard cap per test (each needs well under 1 s, but for waiting on the slowest advertiser). */
const TEST_TIMEOUT_MS = 10_000;
/** The demo peripheral of fixtures/profiles/default.json and its handles (fixtures/profiles/README.md). */
const DEMO = { mac: 'C0:FF:EE:00:00:01', addressType: 1, mtu: 247, statusHandle: 12, counterHandle: 18, counterCccdHandle: 19 } as const;
const DEMO_ADDRESS = parseMac(DEMO.mac);
const DEMO_SERVICE_UUID = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b00';
const COUNTER_UUID = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b04';

/** A 16-bit SIG UUID on the Bluetooth base UUID, as the library prints it. */
function bluetoothUuid(short: number): string {
  return `${short.toString(16).padStart(8, '0')}-0000-1000-8000-00805f9b34fb`;
}

/** Resolves with the arguments of the next `event` (first one that `accept`s), or fails after STEP_TIMEOUT_MS. */
function next<T>(emitter: EventEmitter, event: string, accept: (value: T) => boolean = () => true, ms = STEP_TIMEOUT_MS): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onEvent = (value: T): void => {
      if (!accept(value)) return;
      clearTimeout(timer);
      emitter.off(event, onEvent);
      resolve(value);
    };
    const timer = setTimeout(() => {
      emitter.off(event, onEvent);
      reject(new Error(`no '${event}' within ${ms} ms`));
    }, ms);
    emitter.on(event, onEvent);
  });
}

const closers = useClosers();

const proxy = (name: string, psk: string | undefined): Promise<SimulatedNode> => startProxy(closers, { name, ...(psk ? { psk } : {}) });

/** Starts a client and waits until it has said hello, read device info and listed entities ('initialized'). */
async function connectClient(node: SimulatedNode, psk: string | undefined, errors: unknown[], ble = false): Promise<NativeApiClient> {
  const client = new Client({
    host: '127.0.0.1',
    port: node.server.address.port,
    clientInfo: 'interop-2colors',
    reconnect: false,
    initializeSubscribeBLEAdvertisements: ble,
    ...(psk ? { encryptionKey: psk, expectedServerName: node.server.name } : {}),
  });
  closers.push(() => client.disconnect());
  client.on('error', (error: unknown) => errors.push(error));
  const initialized = next(client, 'initialized');
  client.connect();
  await initialized;
  return client;
}

for (const mode of ['plaintext', 'noise'] as const) {
  const psk = mode === 'noise' ? TEST_PSK : undefined;

  describe(`interop @2colors/esphome-native-api (${mode})`, () => {
    it(
      'interop 2colors - connects and reads the device info our server sends',
      async () => {
        const errors: unknown[] = [];
        const node = await proxy(`interop-2c-${mode}`, psk);
        const session = node.server.nextSession();
        const client = await connectClient(node, psk, errors);

        expect(client.initialized).toBe(true);
        expect(client.deviceInfo).toMatchObject({
          name: `interop-2c-${mode}`,
          macAddress: node.server.mac,
          esphomeVersion: DEFAULT_ESPHOME_VERSION,
          bluetoothMacAddress: node.bluetooth.bluetoothMac,
          bluetoothProxyFeatureFlags: node.bluetooth.featureFlags,
          apiEncryptionSupported: mode === 'noise',
          usesPassword: false,
        });
        const s = await session;
        expect(s.clientInfo).toBe('interop-2colors');
        // Hello, DeviceInfo, ListEntities, SubscribeStates: no AuthenticationRequest (3), as API ≥ 1.12 devices expect.
        // ('initialized' fires as SubscribeStates is sent, so it may still be on its way.)
        await vi.waitFor(() => expect(s.received).toEqual([1, 9, 11, 20]), { timeout: STEP_TIMEOUT_MS });

        client.disconnect();
        expect(errors).toEqual([]);
      },
      TEST_TIMEOUT_MS,
    );

    it(
      'interop 2colors - Bluetooth proxy: advertisements, connect, services, read, notify, disconnect',
      async () => {
        const errors: unknown[] = [];
        const node = await proxy(`interop-2c-ble-${mode}`, psk);
        const client = await connectClient(node, psk, errors, true);
        const api = client.connection;

        // Advertisements (raw, parsed by the library): every peripheral of the default profile.
        const expected = new Set(node.bluetooth.peripherals.map((p) => p.mac));
        const seen = new Map<string, BleAdvertisement[]>();
        await next<BleAdvertisement>(
          client,
          'ble',
          (ad) => {
            const mac = formatMac(ad.address);
            seen.set(mac, [...(seen.get(mac) ?? []), ad]);
            return [...expected].every((m) => seen.has(m));
          },
          HEAR_ALL_MS,
        );
        expect([...seen.keys()].sort()).toEqual([...expected].sort());
        const demo = seen.get(DEMO.mac) ?? [];
        expect(demo.every((ad) => ad.addressType === DEMO.addressType && ad.rssi >= -55 && ad.rssi <= -49)).toBe(true);
        // Either payload decodes: the advertisement carries the 128-bit service UUID, the scan response the name.
        expect(demo.some((ad) => ad.serviceUuidsList.includes(DEMO_SERVICE_UUID) || ad.name === 'esphome-ble-demo')).toBe(true);

        const connected = await api.connectBluetoothDeviceService(DEMO_ADDRESS, DEMO.addressType);
        expect(connected).toMatchObject({ address: DEMO_ADDRESS, connected: true, mtu: DEMO.mtu, error: 0 });

        // The library sends HelloRequest without an API version (0.0), so it gets the pre-1.12 UUID form (two words, no short UUIDs).
        const { servicesList } = await api.listBluetoothGATTServicesService(DEMO_ADDRESS);
        expect(servicesList.map((s) => s.handle)).toEqual([1, 6, 10]);
        expect(servicesList.map((s) => s.shortUuid)).toEqual([0, 0, 0]);
        expect(servicesList.map((s) => s.uuid)).toEqual([bluetoothUuid(0x1800), bluetoothUuid(0x1801), DEMO_SERVICE_UUID]);
        const counter = servicesList[2]?.characteristicsList.find((c) => c.handle === DEMO.counterHandle);
        expect(counter?.uuid).toBe(COUNTER_UUID);
        expect(counter?.properties).toBe(0x02 | 0x10);
        expect(counter?.descriptorsList.map((d) => [d.handle, d.uuid])).toEqual([
          [DEMO.counterCccdHandle, bluetoothUuid(0x2902)],
          [20, bluetoothUuid(0x2901)],
        ]);

        const read = await api.readBluetoothGATTCharacteristicService(DEMO_ADDRESS, DEMO.statusHandle);
        expect(read).toMatchObject({ address: DEMO_ADDRESS, handle: DEMO.statusHandle });
        expect(Buffer.from(read.data, 'base64').toString('utf8')).toBe('ready');

        const notified = next<{ address: number; handle: number; data: string }>(
          api,
          'message.BluetoothGATTNotifyDataResponse',
          (m) => m.address === DEMO_ADDRESS && m.handle === DEMO.counterHandle,
        );
        expect(await api.notifyBluetoothGATTCharacteristicService(DEMO_ADDRESS, DEMO.counterHandle)).toMatchObject({
          address: DEMO_ADDRESS,
          handle: DEMO.counterHandle,
        });
        await api.writeBluetoothGATTDescriptorService(DEMO_ADDRESS, DEMO.counterCccdHandle, new Uint8Array([0x01, 0x00]));
        const notification = await notified;
        expect(['01', '02', '03', '04']).toContain(Buffer.from(notification.data, 'base64').toString('hex'));

        const disconnected = await api.disconnectBluetoothDeviceService(DEMO_ADDRESS);
        expect(disconnected).toMatchObject({ address: DEMO_ADDRESS, connected: false });

        client.disconnect();
        expect(errors).toEqual([]);
      },
      TEST_TIMEOUT_MS,
    );
  });
}
