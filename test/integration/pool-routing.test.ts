import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseMac } from '../../src/bluetooth/address.js';
import { GattCache } from '../../src/cache/gatt-cache.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { InvalidArgumentError, NoProxyAvailableError } from '../../src/errors.js';
import type { SimulatedFleet } from '../../src/fixture-server/fleet.js';
import { BluetoothDeviceRequest, BluetoothDeviceRequestType } from '../../src/gen/api_pb.js';
import { ProxyPool, type ProxyPoolOptions } from '../../src/pool/proxy-pool.js';
import { useClosers } from '../helpers/closers.js';
import {
  connectRequest,
  DEMO_MAC,
  FAST_POOL,
  poolOf,
  profileWithDevices,
  startPooledFleet,
  startTestFleet,
  subscribeAsOther,
  waitHeard,
  watchSlots,
} from '../helpers/fleet.js';
import { AT_ONCE_MS, LONG_WAIT_MS, sleep } from '../helpers/wait.js';

// Routing users ask for, over real sockets: pin a device to a proxy with fallback (habluetooth PR #604), route a
// bonded device to the proxy that holds its bond, persisted with the GATT cache (habluetooth#628), and heal ghost
// links a proxy never finished tearing down (bleak-esphome PR #422, home-assistant/core#176516). Each decision shows
// in the attempt timeline and in pool.route() / explain.

const DEMO = parseMac(DEMO_MAC);

const closers = useClosers();

/** Another client's CONNECT for the demo device (answered to the proxy's subscriber). */
function connectAs(api: ApiConnection): void {
  api.send(BluetoothDeviceRequest, connectRequest());
}

/** proxy-1 hears the demo device 20 dB better than proxy-2 (the score would always pick proxy-1). */
async function setup(
  options: ProxyPoolOptions = {},
  perNode: Parameters<typeof startTestFleet>[2] = [{ rssiOffset: 10 }, { rssiOffset: -10 }],
  heardBy = perNode.length,
): Promise<{ fleet: SimulatedFleet; pool: ProxyPool }> {
  return startPooledFleet(closers, { perNode, pool: { ...FAST_POOL, ...options }, heardBy, checkSlots: true });
}

describe('pool - pin with fallback, require, exclude', () => {
  it('pool-routing - a pinned proxy goes first despite a 20 dB worse signal, and the timeline says why', async () => {
    const { pool } = await setup();
    expect(pool.explain(DEMO_MAC)[0]?.proxy).toBe('proxy-1');
    const connection = await pool.establishConnection(DEMO_MAC, { prefer: ['proxy-2'] });
    expect(connection.proxy).toBe('proxy-2');
    expect(connection.timeline[0]!.route).toEqual([
      expect.objectContaining({ kind: 'prefer', proxy: 'proxy-2', detail: expect.stringContaining('ahead of proxy-1') }),
    ]);
    await connection.disconnect();
  });

  it('pool-routing - a pinned proxy that cannot take the connect (full) falls back to the others, and says so', async () => {
    const { pool } = await setup({}, [{ rssiOffset: 10 }, { rssiOffset: -10, slotsBusy: 3 }]);
    const connection = await pool.establishConnection(DEMO_MAC, { prefer: ['proxy-2'], slotWait: 0 });
    expect(connection.proxy).toBe('proxy-1');
    expect(connection.timeline[0]!.route).toEqual([
      expect.objectContaining({ kind: 'fallback', proxy: 'proxy-2', detail: expect.stringContaining('no free slot') }),
    ]);
    await connection.disconnect();
  });

  it('pool-routing - the pool keeps per-device routes; proxies are named by node name, host:port or Bluetooth MAC', async () => {
    const { fleet, pool } = await setup();
    const proxy2 = fleet.nodes[1]!;
    // By host:port (the pool knows proxy-2 as "proxy-2" from its config name).
    pool.setRoute(DEMO_MAC, { prefer: [`127.0.0.1:${proxy2.server.address.port}`] });
    expect(pool.routeOf(DEMO)).toEqual({ prefer: [`127.0.0.1:${proxy2.server.address.port}`] });
    const first = await pool.establishConnection(DEMO_MAC);
    expect(first.proxy).toBe('proxy-2');
    await first.disconnect();
    // By the proxy's Bluetooth MAC, in lower case with dashes; a call's own `prefer` wins over the pool's route.
    pool.setRoute(DEMO_MAC, { prefer: [proxy2.bluetooth.bluetoothMac.toLowerCase().replaceAll(':', '-')] });
    expect(pool.route(DEMO_MAC).ranking[0]?.proxy).toBe('proxy-2');
    const second = await pool.establishConnection(DEMO_MAC, { prefer: ['proxy-1'] });
    expect(second.proxy).toBe('proxy-1');
    await second.disconnect();
    pool.setRoute(DEMO_MAC, undefined);
    expect(pool.routeOf(DEMO_MAC)).toBeUndefined();
  });

  it('pool-routing - routes given to the pool at construction; exclude adds to the route, require replaces it', async () => {
    const { pool } = await setup({ routes: { [DEMO_MAC.toLowerCase()]: { require: ['proxy-2'] } } }, undefined, 1);
    expect(pool.explain(DEMO_MAC).map((r) => r.proxy)).toEqual(['proxy-2']);
    const pinned = await pool.establishConnection(DEMO_MAC);
    expect(pinned.proxy).toBe('proxy-2');
    expect(pinned.timeline[0]!.route).toEqual([expect.objectContaining({ kind: 'require' })]);
    await pinned.disconnect();
    const overridden = await pool.establishConnection(DEMO_MAC, { require: ['proxy-1', 'proxy-2'], exclude: ['proxy-2'] });
    expect(overridden.proxy).toBe('proxy-1');
    await overridden.disconnect();
  });

  it("pool-routing - a call's require or exclude naming no proxy, or a require that exclude empties, is refused at once; a pin falls back", async () => {
    const { fleet, pool } = await setup();
    const started = performance.now();
    const wait = { notFoundWait: LONG_WAIT_MS };
    await expect(pool.establishConnection(DEMO_MAC, { require: ['kitchen'], ...wait })).rejects.toThrow(InvalidArgumentError);
    await expect(pool.establishConnection(DEMO_MAC, { exclude: ['proxy-9'], ...wait })).rejects.toThrow(
      /No proxy of the pool is named "proxy-9"/,
    );
    await expect(pool.establishConnection(DEMO_MAC, { require: ['proxy-1'], exclude: ['proxy-1'], ...wait })).rejects.toThrow(
      /no proxy is left/,
    );
    // No wait at all: far below the not-found wait each call was given.
    expect(performance.now() - started).toBeLessThan(AT_ONCE_MS);
    expect(fleet.nodes.map((n) => n.bluetooth.connectRequests)).toEqual([0, 0]);
    // A pin is a preference, never a reason to fail: the connect goes on by score and says why.
    const pinned = await pool.establishConnection(DEMO_MAC, { prefer: ['proxy-9'] });
    expect(pinned.proxy).toBe('proxy-1');
    expect(pinned.timeline[0]!.route).toContainEqual(
      expect.objectContaining({ kind: 'fallback', detail: '"proxy-9" names no proxy of the pool (yet): left out' }),
    );
    await pinned.disconnect();
  });

  it("pool-routing - the pool's own routes never fail a connect on a name: an unknown pin falls back; an unknown require allows no proxy", async () => {
    const { fleet, pool } = await setup({
      routes: { [DEMO_MAC]: { prefer: ['proxy-3'] }, 'C0:FF:EE:00:00:02': { require: ['proxy-3'] } },
    });
    // A proxy removed from the pool (or not there yet) that the pool's route still pins: the others are used.
    expect(pool.route(DEMO_MAC).ranking).toHaveLength(2);
    const connection = await pool.establishConnection(DEMO_MAC);
    expect(connection.proxy).toBe('proxy-1');
    expect(connection.timeline[0]!.route).toContainEqual(
      expect.objectContaining({ kind: 'fallback', detail: expect.stringContaining('"proxy-3"') }),
    );
    await connection.disconnect();
    // A pool route that requires it allows nothing at all (never "no restriction"): no connect goes out anywhere.
    const requests = fleet.nodes.map((n) => n.bluetooth.connectRequests);
    const error = await pool.establishConnection('C0:FF:EE:00:00:02', { notFoundWait: 100, maxAttempts: 2 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoProxyAvailableError);
    expect((error as Error).message).toContain('require names "proxy-3", which matches no proxy of the pool');
    expect(fleet.nodes.map((n) => n.bluetooth.connectRequests)).toEqual(requests);
  });

  it('pool-routing - require naming a proxy not known yet (a proxy still unidentified) allows no other proxy', async () => {
    const fleet = await startTestFleet(2, await profileWithDevices(0), [], closers);
    const node1 = fleet.nodes[0]!;
    const node2 = fleet.nodes[1]!;
    // Configured by address only, and one of them never answers: the names cannot be checked, so nothing is refused
    // at once; but "attic" matches none of the proxies that are up, so none of them may connect.
    const pool = new ProxyPool(
      [
        { host: '127.0.0.1', port: node1.server.address.port },
        { host: '127.0.0.1', port: node2.server.address.port },
        { host: '127.0.0.1', port: 1 },
      ],
      FAST_POOL,
    );
    closers.push(() => pool.close());
    watchSlots(closers, fleet.nodes, pool);
    await pool.ready({ timeout: 1500 }).catch(() => {});
    await waitHeard(pool, DEMO_MAC, 2);
    const plan = pool.route(DEMO_MAC, { require: ['attic'] });
    expect(plan.ranking).toEqual([]);
    expect(plan.decisions.map((d) => d.detail)).toEqual([
      'require names no proxy of the pool: none may connect',
      '"attic" names no proxy of the pool (yet): left out',
    ]);
    const error = await pool
      .establishConnection(DEMO_MAC, { require: ['attic'], notFoundWait: 100, maxAttempts: 2 })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ESPAPI_ERR_NO_PROXY', message: expect.stringContaining('require names "attic"') });
    expect((error as NoProxyAvailableError).timeline).toHaveLength(2);
    expect([node1.bluetooth.connectRequests, node2.bluetooth.connectRequests]).toEqual([0, 0]);
  });
});

describe('pool - bonds route to the proxy that holds them', () => {
  it('pool-routing - after pairing through a proxy, the device connects there first; a new pool reads it from the cache file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pool-bonds-'));
    closers.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'cache.json');
    const cache = new GattCache({ file });
    const { fleet, pool: first } = await setup({ cache });
    const paired = await first.establishConnection(DEMO_MAC, { require: ['proxy-2'], pair: true });
    expect(paired.proxy).toBe('proxy-2');
    expect(cache.bondOf(DEMO_MAC)).toMatchObject({ proxy: 'proxy-2' });
    await paired.disconnect();
    const again = await first.establishConnection(DEMO_MAC);
    expect(again.proxy).toBe('proxy-2');
    expect(again.timeline[0]!.route).toEqual([
      expect.objectContaining({
        kind: 'bond',
        proxy: 'proxy-2',
        detail: 'proxy-2 holds the bond and goes first, ahead of proxy-1 (better score)',
      }),
    ]);
    // The bonded-only characteristic (handle 24) reads: the bond really is on this proxy's link.
    expect((await again.read(24)).length).toBeGreaterThan(0);
    await again.disconnect();
    await cache.flush();
    expect(JSON.parse(await readFile(file, 'utf8')).bonds).toEqual({ [DEMO_MAC]: expect.objectContaining({ proxy: 'proxy-2' }) });
    await first.close();

    // A fresh process: a new pool over the same proxies and the same cache file.
    const reloaded = new GattCache({ file });
    await reloaded.load();
    const pool = poolOf(closers, fleet.nodes, { ...FAST_POOL, cache: reloaded });
    watchSlots(closers, fleet.nodes, pool);
    await pool.ready({ timeout: 3000 });
    await waitHeard(pool, DEMO_MAC, 2);
    expect(pool.route(DEMO_MAC).decisions).toEqual([expect.objectContaining({ kind: 'bond', proxy: 'proxy-2' })]);
    const next = await pool.establishConnection(DEMO_MAC);
    expect(next.proxy).toBe('proxy-2');
    await next.disconnect();
  });

  it('pool-routing - pairing a pooled connection records the bond; an excluded bonded proxy is a fallback, not a failure', async () => {
    const { pool } = await setup();
    const connection = await pool.establishConnection(DEMO_MAC, { require: ['proxy-2'] });
    await connection.pair();
    expect(pool.cache.bondOf(DEMO_MAC)?.proxy).toBe('proxy-2');
    await connection.disconnect();
    const elsewhere = await pool.establishConnection(DEMO_MAC, { exclude: ['proxy-2'] });
    expect(elsewhere.proxy).toBe('proxy-1');
    expect(elsewhere.timeline[0]!.route).toEqual(
      expect.arrayContaining([expect.objectContaining({ kind: 'fallback', proxy: 'proxy-2', detail: expect.stringContaining('bonded') })]),
    );
    await elsewhere.disconnect();
    pool.cache.deleteBond(DEMO_MAC);
    expect(pool.route(DEMO_MAC).ranking[0]?.proxy).toBe('proxy-1');
  });
});

describe('pool - bonds by the proxy that holds them, across renames; unpair forgets them', () => {
  it("pool-routing - a bond is kept by the proxy's Bluetooth MAC: a pool that names the proxies otherwise still routes there", async () => {
    const { fleet, pool: first } = await setup();
    const paired = await first.establishConnection(DEMO_MAC, { require: ['proxy-2'], pair: true });
    await paired.disconnect();
    const bluetoothMac = fleet.nodes[1]!.bluetooth.bluetoothMac.replaceAll(':', '').toLowerCase();
    expect(first.cache.bondOf(DEMO_MAC)).toMatchObject({ proxy: 'proxy-2', bluetoothMac });
    await first.close();
    // Same controllers, other ids: configured by host:port only (a new address, or a renamed node, reads the same).
    const pool = new ProxyPool(
      fleet.nodes.map((n) => ({ host: '127.0.0.1', port: n.server.address.port })),
      { ...FAST_POOL, cache: first.cache },
    );
    closers.push(() => pool.close());
    watchSlots(closers, fleet.nodes, pool);
    await pool.ready({ timeout: 3000 });
    await waitHeard(pool, DEMO_MAC, 2);
    const id = `127.0.0.1:${fleet.nodes[1]!.server.address.port}`;
    expect(pool.route(DEMO_MAC).decisions).toEqual([expect.objectContaining({ kind: 'bond', proxy: id })]);
    const again = await pool.establishConnection(DEMO_MAC);
    expect(again.proxy).toBe(id);
    await again.disconnect();
  });

  it('pool-routing - unpair on the connection, or through the pool without a link, deletes the bond there and forgets it', async () => {
    const { fleet, pool } = await setup();
    const node2 = fleet.nodes[1]!;
    const peripheral = node2.bluetooth.peripherals.find((p) => p.address === DEMO)!;
    const connection = await pool.establishConnection(DEMO_MAC, { require: ['proxy-2'], pair: true });
    expect(pool.cache.bondOf(DEMO_MAC)?.proxy).toBe('proxy-2');
    expect(peripheral.bonded).toBe(true);
    await connection.unpair();
    expect(peripheral.bonded).toBe(false);
    expect(pool.cache.bondOf(DEMO_MAC)).toBeUndefined();
    expect(pool.route(DEMO_MAC).decisions).toEqual([]);
    await connection.pair();
    await connection.disconnect();
    expect(pool.cache.bondOf(DEMO_MAC)?.proxy).toBe('proxy-2');
    await pool.unpair(DEMO_MAC);
    expect(peripheral.bonded).toBe(false);
    expect(pool.cache.bondOf(DEMO_MAC)).toBeUndefined();
    await expect(pool.unpair(DEMO_MAC)).rejects.toThrow(/No bond of C0:FF:EE:00:00:01 is known/);
    await pool.unpair(DEMO_MAC, { proxy: 'proxy-1' });
  });
});

describe('pool - ghost links', () => {
  it('pool-routing - a proxy that never completes our disconnect keeps the slot: the guard sends it a DISCONNECT', async () => {
    const { fleet, pool } = await setup({ ghostLinks: { settleDelay: 500, silenceDelay: 60_000 } }, [{}]);
    const node = fleet.nodes[0]!;
    node.bluetooth.setBehaviour(DEMO, { ghostDisconnect: true });
    const connection = await pool.establishConnection(DEMO_MAC);
    // The proxy answers the DISCONNECT but keeps the link: our disconnect gives up waiting for the slot.
    await expect(connection.disconnect({ timeout: 150 })).rejects.toMatchObject({ code: 'ESPAPI_ERR_TIMEOUT' });
    expect(node.bluetooth.linkAddresses).toEqual([DEMO]);
    // After the settle delay the guard releases it; the device advertises again.
    await expect.poll(() => node.bluetooth.linkAddresses, { timeout: 3000 }).toEqual([]);
    expect(pool.route(DEMO_MAC).ghosts).toEqual([
      expect.objectContaining({
        kind: 'ghost',
        proxy: 'proxy-1',
        detail: expect.stringContaining('still lists C0:FF:EE:00:00:01 allocated'),
      }),
    ]);
    node.bluetooth.setBehaviour(DEMO, undefined);
    // The next connect reports what happened in its timeline.
    const next = await pool.establishConnection(DEMO_MAC);
    expect(next.timeline[0]!.route).toEqual([expect.objectContaining({ kind: 'ghost', proxy: 'proxy-1' })]);
    expect(pool.route(DEMO_MAC).ghosts).toEqual([]);
    await next.disconnect();
  });

  it('pool-routing - a device silent after our disconnect (no slot list on old firmware) gets a DISCONNECT; the next connect reports it', async () => {
    const { fleet, pool } = await setup({ ghostLinks: { settleDelay: 100, silenceDelay: 400 } }, [{ firmware: '2024.10' }]);
    const node = fleet.nodes[0]!;
    node.bluetooth.setBehaviour(DEMO, { ghostDisconnect: true });
    const connection = await pool.establishConnection(DEMO_MAC);
    await connection.disconnect({ timeout: 300 }).catch(() => {});
    // Firmware before 2025 lists no addresses: only the silence tells. The connect finds the device silent,
    // releases the ghost first, and then hears the device again.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(pool.route(DEMO_MAC).ghosts).toEqual([
      expect.objectContaining({ kind: 'ghost', detail: expect.stringContaining('went silent after our link through it ended') }),
    ]);
    node.bluetooth.setBehaviour(DEMO, undefined);
    const next = await pool.establishConnection(DEMO_MAC, { timeout: 5000 });
    expect(next.timeline[0]!.route).toEqual([expect.objectContaining({ kind: 'ghost', proxy: 'proxy-1' })]);
    await next.disconnect();
  });

  it("pool-routing - the guard never touches another client's live link to a device we let go", async () => {
    const { fleet, pool } = await setup({ ghostLinks: { settleDelay: 100, silenceDelay: 300 } }, [{}]);
    const node = fleet.nodes[0]!;
    const connection = await pool.establishConnection(DEMO_MAC);
    await connection.disconnect();
    // Another client (say Home Assistant on older firmware, answered through us, the subscriber) connects the device.
    const other = await ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port });
    closers.push(() => other.destroy());
    other.send(BluetoothDeviceRequest, {
      address: DEMO,
      requestType: BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE,
      hasAddressType: true,
      addressType: 1,
    });
    await expect.poll(() => node.bluetooth.linkAddresses).toEqual([DEMO]);
    // Well past both delays: still allocated and silent (a connected peripheral does not advertise), yet left alone.
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(node.bluetooth.linkAddresses).toEqual([DEMO]);
    expect(pool.route(DEMO_MAC).ghosts).toEqual([]);
    // Not a ghost of ours: the pool's reaper would see an orphan; the test hands it back itself.
    other.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.DISCONNECT });
    await expect.poll(() => node.bluetooth.linkAddresses).toEqual([]);
  });
  it('pool-routing - newest-wins firmware: Home Assistant takes the proxy and connects the device we let go; its link is left alone', async () => {
    const { fleet, pool } = await setup({ ghostLinks: { settleDelay: 300, silenceDelay: 60_000 } }, [
      { subscriptionPolicy: 'newest-wins' },
    ]);
    const node = fleet.nodes[0]!;
    const connection = await pool.establishConnection(DEMO_MAC);
    const ha = await subscribeAsOther(node);
    closers.push(() => ha.destroy());
    // The proxy carries our DISCONNECT out, but its answers go to Home Assistant now: ours times out unconfirmed.
    await expect(connection.disconnect({ timeout: 300 })).rejects.toMatchObject({ code: 'ESPAPI_ERR_TIMEOUT' });
    await expect.poll(() => node.bluetooth.linkAddresses).toEqual([]);
    connectAs(ha);
    await expect.poll(() => node.bluetooth.linkAddresses).toEqual([DEMO]);
    // Well past the settle delay, with our (frozen) slot list still showing the device: Home Assistant keeps its link.
    await sleep(1200);
    expect(node.bluetooth.linkAddresses).toEqual([DEMO]);
    expect(pool.route(DEMO_MAC).ghosts).toEqual([]);
    ha.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.DISCONNECT });
    await expect.poll(() => node.bluetooth.linkAddresses).toEqual([]);
  });

  it('pool-routing - a ghost of ours on a proxy another client has since subscribed to: no DISCONNECT without proof we are the subscriber', async () => {
    const { fleet, pool } = await setup({ ghostLinks: { settleDelay: 800, silenceDelay: 60_000 } }, [
      { subscriptionPolicy: 'newest-wins' },
    ]);
    const node = fleet.nodes[0]!;
    node.bluetooth.setBehaviour(DEMO, { ghostDisconnect: true });
    const connection = await pool.establishConnection(DEMO_MAC);
    // Answered (so confirmed) but kept: a real ghost. Then, before the settle delay, a newer client takes the proxy.
    await expect(connection.disconnect({ timeout: 150 })).rejects.toMatchObject({ code: 'ESPAPI_ERR_TIMEOUT' });
    const ha = await subscribeAsOther(node);
    closers.push(() => ha.destroy());
    await sleep(1800);
    // The probe before the fresh slot query went unanswered: the proxy is the other client's to manage now.
    expect(node.bluetooth.linkAddresses).toEqual([DEMO]);
    expect(pool.route(DEMO_MAC).ghosts).not.toContainEqual(
      expect.objectContaining({ detail: expect.stringContaining('it got a DISCONNECT') }),
    );
    node.bluetooth.setBehaviour(DEMO, undefined);
    ha.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.DISCONNECT });
    await expect.poll(() => node.bluetooth.linkAddresses).toEqual([]);
  });

  it("pool-routing - another client's connect still in progress past the settle delay is not taken for our ghost", async () => {
    const { fleet, pool } = await setup({ ghostLinks: { settleDelay: 300, silenceDelay: 60_000 } }, [{}]);
    const node = fleet.nodes[0]!;
    const connection = await pool.establishConnection(DEMO_MAC);
    await connection.disconnect();
    const other = await ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port });
    closers.push(() => other.destroy());
    // The proxy reserves the slot at once and connects for 1.5 s (a far or sleepy device).
    node.bluetooth.setBehaviour(DEMO, { connectDelayMs: 1500 });
    connectAs(other);
    await expect.poll(() => node.bluetooth.linkAddresses).toEqual([DEMO]);
    await sleep(900);
    expect(node.bluetooth.linkAddresses).toEqual([DEMO]);
    expect(pool.route(DEMO_MAC).ghosts).toEqual([]);
    node.bluetooth.setBehaviour(DEMO, undefined);
    other.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.DISCONNECT });
    await expect.poll(() => node.bluetooth.linkAddresses).toEqual([]);
  });

  it('pool-routing - ghosts are kept per proxy: a later link through another proxy does not hide the first one', async () => {
    const { fleet, pool } = await setup({ ghostLinks: { settleDelay: 600, silenceDelay: 60_000 } });
    const [node1, node2] = fleet.nodes as [SimulatedFleet['nodes'][number], SimulatedFleet['nodes'][number]];
    node1.bluetooth.setBehaviour(DEMO, { ghostDisconnect: true });
    const first = await pool.establishConnection(DEMO_MAC, { require: ['proxy-1'] });
    await expect(first.disconnect({ timeout: 150 })).rejects.toMatchObject({ code: 'ESPAPI_ERR_TIMEOUT' });
    const second = await pool.establishConnection(DEMO_MAC, { require: ['proxy-2'] });
    await second.disconnect();
    expect(node2.bluetooth.linkAddresses).toEqual([]);
    await expect.poll(() => node1.bluetooth.linkAddresses, { timeout: 3000 }).toEqual([]);
    expect(pool.route(DEMO_MAC).ghosts).toEqual([expect.objectContaining({ kind: 'ghost', proxy: 'proxy-1' })]);
  });
});
