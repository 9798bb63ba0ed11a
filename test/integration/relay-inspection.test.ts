import { afterEach, describe, expect, it } from 'vitest';
import { parseMac } from '../../src/bluetooth/address.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceConnectionResponse,
  BluetoothDeviceRequest,
  SubscribeBluetoothConnectionsFreeRequest,
  SubscribeBluetoothLEAdvertisementsRequest,
} from '../../src/gen/api_pb.js';
import { inspectProxies, needsSecondLook } from '../../src/inspect/proxy-inspector.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { profileWithDevices } from '../helpers/fleet.js';
import {
  CLONE,
  type Closers,
  connectRequest,
  DEMO,
  HOME_ASSISTANT,
  OTHER_HOST,
  rawClient,
  STEP_MS,
  startRelay,
  startUpstream,
} from '../helpers/relay.js';

const closers: Closers = [];

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** A two-slot proxy behind a relay, Home Assistant and another host holding one link each: nothing left for anyone else. */
async function fullRelay(): Promise<{ port: number; marker: number }> {
  const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 2 });
  const { port } = await startRelay(closers, node);
  const ha = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
  const other = await rawClient(closers, port, { localAddress: OTHER_HOST });
  ha.send(BluetoothDeviceRequest, connectRequest(DEMO));
  other.send(BluetoothDeviceRequest, connectRequest(CLONE));
  await ha.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected);
  await other.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE && m.connected);
  return { port, marker: parseMac(node.bluetooth.bluetoothMac) };
}

describe('relay inspection', () => {
  it('relay inspection - a client that has not subscribed is told the proxy’s free and limit without addresses; subscribing, it gets its own view', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(2), slots: 3 });
    const { port } = await startRelay(closers, node);
    const ha = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    for (const address of [DEMO, CLONE]) {
      ha.send(BluetoothDeviceRequest, connectRequest(address));
      await ha.next(BluetoothDeviceConnectionResponse, (m) => m.address === address && m.connected);
    }
    const inspector = await rawClient(closers, port, { subscribe: null });
    let mark = inspector.received.length;
    inspector.send(SubscribeBluetoothConnectionsFreeRequest, {});
    // The proxy's truth as counts: one of three free; Home Assistant's devices are not named.
    expect(await inspector.next(BluetoothConnectionsFreeResponse, () => true, mark)).toEqual(
      BluetoothConnectionsFreeResponse.create({ free: 1, limit: 3, allocated: [] }),
    );
    // Once it subscribes it may connect: its own view follows at once (the one free slot, within its quota).
    mark = inspector.received.length;
    inspector.send(SubscribeBluetoothLEAdvertisementsRequest, { flags: 1 });
    expect(await inspector.next(BluetoothConnectionsFreeResponse, () => true, mark)).toEqual(
      BluetoothConnectionsFreeResponse.create({ free: 1, limit: 1, allocated: [] }),
    );
  });

  it("relay inspection - the full view's marker is no device: inspection lists no allocation and needs no second look, with or without the subscription", async () => {
    const { port } = await fullRelay();
    const target = { host: '127.0.0.1', port };
    const [plain] = await inspectProxies([target], { timeout: 3000 });
    expect(plain?.inspection?.slots).toMatchObject({ free: 0, limit: 2, allocated: [] });
    expect(plain?.inspection?.allocations).toEqual([]);
    const [subscribed] = await inspectProxies([target], { subscribe: true, timeout: 3000 });
    // The relay shows a subscriber with nothing, when nothing is left, one slot taken by the proxy's own address.
    expect(subscribed?.inspection?.slots).toMatchObject({ free: 0, limit: 0, allocated: [] });
    expect(subscribed?.inspection?.allocations).toEqual([]);
    expect(needsSecondLook([plain!, subscribed!])).toBe(false);
  });

  it('relay inspection - a pool behind a full relay: the marker is no orphan (reapOrphans answers at once) and its slot report reads full', async () => {
    const { port, marker } = await fullRelay();
    const pool = new ProxyPool([{ host: '127.0.0.1', port }], { connectTimeout: STEP_MS });
    closers.push(() => pool.close());
    await pool.ready({ timeout: STEP_MS });
    await expect.poll(() => pool.proxies()[0]?.slots, { timeout: STEP_MS }).toEqual({ free: 0, limit: 0, allocated: [] });
    const started = performance.now();
    expect(await pool.reapOrphans({ timeout: STEP_MS })).toEqual([]);
    expect(performance.now() - started).toBeLessThan(STEP_MS / 2);
    expect(pool.proxies()[0]?.slots?.allocated).not.toContain(marker);
  });
});
