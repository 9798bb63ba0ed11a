import { describe, expect, it } from 'vitest';
import type { Advertisement } from '../../src/bluetooth/advertisement.js';
import { BluetoothProxy, type SlotState } from '../../src/bluetooth/proxy-client.js';
import type { ApiConnection } from '../../src/connection/connection.js';
import {
  BleConnectError,
  ConnectionClosedError,
  EspApiError,
  FeatureMissingError,
  NotSubscriberError,
  SlowConsumerError,
  TimeoutError,
} from '../../src/errors.js';
import type { SimulatedNode, SimulatedNodeOptions } from '../../src/fixture-server/fleet.js';
import { BluetoothDeviceRequest, BluetoothDeviceRequestType } from '../../src/gen/api_pb.js';
import { useClosers } from '../helpers/closers.js';
import { TEST_PSK } from '../helpers/fixture.js';
import {
  type AttachedClient,
  advertisementBatch,
  attachClient,
  DEMO,
  nextAdvertisement,
  openApi as openApiOf,
  startProxy,
} from '../helpers/fleet.js';

/** Advertisers of the default profile. */
const SWITCHBOT = 0xc4f92675df22;
const TILT = 0x04a3169b095a;
/** The simulation's phantom slot holders start here (slots held by "another client"). */
const PHANTOM = 0xf00000000010;
const MSG_DEVICE_REQUEST = 68;

const closers = useClosers();

type Harness = AttachedClient & { node: SimulatedNode };

const startNode = (psk: string | undefined, options: SimulatedNodeOptions = {}): Promise<SimulatedNode> =>
  startProxy(closers, { name: 'proxy-test', ...(psk === undefined ? {} : { psk }), ...options });

const openApi = (node: SimulatedNode, psk: string | undefined): Promise<ApiConnection> => openApiOf(closers, node, { psk });

async function start(psk: string | undefined, options: SimulatedNodeOptions = {}): Promise<Harness> {
  const node = await startNode(psk, options);
  return { node, ...(await attachClient(closers, node, { psk })) };
}

/** A batch of 16 flags-only reports with consecutive addresses starting at `first`. */
const batch = (first: number) => advertisementBatch(first);

const hex = (bytes: Uint8Array | undefined): string => Buffer.from(bytes ?? []).toString('hex');
const count = (list: readonly number[], id: number): number => list.filter((t) => t === id).length;

for (const mode of ['plaintext', 'noise'] as const) {
  const psk = mode === 'noise' ? TEST_PSK : undefined;

  describe(`bluetooth proxy (${mode})`, () => {
    it('proxy-client - attach reads feature flags, scanner state and slots', async () => {
      const { node, api, proxy, session } = await start(psk, { slots: 4, slotsBusy: 1 });
      expect(api.encrypted).toBe(mode === 'noise');
      expect(proxy.features).toBe(0xff);
      expect(proxy.featureNames()).toEqual([
        'PASSIVE_SCAN',
        'ACTIVE_CONNECTIONS',
        'REMOTE_CACHING',
        'PAIRING',
        'CACHE_CLEARING',
        'RAW_ADVERTISEMENTS',
        'FEATURE_STATE_AND_MODE',
        'CONNECTION_PARAMS_SETTING',
      ]);
      expect(proxy.subscriberConfirmed).toBe(true);
      expect(proxy.scannerState).toEqual({ state: 'running', mode: 'active', configuredMode: 'active' });
      expect(proxy.slots).toEqual({ free: 3, limit: 4, allocated: [PHANTOM] });
      expect(node.bluetooth.subscriber).toBe(session);
      // Subscribe with the raw flag first, then ask for the slots.
      expect(session.received.filter((t) => t === 66 || t === 80)).toEqual([66, 80]);
    });

    it('proxy-client - delivers parsed advertisements of the default profile to callbacks', async () => {
      const { proxy } = await start(psk);
      const [withUuid, withName, switchbot, tilt] = await Promise.all([
        nextAdvertisement(proxy, (ad) => ad.address === DEMO && ad.serviceUuids.length > 0),
        nextAdvertisement(proxy, (ad) => ad.address === DEMO && ad.localName !== undefined),
        nextAdvertisement(proxy, (ad) => ad.address === SWITCHBOT && ad.serviceData.size > 0),
        nextAdvertisement(proxy, (ad) => ad.address === TILT),
      ]);
      expect(withUuid.mac).toBe('C0:FF:EE:00:00:01');
      expect(withUuid.addressType).toBe(1);
      expect(withUuid.flags).toBe(0x06);
      expect(withUuid.serviceUuids).toEqual(['a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b00']);
      expect(withUuid.rssi).toBeGreaterThanOrEqual(-55);
      expect(withUuid.rssi).toBeLessThanOrEqual(-49);
      expect(hex(withUuid.raw)).toBe('0201061107004b3a2f1e0d3b9c8a4e7d5be0c2f1a3');
      expect(withName.localName).toBe('esphome-ble-demo');
      expect(withName.shortName).toBe(false);
      expect(switchbot.mac).toBe('C4:F9:26:75:DF:22');
      expect([...switchbot.serviceData.keys()]).toEqual(['0000fd3d-0000-1000-8000-00805f9b34fb']);
      expect(hex(switchbot.serviceData.get('0000fd3d-0000-1000-8000-00805f9b34fb'))).toBe('6900640098a6');
      expect(tilt.addressType).toBe(0);
      expect(hex(tilt.manufacturerData.get(0x004c)).slice(0, 8)).toBe('0215a495');
      expect(proxy.addressTypeOf(DEMO)).toBe(1);
      expect(proxy.addressTypeOf(TILT)).toBe(0);
    });

    it('proxy-client - advertisements() iterates until break or abort', async () => {
      const { node, proxy } = await start(psk);
      let named: Advertisement | undefined;
      for await (const ad of proxy.advertisements()) {
        if (ad.address === DEMO && ad.localName !== undefined) {
          named = ad;
          break;
        }
      }
      expect(named?.localName).toBe('esphome-ble-demo');

      // Abort ends the stream once the reports already queued are consumed.
      const controller = new AbortController();
      let seen = 0;
      const ads = proxy.advertisements({ signal: controller.signal });
      node.bluetooth.sendRawBatch(batch(0x100));
      for await (const _ad of ads) {
        if (++seen === 3) controller.abort();
      }
      expect(seen).toBeGreaterThanOrEqual(3);
    });

    it('proxy-client - a slow advertisements() consumer loses the oldest reports and they are counted', async () => {
      const { node, api, proxy } = await start(psk, { advertise: false });
      const drops: number[] = [];
      const ads = proxy.advertisements({ highWaterMark: 10, onDrop: (n) => drops.push(n) });
      for (let i = 0; i < 5; i++) node.bluetooth.sendRawBatch(batch(0x100 + i * 16));
      await api.ping(); // the pong comes after every batch: all 80 reports were handled
      expect(proxy.droppedAdvertisements).toBe(70);
      expect(drops.at(-1)).toBe(70);
      const kept: number[] = [];
      for await (const ad of ads) {
        kept.push(ad.address);
        if (kept.length === 10) break;
      }
      expect(kept).toEqual(Array.from({ length: 10 }, (_, i) => 0x100 + 70 + i));
    });

    it("proxy-client - the 'error' overflow policy fails the iterator with SlowConsumerError", async () => {
      const { node, api, proxy } = await start(psk, { advertise: false });
      const ads = proxy.advertisements({ highWaterMark: 10, overflow: 'error' });
      for (let i = 0; i < 4; i++) node.bluetooth.sendRawBatch(batch(0x200 + i * 16));
      await api.ping();
      let received = 0;
      const error = await (async () => {
        for await (const _ad of ads) received++;
      })().catch((e: unknown) => e);
      expect(received).toBe(10);
      expect(error).toBeInstanceOf(SlowConsumerError);
      expect((error as SlowConsumerError).code).toBe('ESPAPI_ERR_SLOW_CONSUMER');
      expect((error as SlowConsumerError).dropped).toBe(1);
      // Later reports are neither queued nor counted against the dead iterator.
      node.bluetooth.sendRawBatch(batch(0x300));
      await api.ping();
      expect(proxy.droppedAdvertisements).toBe(1);
    });

    it('proxy-client - setScannerMode switches to passive and resolves once running', async () => {
      const { proxy } = await start(psk);
      const states: string[] = [];
      proxy.onScannerState((s) => states.push(`${s.state}/${s.mode}`));
      const state = await proxy.setScannerMode('passive', { timeout: 2000 });
      expect(state).toEqual({ state: 'running', mode: 'passive', configuredMode: 'active' });
      expect(proxy.scannerState).toEqual(state);
      expect(states).toEqual(['stopping/passive', 'stopped/passive', 'starting/passive', 'running/passive']);
      // Already in that mode: resolves at once without a request.
      expect(await proxy.setScannerMode('passive')).toEqual(state);
      expect((await proxy.setScannerMode('active', { timeout: 2000 })).mode).toBe('active');
    });

    it('proxy-client - slotUpdates() shows the slot taken during a connect and released after', async () => {
      const { proxy } = await start(psk);
      const seen: SlotState[] = [];
      const controller = new AbortController();
      const collecting = (async () => {
        for await (const slots of proxy.slotUpdates({ signal: controller.signal })) seen.push(slots);
      })();
      const link = await proxy.connect(DEMO);
      expect(proxy.slots).toEqual({ free: 2, limit: 3, allocated: [DEMO] });
      await link.disconnect();
      expect(proxy.slots).toEqual({ free: 3, limit: 3, allocated: [] });
      controller.abort();
      await collecting;
      expect(seen[0]).toEqual({ free: 3, limit: 3, allocated: [] });
      expect(seen).toContainEqual({ free: 2, limit: 3, allocated: [DEMO] });
      expect(seen.at(-1)).toEqual({ free: 3, limit: 3, allocated: [] });
      const firstTaken = seen.findIndex((s) => s.allocated.includes(DEMO));
      expect(seen.slice(firstTaken).findIndex((s) => s.allocated.length === 0)).toBeGreaterThan(0);
    });

    it('proxy-client - refreshSlots() asks the proxy for its current slots', async () => {
      const { node, proxy } = await start(psk);
      node.bluetooth.setBusySlots(2);
      expect(await proxy.refreshSlots()).toEqual({ free: 1, limit: 3, allocated: [PHANTOM, PHANTOM + 1] });
      expect(proxy.slots).toEqual({ free: 1, limit: 3, allocated: [PHANTOM, PHANTOM + 1] });
    });

    it('proxy-client - a passive-only proxy (0x61) attaches but refuses GATT connects', async () => {
      const { proxy, session } = await start(psk, { featureFlags: 0x61 });
      expect(proxy.features).toBe(0x61);
      expect(proxy.scannerState?.state).toBe('running');
      expect(proxy.slots).toBeUndefined();
      await expect(proxy.connect(DEMO)).rejects.toBeInstanceOf(FeatureMissingError);
      await expect(proxy.unpair(DEMO)).rejects.toBeInstanceOf(FeatureMissingError);
      await expect(proxy.clearCache(DEMO)).rejects.toBeInstanceOf(FeatureMissingError);
      const error = await proxy.connect(DEMO).catch((e: unknown) => e);
      expect((error as FeatureMissingError).code).toBe('ESPAPI_ERR_FEATURE_MISSING');
      expect(count(session.received, MSG_DEVICE_REQUEST)).toBe(0);
    });

    it('proxy-client - attach refuses a node without Bluetooth proxy features', async () => {
      const node = await startNode(psk, { featureFlags: 0 });
      const api = await openApi(node, psk);
      await expect(BluetoothProxy.attach(api)).rejects.toBeInstanceOf(FeatureMissingError);
      expect(node.bluetooth.subscriber).toBeUndefined();
      expect(await api.ping()).toBeGreaterThanOrEqual(0);
    });

    it('proxy-client - a second session cannot attach while the first holds the subscription', async () => {
      const { node, api: first, session } = await start(psk);
      const second = await openApi(node, psk);
      await expect(BluetoothProxy.attach(second, { subscriberCheckTimeout: 150 })).rejects.toBeInstanceOf(NotSubscriberError);
      expect(node.bluetooth.subscriber).toBe(session);
      // The failed attach leaves the session usable; once the first client leaves, the second may attach.
      await first.close();
      await expect.poll(() => node.bluetooth.subscriber).toBeUndefined();
      const proxy = await BluetoothProxy.attach(second, { subscriberCheckTimeout: 1000 });
      expect(proxy.subscriberConfirmed).toBe(true);
    });

    it('proxy-client - no free slot: BleConnectError outOfSlots, nothing left allocated', async () => {
      const { node, proxy, session } = await start(psk, { slotsBusy: 3 });
      expect(proxy.slots?.free).toBe(0);
      const error = (await proxy.connect(DEMO).catch((e: unknown) => e)) as BleConnectError;
      expect(error).toBeInstanceOf(BleConnectError);
      expect(error.failureClass).toBe('outOfSlots');
      expect(error.reason).toBe(0);
      expect(error.address).toBe(DEMO);
      expect(error.message).toContain('C0:FF:EE:00:00:01');
      expect(proxy.links.size).toBe(0);
      expect(node.bluetooth.allocated).toEqual([PHANTOM, PHANTOM + 1, PHANTOM + 2]);
      expect(count(session.received, MSG_DEVICE_REQUEST)).toBe(1);
      // Once another client frees a slot the same proxy connects.
      node.bluetooth.setBusySlots(2);
      const link = await proxy.connect(DEMO);
      expect(link.isConnected).toBe(true);
      await link.disconnect();
    });

    it('proxy-client - CONN_CANCEL (0x100) a moment after the connect, with slots free: the controller refused it', async () => {
      const { node, proxy } = await start(psk);
      node.bluetooth.setBehaviour(DEMO, { connectError: 0x100 });
      const error = (await proxy.connect(DEMO).catch((e: unknown) => e)) as BleConnectError;
      expect(error).toBeInstanceOf(BleConnectError);
      expect(error.failureClass).toBe('controllerRefused');
      expect(error.elapsedMs).toBeLessThan(8000);
      expect(error.reason).toBe(0x100);
      expect(error.reasonName).toBe('ESP_GATT_CONN_CONN_CANCEL');
      // The proxy freed the slot before the error was thrown.
      expect(node.bluetooth.allocated).toEqual([]);
      expect(proxy.slots?.free).toBe(3);
    });

    it('proxy-client - other failure reasons (0x3e) classify as aborted; an immediate retry works', async () => {
      const { node, proxy } = await start(psk);
      node.bluetooth.setBehaviour(DEMO, { connectError: 0x3e, connectErrorCount: 1 });
      const error = (await proxy.connect(DEMO).catch((e: unknown) => e)) as BleConnectError;
      expect(error).toBeInstanceOf(BleConnectError);
      expect(error.failureClass).toBe('aborted');
      expect(error.reason).toBe(0x3e);
      expect(error.reasonName).toBe('ESP_GATT_CONN_FAIL_ESTABLISH');
      expect(node.bluetooth.allocated).toEqual([]);
      // The late second connected=false of the failed attempt must not be taken for this attempt's answer.
      const link = await proxy.connect(DEMO, { timeout: 1000 });
      expect(link.isConnected).toBe(true);
      await link.disconnect();
    });

    it('proxy-client - reconnecting right after disconnect() is not confused by the late close event', async () => {
      const { node, proxy } = await start(psk);
      for (let i = 0; i < 3; i++) {
        const link = await proxy.connect(DEMO, { timeout: 1000 });
        await link.disconnect();
        expect(node.bluetooth.allocated).toEqual([]);
      }
      expect(node.bluetooth.connectRequests).toBe(3);
    });

    it('proxy-client - connect timeout cancels the attempt and frees the slot before throwing', async () => {
      const { node, proxy, session } = await start(psk);
      node.bluetooth.setBehaviour(DEMO, { hang: true });
      const error = await proxy.connect(DEMO, { timeout: 100 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TimeoutError);
      expect((error as TimeoutError).timeoutMs).toBe(100);
      expect(count(session.received, MSG_DEVICE_REQUEST)).toBe(2); // connect, then DISCONNECT
      expect(node.bluetooth.allocated).toEqual([]);
      expect(proxy.slots?.free).toBe(3);
      expect(proxy.links.size).toBe(0);
    });

    it('proxy-client - aborting a connect rejects with the reason at once and frees the slot behind it', async () => {
      const { node, proxy } = await start(psk);
      node.bluetooth.setBehaviour(DEMO, { hang: true });
      const controller = new AbortController();
      const connecting = proxy.connect(DEMO, { signal: controller.signal });
      await expect.poll(() => node.bluetooth.allocated).toEqual([DEMO]);
      const reason = new Error('user gave up');
      controller.abort(reason);
      await expect(connecting).rejects.toBe(reason);
      // The DISCONNECT went out before the rejection; the proxy frees the slot without the caller waiting for it.
      await expect.poll(() => node.bluetooth.allocated).toEqual([]);
      // An already aborted signal throws before anything is sent.
      await expect(proxy.connect(DEMO, { signal: controller.signal })).rejects.toBe(reason);
      expect(node.bluetooth.connectRequests).toBe(1);
    });

    it('proxy-client - the proxy closing mid-connect rejects with ConnectionClosedError', async () => {
      const { node, api, proxy } = await start(psk);
      node.bluetooth.setBehaviour(DEMO, { hang: true });
      const connecting = proxy.connect(DEMO);
      await expect.poll(() => node.bluetooth.connectRequests).toBe(1);
      await node.server.close();
      const error = await connecting.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConnectionClosedError);
      expect(proxy.links.size).toBe(0);
      expect(await api.closed()).toBeInstanceOf(EspApiError);
    });

    it('proxy-client - the session dropping mid-connect rejects with ConnectionClosedError', async () => {
      const { node, proxy, session } = await start(psk);
      node.bluetooth.setBehaviour(DEMO, { hang: true });
      const connecting = proxy.connect(DEMO);
      await expect.poll(() => node.bluetooth.connectRequests).toBe(1);
      session.close();
      await expect(connecting).rejects.toBeInstanceOf(ConnectionClosedError);
      expect(proxy.links.size).toBe(0);
      // Without its subscriber the proxy drops the attempt by itself.
      await expect.poll(() => node.bluetooth.allocated).toEqual([]);
    });

    it('proxy-client - unpair (answered with message 85) and clearCache work without a link', async () => {
      const { node, proxy } = await start(psk);
      const link = await proxy.connect(DEMO);
      await link.pair();
      const peripheral = node.bluetooth.peripherals.find((p) => p.address === DEMO)!;
      expect(peripheral.bonded).toBe(true);
      await link.disconnect();
      await proxy.unpair(DEMO, { timeout: 1000 });
      expect(peripheral.bonded).toBe(false);
      await proxy.clearCache(DEMO, { timeout: 1000 });
    });

    it('proxy-client - detach() closes every link and hands the subscription back', async () => {
      const { node, api, proxy } = await start(psk);
      const link = await proxy.connect(DEMO);
      await proxy.detach({ timeout: 1000 });
      expect(link.isConnected).toBe(false);
      expect(node.bluetooth.allocated).toEqual([]);
      await expect.poll(() => node.bluetooth.subscriber).toBeUndefined();
      // The session stays open, and another client may now be the subscriber.
      expect(await api.ping()).toBeGreaterThanOrEqual(0);
      const other = await BluetoothProxy.attach(await openApi(node, psk), { subscriberCheckTimeout: 1000 });
      expect(other.subscriberConfirmed).toBe(true);
    });

    it('proxy-client - releaseSlot() frees a slot no link of ours accounts for', async () => {
      const { node, api, proxy } = await start(psk);
      node.bluetooth.setBehaviour(DEMO, { hang: true });
      // An attempt this client object knows nothing about (e.g. left over from a crashed caller).
      api.send(BluetoothDeviceRequest, {
        address: DEMO,
        requestType: BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE,
        hasAddressType: true,
        addressType: 1,
      });
      await expect.poll(() => proxy.slots?.allocated).toEqual([DEMO]);
      await proxy.releaseSlot(DEMO, { timeout: 1000 });
      expect(node.bluetooth.allocated).toEqual([]);
      expect(proxy.slots).toEqual({ free: 3, limit: 3, allocated: [] });
      // Nothing held: the proxy answers at once and nothing changes.
      await proxy.releaseSlot(DEMO, { timeout: 1000 });
      expect(proxy.slots?.free).toBe(3);
    });
  });
}
