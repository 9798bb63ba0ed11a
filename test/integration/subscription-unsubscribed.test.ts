import { describe, expect, it } from 'vitest';
import { BluetoothProxy, type ConnectionStateChange } from '../../src/bluetooth/proxy-client.js';
import type { ApiConnection } from '../../src/connection/connection.js';
import { ConnectionClosedError, NotSubscriberError } from '../../src/errors.js';
import type { SimulatedNode, SimulatedNodeOptions } from '../../src/fixture-server/fleet.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  SubscribeBluetoothConnectionsFreeRequest,
  SubscribeBluetoothLEAdvertisementsRequest,
  UnsubscribeBluetoothLEAdvertisementsRequest,
} from '../../src/gen/api_pb.js';
import { startCliServer } from '../helpers/cli.js';
import { useClosers } from '../helpers/closers.js';
import { connectRequest, DEMO, openApi as openApiOf, startProxy } from '../helpers/fleet.js';
import { AT_ONCE_MS, LONG_WAIT_MS, sleep } from '../helpers/wait.js';

const MSG_DEVICE_REQUEST = 68;
/** Ids of the answers a BluetoothDeviceRequest can cause (69 connection, 81 slots, 85 pairing, 86 unpairing, 88 clear cache). */
const DEVICE_ANSWERS = new Set([69, 81, 85, 86, 88]);
/** Long enough for the simulation's 100 ms subscriber check and its replies. */
const QUIET_MS = 300;

const closers = useClosers();

const startNode = (options: SimulatedNodeOptions = {}): Promise<SimulatedNode> => startProxy(closers, { name: 'proxy-unsub', ...options });
const openApi = (port: number): Promise<ApiConnection> => openApiOf(closers, port);

/** Message ids the device sends to `api` from now on. */
function recordIncoming(api: ApiConnection): number[] {
  const seen: number[] = [];
  for (const id of DEVICE_ANSWERS) api.onRaw(id, (_payload, type) => seen.push(type));
  return seen;
}

const count = (list: readonly number[], id: number): number => list.filter((t) => t === id).length;

describe('unsubscribed clients (firmware: Bluetooth answers go to the subscriber only)', () => {
  it('fixture - a connect from a client that unsubscribed is answered to nobody, and its reserved slot is dropped', async () => {
    const node = await startNode();
    const api = await openApi(node.server.address.port);
    api.send(SubscribeBluetoothLEAdvertisementsRequest, { flags: 1 });
    api.send(UnsubscribeBluetoothLEAdvertisementsRequest, {});
    await expect.poll(() => node.bluetooth.subscriber).toBeUndefined();
    const seen = recordIncoming(api);
    api.send(BluetoothDeviceRequest, connectRequest());
    await expect.poll(() => node.bluetooth.connectRequests).toBe(1);
    // The firmware reserves the slot, then its 100 ms subscriber check disconnects it; nothing is sent to anyone.
    await sleep(QUIET_MS);
    expect(seen).toEqual([]);
    expect(node.bluetooth.allocated).toEqual([]);
    // The slot query is the one Bluetooth request answered to any client.
    const slots = await api.request(SubscribeBluetoothConnectionsFreeRequest, {}, BluetoothConnectionsFreeResponse, () => true, {
      timeout: 1000,
    });
    expect(slots.free).toBe(slots.limit);
    // Clear-cache and unpair are silent as well (the newest firmware checks for a subscriber before every answer).
    for (const requestType of [
      BluetoothDeviceRequestType.CLEAR_CACHE,
      BluetoothDeviceRequestType.UNPAIR,
      BluetoothDeviceRequestType.PAIR,
    ]) {
      api.send(BluetoothDeviceRequest, { address: DEMO, requestType });
    }
    await sleep(QUIET_MS);
    expect(seen).toEqual([81]);
  });

  it('fixture - the answers to a non-subscriber request go to the subscriber', async () => {
    const node = await startNode();
    const subscriberApi = await openApi(node.server.address.port);
    const subscriber = await BluetoothProxy.attach(subscriberApi);
    const states: ConnectionStateChange[] = [];
    subscriber.onConnectionState((state) => states.push(state));
    const other = await openApi(node.server.address.port);
    const seen = recordIncoming(other);
    other.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.DISCONNECT });
    await expect.poll(() => states.length).toBe(1);
    expect(states[0]).toMatchObject({ address: DEMO, connected: false, error: 0 });
    await sleep(50);
    expect(seen).toEqual([]);
    await subscriber.detach({ timeout: 1000 });
  });

  it('fixture - esphome-ble serve answers a connect from an unsubscribed client to nobody', async () => {
    const server = await startCliServer(['--port', '0']);
    try {
      const { port } = server.lines[0] as { port: number };
      const api = await openApi(port);
      const proxy = await BluetoothProxy.attach(api);
      await proxy.unsubscribe();
      const seen = recordIncoming(api);
      api.send(BluetoothDeviceRequest, connectRequest());
      await sleep(QUIET_MS);
      expect(seen).toEqual([]);
      // Our client knows it is not the subscriber and does not wait for that silence.
      const started = performance.now();
      await expect(proxy.connect(DEMO, { timeout: LONG_WAIT_MS })).rejects.toBeInstanceOf(NotSubscriberError);
      expect(performance.now() - started).toBeLessThan(AT_ONCE_MS);
      api.destroy();
    } finally {
      await server.stop();
    }
  });

  it('proxy-client - after unsubscribe(), Bluetooth requests fail at once with NotSubscriberError and nothing is sent', async () => {
    const node = await startNode();
    const sessionReady = node.server.nextSession();
    const api = await openApi(node.server.address.port);
    const proxy = await BluetoothProxy.attach(api);
    const session = await sessionReady;
    await proxy.unsubscribe();
    expect(proxy.subscription.state).toBe('unsubscribed');
    await expect.poll(() => node.bluetooth.subscriber).toBeUndefined();
    const sentBefore = count(session.received, MSG_DEVICE_REQUEST);
    const started = performance.now();
    const calls = [
      proxy.connect(DEMO, { timeout: LONG_WAIT_MS }),
      proxy.clearCache(DEMO, { timeout: LONG_WAIT_MS }),
      proxy.unpair(DEMO, { timeout: LONG_WAIT_MS }),
      proxy.releaseSlot(DEMO, { timeout: LONG_WAIT_MS }),
      proxy.setScannerMode('passive', { timeout: LONG_WAIT_MS }),
    ];
    for (const call of calls) {
      const error = await call.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(NotSubscriberError);
      expect((error as NotSubscriberError).code).toBe('ESPAPI_ERR_NOT_SUBSCRIBER');
      expect((error as NotSubscriberError).reason).toBe('unsubscribed');
    }
    expect(performance.now() - started).toBeLessThan(AT_ONCE_MS);
    await sleep(20);
    expect(count(session.received, MSG_DEVICE_REQUEST)).toBe(sentBefore);
    // Resubscribing makes the proxy answer again.
    await proxy.resubscribe();
    expect(proxy.subscription).toMatchObject({ state: 'subscribed', confirmed: true });
    const link = await proxy.connect(DEMO);
    expect(link.isConnected).toBe(true);
    await link.disconnect();
  });

  it('proxy-client - unsubscribe() rejects a pending connect at once; the firmware drops the reserved slot', async () => {
    const node = await startNode();
    node.bluetooth.setBehaviour(DEMO, { hang: true });
    const api = await openApi(node.server.address.port);
    const proxy = await BluetoothProxy.attach(api);
    const pending = proxy.connect(DEMO, { timeout: LONG_WAIT_MS });
    await expect.poll(() => node.bluetooth.allocated).toEqual([DEMO]);
    const started = performance.now();
    await proxy.unsubscribe();
    await expect(pending).rejects.toBeInstanceOf(NotSubscriberError);
    expect(performance.now() - started).toBeLessThan(AT_ONCE_MS);
    await expect.poll(() => node.bluetooth.allocated).toEqual([]);
  });

  it('proxy-client - after detach(), requests fail at once with ConnectionClosedError', async () => {
    const node = await startNode();
    const api = await openApi(node.server.address.port);
    const proxy = await BluetoothProxy.attach(api);
    await proxy.detach();
    await expect(proxy.connect(DEMO, { timeout: LONG_WAIT_MS })).rejects.toBeInstanceOf(ConnectionClosedError);
    await expect(proxy.resubscribe()).rejects.toBeInstanceOf(ConnectionClosedError);
  });
});
