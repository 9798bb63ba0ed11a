import { describe, expect, it } from 'vitest';
import { parseMac } from '../../src/bluetooth/address.js';
import { ApiConnection } from '../../src/connection/connection.js';
import {
  ConnectFailedError,
  ConnectionAbortedError,
  DeviceNotFoundError,
  NoProxyAvailableError,
  OutOfSlotsError,
  TimeoutError,
} from '../../src/errors.js';
import { leakedSlots, type SimulatedFleet } from '../../src/fixture-server/fleet.js';
import { BluetoothDeviceRequest, BluetoothDeviceRequestType } from '../../src/gen/api_pb.js';
import { ProxyPool, parseProxySpec } from '../../src/pool/proxy-pool.js';
import { useClosers } from '../helpers/closers.js';
import { TEST_PSK } from '../helpers/fixture.js';
import { DEMO_MAC, FAST_POOL, poolOf, profileWithDevices, startPooledFleet, startTestFleet, waitHeard } from '../helpers/fleet.js';
import { AT_ONCE_MS } from '../helpers/wait.js';

const DEMO = parseMac(DEMO_MAC);
/** The default profile's readable characteristic with a known value (fixtures/profiles/README.md). */
const DEVICE_NAME_UUID = '2a00';

const closers = useClosers();

/** `count` proxies (with `perNode` options) sharing the default profile plus `extraDevices` clones, and a ready pool of them. */
async function setup(
  count: number,
  perNode: Parameters<typeof startTestFleet>[2] = [],
  extraDevices = 0,
  behaviour: Parameters<typeof profileWithDevices>[1] = {},
): Promise<{ fleet: SimulatedFleet; pool: ProxyPool }> {
  return startPooledFleet(closers, {
    perNode: Array.from({ length: count }, (_, i) => perNode[i] ?? {}),
    profile: await profileWithDevices(extraDevices, behaviour),
  });
}

function allocated(f: SimulatedFleet): number[][] {
  return f.nodes.map((n) => n.bluetooth.allocated);
}

describe('pool - establishConnection', () => {
  it('proxy-pool - connects through the proxy with the best signal and reads by UUID', async () => {
    const { fleet, pool } = await setup(2, [{ rssiOffset: -20 }, { rssiOffset: 0, psk: TEST_PSK }]);
    const connection = await pool.establishConnection(DEMO_MAC, { name: 'demo' });
    expect(connection.proxy).toBe('proxy-2');
    expect(connection.timeline).toHaveLength(1);
    expect(new TextDecoder().decode(await connection.read(DEVICE_NAME_UUID))).toBe('esphome-ble-demo');
    expect(pool.proxies().find((p) => p.id === 'proxy-2')?.owned).toEqual([DEMO]);
    await connection.disconnect();
    await expect.poll(() => allocated(fleet).flat()).toEqual([]);
  });

  it('proxy-pool - a full proxy is skipped without any backoff sleep', async () => {
    const { fleet, pool } = await setup(2, [{ rssiOffset: 10, slotsBusy: 3 }, { rssiOffset: -10 }]);
    const started = performance.now();
    const connection = await pool.establishConnection(DEMO_MAC);
    // One attempt, and no sleep before it: the same-proxy slot backoff (SAME_PROXY_SLOT_BACKOFF_MS, 4 s) is not waited.
    expect(performance.now() - started).toBeLessThan(AT_ONCE_MS);
    expect(connection.timeline).toHaveLength(1);
    expect(connection.proxy).toBe('proxy-2');
    await connection.disconnect();
    expect(fleet.nodes[0]!.bluetooth.connectRequests).toBe(0);
  });

  it('proxy-pool - CONN_CANCEL on A fails over to B at once', async () => {
    const { fleet, pool } = await setup(2, [{ rssiOffset: 10 }, { rssiOffset: -10 }]);
    fleet.nodes[0]!.bluetooth.setBehaviour(DEMO, { connectError: 0x100 });
    const started = performance.now();
    const connection = await pool.establishConnection(DEMO_MAC);
    const elapsed = performance.now() - started;
    expect(connection.proxy).toBe('proxy-2');
    expect(connection.timeline.map((a) => [a.proxy, a.reason])).toEqual([
      ['proxy-1', 0x100],
      ['proxy-2', undefined],
    ]);
    // Failover does not sit out proxy-1's 4 s backoff (SAME_PROXY_SLOT_BACKOFF_MS).
    expect(elapsed).toBeLessThan(AT_ONCE_MS);
    await connection.disconnect();
    await expect.poll(() => allocated(fleet).flat()).toEqual([]);
  });

  it('proxy-pool - all proxies full ends in OutOfSlotsError after the attempts', async () => {
    const { pool } = await setup(2, [{ slotsBusy: 3 }, { slotsBusy: 3 }]);
    const error = await pool.establishConnection(DEMO_MAC, { maxAttempts: 2, slotWait: 50 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OutOfSlotsError);
    expect((error as OutOfSlotsError).attempts).toBe(2);
    expect((error as OutOfSlotsError).advice).toMatch(/connection slots/);
  });

  it('proxy-pool - a device nobody hears is DeviceNotFoundError', async () => {
    const { pool } = await setup(1);
    const error = await pool.establishConnection('11:22:33:44:55:66', { maxAttempts: 2, notFoundWait: 50 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeviceNotFoundError);
    expect((error as DeviceNotFoundError).timeline).toHaveLength(2);
  });

  it('proxy-pool - the abort family (FAIL_ESTABLISH) is ConnectionAbortedError with the last error as cause', async () => {
    const { fleet, pool } = await setup(2);
    for (const node of fleet.nodes) node.bluetooth.setBehaviour(DEMO, { connectError: 0x3e });
    const error = await pool.establishConnection(DEMO_MAC, { maxAttempts: 3 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionAbortedError);
    expect((error as ConnectionAbortedError).cause).toMatchObject({ reason: 0x3e });
    await expect.poll(() => allocated(fleet).flat()).toEqual([]);
  });

  it('proxy-pool - attempt timeouts release every slot and end in ConnectFailedError', async () => {
    const { fleet, pool } = await setup(2);
    for (const node of fleet.nodes) node.bluetooth.setBehaviour(DEMO, { hang: true });
    const error = await pool.establishConnection(DEMO_MAC, { maxAttempts: 2, attemptTimeout: 150 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectFailedError);
    expect((error as ConnectFailedError).timeline.map((a) => a.code)).toEqual(['ESPAPI_ERR_TIMEOUT', 'ESPAPI_ERR_TIMEOUT']);
    await expect.poll(() => allocated(fleet).flat()).toEqual([]);
  });

  it('proxy-pool - a proxy dying mid-connect is retried elsewhere', async () => {
    const { fleet, pool } = await setup(2, [{ rssiOffset: 10 }, { rssiOffset: -10 }]);
    fleet.nodes[0]!.bluetooth.setBehaviour(DEMO, { hang: true });
    const pending = pool.establishConnection(DEMO_MAC);
    await expect.poll(() => fleet.nodes[0]!.bluetooth.connectRequests).toBe(1);
    for (const session of fleet.nodes[0]!.server.sessions) session.close();
    const connection = await pending;
    expect(connection.proxy).toBe('proxy-2');
    expect(connection.timeline[0]?.code).toBe('ESPAPI_ERR_CONNECTION_CLOSED');
    await connection.disconnect();
  });

  it('proxy-pool - the overall deadline rejects with TimeoutError and frees the slot', async () => {
    const { fleet, pool } = await setup(1);
    fleet.nodes[0]!.bluetooth.setBehaviour(DEMO, { hang: true });
    const error = await pool.establishConnection(DEMO_MAC, { timeout: 200 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    await expect.poll(() => allocated(fleet).flat()).toEqual([]);
  });

  it('proxy-pool - an abort rejects with the signal reason', async () => {
    const { fleet, pool } = await setup(1);
    fleet.nodes[0]!.bluetooth.setBehaviour(DEMO, { hang: true });
    const controller = new AbortController();
    const reason = new Error('user gave up');
    setTimeout(() => controller.abort(reason), 100);
    await expect(pool.establishConnection(DEMO_MAC, { signal: controller.signal })).rejects.toBe(reason);
    await expect.poll(() => allocated(fleet).flat()).toEqual([]);
  });
});

describe('pool - configuration', () => {
  it('proxy-pool - an empty pool without discovery fails at once with NoProxyAvailableError', async () => {
    const pool = poolOf(closers, [], {});
    await expect(pool.establishConnection(DEMO_MAC)).rejects.toMatchObject({ code: 'ESPAPI_ERR_NO_PROXY' });
  });

  it('proxy-pool - ready() on twenty proxies adds one listener to the caller signal, and Node warns of nothing', async () => {
    const { fleet, pool } = await setup(1);
    const port = fleet.nodes[0]!.server.address.port;
    const many = new ProxyPool(
      Array.from({ length: 20 }, (_, i) => ({ host: '127.0.0.1', port, name: `same-${i}` })),
      FAST_POOL,
    );
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const caller = new AbortController();
      // Every entry expects another node name than the one that answers: nothing will ever connect, and ready() says so.
      const error = await many.ready({ signal: caller.signal, timeout: 3000 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(NoProxyAvailableError);
      expect((error as NoProxyAvailableError).proxies.map((p) => p.code)).toEqual(Array(20).fill('ESPAPI_ERR_NAME_MISMATCH'));
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.map((w) => w.name)).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      await many.close();
      await pool.close();
    }
  });

  it('proxy-pool - proxy specs accept host, host:port and [v6]:port', () => {
    expect(parseProxySpec('192.168.1.40')).toEqual({ host: '192.168.1.40' });
    expect(parseProxySpec('kitchen.local:6054')).toEqual({ host: 'kitchen.local', port: 6054 });
    expect(parseProxySpec('[fe80::1]:6053')).toEqual({ host: 'fe80::1', port: 6053 });
    expect(parseProxySpec('fe80::1')).toEqual({ host: 'fe80::1' });
  });
});

describe('pool - GATT cache', () => {
  it('proxy-pool - a cached reconnect skips service discovery', async () => {
    const { fleet, pool } = await setup(1);
    const first = await pool.establishConnection(DEMO_MAC);
    expect(first.fromCache).toBe(false);
    await first.disconnect();
    const discoveries = fleet.nodes[0]!.bluetooth.servicesRequests;
    const second = await pool.establishConnection(DEMO_MAC);
    expect(second.fromCache).toBe(true);
    expect(fleet.nodes[0]!.bluetooth.servicesRequests).toBe(discoveries);
    expect(new TextDecoder().decode(await second.read(DEVICE_NAME_UUID))).toBe('esphome-ble-demo');
    await second.disconnect();
  });

  it('proxy-pool - a missing required characteristic clears the cache and reconnects once without it', async () => {
    const { fleet, pool } = await setup(1);
    const first = await pool.establishConnection(DEMO_MAC);
    const services = first.services.services;
    await first.disconnect();
    // A stale cache entry that lacks the Device Name characteristic.
    const stale = services.map((s) => ({ ...s, characteristics: s.characteristics.filter((c) => !c.uuid.startsWith('00002a00')) }));
    pool.cache.set(DEMO_MAC, 'proxy-1', stale, 247);
    const again = await pool.establishConnection(DEMO_MAC, { requiredCharacteristics: [DEVICE_NAME_UUID] });
    expect(again.fromCache).toBe(false);
    expect(again.services.find(DEVICE_NAME_UUID)).toBeDefined();
    expect(
      pool.cache
        .get(DEMO_MAC, 'proxy-1')
        ?.services.flatMap((s) => s.characteristics)
        .some((c) => c.uuid.startsWith('00002a00')),
    ).toBe(true);
    await again.disconnect();
    await expect.poll(() => allocated(fleet).flat()).toEqual([]);
  });
});

describe('pool - stale GATT cache', () => {
  it('proxy-pool - a cached table the peripheral rejects is invalidated and the next connect rediscovers', async () => {
    const { fleet, pool } = await setup(1);
    const first = await pool.establishConnection(DEMO_MAC);
    await first.disconnect();
    // The device's firmware changed: every handle moved.
    fleet.nodes[0]!.bluetooth.peripherals.find((p) => p.address === DEMO)!.mutateDatabase();
    const stale = await pool.establishConnection(DEMO_MAC);
    expect(stale.fromCache).toBe(true);
    const error = await stale.read(DEVICE_NAME_UUID).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ESPAPI_ERR_GATT' });
    expect(pool.cache.get(DEMO_MAC, 'proxy-1')).toBeUndefined();
    await stale.disconnect();
    const fresh = await pool.establishConnection(DEMO_MAC);
    expect(fresh.fromCache).toBe(false);
    expect(new TextDecoder().decode(await fresh.read(DEVICE_NAME_UUID))).toBe('esphome-ble-demo');
    await fresh.disconnect();
  });
});

describe('pool - slot hygiene', () => {
  it('proxy-pool - 20 concurrent connects over 3 proxies never over-commit a proxy', async () => {
    const { fleet, pool } = await setup(3, [], 19);
    const macs = [DEMO_MAC, ...Array.from({ length: 19 }, (_, i) => `C0:FF:EE:00:01:${i.toString(16).padStart(2, '0').toUpperCase()}`)];
    for (const mac of macs) await waitHeard(pool, mac, 3);
    let peak = 0;
    const offs = fleet.nodes.map((n) => n.server);
    void offs;
    const results = await Promise.all(
      macs.map(async (mac) => {
        const connection = await pool.establishConnection(mac, { slotWait: 5000, maxAttempts: 8 });
        peak = Math.max(peak, ...fleet.nodes.map((n) => n.bluetooth.allocated.length));
        await new Promise((resolve) => setTimeout(resolve, 20));
        await connection.disconnect();
        return connection;
      }),
    );
    expect(results).toHaveLength(20);
    expect(peak).toBeLessThanOrEqual(3);
    // No attempt hit a proxy without a free slot: leases kept every connect within the limit.
    expect(results.flatMap((c) => c.timeline).filter((a) => a.code === 'ESPAPI_ERR_BLE_CONNECT')).toEqual([]);
    await expect.poll(() => allocated(fleet).flat()).toEqual([]);
  }, 30_000);

  it('proxy-pool - connects the proxy already counted do not count twice: a third connect takes the third slot', async () => {
    const { pool } = await setup(1, [], 2, { connectDelayMs: 600 });
    const [first, second, third] = [DEMO_MAC, 'C0:FF:EE:00:01:00', 'C0:FF:EE:00:01:01'];
    for (const mac of [second, third]) await waitHeard(pool, mac!, 1);
    const early = [first, second].map((mac) => pool.establishConnection(mac!));
    // Both accepted by the proxy (slots reserved, links still opening): the pool's two leases are in `allocated`.
    await expect.poll(() => pool.diagnostics()[0]?.slots?.allocated.length).toBe(2);
    expect(pool.diagnostics()[0]?.slots).toMatchObject({ free: 1, limit: 3, leases: 2 });
    const late = await pool.establishConnection(third!, { slotWait: 0, maxAttempts: 1 });
    const connections = [...(await Promise.all(early)), late];
    expect(connections.map((c) => c.timeline.length)).toEqual([1, 1, 1]);
    await Promise.all(connections.map((c) => c.disconnect()));
  });

  it('proxy-pool - after a chaos run every allocated list is empty', async () => {
    const { fleet, pool } = await setup(3, [], 8);
    const macs = [DEMO_MAC, ...Array.from({ length: 8 }, (_, i) => `C0:FF:EE:00:01:${i.toString(16).padStart(2, '0').toUpperCase()}`)];
    for (const mac of macs) await waitHeard(pool, mac, 3);
    let seed = 7;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (const node of fleet.nodes) {
      for (const mac of macs) {
        const r = random();
        if (r < 0.2) node.bluetooth.setBehaviour(parseMac(mac), { connectError: 0x100, connectErrorCount: 1 });
        else if (r < 0.35) node.bluetooth.setBehaviour(parseMac(mac), { linkLossAfterMs: 30 });
        else if (r < 0.45) node.bluetooth.setBehaviour(parseMac(mac), { connectError: 0x3e, connectErrorCount: 1 });
      }
    }
    await Promise.allSettled(
      macs.map(async (mac, i) => {
        const connection = await pool.establishConnection(mac, { maxAttempts: 6, slotWait: 3000 });
        await connection.read(DEVICE_NAME_UUID).catch(() => {});
        if (i % 3 === 0)
          fleet.nodes.find((n) => n.bluetooth.allocated.includes(connection.address))?.bluetooth.dropLink(connection.address);
        await connection.disconnect().catch(() => {});
      }),
    );
    await expect.poll(() => allocated(fleet).flat(), { timeout: 3000 }).toEqual([]);
    expect(pool.connections()).toEqual([]);
  }, 30_000);

  it('proxy-pool - connecting again closes our stale link to the same device on another proxy first', async () => {
    const { fleet, pool } = await setup(2, [{ rssiOffset: 10 }, { rssiOffset: -10 }]);
    const first = await pool.establishConnection(DEMO_MAC);
    expect(first.proxy).toBe('proxy-1');
    const second = await pool.establishConnection(DEMO_MAC, { exclude: ['proxy-1'] });
    expect(second.proxy).toBe('proxy-2');
    expect(first.isConnected).toBe(false);
    expect(fleet.nodes[0]!.bluetooth.allocated).toEqual([]);
    expect(pool.connections()).toEqual([second]);
    await second.disconnect();
  });

  it('proxy-pool - pair: true bonds before handing the link out (the bonded-only characteristic reads)', async () => {
    const { pool } = await setup(1);
    const connection = await pool.establishConnection(DEMO_MAC, { pair: true });
    // fixtures/profiles/README.md: handle 24 answers 0x05 until the link is bonded.
    expect((await connection.read(24)).length).toBeGreaterThan(0);
    await connection.disconnect();
  });

  it('proxy-pool - reapOrphans finds and releases a slot no link of ours accounts for', async () => {
    const { fleet, pool } = await setup(1);
    const node = fleet.nodes[0]!;
    // Another client (not the subscriber) opens a link the pool never asked for.
    const other = await ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port });
    other.send(BluetoothDeviceRequest, {
      address: DEMO,
      requestType: BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE,
      hasAddressType: true,
      addressType: 1,
    });
    await expect.poll(() => pool.proxies()[0]?.slots?.allocated).toEqual([DEMO]);
    expect(await pool.reapOrphans({ dryRun: true })).toEqual([{ proxy: 'proxy-1', address: DEMO, mac: DEMO_MAC, released: false }]);
    expect(node.bluetooth.allocated).toEqual([DEMO]);
    const reaped = await pool.reapOrphans();
    expect(reaped[0]?.released).toBe(true);
    expect(node.bluetooth.allocated).toEqual([]);
    await other.close();
  });

  it('proxy-pool - after its session dropped, the pool releases the slots the old session left on the proxy', async () => {
    // Before 2023.6 the firmware keeps links while any client is connected (here an idle one, as Home Assistant
    // would be), so our old link outlives our session for good; on newer firmware a reconnect within the ~100 ms
    // the loop takes to notice a gone subscriber finds the same.
    const { fleet, pool } = await setup(1, [{ firmware: '2023.5' }]);
    const node = fleet.nodes[0]!;
    const idle = await ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port });
    const device = await pool.establishConnection(DEMO_MAC, { timeout: 3000 });
    // The pool's session is the one that subscribed; it drops (a Wi-Fi hiccup, say).
    node.bluetooth.subscriber!.close();
    await expect.poll(() => device.isConnected).toBe(false);
    await expect.poll(() => pool.proxies()[0]?.online, { timeout: 3000 }).toBe(true);
    await expect.poll(() => leakedSlots(fleet.nodes, pool.proxies()), { timeout: 3000 }).toEqual([]);
    expect(node.bluetooth.linkAddresses).toEqual([]);
    const again = await pool.establishConnection(DEMO_MAC, { timeout: 3000 });
    await again.disconnect();
    idle.destroy();
  });

  it('proxy-pool - a link the proxy drops is closed locally and the callback fires', async () => {
    const { fleet, pool } = await setup(1);
    const closed: number[] = [];
    const connection = await pool.establishConnection(DEMO_MAC, { disconnectedCallback: (_c, info) => closed.push(info.reason) });
    fleet.nodes[0]!.bluetooth.dropLink(DEMO);
    await expect.poll(() => closed).toEqual([0x08]);
    expect(connection.isConnected).toBe(false);
    expect(pool.connections()).toEqual([]);
  });

  it('proxy-pool - the status stream tells proxies, slots, devices and connections apart', async () => {
    const fleet = await startTestFleet(1, await profileWithDevices(0));
    closers.push(() => fleet.close());
    const pool = new ProxyPool(fleet.addresses, FAST_POOL);
    closers.push(() => pool.close());
    const seen = new Set<string>();
    const controller = new AbortController();
    const collecting = (async () => {
      for await (const status of pool.status({ signal: controller.signal })) {
        seen.add(status.type);
        if (status.type === 'connectionClosed') controller.abort();
      }
    })();
    const connection = await pool.establishConnection(DEMO_MAC);
    await connection.disconnect();
    await collecting;
    expect([...seen].sort()).toEqual(['connectionClosed', 'connectionOpened', 'deviceSeen', 'proxyUp', 'slots']);
    expect(pool.devices().find((d) => d.mac === DEMO_MAC)?.proxies).toHaveProperty(fleet.addresses[0]!);
  });
});
