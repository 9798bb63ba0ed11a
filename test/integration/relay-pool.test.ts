import { afterEach, describe, expect, it } from 'vitest';
import { BluetoothProxy } from '../../src/bluetooth/proxy-client.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { DeviceHeldError, OutOfSlotsError } from '../../src/errors.js';
import type { FirmwareGeneration } from '../../src/fixture-server/firmware.js';
import { type SimulatedNode, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceConnectionResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  BluetoothGATTReadRequest,
} from '../../src/gen/api_pb.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { ADVICE } from '../../src/pool/retry-policy.js';
import { RelayServer } from '../../src/relay/relay-server.js';
import { profileWithDevices, waitHeard } from '../helpers/fleet.js';
import { addressing, connectRequest, HOME_ASSISTANT, rawClient, recordUpstream, settle } from '../helpers/relay.js';

const DEMO = 'C0:FF:EE:00:00:01';
const CLONE = 0xc0ffee000100;
const DEMO_ADDRESS = 0xc0ffee000001;
const STEP_MS = 2000;

const closers: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function setUp(
  firmware?: FirmwareGeneration,
  slotsPerClient?: number,
): Promise<{ node: SimulatedNode; relay: RelayServer; port: number }> {
  const node = await startSimulatedProxy({
    name: 'shared-proxy',
    slots: 2,
    profile: await profileWithDevices(1),
    ...(firmware === undefined ? {} : { firmware }),
  });
  closers.push(() => node.server.close());
  const relay = new RelayServer({
    proxies: [{ host: '127.0.0.1', port: node.server.address.port }],
    backoff: { initialDelay: 20, jitter: 0 },
    ...(slotsPerClient === undefined ? {} : { slotsPerClient }),
  });
  closers.push(() => relay.close());
  const [listening] = await relay.start({ timeout: STEP_MS });
  return { node, relay, port: listening!.port };
}

async function downstream(port: number): Promise<BluetoothProxy> {
  const api = await ApiConnection.connect({ host: '127.0.0.1', port, timeout: STEP_MS });
  closers.push(() => api.destroy());
  return BluetoothProxy.attach(api, { timeout: STEP_MS });
}

describe('relay with an in-process pool', () => {
  it("relay pool - a ProxyPool uses the relay's upstream session directly and its slots count for the clients", async () => {
    const { node, relay, port } = await setUp();
    const pool = new ProxyPool();
    closers.push(() => pool.close());
    const id = pool.addSession(relay.proxies[0]!);
    expect(id).toBe(relay.proxies[0]!.id);
    const client = await downstream(port);

    const device = await pool.establishConnection(DEMO, { timeout: STEP_MS, notFoundWait: 1500 });
    expect(device.proxy).toBe(id);
    expect(new TextDecoder().decode(await device.read(12))).toBe('ready');
    // No second API session on the proxy: the pool rode the relay's.
    expect(node.server.sessions.size).toBe(1);
    // The downstream client sees the pool's link as a taken slot, and the relay reports it as local.
    await expect.poll(() => client.slots?.free, { timeout: STEP_MS }).toBe(1);
    expect(client.slots?.allocated).toEqual([]);
    expect(relay.snapshot().proxies[0]?.slots.local).toEqual([DEMO]);

    // A device a downstream client holds is refused to the pool (no second central on one link).
    const held = await client.connect(CLONE, { addressType: 1, timeout: STEP_MS });
    const refused = await pool.establishConnection(CLONE, { maxAttempts: 1, timeout: STEP_MS, slotWait: 0 }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OutOfSlotsError);
    expect(held.isConnected).toBe(true);

    await device.disconnect({ timeout: STEP_MS });
    await expect.poll(() => relay.snapshot().proxies[0]?.slots.local, { timeout: STEP_MS }).toEqual([]);
    // Closing the pool leaves the relay's session alone.
    await pool.close();
    expect(relay.proxies[0]!.bluetooth?.api.isClosed).toBe(false);
    expect(new TextDecoder().decode(await held.read(12, { timeout: STEP_MS }))).toBe('ready');
    await held.disconnect({ timeout: STEP_MS });
  });

  it("relay pool - the pool follows the relay's upstream across a proxy restart", async () => {
    const { node, relay } = await setUp();
    const upstreamPort = node.server.address.port;
    const pool = new ProxyPool();
    closers.push(() => pool.close());
    const id = pool.addSession(relay.proxies[0]!);
    expect(pool.proxies()[0]).toMatchObject({ id, online: true, name: 'shared-proxy' });
    await node.server.close();
    await expect.poll(() => pool.proxies()[0]?.online, { timeout: STEP_MS }).toBe(false);
    const restarted = await startSimulatedProxy({
      name: 'shared-proxy',
      slots: 2,
      port: upstreamPort,
      profile: await profileWithDevices(1),
    });
    closers.push(() => restarted.server.close());
    await expect.poll(() => pool.proxies()[0]?.online, { timeout: 3000 }).toBe(true);
    const device = await pool.establishConnection(DEMO, { timeout: STEP_MS, notFoundWait: 1500 });
    expect(device.proxy).toBe(id);
    await device.disconnect({ timeout: STEP_MS });
  });

  it('relay pool - in front of 2024.10 firmware (no `allocated` list) a pool link takes one slot, not two', async () => {
    const { relay, port } = await setUp('2024.10');
    const pool = new ProxyPool();
    closers.push(() => pool.close());
    pool.addSession(relay.proxies[0]!);
    const client = await downstream(port);
    const device = await pool.establishConnection(DEMO, { timeout: STEP_MS, notFoundWait: 1500 });
    await expect.poll(() => relay.snapshot().proxies[0]?.slots.free, { timeout: STEP_MS }).toBe(1);
    expect(client.slots?.free).toBe(1);
    // The one slot left is really free for the client.
    const held = await client.connect(CLONE, { addressType: 1, timeout: STEP_MS });
    await expect.poll(() => client.slots?.free, { timeout: STEP_MS }).toBe(0);
    await Promise.all([device.disconnect({ timeout: STEP_MS }), held.disconnect({ timeout: STEP_MS })]);
    await expect.poll(() => relay.snapshot().proxies[0]?.slots.free, { timeout: STEP_MS }).toBe(2);
  });

  it('relay pool - a device another relay client holds: refused as out of slots (a full view right before the 0x100), no path penalty, advice about slots', async () => {
    // Both pools connect from 127.0.0.1, one client address for the relay's quota: lift it so each may hold a slot.
    const { port } = await setUp(undefined, Number.POSITIVE_INFINITY);
    const remote = (): ProxyPool => {
      const pool = new ProxyPool([{ host: '127.0.0.1', port }], { connectTimeout: STEP_MS });
      closers.push(() => pool.close());
      return pool;
    };
    const a = remote();
    const b = remote();
    await Promise.all([a.ready({ timeout: STEP_MS }), b.ready({ timeout: STEP_MS })]);
    await Promise.all([waitHeard(a, DEMO, 1), waitHeard(b, DEMO, 1)]);
    const held = await a.establishConnection(DEMO, { timeout: STEP_MS });
    // B's view of the relay still has a free slot (for other devices) and does not list the device: only its own links.
    await expect.poll(() => b.proxies()[0]?.slots?.free, { timeout: STEP_MS }).toBeGreaterThan(0);
    const refused = await b.establishConnection(DEMO, { maxAttempts: 1, timeout: STEP_MS }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OutOfSlotsError);
    expect(refused).toMatchObject({ code: 'ESPAPI_ERR_OUT_OF_SLOTS', failureClass: 'outOfSlots' });
    expect((refused as OutOfSlotsError).advice).toContain(ADVICE.outOfSlots);
    expect(ADVICE.outOfSlots).toMatch(/relay/);
    // Slots held by others say nothing against the path: no routing penalty for the proxy.
    expect(b.proxies()[0]?.failureScore).toBe(0);
    // B's true view follows the refusal: the free slot is still there for another device.
    await expect.poll(() => b.proxies()[0]?.slots?.free, { timeout: STEP_MS }).toBeGreaterThan(0);
    await held.disconnect({ timeout: STEP_MS });
  });

  it('relay pool - a slot taken by one client is pushed to every other subscriber at once, before the proxy reports it', async () => {
    const { node, port } = await setUp(undefined, Number.POSITIVE_INFINITY);
    const ha = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    const ours = await downstream(port);
    // Home Assistant holds one link (the proxy has listed its slots since), one slot is left.
    ha.send(BluetoothDeviceRequest, connectRequest(DEMO_ADDRESS));
    await ha.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO_ADDRESS && m.connected);
    await expect.poll(() => ours.slots?.free, { timeout: STEP_MS }).toBe(1);
    // The proxy stops reading the relay: only the relay can tell Home Assistant that the slot is taken.
    const relayAtProxy = [...node.server.sessions][0]!;
    relayAtProxy.holdInput();
    closers.push(() => relayAtProxy.releaseInput());
    const mark = ha.received.length;
    ours.api.send(BluetoothDeviceRequest, connectRequest(CLONE));
    expect(await ha.next(BluetoothConnectionsFreeResponse, () => true, mark)).toEqual(
      BluetoothConnectionsFreeResponse.create({ free: 0, limit: 1, allocated: [DEMO_ADDRESS] }),
    );
  });

  it("relay pool - the in-process pool never acts on a relay client's link: reapOrphans skips it, and the shared session refuses the pool any request for it", async () => {
    const { node, relay, port } = await setUp();
    const pool = new ProxyPool();
    closers.push(() => pool.close());
    pool.addSession(relay.proxies[0]!);
    await pool.ready({ timeout: STEP_MS });
    const ha = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    ha.send(BluetoothDeviceRequest, connectRequest(DEMO_ADDRESS));
    await ha.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO_ADDRESS && m.connected);
    // The shared session is the proxy's subscriber: its slot list is the proxy's, Home Assistant's link included.
    await expect.poll(() => pool.proxies()[0]?.slots?.allocated, { timeout: STEP_MS }).toEqual([DEMO_ADDRESS]);
    const upstream = recordUpstream(node);

    expect(await pool.reapOrphans({ dryRun: true })).toEqual([]);
    expect(await pool.reapOrphans({ timeout: STEP_MS })).toEqual([]);
    // By construction too: whatever of the pool's would reach the link is refused before it is sent.
    const bluetooth = relay.proxies[0]!.bluetooth!;
    expect(() =>
      bluetooth.api.send(BluetoothDeviceRequest, { address: DEMO_ADDRESS, requestType: BluetoothDeviceRequestType.DISCONNECT }),
    ).toThrow(DeviceHeldError);
    expect(() => bluetooth.api.send(BluetoothGATTReadRequest, { address: DEMO_ADDRESS, handle: 12 })).toThrow(DeviceHeldError);
    await expect(bluetooth.unpair(DEMO_ADDRESS, { timeout: STEP_MS })).rejects.toMatchObject({
      code: 'ESPAPI_ERR_DEVICE_HELD',
      address: DEMO_ADDRESS,
    });
    // Refused before it went out, so nothing waits for an answer: the same request may be made again at once.
    await expect(bluetooth.unpair(DEMO_ADDRESS, { timeout: STEP_MS })).rejects.toBeInstanceOf(DeviceHeldError);
    await expect(bluetooth.clearCache(DEMO_ADDRESS, { timeout: STEP_MS })).rejects.toBeInstanceOf(DeviceHeldError);
    await bluetooth.releaseSlot(DEMO_ADDRESS, { timeout: STEP_MS });
    await settle(100);
    expect(addressing(upstream, DEMO_ADDRESS)).toEqual([]);
    expect(ha.all(BluetoothDeviceConnectionResponse).filter((m) => m.address === DEMO_ADDRESS && !m.connected)).toEqual([]);
    expect(node.bluetooth.linkAddresses).toEqual([DEMO_ADDRESS]);
    // Home Assistant's own requests still reach its link.
    ha.send(BluetoothDeviceRequest, { address: DEMO_ADDRESS, requestType: BluetoothDeviceRequestType.DISCONNECT });
    await ha.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO_ADDRESS && !m.connected);
  });
});
