import { describe, expect, it } from 'vitest';
import type { BleConnection } from '../../src/bluetooth/ble-connection.js';
import { BluetoothProxy } from '../../src/bluetooth/proxy-client.js';
import type { ApiConnection } from '../../src/connection/connection.js';
import { BleDisconnectedError, ConnectionClosedError, GattError, InvalidArgumentError, TimeoutError } from '../../src/errors.js';
import type { SimulatedNode, SimulatedNodeOptions } from '../../src/fixture-server/fleet.js';
import { type BehaviourProfile, DEFAULT_PROFILE_PATH, type DeviceProfile, loadProfile } from '../../src/fixture-server/profile.js';
import type { SimulatedPeripheral } from '../../src/fixture-server/simulated-peripheral.js';
import {
  BluetoothGATTGetServicesResponse,
  BluetoothGATTNotifyDataResponse,
  BluetoothGATTNotifyRequest,
  BluetoothGATTNotifyResponse,
  BluetoothGATTWriteResponse,
} from '../../src/gen/api_pb.js';
import { useClosers } from '../helpers/closers.js';
import { TEST_PSK } from '../helpers/fixture.js';
import { type AttachedClient, attachClient, DEMO, openApi, startProxy } from '../helpers/fleet.js';

/** The default profile's demo peripheral's handles (fixtures/profiles/README.md). */
const H = {
  deviceName: 3,
  appearance: 5,
  serviceChanged: 8,
  serviceChangedCccd: 9,
  status: 12,
  command: 14,
  stream: 16,
  counter: 18,
  counterCccd: 19,
  counterDescription: 20,
  secret: 22,
  bondedOnly: 24,
} as const;
const BASE = '-0000-1000-8000-00805f9b34fb';
const CUSTOM = (n: number): string => `a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b0${n}`;
const MSG = { read: 73, write: 75, notify: 78, services: 70, params: 145 } as const;

const closers = useClosers();

interface Harness extends AttachedClient {
  node: SimulatedNode;
  peripheral: SimulatedPeripheral;
  link: BleConnection;
}

/** The default profile with the demo peripheral's behaviour changed. */
async function demoProfile(behaviour: Partial<BehaviourProfile>): Promise<DeviceProfile> {
  const profile = await loadProfile(DEFAULT_PROFILE_PATH);
  return {
    ...profile,
    peripherals: profile.peripherals.map((p) => (p.address === DEMO ? { ...p, behaviour: { ...p.behaviour, ...behaviour } } : p)),
  };
}

/** A proxy with the default profile, an attached client and a link to the demo peripheral (services fetched). */
async function connectDemo(psk: string | undefined, options: SimulatedNodeOptions = {}): Promise<Harness> {
  const node = await startProxy(closers, { name: 'proxy-test', advertise: false, ...(psk === undefined ? {} : { psk }), ...options });
  const client = await attachClient(closers, node, { psk });
  const link = await client.proxy.connect(DEMO, { addressType: 1, timeout: 2000 });
  await link.getServices({ timeout: 2000 });
  const peripheral = node.bluetooth.peripherals.find((p) => p.address === DEMO)!;
  return { node, ...client, peripheral, link };
}

const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString('utf8');
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const count = (list: readonly number[], id: number): number => list.filter((t) => t === id).length;

/** Resolves after the proxy has handled everything sent before (one API round trip). */
async function settle(api: ApiConnection): Promise<void> {
  await api.ping();
}

for (const mode of ['plaintext', 'noise'] as const) {
  const psk = mode === 'noise' ? TEST_PSK : undefined;

  describe(`bluetooth GATT (${mode})`, () => {
    it('ble-connection - connects without cache and fetches services with 16-bit short UUIDs', async () => {
      const node = await startProxy(closers, { advertise: false, ...(psk === undefined ? {} : { psk }) });
      const api = await openApi(closers, node, { psk });
      const wire: BluetoothGATTGetServicesResponse[] = [];
      api.on(BluetoothGATTGetServicesResponse, (m) => wire.push(m));
      const proxy = await BluetoothProxy.attach(api);
      const link = await proxy.connect(DEMO);
      expect(link.mtu).toBe(247);
      expect(link.usedCache).toBe(false);
      expect(link.mac).toBe('C0:FF:EE:00:00:01');
      expect(proxy.links.get(DEMO)).toBe(link);
      const services = await link.getServices();
      expect(services.services.map((s) => [s.uuid, s.handle])).toEqual([
        [`00001800${BASE}`, 1],
        [`00001801${BASE}`, 6],
        [CUSTOM(0), 10],
      ]);
      const counter = services.find(H.counter)!;
      expect(counter.uuid).toBe(CUSTOM(4));
      expect(counter.properties).toBe(0x12);
      expect(counter.descriptors).toEqual([
        { uuid: `00002902${BASE}`, handle: H.counterCccd },
        { uuid: `00002901${BASE}`, handle: H.counterDescription },
      ]);
      expect(services.find(`00002a00${BASE}`)?.handle).toBe(H.deviceName);
      expect(services.characteristics().map((c) => c.handle)).toEqual([3, 5, 8, 12, 14, 16, 18, 22, 24]);
      // On the wire: short_uuid for 16-bit UUIDs (we announce API 1.15), two words for 128-bit ones.
      const onWire = wire.flatMap((m) => m.services);
      expect(onWire[0]?.shortUuid).toBe(0x1800);
      expect(onWire[0]?.uuid).toEqual([]);
      expect(onWire[2]?.shortUuid).toBe(0);
      expect(onWire[2]?.uuid).toEqual([0xa3f1c2e05b7d4e8an, 0x9c3b0d1e2f3a4b00n]);
      // The table is fetched once per link; asking again is answered locally.
      expect(await link.getServices()).toBe(services);
      expect(node.bluetooth.servicesRequests).toBe(1);
      await link.disconnect();
    });

    it('ble-connection - reads, writes with and without response, and reads back', async () => {
      const { api, link, session } = await connectDemo(psk);
      expect(text(await link.read(H.deviceName))).toBe('esphome-ble-demo');
      expect(text(await link.read(CUSTOM(1)))).toBe('ready');
      await link.write(H.command, bytes('hello'));
      expect(text(await link.read(H.status))).toBe('hello');
      await link.write(CUSTOM(2), bytes('by uuid'), { withResponse: true });
      expect(text(await link.read(H.status))).toBe('by uuid');
      // Without response: nothing comes back, but the peripheral applied it (its echo target changed).
      const writesBefore = count(session.received, MSG.write);
      await link.write(H.stream, Uint8Array.of(1, 2, 3), { withResponse: false });
      await settle(api);
      expect(count(session.received, MSG.write)).toBe(writesBefore + 1);
      expect([...(await link.read(H.counter))]).toEqual([1, 2, 3]);
      await link.disconnect();
    });

    it('ble-connection - reads and writes descriptors', async () => {
      const { link } = await connectDemo(psk);
      expect(text(await link.readDescriptor(H.counterDescription))).toBe('Counter');
      expect([...(await link.readDescriptor(H.counterCccd))]).toEqual([0, 0]);
      await link.writeDescriptor(H.counterCccd, Uint8Array.of(1, 0));
      expect([...(await link.readDescriptor(H.counterCccd))]).toEqual([1, 0]);
      await link.writeDescriptor(H.counterCccd, Uint8Array.of(0, 0));
      expect([...(await link.readDescriptor(H.counterCccd))]).toEqual([0, 0]);
      const error = (await link.writeDescriptor(H.counterDescription, bytes('x')).catch((e: unknown) => e)) as GattError;
      expect(error).toBeInstanceOf(GattError);
      expect(error.status).toBe(0x03);
      expect(error.handle).toBe(H.counterDescription);
      await link.disconnect();
    });

    it('ble-connection - registering with the proxy alone does not make the peripheral notify', async () => {
      const { api, link, peripheral } = await connectDemo(psk);
      const data: number[] = [];
      api.on(BluetoothGATTNotifyDataResponse, (m) => data.push(m.handle));
      api.send(BluetoothGATTNotifyRequest, { address: DEMO, handle: H.counter, enable: true });
      await api.waitFor(BluetoothGATTNotifyResponse, (m) => m.handle === H.counter, { timeout: 1000 });
      await link.write(H.stream, Uint8Array.of(9), { withResponse: false });
      await settle(api);
      await new Promise((resolve) => setTimeout(resolve, 20)); // past the echo's notification delay
      await settle(api);
      expect(peripheral.isNotifying(H.counter)).toBe(false);
      expect(data).toEqual([]);
      await link.disconnect();
    });

    it('ble-connection - startNotify registers, then writes the CCCD; values arrive; stop clears both', async () => {
      const { api, link, peripheral } = await connectDemo(psk);
      const log: string[] = [];
      api.on(BluetoothGATTNotifyResponse, (m) => log.push(`notify-ack:${m.handle}`));
      api.on(BluetoothGATTWriteResponse, (m) => log.push(`write-ack:${m.handle}`));
      api.on(BluetoothGATTNotifyDataResponse, (m) => log.push(`data:${m.handle}`));
      const received: string[] = [];
      const stop = await link.startNotify(H.counter, (value) => received.push(Buffer.from(value).toString('hex')));
      expect(log).toEqual([`notify-ack:${H.counter}`, `write-ack:${H.counterCccd}`]);
      expect(peripheral.isNotifying(H.counter)).toBe(true);
      expect([...(await link.readDescriptor(H.counterCccd))]).toEqual([1, 0]);
      await link.write(H.stream, Uint8Array.of(0xaa), { withResponse: false });
      await link.write(H.stream, Uint8Array.of(0xbb), { withResponse: false });
      await expect.poll(() => received).toEqual(['aa', 'bb']);
      expect(log.slice(2)).toEqual([`data:${H.counter}`, `data:${H.counter}`]);

      await stop();
      expect(log.slice(4)).toEqual([`notify-ack:${H.counter}`, `write-ack:${H.counterCccd}`]);
      expect(peripheral.isNotifying(H.counter)).toBe(false);
      expect([...(await link.readDescriptor(H.counterCccd))]).toEqual([0, 0]);
      await link.write(H.stream, Uint8Array.of(0xcc), { withResponse: false });
      await new Promise((resolve) => setTimeout(resolve, 20));
      await settle(api);
      expect(received).toEqual(['aa', 'bb']);
      await link.disconnect();
    });

    it('ble-connection - startNotify on an indicate-only characteristic writes 02 00', async () => {
      const { link, peripheral } = await connectDemo(psk);
      const stop = await link.startNotify(H.serviceChanged, () => {});
      expect(peripheral.isNotifying(H.serviceChanged)).toBe(true);
      expect([...(await link.readDescriptor(H.serviceChangedCccd))]).toEqual([2, 0]);
      await stop();
      expect([...(await link.readDescriptor(H.serviceChangedCccd))]).toEqual([0, 0]);
      await link.disconnect();
    });

    it('ble-connection - notifications() iterates values and breaking out unsubscribes', async () => {
      const { link, peripheral } = await connectDemo(psk);
      const values = await link.notifications(CUSTOM(4));
      expect(peripheral.isNotifying(H.counter)).toBe(true);
      for (const v of [1, 2, 3]) await link.write(H.stream, Uint8Array.of(v), { withResponse: false });
      const seen: number[] = [];
      for await (const value of values) {
        seen.push(value[0]!);
        if (seen.length === 3) break;
      }
      expect(seen).toEqual([1, 2, 3]);
      await expect.poll(() => peripheral.isNotifying(H.counter)).toBe(false);
      await expect.poll(async () => [...(await link.readDescriptor(H.counterCccd))]).toEqual([0, 0]);
      await link.disconnect();
    });

    it('ble-connection - notifications() ended by its signal unsubscribes: the peripheral stops, the CCCD reads 00 00', async () => {
      const { link, peripheral } = await connectDemo(psk);
      const controller = new AbortController();
      const values = await link.notifications(H.counter, { signal: controller.signal });
      expect(peripheral.isNotifying(H.counter)).toBe(true);
      await link.write(H.stream, Uint8Array.of(5), { withResponse: false });
      const seen: number[] = [];
      for await (const value of values) {
        seen.push(value[0]!);
        controller.abort(new Error('enough'));
      }
      expect(seen).toEqual([5]);
      await expect.poll(() => peripheral.isNotifying(H.counter)).toBe(false);
      expect([...(await link.readDescriptor(H.counterCccd))]).toEqual([0, 0]);
      await link.disconnect();
    });

    it('ble-connection - notifications() ends when the link goes down', async () => {
      const { node, link } = await connectDemo(psk);
      const values = await link.notifications(H.counter);
      await link.write(H.stream, Uint8Array.of(7), { withResponse: false });
      const seen: number[] = [];
      for await (const value of values) {
        seen.push(value[0]!);
        node.bluetooth.dropLink(DEMO);
      }
      expect(seen).toEqual([7]);
      expect(link.isConnected).toBe(false);
    });

    it('ble-connection - concurrent reads on different handles resolve with their own data', async () => {
      const { link } = await connectDemo(psk, { profile: await demoProfile({ responseDelayMs: 15 }) });
      const [name, appearance, status, counter, description, nameAgain] = await Promise.all([
        link.read(H.deviceName),
        link.read(H.appearance),
        link.read(H.status),
        link.read(H.counter),
        link.readDescriptor(H.counterDescription),
        link.read(H.deviceName),
      ]);
      expect(text(name)).toBe('esphome-ble-demo');
      expect([...appearance]).toEqual([0, 0]);
      expect(text(status)).toBe('ready');
      expect([...counter]).toEqual([0]);
      expect(text(description)).toBe('Counter');
      expect(text(nameAgain)).toBe('esphome-ble-demo');
      await link.disconnect();
    });

    it('ble-connection - a read value owns its bytes: later traffic through the shared read buffer leaves it intact', async () => {
      const { link } = await connectDemo(psk);
      const name = await link.read(H.deviceName);
      for (let i = 0; i < 5; i++) expect(text(await link.read(CUSTOM(1)))).toBe('ready');
      expect(text(name)).toBe('esphome-ble-demo');
      // A copy of its own, not a view into the socket's buffer (a Buffer there).
      expect(Buffer.isBuffer(name)).toBe(false);
      await link.disconnect();
    });

    it('ble-connection - a GATT error status becomes a GattError with status and name', async () => {
      const { link } = await connectDemo(psk);
      const error = (await link.read(H.secret).catch((e: unknown) => e)) as GattError;
      expect(error).toBeInstanceOf(GattError);
      expect(error.code).toBe('ESPAPI_ERR_GATT');
      expect(error.status).toBe(5);
      expect(error.statusName).toBe('ESP_GATT_INSUF_AUTHENTICATION');
      expect(error.handle).toBe(H.secret);
      expect(error.address).toBe(DEMO);
      expect(error.message).toContain('C0:FF:EE:00:00:01');
      expect(error.message).toContain('Insufficient authentication');
      // The link survives a failed operation.
      expect(text(await link.read(H.deviceName))).toBe('esphome-ble-demo');
      await link.disconnect();
    });

    it('ble-connection - pairing (Just Works) unlocks the encrypted characteristic', async () => {
      const { link, peripheral } = await connectDemo(psk);
      await expect(link.read(H.bondedOnly)).rejects.toMatchObject({ status: 5 });
      await link.pair({ timeout: 1000 });
      expect(peripheral.bonded).toBe(true);
      expect(text(await link.read(H.bondedOnly))).toBe('bonded');
      await link.disconnect();
    });

    it('ble-connection - setConnectionParams sends valid parameters and rejects invalid ones locally', async () => {
      const { link, session } = await connectDemo(psk);
      await link.setConnectionParams({ minInterval: 6, maxInterval: 24, latency: 0, timeout: 400 }, { timeout: 1000 });
      await link.setConnectionParams({ minInterval: 3200, maxInterval: 3200, latency: 499, timeout: 3200 }, { timeout: 1000 });
      for (const bad of [
        { minInterval: 5, maxInterval: 24, latency: 0, timeout: 400 },
        { minInterval: 24, maxInterval: 12, latency: 0, timeout: 400 },
        { minInterval: 6, maxInterval: 3201, latency: 0, timeout: 400 },
        { minInterval: 6, maxInterval: 24, latency: 500, timeout: 400 },
        { minInterval: 6, maxInterval: 24, latency: 0, timeout: 9 },
      ]) {
        await expect(link.setConnectionParams(bad)).rejects.toBeInstanceOf(InvalidArgumentError);
      }
      expect(count(session.received, MSG.params)).toBe(2);
      await link.disconnect();
      await expect(link.setConnectionParams({ minInterval: 6, maxInterval: 24, latency: 0, timeout: 400 })).rejects.toBeInstanceOf(
        BleDisconnectedError,
      );
    });

    it('ble-connection - link loss during a pending read rejects with BleDisconnectedError and frees the slot', async () => {
      const { node, proxy, session, link } = await connectDemo(psk, { profile: await demoProfile({ responseDelayMs: 200 }) });
      const reading = link.read(H.deviceName);
      const notifying = link.startNotify(H.counter, () => {});
      await expect.poll(() => count(session.received, MSG.read)).toBe(1);
      node.bluetooth.dropLink(DEMO);
      const error = (await reading.catch((e: unknown) => e)) as BleDisconnectedError;
      expect(error).toBeInstanceOf(BleDisconnectedError);
      expect(error.reason).toBe(0x08);
      expect(error.address).toBe(DEMO);
      await expect(notifying).rejects.toBeInstanceOf(BleDisconnectedError);
      expect(await link.closed()).toEqual({ reason: 0x08, reasonName: 'ESP_GATT_CONN_TIMEOUT', requested: false });
      expect(link.isConnected).toBe(false);
      expect(proxy.links.size).toBe(0);
      await expect(link.read(H.deviceName)).rejects.toBeInstanceOf(BleDisconnectedError);
      await expect.poll(() => proxy.slots).toEqual({ free: 3, limit: 3, allocated: [] });
      expect(node.bluetooth.allocated).toEqual([]);
      // disconnect() on a lost link is a no-op that waits for the slot.
      await link.disconnect();
    });

    it('ble-connection - a link that drops by itself (linkLossAfterMs) fails the pending read', async () => {
      const node = await startProxy(closers, {
        advertise: false,
        profile: await demoProfile({ responseDelayMs: 300 }),
        ...(psk === undefined ? {} : { psk }),
      });
      const api = await openApi(closers, node, { psk });
      const proxy = await BluetoothProxy.attach(api);
      node.bluetooth.setBehaviour(DEMO, { linkLossAfterMs: 60 });
      const link = await proxy.connect(DEMO);
      const error = await link.read(H.deviceName).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BleDisconnectedError);
      expect((error as BleDisconnectedError).reason).toBe(0x08);
      await expect.poll(() => proxy.slots?.free).toBe(3);
      expect(node.bluetooth.allocated).toEqual([]);
    });

    it('ble-connection - a GATT timeout rejects with TimeoutError and the link stays usable', async () => {
      const { link } = await connectDemo(psk, { profile: await demoProfile({ responseDelayMs: 150 }) });
      const error = await link.read(H.deviceName, { timeout: 30 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TimeoutError);
      // The late reply to the timed-out read is ignored; the next read gets its own answer.
      expect(text(await link.read(H.status, { timeout: 1000 }))).toBe('ready');
      await link.disconnect();
    });

    it('ble-connection - disconnect frees the slot before resolving and is idempotent', async () => {
      const { node, proxy, link } = await connectDemo(psk);
      expect(node.bluetooth.allocated).toEqual([DEMO]);
      await link.disconnect();
      expect(node.bluetooth.allocated).toEqual([]);
      expect(proxy.slots).toEqual({ free: 3, limit: 3, allocated: [] });
      expect(link.isConnected).toBe(false);
      expect(await link.closed()).toMatchObject({ requested: true });
      expect(proxy.links.size).toBe(0);
      await link.disconnect();
      await expect(link.read(H.deviceName)).rejects.toBeInstanceOf(BleDisconnectedError);
    });

    it('ble-connection - the API session closing ends the link with ConnectionClosedError', async () => {
      const { api, link } = await connectDemo(psk, { profile: await demoProfile({ responseDelayMs: 200 }) });
      const reading = link.read(H.deviceName);
      api.destroy();
      await expect(reading).rejects.toBeInstanceOf(ConnectionClosedError);
      expect(link.isConnected).toBe(false);
    });

    it('ble-connection - a cached connect skips service discovery and reads work', async () => {
      const { node, proxy, link, session } = await connectDemo(psk);
      const services = link.services!;
      const mtu = link.mtu;
      await link.disconnect();
      const before = node.bluetooth.servicesRequests;
      expect(before).toBe(1);
      const cached = await proxy.connect(DEMO, { cachedServices: services, cachedMtu: mtu, timeout: 2000 });
      expect(cached.usedCache).toBe(true);
      expect(cached.mtu).toBe(247);
      expect(await cached.getServices()).toBe(services);
      expect(text(await cached.read(H.deviceName))).toBe('esphome-ble-demo');
      expect(text(await cached.read(CUSTOM(1)))).toBe('ready');
      const got: number[] = [];
      const stop = await cached.startNotify(H.counter, (v) => got.push(v[0]!));
      await cached.write(H.stream, Uint8Array.of(5), { withResponse: false });
      await expect.poll(() => got).toEqual([5]);
      await stop();
      expect(node.bluetooth.servicesRequests).toBe(before);
      expect(count(session.received, MSG.services)).toBe(1);
      await cached.disconnect();
    });
  });
}
